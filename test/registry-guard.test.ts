/**
 * registry.etcd.min_members_ratio (issue 20, item 10): one etcd revision that would leave fewer
 * than that share of the registry's members is held back (pools keep them, traffic flows), logged
 * and counted; a later revision confirms it. Real etcd, the real `bin/drover`, real backends that
 * name themselves; plus table tests of the guard's bookkeeping (re-lists included).
 */
import { expect, it, describe } from 'vitest';
import { describeEtcd, startEtcd, useSharedEtcd } from './helpers/etcd.js';
import { startBackend, request, type TestBackend } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { bodies, metric, pool, poolIds, uniq } from './helpers/e2e.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { RemovalGuard } from '../src/registry/removal-guard.js';
import { parseConfig } from '../src/config/load.js';
import { ConfigError } from '../src/core/errors.js';
import { EtcdRegistry } from '../src/registry/etcd.js';
import { silentLogger } from '../src/observability/log.js';
import { RecordingSink } from './helpers/recording-sink.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import type { MemberSpec } from '../routing/types.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();

const m = (id: string): MemberSpec => ({ id, url: `http://127.0.0.1:1/${id}`, weight: 1 }) as MemberSpec;

describe('registry.etcd.min_members_ratio in the config', () => {
  const yaml = (v: string): string => `registry:\n  etcd: {endpoints: [http://127.0.0.1:2379]${v}}\n`;
  it.each([
    { v: '', want: undefined },
    { v: ', min_members_ratio: 0.5', want: 0.5 },
    { v: ', min_members_ratio: 0', want: 0 },
    { v: ', min_members_ratio: 1', want: 1 },
  ])('accepts "$v"', ({ v, want }) => {
    expect(parseConfig(yaml(v), '/tmp/drover.yaml').registry.etcd?.minMembersRatio).toBe(want);
  });
  it.each([', min_members_ratio: 1.5', ', min_members_ratio: -0.1', ', min_members_ratio: half'])('refuses "%s" with its path', (v) => {
    let err: unknown;
    try {
      parseConfig(yaml(v), '/tmp/drover.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => i.path)).toEqual(['registry.etcd.min_members_ratio']);
  });
});

describe('RemovalGuard', () => {
  const seeded = (ratio: number | undefined, ids: string[]): RemovalGuard => {
    const g = new RemovalGuard(ratio);
    g.replaced(new Map([['web', ids.map(m)]]));
    return g;
  };
  const del = (id: string) => ({ type: 'delete' as const, service: 'web', id });
  const put = (id: string) => ({ type: 'put' as const, service: 'web', member: m(id) });

  it.each([
    { name: 'off: a wipe applies', ratio: undefined, effects: [del('a'), del('b'), del('c'), del('d')], guarded: false },
    { name: '1 of 4 with 0.5 applies', ratio: 0.5, effects: [del('a')], guarded: false },
    { name: '2 of 4 with 0.5 applies (half left is not fewer than half)', ratio: 0.5, effects: [del('a'), del('b')], guarded: false },
    { name: '3 of 4 with 0.5 is held', ratio: 0.5, effects: [del('a'), del('b'), del('c')], guarded: true },
    { name: 'a delete and put back in one txn is no removal', ratio: 0.5, effects: [del('a'), del('b'), del('c'), put('a'), put('b')], guarded: false },
    { name: 'ratio 1 holds any removal', ratio: 1, effects: [del('a')], guarded: true },
    { name: 'ratio 0 holds none, a wipe included', ratio: 0, effects: [del('a'), del('b'), del('c'), del('d')], guarded: false },
    { name: '3 of 4 with 0.2 applies (1 of 4 left is not fewer than 0.2)', ratio: 0.2, effects: [del('a'), del('b'), del('c')], guarded: false },
  ])('$name', ({ ratio, effects, guarded }) => {
    const g = seeded(ratio, ['a', 'b', 'c', 'd']);
    const plan = g.planEvents(effects);
    expect(plan.guarded !== undefined).toBe(guarded);
    const deletes = plan.apply.filter((e) => e.type === 'delete').length;
    expect(deletes).toBe(guarded ? 0 : effects.filter((e) => e.type === 'delete').length);
  });

  it('held removals: a revision putting a held member back ends that hold only; the next revision putting none back confirms the rest', () => {
    const g = seeded(0.5, ['a', 'b', 'c', 'd']);
    expect(g.planEvents([del('a'), del('b'), del('c'), del('d')]).guarded).toEqual({ removed: 4, total: 4 });
    expect(g.heldCount).toBe(4);
    // a held member written again (its sidecar puts it back): updated, no longer held, nothing confirmed
    const back = g.planEvents([put('a')]);
    expect(back).toEqual({ apply: [put('a')], confirm: [] });
    g.put('web', m('a'));
    expect(g.heldCount).toBe(3);
    const next = g.planEvents([put('e')]);
    expect(next.guarded).toBeUndefined();
    expect(next.confirm.map((h) => h.member.id).sort()).toEqual(['b', 'c', 'd']);
    expect(g.heldCount).toBe(0);
  });

  it('a re-list is judged the same way: the missing members are kept in the list handed on', () => {
    const g = seeded(0.5, ['a', 'b', 'c', 'd']);
    const plan = g.planList(new Map([['web', [m('a')]]]), false);
    expect(plan.guarded).toEqual({ removed: 3, total: 4 });
    expect((plan.services.get('web') ?? []).map((x) => x.id).sort()).toEqual(['a', 'b', 'c', 'd']);
    g.replaced(plan.services);
    expect(g.confirmHeld().map((h) => h.member.id).sort()).toEqual(['b', 'c', 'd']);
    // the first list is never guarded, and a re-list removing little applies
    expect(seeded(0.5, ['a', 'b']).planList(new Map(), true).guarded).toBeUndefined();
    expect(seeded(0.5, ['a', 'b', 'c', 'd']).planList(new Map([['web', [m('a'), m('b'), m('c')]]]), false).guarded).toBeUndefined();
  });
});

describeEtcd('registry.etcd.min_members_ratio end to end', () => {
  const shared = useSharedEtcd();

  async function backend(name: string): Promise<TestBackend> {
    const b = await startBackend(name);
    later(() => b.close());
    return b;
  }

  async function drover(yaml: string): Promise<DroverProcess> {
    const d = await startDrover(yaml);
    later(() => d.stop('SIGKILL'));
    return d;
  }

  it('a re-list (compaction while cut off) that would remove every member is held too; the next revision confirms it', async () => {
    const p = `/guard${process.pid}-relist/services/`;
    for (const id of ['a', 'b', 'c']) await shared.kv.put(`${p}web/${id}`).value(`127.0.0.1:900${id.charCodeAt(0) - 96}`);
    const proxy = await startTcpProxy({ port: shared.etcd.clientPort });
    later(() => proxy.close());
    const reg = new EtcdRegistry({ endpoints: [proxy.url], prefix: p, layout: 'drover', minMembersRatio: 0.5 }, silentLogger(), {
      backoff: { initialMs: 50, maxMs: 500 },
      callTimeoutMs: 2000,
      keepaliveTimeMs: 500,
      keepaliveTimeoutMs: 1000,
    });
    const sink = new RecordingSink();
    await reg.start(sink);
    later(() => reg.close());
    await waitFor(() => sink.connected.get('etcd') === true, { what: 'connected' });
    proxy.cut();
    await waitFor(() => sink.connected.get('etcd') === false, { what: 'disconnect noticed' });
    await shared.kv.delete().prefix(p);
    const res = await shared.kv.put('/guard-elsewhere').value('x').exec();
    await shared.kv.kv.compact({ revision: res.header.revision, physical: true });
    proxy.restore();
    await waitFor(() => sink.events.resync === 1, { what: 'resync after compaction', timeoutMs: 8000 });
    expect(sink.guarded).toBe(1);
    expect(sink.view()).toEqual({ web: { a: 'http://127.0.0.1:9001', b: 'http://127.0.0.1:9002', c: 'http://127.0.0.1:9003' } });
    await shared.kv.put(`${p}web/d`).value('127.0.0.1:9004');
    await waitFor(() => sink.member('web', 'd') !== undefined, { what: 'd applied' });
    expect(sink.view()).toEqual({ web: { d: 'http://127.0.0.1:9004' } });
    expect(sink.guarded).toBe(1);
  });

  it('with nothing else changing, etcd\'s next progress notification confirms a held wipe (the hold cannot last forever)', async () => {
    const etcd = await startEtcd({ args: ['--experimental-watch-progress-notify-interval', '1s'] });
    later(() => etcd.stop());
    const kv = etcd.client();
    later(() => kv.close());
    const p = `/guard${process.pid}-progress/services/`;
    for (const id of ['a', 'b']) await kv.put(`${p}web/${id}`).value(`127.0.0.1:900${id === 'a' ? 1 : 2}`);
    const reg = new EtcdRegistry({ endpoints: etcd.endpoints, prefix: p, layout: 'drover', minMembersRatio: 0.5 }, silentLogger(), { callTimeoutMs: 2000 });
    const sink = new RecordingSink();
    await reg.start(sink);
    later(() => reg.close());
    await waitFor(() => sink.connected.get('etcd') === true && sink.member('web', 'b') !== undefined, { what: 'listed and watching' });
    await kv.delete().prefix(p);
    await waitFor(() => sink.guarded === 1, { what: 'wipe held' });
    expect(sink.view()).toEqual({ web: { a: 'http://127.0.0.1:9001', b: 'http://127.0.0.1:9002' } });
    // no other write: the progress notification (every 1 s here, 10 min by default) confirms it
    await waitFor(() => Object.keys(sink.view()).length === 0, { what: 'confirmed by a progress notification', timeoutMs: 8000 });
    expect(sink.guarded).toBe(1);
  });

  it('deleting the whole prefix in one revision keeps the pools serving (logged, counted); a single removal applies; a later revision confirms', async () => {
    const prefix = `/guard${process.pid}/services/`;
    const names = ['g1', 'g2', 'g3', 'g4', 'g5'];
    const bs = await Promise.all(names.map(backend));
    for (const b of bs) await shared.kv.put(`${prefix}web/${b.name}`).value(b.url);
    const d = await drover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  etcd: {endpoints: [${shared.etcd.endpoints[0]}], prefix: ${prefix}, min_members_ratio: 0.5}
routes:
  - match: {path_prefix: /}
    service: web
`);
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    expect(await poolIds(d, 'web')).toBe('g1:unknown,g2:unknown,g3:unknown,g4:unknown,g5:unknown');
    expect(await metric(d, 'drover_registry_guarded_changes_total', { source: 'etcd' })).toBe(0);

    // A normal single removal (1 of 5) applies at once.
    await shared.kv.delete().key(`${prefix}web/g5`);
    await waitFor(async () => (await poolIds(d, 'web')) === 'g1:unknown,g2:unknown,g3:unknown,g4:unknown', { what: 'g5 removed' });
    expect(uniq(await bodies(d.port, '/', 8))).toEqual(['g1', 'g2', 'g3', 'g4']);

    // The whole prefix deleted in one revision: held, logged once, counted; traffic flows.
    await shared.kv.delete().prefix(prefix);
    await waitFor(async () => (await metric(d, 'drover_registry_guarded_changes_total', { source: 'etcd' })) === 1, { what: 'guarded change counted' });
    expect(await poolIds(d, 'web')).toBe('g1:unknown,g2:unknown,g3:unknown,g4:unknown');
    expect(uniq(await bodies(d.port, '/', 8))).toEqual(['g1', 'g2', 'g3', 'g4']);
    const guardLines = (): Record<string, unknown>[] => d.logs.filter((l) => l['code'] === 'E_REGISTRY_GUARDED' && l['removed'] === 4);
    await waitFor(() => guardLines().length > 0, { what: 'the guard logged' });
    expect(guardLines().map((l) => [l['level'], l['members'], l['min_members_ratio']])).toEqual([[40, 4, 0.5]]);
    expect(await metric(d, 'drover_registry_events_total', { source: 'etcd', type: 'delete' })).toBe(5);

    // g1 written back (as its sidecar would): applied, and the others stay held.
    const g1 = bs[0] as TestBackend;
    await shared.kv.put(`${prefix}web/g1`).value(JSON.stringify({ url: g1.url, weight: 3 }));
    await waitFor(async () => ((await pool(d, 'web')) ?? []).some((b) => b.id === 'g1' && (b as { weight?: number }).weight === 3), { what: 'g1 updated' });
    expect(await poolIds(d, 'web')).toBe('g1:unknown,g2:unknown,g3:unknown,g4:unknown');
    // A later revision that puts none of them back confirms the held removals.
    await shared.kv.put(`${prefix}other/x`).value(g1.url);
    await waitFor(async () => (await poolIds(d, 'web')) === 'g1:unknown', { what: 'held removals confirmed' });
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['g1']);
    expect(await metric(d, 'drover_registry_guarded_changes_total', { source: 'etcd' })).toBe(1);
  });
});
