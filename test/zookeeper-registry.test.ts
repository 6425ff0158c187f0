/**
 * ZooKeeperRegistry against a real ZooKeeper server (test/helpers/zookeeper.ts), reporting to
 * the shared RecordingSink. A TCP proxy between registry and server cuts the registry off while
 * the test keeps writing to the server directly.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CreateMode, type Client } from 'node-zookeeper-client';
import { ZooKeeperRegistry, type ZooKeeperRegistryOptions } from '../src/registry/zookeeper.js';
import type { ZooKeeperRegistryConfig } from '../src/config/types.js';
import { createLogger, silentLogger, type Logger } from '../src/observability/log.js';
import { describeZooKeeper, startZooKeeper, zk, type ZooKeeperServer } from './helpers/zookeeper.js';
import { RecordingSink } from './helpers/recording-sink.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();

/** A ZooKeeper getChildren (opcode 8) or getChildren2 (12) request for exactly `path`. */
function isListingOf(frame: Buffer, path: string): boolean {
  if (frame.length < 16) return false;
  const type = frame.readInt32BE(8);
  if (type !== 8 && type !== 12) return false;
  const len = frame.readInt32BE(12);
  return len === Buffer.byteLength(path) && frame.toString('utf8', 16, 16 + len) === path;
}
let seq = 0;
const nextPrefix = (): string => `/t${process.pid}-${++seq}/services`;

describeZooKeeper('ZooKeeperRegistry (real ZooKeeper)', () => {
  let server: ZooKeeperServer;
  let c: Client;
  beforeAll(async () => {
    server = await startZooKeeper();
    c = await server.client();
  });
  afterAll(async () => {
    await server?.stop();
  });

  async function startRegistry(config: Partial<ZooKeeperRegistryConfig> & { prefix: string }, servers = server.servers, options: ZooKeeperRegistryOptions = {}, logger?: Logger): Promise<RecordingSink> {
    const sink = new RecordingSink();
    const log = logger ?? (process.env['DEBUG_ZK'] ? createLogger({ level: 'debug' }) : silentLogger());
    const reg = new ZooKeeperRegistry({ servers, layout: 'drover', sessionTimeout: 2000, ...config }, log, { spinDelayMs: 100, ...options });
    later(() => reg.close());
    await reg.start(sink);
    return sink;
  }

  it('lists the tree, then follows adds, data changes and removals; bare and JSON values; invalid skipped', async () => {
    const p = nextPrefix();
    await zk.mkdirp(c, `${p}/web`);
    await zk.mkdirp(c, `${p}/api`);
    await zk.put(c, `${p}/web/a`, '{"url":"http://127.0.0.1:9001","weight":2,"zone":"z1"}');
    await zk.put(c, `${p}/web/b`, '127.0.0.1:9002');
    await zk.put(c, `${p}/web/bad`, 'not an address');
    await zk.put(c, `${p}/api/x`, 'http://127.0.0.1:9100', CreateMode.PERSISTENT);
    const sink = await startRegistry({ prefix: p });
    await waitFor(() => sink.synced.has('zookeeper'));
    expect(sink.view('zookeeper')).toEqual({
      api: { x: 'http://127.0.0.1:9100' },
      web: { a: 'http://127.0.0.1:9001', b: 'http://127.0.0.1:9002' },
    });
    expect(sink.member('web', 'a', 'zookeeper')).toMatchObject({ weight: 2, zone: 'z1', source: 'zookeeper' });
    expect(sink.invalid.map((i) => i.key)).toEqual([`${p}/web/bad`]);
    expect(sink.connected.get('zookeeper')).toBe(true);

    await zk.put(c, `${p}/web/c`, '127.0.0.1:9003');
    await zk.remove(c, `${p}/web/b`);
    await zk.put(c, `${p}/web/a`, '{"url":'); // a broken update keeps the last valid value
    await zk.put(c, `${p}/web/bad`, '127.0.0.1:9004'); // fixed
    await zk.mkdirp(c, `${p}/new`);
    await zk.put(c, `${p}/new/n1`, '127.0.0.1:9200');
    await waitFor(() => sink.member('new', 'n1', 'zookeeper') !== undefined && sink.member('web', 'bad', 'zookeeper') !== undefined);
    await waitFor(() => sink.invalid.some((i) => i.key === `${p}/web/a`));
    expect(sink.view('zookeeper')).toEqual({
      api: { x: 'http://127.0.0.1:9100' },
      new: { n1: 'http://127.0.0.1:9200' },
      web: { a: 'http://127.0.0.1:9001', bad: 'http://127.0.0.1:9004', c: 'http://127.0.0.1:9003' },
    });
    expect(sink.member('web', 'a', 'zookeeper')?.weight).toBe(2);

    await zk.remove(c, `${p}/api/x`);
    await zk.remove(c, `${p}/api`);
    await waitFor(() => sink.view('zookeeper')['api'] === undefined);
    expect(Object.keys(sink.view('zookeeper')).sort()).toEqual(['new', 'web']);
  });

  it('layout nerve: ephemeral sequential children with Nerve JSON', async () => {
    const p = nextPrefix();
    await zk.mkdirp(c, `${p}/web`);
    const n1 = await zk.put(c, `${p}/web/i-1_`, JSON.stringify({ host: '127.0.0.1', port: 9001, name: 'i-1', weight: 3, labels: { az: 'us-1a' } }), CreateMode.EPHEMERAL_SEQUENTIAL);
    await zk.put(c, `${p}/web/i-2_`, JSON.stringify({ host: '127.0.0.1', port: 9002, name: 'i-2' }), CreateMode.EPHEMERAL_SEQUENTIAL);
    await zk.put(c, `${p}/web/i-3_`, JSON.stringify({ host: '127.0.0.1', name: 'no port' }), CreateMode.EPHEMERAL_SEQUENTIAL);
    const sink = await startRegistry({ prefix: p, layout: 'nerve' });
    await waitFor(() => sink.synced.has('zookeeper'));
    const web = Object.values(sink.view('zookeeper')['web'] ?? {}).sort();
    expect(web).toEqual(['http://127.0.0.1:9001', 'http://127.0.0.1:9002']);
    const id1 = n1.slice(n1.lastIndexOf('/') + 1);
    expect(id1).toMatch(/^i-1_\d{10}$/);
    expect(sink.member('web', id1, 'zookeeper')).toMatchObject({ weight: 3, zone: 'us-1a', meta: { name: 'i-1', labels: { az: 'us-1a' } } });
    expect(sink.invalid).toHaveLength(1);
    await zk.remove(c, n1);
    await waitFor(() => sink.member('web', id1, 'zookeeper') === undefined);
    expect(Object.values(sink.view('zookeeper')['web'] ?? {})).toEqual(['http://127.0.0.1:9002']);
  });

  it('a prefix that does not exist yet: no members, then the services once it is created', async () => {
    const p = nextPrefix();
    const sink = await startRegistry({ prefix: p });
    await waitFor(() => sink.synced.has('zookeeper'));
    expect(sink.view('zookeeper')).toEqual({});
    await zk.mkdirp(c, `${p}/web`);
    await zk.put(c, `${p}/web/a`, '127.0.0.1:9001');
    await waitFor(() => sink.member('web', 'a', 'zookeeper') !== undefined);
  });

  it('a burst of 500 znode changes (creates, value changes, deletes) ends with exactly the final set', async () => {
    const p = nextPrefix();
    await zk.mkdirp(c, `${p}/web`);
    const sink = await startRegistry({ prefix: p });
    await waitFor(() => sink.synced.has('zookeeper'));
    // A deterministic mix over 60 instance names, each change one request, all sent without
    // waiting (ZooKeeper applies one session's requests in order, so the final state is known).
    const expected = new Map<string, number>();
    const ops: Promise<unknown>[] = [];
    const cb = (resolve: () => void, reject: (e: Error) => void) => (err: unknown): void => (err ? reject(err as Error) : resolve());
    for (let i = 0; i < 500; i++) {
      const name = `i${(i * 7) % 60}`;
      const path = `${p}/web/${name}`;
      const data = Buffer.from(`127.0.0.1:${10_000 + i}`);
      // i = i0 + 60j for one name: i mod 7 cycles as j grows, so every name mixes value changes and deletes
      if (i % 7 === 6 && expected.has(name)) {
        expected.delete(name);
        ops.push(new Promise<void>((res, rej) => c.remove(path, cb(res, rej))));
      } else if (expected.has(name)) {
        expected.set(name, 10_000 + i);
        ops.push(new Promise<void>((res, rej) => c.setData(path, data, cb(res, rej))));
      } else {
        expected.set(name, 10_000 + i);
        ops.push(new Promise<void>((res, rej) => c.create(path, data, CreateMode.EPHEMERAL, cb(res, rej))));
      }
    }
    await Promise.all(ops);
    // The last write is also the marker: wait for it, then for the whole set to settle.
    const want = Object.fromEntries([...expected.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([n, port]) => [n, `http://127.0.0.1:${port}`]));
    await waitFor(() => JSON.stringify(sink.view('zookeeper')['web'] ?? {}) === JSON.stringify(want), 15_000).catch(() => undefined);
    expect(sink.view('zookeeper')['web'] ?? {}).toEqual(want);
  });

  it("a service znode deleted and created again between the registry's read of it and its read of the prefix: the registry still follows the new one", async () => {
    const p = nextPrefix();
    await zk.mkdirp(c, `${p}/web`);
    await zk.put(c, `${p}/web/i0`, '127.0.0.1:10000');
    const proxy = await startTcpProxy({ port: server.port }, { framed: true });
    later(() => proxy.close());
    const sink = await startRegistry({ prefix: p }, `127.0.0.1:${proxy.port}`);
    await waitFor(() => sink.member('web', 'i0', 'zookeeper') !== undefined);
    // The registry's next listing of the prefix, and every request after it, wait in the proxy.
    proxy.holdFrames((frame) => isListingOf(frame, p));
    await zk.remove(c, `${p}/web/i0`);
    await zk.remove(c, `${p}/web`);
    // The deletion set off the service's read (sent first, answered: no such znode) and the
    // prefix's listing (held).
    await waitFor(() => proxy.heldFrames > 0 && sink.member('web', 'i0', 'zookeeper') === undefined);
    await zk.mkdirp(c, `${p}/web`);
    await zk.put(c, `${p}/web/i1`, '127.0.0.1:10001');
    proxy.releaseFrames();
    // The prefix's listing now shows `web` as before: only a watch set when the service's read
    // found no znode can bring i1 in.
    await waitFor(() => sink.member('web', 'i1', 'zookeeper') !== undefined, { timeoutMs: 5_000, what: 'web/i1 listed', detail: () => JSON.stringify(sink.view('zookeeper')) });
  });

  // Two ways back after an expired session: the server's own expiry notice when the client
  // reconnects (the client is then dead for good: the registry must start a new one), and the
  // registry's own replacement of a client without a session for longer than the timeout.
  it.each([
    ['the server reports the expiry on reconnect', { noSessionReplaceMs: 60_000 }, 'zookeeper session expired: reconnecting and re-listing'],
    ['no session for longer than the timeout: replaced before reconnecting', {}, 'zookeeper: no session within the session timeout: starting a new one'],
  ] as const)('cut off past its session timeout (%s): keeps the last members, then re-lists and applies what changed meanwhile', async (_name, options, logged) => {
    const p = nextPrefix();
    await zk.mkdirp(c, `${p}/web`);
    await zk.put(c, `${p}/web/a`, '127.0.0.1:9001');
    await zk.put(c, `${p}/web/b`, '127.0.0.1:9002');
    const proxy = await startTcpProxy({ port: server.port });
    later(() => proxy.close());
    const lines: string[] = [];
    const log = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString('utf8')), done()) });
    const sink = await startRegistry({ prefix: p, sessionTimeout: 800 }, `127.0.0.1:${proxy.port}`, options, createLogger({ level: 'info', destination: log }));
    await waitFor(() => sink.synced.has('zookeeper'));
    proxy.cut();
    await waitFor(() => sink.connected.get('zookeeper') === false);
    await zk.remove(c, `${p}/web/a`);
    await zk.put(c, `${p}/web/c`, '127.0.0.1:9003');
    await zk.put(c, `${p}/web/b`, '127.0.0.1:9012');
    // Well past the session timeout: the server expires the registry's session.
    await new Promise((r) => setTimeout(r, 2000));
    expect(sink.view('zookeeper')).toEqual({ web: { a: 'http://127.0.0.1:9001', b: 'http://127.0.0.1:9002' } });
    const resyncsBefore = sink.events.resync;
    proxy.restore();
    await waitFor(() => sink.events.resync > resyncsBefore);
    expect(sink.connected.get('zookeeper')).toBe(true);
    expect(sink.view('zookeeper')).toEqual({ web: { b: 'http://127.0.0.1:9012', c: 'http://127.0.0.1:9003' } });
    expect(lines.some((l) => (JSON.parse(l) as { msg?: string }).msg === logged)).toBe(true);
    // Watches of the new session work.
    await zk.put(c, `${p}/web/d`, '127.0.0.1:9004');
    await waitFor(() => sink.member('web', 'd', 'zookeeper') !== undefined);
  });

  it('the server killed: keeps the last members; follows changes once it is back', async () => {
    const p = nextPrefix();
    await zk.mkdirp(c, `${p}/web`);
    await zk.put(c, `${p}/web/a`, '127.0.0.1:9001', CreateMode.PERSISTENT);
    const sink = await startRegistry({ prefix: p });
    await waitFor(() => sink.synced.has('zookeeper'));
    await server.kill();
    await waitFor(() => sink.connected.get('zookeeper') === false);
    expect(sink.view('zookeeper')).toEqual({ web: { a: 'http://127.0.0.1:9001' } });
    await server.start();
    await waitFor(() => sink.connected.get('zookeeper') === true, 15_000);
    const c2 = await server.client();
    await zk.put(c2, `${p}/web/b`, '127.0.0.1:9002', CreateMode.PERSISTENT);
    await waitFor(() => sink.member('web', 'b', 'zookeeper') !== undefined);
    expect(sink.view('zookeeper')).toEqual({ web: { a: 'http://127.0.0.1:9001', b: 'http://127.0.0.1:9002' } });
    c = c2; // the first client's session may have gone with the old process
  });
});
