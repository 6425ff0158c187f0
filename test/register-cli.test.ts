/**
 * `drover register` as a real child process (bin/drover) against a real etcd.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { describeEtcd, startEtcd, type EtcdServer } from './helpers/etcd.js';
import { defaultInstanceId, resolveRegisterFlags } from '../src/commands/register.js';
import { waitFor } from './helpers/wait.js';
import { startBackend } from './helpers/backends.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin/drover');

interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

const procs: Proc[] = [];
function register(args: string[]): Proc {
  const child = spawn(process.execPath, [bin, 'register', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const p = { child, stdout: () => out, stderr: () => err, exited };
  procs.push(p);
  return p;
}
afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
  }
});

/** A child's output, for a failed wait's message. */
const output = (p: Proc): string => `stdout:\n${p.stdout()}\nstderr:\n${p.stderr()}`;

describe('register flags', () => {
  it('resolves defaults and reports every bad flag', () => {
    const ok = resolveRegisterFlags({ etcd: 'http://a:2379, http://b:2379', service: 'web', url: '127.0.0.1:8080', health: '/healthz', prefix: '/p' });
    expect(ok).toMatchObject({
      ok: true,
      value: {
        endpoints: ['http://a:2379', 'http://b:2379'],
        url: 'http://127.0.0.1:8080',
        id: defaultInstanceId(8080),
        ttlSeconds: 10,
        weight: 1,
        healthUrl: 'http://127.0.0.1:8080/healthz',
        prefix: '/p/',
      },
    });
    expect(defaultInstanceId(8080, 'host.example')).toBe('host.example-8080');
    // the port of --url as written, the scheme's default included
    expect(resolveRegisterFlags({ etcd: 'http://a:2379', service: 'web', url: 'https://127.0.0.1:443' })).toMatchObject({ ok: true, value: { id: defaultInstanceId(443) } });
    const bad = resolveRegisterFlags({ etcd: ' ', service: 'a/b', url: 'ftp://x', ttl: '0s', weight: '-1', health: 'healthz' });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.reason.map((e) => e.split(':')[0])).toEqual(['--etcd', '--url', '--ttl', '--weight']);
    // endpoints and servers are checked as the config checks them
    expect(resolveRegisterFlags({ etcd: 'e', service: 'web', url: '127.0.0.1:1' })).toMatchObject({ ok: false, reason: ['--etcd: "e" is not a URL (e.g. http://127.0.0.1:2379)'] });
    expect(resolveRegisterFlags({ zookeeper: 'zk1', service: 'web', url: '127.0.0.1:1' })).toMatchObject({ ok: false, reason: [expect.stringMatching(/^--zookeeper: "zk1" is not host:port/)] });
    expect(resolveRegisterFlags({ zookeeper: '[::1]:2181, zk2:2181', service: 'web', url: '127.0.0.1:1' })).toMatchObject({ ok: true, value: { zookeeper: '[::1]:2181,zk2:2181' } });
    const badId = resolveRegisterFlags({ etcd: '127.0.0.1:2379', service: 'web', url: '127.0.0.1:1', id: 'a/b' });
    expect(badId.ok).toBe(false);
    // --ttl and --weight take what the config takes (src/config/values.ts)
    expect(resolveRegisterFlags({ etcd: '127.0.0.1:2379', service: 'web', url: '127.0.0.1:1', ttl: '1m30s', weight: '0.5' })).toMatchObject({ ok: true, value: { ttlSeconds: 90, weight: 0.5 } });
    const bareTtl = resolveRegisterFlags({ etcd: '127.0.0.1:2379', service: 'web', url: '127.0.0.1:1', ttl: '10' });
    expect(bareTtl.ok ? [] : bareTtl.reason).toEqual(['--ttl: "10" is not a duration; write e.g. 250ms, 5s, 2m, 1h or 1m30s (a duration of at least 1s, as in the config: 10s, 1m30s)']);
  });
});

describeEtcd('drover register (child process, real etcd)', () => {
  let etcd: EtcdServer;
  let kv: Etcd3;
  let seq = 0;
  beforeAll(async () => {
    etcd = await startEtcd();
    kv = etcd.client();
  });
  afterAll(async () => {
    await etcd?.stop();
  });
  const prefix = (): string => `/reg${++seq}/services/`;
  const getKv = async (key: string) => (await kv.get(key).exec()).kvs[0];

  it('puts the key on a lease; SIGTERM revokes it at once and exits 0', async () => {
    const p = prefix();
    const proc = register(['--etcd', etcd.endpoints.join(','), '--service', 'web', '--url', 'http://127.0.0.1:18080', '--id', 'i1', '--ttl', '30s', '--weight', '3', '--zone', 'z1', '--prefix', p]);
    const key = `${p}web/i1`;
    await waitFor(async () => (await getKv(key)) !== undefined, { what: 'key', timeoutMs: 8000, detail: () => output(proc) });
    const got = await getKv(key);
    expect(got?.lease).not.toBe('0');
    expect(JSON.parse(got?.value.toString() ?? '')).toEqual({ url: 'http://127.0.0.1:18080', weight: 3, zone: 'z1', draining: false, meta: {} });
    const ttl = await kv.leaseClient.leaseTimeToLive({ ID: got?.lease ?? '0' });
    expect(Number(ttl.grantedTTL)).toBe(30);
    // stdout is JSON lines
    const lines = proc.stdout().trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();

    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    // The TTL is 30 s: the key is gone because the lease was revoked, not because it expired.
    expect(await getKv(key)).toBeUndefined();
  });

  it('SIGINT also deregisters; the default id is <hostname>-<port>', async () => {
    const p = prefix();
    const proc = register(['--etcd', etcd.endpoints[0] as string, '--service', 'api', '--url', '127.0.0.1:18081', '--ttl', '30s', '--prefix', p]);
    const key = `${p}api/${defaultInstanceId(18081, os.hostname())}`;
    await waitFor(async () => (await getKv(key)) !== undefined, { what: 'key with default id', timeoutMs: 8000, detail: () => output(proc) });
    proc.child.kill('SIGINT');
    expect(await proc.exited).toBe(0);
    expect(await getKv(key)).toBeUndefined();
  });

  it('--health: key removed after 2 failures, back after 2 passes', async () => {
    let status = 200;
    const served: number[] = [];
    const server = await startBackend('health');
    server.behave((req, res) => {
      served.push(status);
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(req.url);
    });
    try {
      const port = server.port;
      const p = prefix();
      const proc = register(['--etcd', etcd.endpoints[0] as string, '--service', 'web', '--url', `http://127.0.0.1:${port}`, '--id', 'h1', '--ttl', '30s', '--health', '/healthz', '--prefix', p]);
      const key = `${p}web/h1`;
      await waitFor(async () => (await getKv(key)) !== undefined, { what: 'key after passing checks', timeoutMs: 8000, detail: () => output(proc) });
      expect(served.filter((s) => s === 200).length).toBeGreaterThanOrEqual(2);

      status = 500;
      const flip = served.length;
      await waitFor(async () => (await getKv(key)) === undefined, { what: 'key removed after failures', timeoutMs: 8000, detail: () => output(proc) });
      expect(served.slice(flip).filter((s) => s === 500).length).toBeGreaterThanOrEqual(2);

      status = 200;
      const back = served.length;
      await waitFor(async () => (await getKv(key)) !== undefined, { what: 'key back after passes', timeoutMs: 8000, detail: () => output(proc) });
      expect(served.slice(back).filter((s) => s === 200).length).toBeGreaterThanOrEqual(2);

      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
      expect(await getKv(key)).toBeUndefined();
    } finally {
      server.close();
    }
  });

  it('re-creates the key: lease revoked behind its back, key deleted, etcd restarted and wiped', async () => {
    const p = prefix();
    const proc = register(['--etcd', etcd.endpoints[0] as string, '--service', 'web', '--url', '127.0.0.1:18082', '--id', 'r1', '--ttl', '2s', '--prefix', p]);
    const key = `${p}web/r1`;
    await waitFor(async () => (await getKv(key)) !== undefined, { what: 'key', timeoutMs: 8000, detail: () => output(proc) });
    const lease1 = (await getKv(key))?.lease as string;

    // lease revoked by someone else -> a new lease and the key again
    await kv.leaseClient.leaseRevoke({ ID: lease1 });
    await waitFor(async () => {
      const cur = await getKv(key);
      return cur !== undefined && cur.lease !== lease1;
    }, { what: 'key re-created after lease revoke', timeoutMs: 8000, detail: () => output(proc) });

    // key deleted by hand -> put back on the live lease
    await kv.delete().key(key);
    await waitFor(async () => (await getKv(key)) !== undefined, { what: 'key re-created after delete', timeoutMs: 8000, detail: () => output(proc) });

    // etcd restarted with the same data: the key outlives 2x its TTL, so keepalives resumed
    await etcd.restart();
    kv = etcd.client();
    await new Promise((r) => setTimeout(r, 4500));
    await waitFor(async () => (await getKv(key)) !== undefined, { what: 'key after restart', timeoutMs: 8000, detail: () => output(proc) });

    // etcd wiped: lease and key are gone -> both re-created
    await etcd.restart({ wipe: true });
    kv = etcd.client();
    // The store is new, so a key in it was re-created (possibly before this line runs).
    await waitFor(async () => (await getKv(key)) !== undefined, { what: 'key re-created after wipe', timeoutMs: 10_000, detail: () => output(proc) });
    const lease3 = (await getKv(key))?.lease ?? '0';
    expect(Number((await kv.leaseClient.leaseTimeToLive({ ID: lease3 })).TTL)).toBeGreaterThan(0);

    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(await getKv(key)).toBeUndefined();
  }, 45_000);

  it('exits 1 with a usage error for missing or bad flags', async () => {
    const missing = register(['--etcd', etcd.endpoints[0] as string, '--service', 'web']);
    expect(await missing.exited).toBe(1);
    expect(missing.stderr()).toContain('--url');
    const bad = register(['--etcd', etcd.endpoints[0] as string, '--service', 'web', '--url', 'ftp://x:1', '--ttl', 'soon']);
    expect(await bad.exited).toBe(1);
    expect(bad.stderr()).toContain('--url');
    expect(bad.stderr()).toContain('--ttl');
  });
});
