/**
 * A throwaway single-member etcd for the soak run (the test harness in test/helpers is not part
 * of the build, so bench keeps its own small copy): temp data dir, loopback ports, killed on stop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface SoakEtcd {
  readonly url: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** `$ETCD_BIN`, /usr/bin/etcd, or the first `etcd` on PATH. */
function etcdBinary(): string {
  const fromEnv = process.env['ETCD_BIN'];
  const candidates = fromEnv !== undefined ? [fromEnv] : ['/usr/bin/etcd', ...(process.env['PATH'] ?? '').split(':').map((d) => path.join(d, 'etcd'))];
  const found = candidates.find((c) => c !== '' && fs.existsSync(c));
  if (found === undefined) throw new Error('etcd binary not found (install etcd-server or set ETCD_BIN)');
  return found;
}

/** Starts etcd and resolves once its client port answers /health. */
export async function startSoakEtcd(): Promise<SoakEtcd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-soak-etcd-'));
  const [cp, pp] = [await freePort(), await freePort()];
  const client = `http://127.0.0.1:${cp}`;
  const peer = `http://127.0.0.1:${pp}`;
  const child: ChildProcess = spawn(
    etcdBinary(),
    [
      '--name', 'soak', '--data-dir', dir,
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `soak=${peer}`, '--log-level', 'warn', '--logger', 'zap',
      // the soak writes 10 puts a second for minutes: keep the store small
      '--auto-compaction-mode', 'revision', '--auto-compaction-retention', '1000',
    ],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  const until = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await fetch(`${client}/health`);
      if (r.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > until || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error('etcd did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: client,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
