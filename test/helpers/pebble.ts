/**
 * A real ACME server for tests: Debian's `pebble` on free loopback ports, its DNS answered by
 * `pebble-challtestsrv` (every name resolves to 127.0.0.1 and ::1), `PEBBLE_VA_NOSLEEP=1` so
 * validation starts at once, and a server certificate from a CA the test makes (trusted by
 * drover through `acme.ca` only). http-01 is validated on `httpPort`, which the test gives to
 * drover's plain listeners.
 *
 * `describePebble` skips when the binaries are missing, except under `CI=true`, where it fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { describe } from 'vitest';
import { tempDir } from './drover.js';
import { freePort } from './etcd.js';
import { issueCert, makeCa } from './tls.js';
import { eventually } from './wait.js';

const PEBBLE = '/usr/bin/pebble';
const CHALLTESTSRV = '/usr/bin/pebble-challtestsrv';

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `describe` that needs pebble: skipped with a notice when it is missing, failing under `CI=true`. */
export function describePebble(name: string, fn: () => void): void {
  if (executable(PEBBLE) && executable(CHALLTESTSRV)) {
    describe(name, fn);
    return;
  }
  if (process.env['CI'] === 'true') throw new Error(`pebble or pebble-challtestsrv not found (apt-get install pebble): "${name}" cannot be skipped under CI=true`);
  process.stderr.write(`\n[notice] pebble not found: skipping "${name}" (apt-get install pebble)\n`);
  describe.skip(name, fn);
}

export interface Pebble {
  /** the ACME directory URL */
  readonly directory: string;
  /** PEM path of the CA that signed pebble's own server certificate (give it to `acme.ca`) */
  readonly ca: string;
  /** the port pebble validates http-01 on */
  readonly httpPort: number;
  /** pebble's issuing root of the moment (PEM), from its management interface */
  root(): Promise<string>;
  /** pebble's intermediate of the moment (PEM) */
  intermediate(): Promise<string>;
  stop(): Promise<void>;
}

function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 3_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Starts challtestsrv and pebble; resolves once pebble's directory answers. */
export async function startPebble(): Promise<Pebble> {
  const dir = tempDir('drover-pebble-');
  const ca = makeCa(dir, 'pebble-test-ca');
  const server = issueCert(ca, 'pebble', ['DNS:localhost', 'IP:127.0.0.1']);
  const [acmePort, mgmtPort, httpPort, tlsPort, dnsPort, challMgmt] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  const config = path.join(dir, 'pebble-config.json');
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: server.cert,
        privateKey: server.key,
        httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  let log = '';
  const collect = (child: ChildProcess): void => {
    child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  };
  const dns = spawn(CHALLTESTSRV, ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${challMgmt}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  collect(dns);
  const pebble = spawn(PEBBLE, ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // no validation delay; no artificially rejected nonces; fresh authorizations for every order
    env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
  });
  collect(pebble);
  const caPem = readFileSync(ca.cert, 'utf8');
  const directory = `https://127.0.0.1:${acmePort}/dir`;
  const up = await eventually(async () => {
    try {
      return (await get(directory, caPem)).status === 200;
    } catch {
      return false;
    }
  }, 15_000);
  const stop = async (): Promise<void> => {
    await Promise.all([stopChild(pebble), stopChild(dns)]);
    rmSync(dir, { recursive: true, force: true });
  };
  if (!up) {
    await stop();
    throw new Error(`pebble did not come up:\n${log}`);
  }
  const mgmt = `https://127.0.0.1:${mgmtPort}`;
  return {
    directory,
    ca: ca.cert,
    httpPort,
    root: async () => (await get(`${mgmt}/roots/0`, caPem)).body,
    intermediate: async () => (await get(`${mgmt}/intermediates/0`, caPem)).body,
    stop,
  };
}
