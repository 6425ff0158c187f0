/**
 * End to end with ZooKeeper: a real ZooKeeper server (test/helpers/zookeeper.ts), the real
 * `bin/drover` child process, backends that name themselves, `drover register --zookeeper` as a
 * real child process, and a TCP proxy between drover and ZooKeeper that the tests cut.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CreateMode, type Client } from 'node-zookeeper-client';
import { connectZk, describeZooKeeper, startZooKeeper, zk, type ZooKeeperServer } from './helpers/zookeeper.js';
import { discard } from '../src/registry/zookeeper.js';
import { startBackend, request, type TestBackend } from './helpers/backends.js';
import { BIN, startDrover, type DroverProcess } from './helpers/drover.js';
import { bodies, metric, pool, uniq } from './helpers/e2e.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();
let seq = 0;
const nextPrefix = (): string => `/e2e${process.pid}-${++seq}/services`;

async function backends(...names: string[]): Promise<TestBackend[]> {
  const out = await Promise.all(names.map((n) => startBackend(n)));
  for (const b of out) later(() => b.close());
  return out;
}

async function drover(servers: string, prefix: string, extra = ''): Promise<DroverProcess> {
  const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
shutdown_grace: 1s
registry:
  zookeeper: {servers: "${servers}", prefix: ${prefix}, session_timeout: 1s}
routes:
  - match: {path_prefix: /}
    service: web
${extra}`);
  later(() => d.stop('SIGKILL'));
  return d;
}

const hostPort = (b: TestBackend): string => b.url.replace('http://', '');

describeZooKeeper('drover with ZooKeeper, end to end', () => {
  let server: ZooKeeperServer;
  let c: Client;
  beforeAll(async () => {
    server = await startZooKeeper();
    c = await server.client();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('members added and removed in ZooKeeper: traffic follows; source, connected and events are reported', async () => {
    const p = nextPrefix();
    const [a, b] = await backends('zk-a', 'zk-b');
    await zk.mkdirp(c, `${p}/web`);
    await zk.put(c, `${p}/web/a`, hostPort(a as TestBackend));
    const d = await drover(server.servers, p);
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['zk-a']);
    expect(((await pool(d, 'web')) ?? []).map((x) => `${x.id}:${x.source}`)).toEqual(['a:zookeeper']);
    expect(await metric(d, 'drover_registry_connected', { source: 'zookeeper' })).toBe(1);
    // `drover status` (a real child process) names the source in its SOURCE column
    const status = spawnSync(process.execPath, [BIN, 'status', '--admin', `http://127.0.0.1:${d.adminPort}`], { encoding: 'utf8' });
    expect(status.status).toBe(0);
    expect(status.stdout.trimEnd().split('\n').slice(1).map((l) => [l.split(/ {2,}/)[1], l.split(/ {2,}/).at(-1)])).toEqual([['a', 'zookeeper']]);

    await zk.put(c, `${p}/web/b`, JSON.stringify({ url: (b as TestBackend).url, weight: 1 }));
    await waitFor(async () => uniq(await bodies(d.port, '/', 4)).length === 2, { what: 'traffic on both' });
    await zk.remove(c, `${p}/web/a`);
    await waitFor(async () => (await pool(d, 'web'))?.length === 1, { what: 'a removed' });
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['zk-b']);
    expect(await metric(d, 'drover_registry_events_total', { source: 'zookeeper', type: 'put' })).toBe(2);
    expect(await metric(d, 'drover_registry_events_total', { source: 'zookeeper', type: 'delete' })).toBe(1);
  });

  it('ZooKeeper out of reach (cut, then killed): traffic keeps flowing on the last members; changes made meanwhile apply on return', async () => {
    const p = nextPrefix();
    const [a, b, e] = await backends('zk-a', 'zk-b', 'zk-e');
    await zk.mkdirp(c, `${p}/web`);
    await zk.put(c, `${p}/web/a`, hostPort(a as TestBackend), CreateMode.PERSISTENT);
    const proxy = await startTcpProxy({ port: server.port });
    later(() => proxy.close());
    const d = await drover(`127.0.0.1:${proxy.port}`, p);
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });

    proxy.cut();
    await waitFor(async () => (await metric(d, 'drover_registry_connected', { source: 'zookeeper' })) === 0, { what: 'disconnected' });
    await zk.put(c, `${p}/web/b`, hostPort(b as TestBackend), CreateMode.PERSISTENT);
    await zk.remove(c, `${p}/web/a`);
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['zk-a']); // the last members keep serving
    proxy.restore();
    await waitFor(async () => JSON.stringify(uniq(await bodies(d.port, '/', 3))) === '["zk-b"]', { what: 'the changes applied' });
    expect(await metric(d, 'drover_registry_connected', { source: 'zookeeper' })).toBe(1);

    // A registrant with its own short session, and drover kept away (cut) while ZooKeeper is
    // killed and started again: what changes meanwhile (the registrant dies with ZooKeeper down,
    // so its session expires on the restarted server; a member is added, another removed) must
    // all apply once drover reaches it again.
    const registrant = await connectZk(server.servers, 1000);
    await zk.put(registrant, `${p}/web/e`, hostPort(e as TestBackend));
    await waitFor(async () => uniq(await bodies(d.port, '/', 4)).join() === 'zk-b,zk-e', { what: 'e registered' });
    proxy.cut();
    await server.kill();
    await waitFor(async () => (await metric(d, 'drover_registry_connected', { source: 'zookeeper' })) === 0, { what: 'disconnected (killed)' });
    discard(registrant); // dies while ZooKeeper is down: no goodbye
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['zk-b', 'zk-e']);
    await server.start();
    c = await server.client();
    await zk.put(c, `${p}/web/a`, hostPort(a as TestBackend), CreateMode.PERSISTENT);
    await zk.remove(c, `${p}/web/b`);
    await waitFor(async () => (await zk.children(c, `${p}/web`)).join() === 'a', { what: 'the registrant\'s session expired on the restarted server', timeoutMs: 20_000 });
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['zk-b', 'zk-e']); // drover still away: unchanged
    proxy.restore();
    await waitFor(async () => JSON.stringify(uniq(await bodies(d.port, '/', 4))) === '["zk-a"]', { what: 'every change made while away applied', timeoutMs: 20_000 });
    expect(((await pool(d, 'web')) ?? []).map((x) => x.id)).toEqual(['a']);
    expect(await metric(d, 'drover_registry_connected', { source: 'zookeeper' })).toBe(1);
  });

  it('a burst of 500 znode changes: the pool ends with exactly the final set, and serves it', async () => {
    const p = nextPrefix();
    const backendsByPort = new Map<number, TestBackend>();
    for (const x of await backends(...Array.from({ length: 8 }, (_, i) => `burst-${i}`))) backendsByPort.set(x.port, x);
    const ports = [...backendsByPort.keys()];
    await zk.mkdirp(c, `${p}/web`);
    const d = await drover(server.servers, p);
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    // 500 changes over 40 instance names (creates, value changes to other backends, deletes),
    // all sent without waiting: ZooKeeper applies one session's requests in order.
    const expected = new Map<string, number>();
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 500; i++) {
      const name = `i${(i * 7) % 40}`;
      const path = `${p}/web/${name}`;
      // each name's successive changes name different backends and mix in deletes (i = i0 + 40j:
      // the backend follows j, and i mod 7 cycles through every residue as j grows)
      const port = ports[Math.floor(i / 40) % ports.length] as number;
      const data = Buffer.from(`127.0.0.1:${port}`);
      const done = (resolve: () => void, reject: (e: Error) => void) => (err: unknown): void => (err ? reject(err as Error) : resolve());
      if (i % 7 === 6 && expected.has(name)) {
        expected.delete(name);
        ops.push(new Promise<void>((res, rej) => c.remove(path, done(res, rej))));
      } else if (expected.has(name)) {
        expected.set(name, port);
        ops.push(new Promise<void>((res, rej) => c.setData(path, data, done(res, rej))));
      } else {
        expected.set(name, port);
        ops.push(new Promise<void>((res, rej) => c.create(path, data, CreateMode.EPHEMERAL, done(res, rej))));
      }
    }
    await Promise.all(ops);
    const want = [...expected.entries()].map(([id, port]) => `${id}=http://127.0.0.1:${port}`).sort();
    const got = async (): Promise<string[]> => ((await pool(d, 'web')) ?? []).map((x) => `${x.id}=${x.url}`).sort();
    await waitFor(async () => JSON.stringify(await got()) === JSON.stringify(want), { what: 'the final set', timeoutMs: 15_000 }).catch(() => undefined);
    expect(await got()).toEqual(want);
    // and it serves exactly the backends the final set names
    const named = [...new Set(expected.values())].map((port) => backendsByPort.get(port)?.name).sort();
    expect(uniq(await bodies(d.port, '/', expected.size * 2))).toEqual(named);
  });

  it('drover register --zookeeper: member while it runs; gone at once on SIGTERM; gone with the session when the registrant is killed', async () => {
    const p = nextPrefix();
    const [a, b] = await backends('reg-a', 'reg-b');
    const d = await drover(server.servers, p);
    const register = (backend: TestBackend, id: string): ChildProcess => {
      const child = spawn(process.execPath, [BIN, 'register', '--zookeeper', server.servers, '--service', 'web', '--url', backend.url, '--id', id, '--ttl', '2s', '--prefix', p], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      later(() => child.kill('SIGKILL'));
      return child;
    };
    const ra = register(a as TestBackend, 'a');
    const rb = register(b as TestBackend, 'b');
    await waitFor(async () => ((await pool(d, 'web')) ?? []).map((x) => x.id).sort().join() === 'a,b', { what: 'both registered' });
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['reg-a', 'reg-b']);

    const exited = new Promise<number | null>((resolve) => ra.once('exit', (code) => resolve(code)));
    ra.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(await zk.children(c, `${p}/web`)).toEqual(['b']); // removed before the exit
    await waitFor(async () => (await pool(d, 'web'))?.length === 1, { what: 'a gone' });

    rb.kill('SIGKILL'); // no goodbye: the session expires and takes the znode with it
    await waitFor(async () => (await zk.children(c, `${p}/web`)).length === 0, { what: 'znode removed by session expiry' });
    await waitFor(async () => (await request(d.port, { path: '/' })).status === 503, { what: 'no member left' });
  });
});
