/**
 * EtcdRegistry against real etcd processes (test/helpers/etcd.ts). The sink below is a real
 * in-memory implementation of our own RegistrySink interface, not a mock of etcd or the network.
 */
import { afterAll, expect, it } from 'vitest';
import { EtcdRegistry, type EtcdRegistryOptions } from '../src/registry/etcd.js';
import type { EtcdRegistryConfig } from '../src/config/types.js';
import { silentLogger } from '../src/observability/log.js';
import { describeEtcd, enableAuth, startEtcd, startEtcdCluster, useSharedEtcd, type EtcdServer, type SharedEtcd } from './helpers/etcd.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { REFUSING_PORT } from './helpers/backends.js';
import { RecordingSink } from './helpers/recording-sink.js';
import { waitFor } from './helpers/wait.js';

/** Polls `check` until it returns true (or stops throwing), or fails after `timeoutMs`. */
// Short timings so outages are noticed within a couple of seconds.
const FAST: EtcdRegistryOptions = {
  backoff: { initialMs: 50, maxMs: 500 },
  callTimeoutMs: 2000,
  keepaliveTimeMs: 500,
  keepaliveTimeoutMs: 1000,
};

let prefixSeq = 0;
function nextPrefix(): string {
  return `/t${process.pid}-${++prefixSeq}/services/`;
}

const later = cleanupAfterEach();

async function startRegistry(
  endpoints: string[],
  prefix: string,
  extra: Partial<EtcdRegistryConfig> = {},
  options: EtcdRegistryOptions = FAST,
): Promise<{ reg: EtcdRegistry; sink: RecordingSink }> {
  const config: EtcdRegistryConfig = { endpoints, prefix, layout: 'drover', ...extra };
  const reg = new EtcdRegistry(config, silentLogger(), options);
  const sink = new RecordingSink();
  await reg.start(sink);
  later(() => reg.close());
  return { reg, sink };
}

/**
 * Members a and b under `p`, a registry watching them through a TCP proxy, then the proxy cut:
 * returns once the registry has noticed (connected=false).
 */
async function cutOffRegistry(shared: SharedEtcd, p: string): Promise<{ sink: RecordingSink; proxy: TcpProxy }> {
  await shared.kv.put(`${p}web/a`).value('127.0.0.1:9001');
  await shared.kv.put(`${p}web/b`).value('127.0.0.1:9002');
  const proxy = await startTcpProxy({ port: shared.etcd.clientPort });
  later(() => proxy.close());
  const { sink } = await startRegistry([proxy.url], p);
  await waitFor(() => sink.connected.get('etcd') === true, { what: 'connected', timeoutMs: 5000 });
  proxy.cut();
  await waitFor(() => sink.connected.get('etcd') === false, { what: 'disconnect noticed', timeoutMs: 5000 });
  return { sink, proxy };
}

describeEtcd('EtcdRegistry (single etcd)', () => {
  const shared = useSharedEtcd();

  it('lists the prefix, then applies puts and deletes; bare values; invalid values skipped and counted', async () => {
    const p = nextPrefix();
    await shared.kv.put(`${p}web/a`).value('{"url":"http://127.0.0.1:9001","weight":2,"zone":"z1","draining":false,"meta":{"v":1}}');
    await shared.kv.put(`${p}web/b`).value('127.0.0.1:9002');
    await shared.kv.put(`${p}web/bad`).value('not an address');
    await shared.kv.put(`${p}api/x`).value('http://127.0.0.1:9100');
    await shared.kv.put(`${p}web`).value('127.0.0.1:1'); // too shallow
    await shared.kv.put(`/elsewhere/web/z`).value('127.0.0.1:9999'); // outside the prefix
    const { sink } = await startRegistry(shared.etcd.endpoints, p);
    await waitFor(() => sink.synced.has('etcd'), { what: 'initial sync', timeoutMs: 5000 });
    expect(sink.view()).toEqual({
      api: { x: 'http://127.0.0.1:9100' },
      web: { a: 'http://127.0.0.1:9001', b: 'http://127.0.0.1:9002' },
    });
    expect(sink.member('web', 'a')).toMatchObject({ weight: 2, zone: 'z1', draining: false, source: 'etcd', meta: { v: 1 } });
    expect(sink.member('web', 'b')).toMatchObject({ weight: 1, draining: false });
    expect(sink.invalid.map((i) => i.key).sort()).toEqual([`${p}web`, `${p}web/bad`]);
    await waitFor(() => sink.connected.get('etcd') === true, { what: 'connected', timeoutMs: 5000 });

    await shared.kv.put(`${p}web/c`).value('{"url":"http://127.0.0.1:9003","draining":true}');
    await shared.kv.delete().key(`${p}web/b`);
    await shared.kv.put(`${p}web/a`).value('{"url":"http://127.0.0.1:9001","weight":'); // broken update of a valid key
    await shared.kv.put(`${p}api/y`).value('127.0.0.1:9101');
    await waitFor(() => sink.member('api', 'y') !== undefined, { what: 'api/y', timeoutMs: 5000 });
    expect(sink.view()).toEqual({
      api: { x: 'http://127.0.0.1:9100', y: 'http://127.0.0.1:9101' },
      web: { a: 'http://127.0.0.1:9001', c: 'http://127.0.0.1:9003' },
    });
    expect(sink.member('web', 'a')?.weight).toBe(2); // the last valid value stays
    expect(sink.member('web', 'c')?.draining).toBe(true);
    expect(sink.invalid.map((i) => i.key)).toContain(`${p}web/a`);
    expect(sink.events).toMatchObject({ put: 3, delete: 1, resync: 0 });
    expect(sink.replaceAllCalls).toBe(1);

    await shared.kv.delete().prefix(`${p}api/`);
    await waitFor(() => sink.view()['api'] === undefined, { what: 'api gone', timeoutMs: 5000 });
  });

  it('an established watch outlives the call deadline: no reconnect, a put long after creation lands at once', async () => {
    const p = nextPrefix();
    // keepalive at production-like values: FAST's 1 s ping timeout would flap on a stalled CI machine,
    // and a flap is exactly what this test looks for
    const { sink } = await startRegistry(shared.etcd.endpoints, p, {}, { ...FAST, callTimeoutMs: 400, keepaliveTimeMs: 10_000, keepaliveTimeoutMs: 5_000 });
    await waitFor(() => sink.synced.has('etcd'), { what: 'initial sync', timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 1500)); // more than 3 creation deadlines
    const t0 = Date.now();
    await shared.kv.put(`${p}web/late`).value('127.0.0.1:9001');
    await waitFor(() => sink.view()['web']?.['late'] !== undefined, { what: 'the late put', timeoutMs: 2000 });
    expect(Date.now() - t0).toBeLessThan(2000);
    // One connect, never a flap: the watch was not torn down by its creation timer.
    expect(sink.connectedHistory).toEqual([false, true]);
    expect(sink.events.resync).toBe(0);
  });

  it('reads the traefik layout', async () => {
    const p = `traefik${++prefixSeq}/`;
    const k = (svc: string, n: string, f: string): string => `${p}http/services/${svc}/loadbalancer/servers/${n}/${f}`;
    await shared.kv.put(k('web', '0', 'url')).value('http://127.0.0.1:9001');
    await shared.kv.put(k('web', '0', 'weight')).value('4');
    await shared.kv.put(k('web', '1', 'url')).value('http://127.0.0.1:9002');
    await shared.kv.put(`${p}http/routers/web/rule`).value('Host(`example.com`)');
    const { sink } = await startRegistry(shared.etcd.endpoints, p, { layout: 'traefik' });
    await waitFor(() => sink.synced.has('etcd'), { what: 'sync', timeoutMs: 5000 });
    expect(sink.view()).toEqual({ web: { '0': 'http://127.0.0.1:9001', '1': 'http://127.0.0.1:9002' } });
    expect(sink.member('web', '0')?.weight).toBe(4);
    expect(sink.member('web', '1')?.weight).toBe(1);
    expect(sink.invalid).toEqual([]);

    await shared.kv.put(k('web', '1', 'weight')).value('7');
    await shared.kv.put(k('web', '2', 'url')).value('http://127.0.0.1:9003');
    await shared.kv.delete().key(k('web', '0', 'url'));
    await waitFor(() => sink.member('web', '2') !== undefined && sink.member('web', '0') === undefined, { what: 'traefik events', timeoutMs: 5000 });
    expect(sink.member('web', '1')?.weight).toBe(7);
    expect(sink.view()).toEqual({ web: { '1': 'http://127.0.0.1:9002', '2': 'http://127.0.0.1:9003' } });
  });

  it('starts against an unreachable etcd without hanging, then syncs once it is reachable', async () => {
    const p = nextPrefix();
    await shared.kv.put(`${p}web/a`).value('127.0.0.1:9001');
    const proxy = await startTcpProxy({ port: shared.etcd.clientPort });
    later(() => proxy.close());
    proxy.cut();
    const t0 = Date.now();
    const { sink } = await startRegistry([proxy.url], p);
    expect(Date.now() - t0).toBeLessThan(1000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(sink.synced.has('etcd')).toBe(false);
    expect(sink.connected.get('etcd')).toBe(false);
    expect(sink.replaceAllCalls).toBe(0);
    await shared.kv.put(`${p}web/b`).value('127.0.0.1:9002');
    proxy.restore();
    await waitFor(() => sink.synced.has('etcd'), { what: 'sync after etcd became reachable', timeoutMs: 5000 });
    expect(sink.view()).toEqual({ web: { a: 'http://127.0.0.1:9001', b: 'http://127.0.0.1:9002' } });
    await waitFor(() => sink.connected.get('etcd') === true, { what: 'connected', timeoutMs: 5000 });
    await shared.kv.put(`${p}web/c`).value('127.0.0.1:9003');
    await waitFor(() => sink.member('web', 'c') !== undefined, { what: 'watch after late start', timeoutMs: 5000 });
  });

  it('a dead endpoint never blocks close()', async () => {
    const { reg, sink } = await startRegistry([`http://127.0.0.1:${REFUSING_PORT}`], nextPrefix());
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await reg.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(sink.synced.size).toBe(0);
  });

  it('cut off while watching: members kept, connected=false, changes made meanwhile apply on reconnect', async () => {
    const p = nextPrefix();
    const { sink, proxy } = await cutOffRegistry(shared, p);
    await shared.kv.put(`${p}web/c`).value('127.0.0.1:9003');
    await shared.kv.delete().key(`${p}web/a`);
    await new Promise((r) => setTimeout(r, 500));
    // nothing removed while disconnected, and no list replaced the pools
    expect(sink.view()).toEqual({ web: { a: 'http://127.0.0.1:9001', b: 'http://127.0.0.1:9002' } });
    expect(sink.replaceAllCalls).toBe(1);
    proxy.restore();
    await waitFor(() => sink.member('web', 'c') !== undefined && sink.member('web', 'a') === undefined, { what: 'catch-up', timeoutMs: 8000 });
    expect(sink.view()).toEqual({ web: { b: 'http://127.0.0.1:9002', c: 'http://127.0.0.1:9003' } });
    expect(sink.connected.get('etcd')).toBe(true);
    // resumed from the last revision: no full resync was needed
    expect(sink.events.resync).toBe(0);
    expect(sink.replaceAllCalls).toBe(1);
  });

  it('compaction while disconnected: full resync, pools match the store', async () => {
    const p = nextPrefix();
    const { sink, proxy } = await cutOffRegistry(shared, p);
    await shared.kv.delete().key(`${p}web/a`);
    await shared.kv.put(`${p}web/d`).value('127.0.0.1:9004');
    const res = await shared.kv.put(`${p}web/b`).value('127.0.0.1:9022').exec();
    await shared.kv.kv.compact({ revision: res.header.revision, physical: true });
    proxy.restore();
    await waitFor(() => sink.events.resync === 1, { what: 'resync after compaction', timeoutMs: 8000 });
    expect(sink.view()).toEqual({ web: { b: 'http://127.0.0.1:9022', d: 'http://127.0.0.1:9004' } });
    await waitFor(() => sink.connected.get('etcd') === true, { what: 'connected', timeoutMs: 5000 });
    await shared.kv.put(`${p}web/e`).value('127.0.0.1:9005');
    await waitFor(() => sink.member('web', 'e') !== undefined, { what: 'watch after resync', timeoutMs: 5000 });
  });
});

describeEtcd('EtcdRegistry (etcd process events)', () => {
  const servers: { stop(): Promise<void> }[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
  });

  it('etcd frozen (SIGSTOP): members kept, connected=false; after SIGCONT new changes apply', async () => {
    const etcd = await startEtcd();
    servers.push(etcd);
    const kv = etcd.client();
    const p = nextPrefix();
    await kv.put(`${p}web/a`).value('127.0.0.1:9001');
    const { sink } = await startRegistry(etcd.endpoints, p);
    await waitFor(() => sink.connected.get('etcd') === true, { what: 'connected', timeoutMs: 5000 });
    etcd.pause();
    try {
      await waitFor(() => sink.connected.get('etcd') === false, { what: 'keepalive notices the frozen etcd', timeoutMs: 6000 });
      expect(sink.view()).toEqual({ web: { a: 'http://127.0.0.1:9001' } });
    } finally {
      etcd.resume();
    }
    await kv.put(`${p}web/b`).value('127.0.0.1:9002');
    await waitFor(() => sink.member('web', 'b') !== undefined, { what: 'change after resume', timeoutMs: 10_000 });
    await waitFor(() => sink.connected.get('etcd') === true, { what: 'reconnected', timeoutMs: 5000 });
    expect(sink.view()).toEqual({ web: { a: 'http://127.0.0.1:9001', b: 'http://127.0.0.1:9002' } });
  });

  it('etcd wiped (new data dir): revision goes backwards, full resync, members match the new store', async () => {
    const etcd = await startEtcd();
    servers.push(etcd);
    let kv = etcd.client();
    const p = nextPrefix();
    for (let i = 0; i < 10; i++) await kv.put(`${p}noise/n`).value(`127.0.0.1:${9500 + i}`);
    await kv.put(`${p}web/a`).value('127.0.0.1:9001');
    await kv.put(`${p}web/b`).value('127.0.0.1:9002');
    const { sink } = await startRegistry(etcd.endpoints, p);
    await waitFor(() => sink.connected.get('etcd') === true, { what: 'connected', timeoutMs: 5000 });
    expect(Object.keys(sink.view()).sort()).toEqual(['noise', 'web']);
    await etcd.restart({ wipe: true });
    kv = etcd.client();
    await kv.put(`${p}web/z`).value('127.0.0.1:9026');
    await waitFor(() => sink.events.resync >= 1 && sink.member('web', 'z') !== undefined, { what: 'resync after wipe', timeoutMs: 10_000 });
    expect(sink.view()).toEqual({ web: { z: 'http://127.0.0.1:9026' } });
    await kv.put(`${p}web/y`).value('127.0.0.1:9025');
    await waitFor(() => sink.member('web', 'y') !== undefined, { what: 'watch on the new store', timeoutMs: 5000 });
  });

  it('3-member cluster: stopping any member does not stop updates', async () => {
    const cluster = await startEtcdCluster(3);
    servers.push(cluster);
    const p = nextPrefix();
    const { sink } = await startRegistry(cluster.endpoints, p);
    await waitFor(() => sink.connected.get('etcd') === true, { what: 'connected', timeoutMs: 5000 });
    // Stop each member in turn, so the one the watch is attached to is certainly among them.
    for (let i = 0; i < 3; i++) {
      await cluster.stopMember(i);
      const other = cluster.members[(i + 1) % 3] as EtcdServer;
      const kv = other.client();
      await kv.put(`${p}web/m${i}`).value(`127.0.0.1:${9100 + i}`);
      await waitFor(() => sink.member('web', `m${i}`) !== undefined, { what: `update with member ${i} stopped`, timeoutMs: 10_000 });
      await cluster.startMember(i);
    }
    expect(sink.view()).toEqual({ web: { m0: 'http://127.0.0.1:9100', m1: 'http://127.0.0.1:9101', m2: 'http://127.0.0.1:9102' } });
  }, 45_000);

  it('auth: credentials from the env vars named in the config; a wrong password never syncs', async () => {
    const etcd = await startEtcd();
    servers.push(etcd);
    await enableAuth(etcd.client(), 'rootpw');
    const { createEtcdClient } = await import('../src/registry/etcd-client.js');
    const kv = createEtcdClient({ endpoints: etcd.endpoints, auth: { username: 'root', password: 'rootpw' } });
    later(() => kv.close());
    const p = nextPrefix();
    await kv.put(`${p}web/a`).value('127.0.0.1:9001');
    const env = { ETCD_U: 'root', ETCD_P: 'rootpw', ETCD_BAD: 'nope' };
    const auth = { usernameEnv: 'ETCD_U', passwordEnv: 'ETCD_P' };
    const { sink } = await startRegistry(etcd.endpoints, p, auth, { ...FAST, env });
    await waitFor(() => sink.synced.has('etcd'), { what: 'authenticated sync', timeoutMs: 5000 });
    expect(sink.view()).toEqual({ web: { a: 'http://127.0.0.1:9001' } });
    await kv.put(`${p}web/b`).value('127.0.0.1:9002');
    await waitFor(() => sink.member('web', 'b') !== undefined, { what: 'authenticated watch', timeoutMs: 5000 });

    const bad = await startRegistry(etcd.endpoints, p, { usernameEnv: 'ETCD_U', passwordEnv: 'ETCD_BAD' }, { ...FAST, env });
    await new Promise((r) => setTimeout(r, 1000));
    expect(bad.sink.synced.size).toBe(0);
    expect(bad.sink.replaceAllCalls).toBe(0);
  });

  it('TLS: CA and client certificate from the config', async () => {
    const etcd = await startEtcd({ tls: true });
    servers.push(etcd);
    const tls = etcd.tls;
    if (tls === undefined) throw new Error('no tls files');
    const kv = etcd.client();
    const p = nextPrefix();
    await kv.put(`${p}web/a`).value('127.0.0.1:9001');
    const { sink } = await startRegistry(etcd.endpoints, p, { tls: { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey } });
    await waitFor(() => sink.synced.has('etcd'), { what: 'TLS sync', timeoutMs: 5000 });
    expect(sink.view()).toEqual({ web: { a: 'http://127.0.0.1:9001' } });
    await kv.put(`${p}web/b`).value('127.0.0.1:9002');
    await waitFor(() => sink.member('web', 'b') !== undefined, { what: 'TLS watch', timeoutMs: 5000 });
  });
});
