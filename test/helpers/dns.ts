/**
 * Test harness for the DNS registry:
 *
 * - `startDnsmasq(args)`: Debian's real `dnsmasq` on a free 127.0.0.1 port (UDP and TCP), with
 *   `--no-resolv --no-hosts` so it only answers what the test gives it (`--srv-host`,
 *   `--host-record`, an `--addn-hosts` file re-read on `reload()` (SIGHUP)). dnsmasq does not
 *   reload SRV records on SIGHUP: `restart(args)` starts it again on the same port.
 * - `startDnsServer()` (bench/lib/dns-server.ts): a small in-process authoritative server on
 *   dns-packet + dgram whose records the test changes at will, that can answer NXDOMAIN or go
 *   silent (an unreachable server).
 * - `describeDnsmasq(name, fn)`: skipped when dnsmasq is missing, failing under `CI=true`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe } from 'vitest';
import { freePort } from './etcd.js';
import { queryDns } from '../../src/registry/dns-client.js';
import { waitFor } from './wait.js';

const DNSMASQ = process.env['DNSMASQ_BIN'] ?? '/usr/sbin/dnsmasq';

export function dnsmasqAvailable(): boolean {
  try {
    accessSync(DNSMASQ, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `describe` that needs dnsmasq: skipped when missing, failing under `CI=true`. */
export function describeDnsmasq(name: string, fn: () => void): void {
  if (dnsmasqAvailable()) {
    describe(name, fn);
    return;
  }
  if (process.env['CI'] === 'true') throw new Error(`dnsmasq not found (${DNSMASQ}): "${name}" cannot be skipped under CI=true`);
  process.stderr.write(`\n[notice] dnsmasq not found: skipping "${name}"\n`);
  describe.skip(name, fn);
}

/** A running dnsmasq. */
export interface Dnsmasq {
  /** `127.0.0.1:PORT` */
  readonly server: string;
  readonly port: number;
  /** the `--addn-hosts` file: `IP name` lines */
  readonly hostsFile: string;
  /** Rewrites the hosts file and sends SIGHUP (dnsmasq re-reads it). */
  reload(hosts: string): Promise<void>;
  /** Stops (SIGKILL) and starts again on the same port with `args` (default: the same). */
  restart(args?: readonly string[]): Promise<void>;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts dnsmasq with the test's records (`--srv-host=...`, `--host-record=...`); `hosts` seeds the hosts file. */
export async function startDnsmasq(args: readonly string[], hosts = ''): Promise<Dnsmasq> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'drover-dnsmasq-'));
  const hostsFile = path.join(root, 'hosts');
  writeFileSync(hostsFile, hosts);
  const port = await freePort();
  let child: ChildProcess | undefined;
  let current = [...args];
  let log = '';
  const spawnIt = async (): Promise<void> => {
    const c = spawn(
      DNSMASQ,
      ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${port}`, `--addn-hosts=${hostsFile}`, '--user=root', '--pid-file=', '--log-facility=-', ...current],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    c.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    c.on('error', () => undefined);
    child = c;
    // Ready once it answers (any answer).
    await waitFor(async () => (await queryDns([{ host: '127.0.0.1', port }], 'ready.invalid', 'A', { timeoutMs: 200, attempts: 1 }), true), {
      what: 'dnsmasq to answer',
      timeoutMs: 10_000,
      everyMs: 0,
      detail: () => log,
      giveUp: () => (c.exitCode !== null ? `dnsmasq exited ${c.exitCode}: ${log}` : undefined),
    });
  };
  const kill = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (c === undefined) return;
    c.kill('SIGKILL');
    await exited(c);
  };
  await spawnIt();
  return {
    server: `127.0.0.1:${port}`,
    port,
    hostsFile,
    async reload(text: string) {
      writeFileSync(hostsFile, text);
      child?.kill('SIGHUP');
      // SIGHUP is handled asynchronously; give it a moment to re-read.
      await new Promise((r) => setTimeout(r, 100));
    },
    async restart(next?: readonly string[]) {
      await kill();
      if (next !== undefined) current = [...next];
      await spawnIt();
    },
    kill,
    async stop() {
      await kill();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** The in-process DNS server lives with the benchmarks (bench/registry-latency.ts uses it too). */
export { startDnsServer, type TestDnsServer, type Zone } from '../../bench/lib/dns-server.js';
