import { describe, expect, it } from 'vitest';
import type { Backend } from '../routing/backend.js';
import { BALANCER_NAMES } from '../routing/policies.js';
import { ServicePool, type ServicePoolOptions } from '../routing/pool.js';
import type { MemberSpec, PickContext } from '../routing/types.js';
import { zoneCandidates } from '../routing/zones.js';
import { mulberry32 } from './helpers/random.js';

const ctx: PickContext = { clientIp: '10.0.0.1', path: '/', headers: {} };

function m(id: string, zone?: string, over: Partial<MemberSpec> = {}): MemberSpec {
  return { id, url: `http://127.0.0.1:${9100 + id.charCodeAt(0) * 3 + id.length}`, weight: 1, zone, draining: false, source: 'file', ...over };
}

function pool(over: Partial<ServicePoolOptions> = {}): ServicePool {
  return new ServicePool({ name: 'web', balancer: 'round_robin', panicThreshold: 50, slowStart: 0, clock: () => 0, random: mulberry32(1), ...over });
}

function ids(bs: readonly Backend[]): string[] {
  return bs.map((b) => b.id).sort();
}

describe('max_conns: a backend at its limit is never picked', () => {
  it.each(BALANCER_NAMES.map((n) => [n]))('%s', (balancer) => {
    const p = pool({ balancer, maxConns: 2, ...(balancer === 'hash' ? { hashKey: { kind: 'ip' } } : {}) });
    p.sync([m('a'), m('b'), m('c')]);
    const r = mulberry32(7);
    // take slots as a proxy would, and check the limit after every pick
    const taken: Backend[] = [];
    for (let i = 0; i < 6; i++) {
      const b = p.pick({ ...ctx, clientIp: `10.0.${(r() * 255) | 0}.${i}` });
      expect(b, `pick ${i}`).toBeDefined();
      expect(b!.inflight).toBeLessThan(2);
      b!.inflight++;
      taken.push(b!);
    }
    expect(p.backends().map((b) => b.inflight)).toEqual([2, 2, 2]);
    expect(p.pick(ctx)).toBeUndefined();
    expect(p.saturated()).toBe(true);
    // one slot frees: exactly that backend is picked, whatever the policy prefers
    const freed = taken[3]!;
    freed.inflight--;
    expect(p.saturated()).toBe(false);
    for (let i = 0; i < 5; i++) expect(p.pick({ ...ctx, clientIp: `10.1.0.${i}` })).toBe(freed);
    // ...unless a retry excludes it
    expect(p.pick(ctx, new Set([freed]))).toBeUndefined();
    expect(p.saturated(new Set([freed]))).toBe(true);
  });

  it.each([
    ['no limit', 0, [5, 5], false],
    ['room left', 3, [3, 2], false],
    ['all full', 3, [3, 4], true],
  ] as const)('saturated(): %s', (_name, maxConns, inflight, expected) => {
    const p = pool({ maxConns });
    p.sync([m('a'), m('b')]);
    p.backends().forEach((b, i) => (b.inflight = inflight[i]!));
    expect(p.saturated()).toBe(expected);
  });

  it('saturated() is false with no candidate at all (that is no_available_backend)', () => {
    const p = pool({ maxConns: 1, panicThreshold: 0 });
    expect(p.saturated()).toBe(false);
    p.sync([m('a')]);
    p.setAvailable('a', false);
    p.backends()[0]!.inflight = 1;
    expect(p.candidates()).toEqual([]);
    expect(p.saturated()).toBe(false);
  });

  it('a reload can raise or remove the limit', () => {
    const p = pool({ maxConns: 1 });
    p.sync([m('a')]);
    p.backends()[0]!.inflight = 1;
    expect(p.pick(ctx)).toBeUndefined();
    p.reconfigure({ balancer: 'round_robin', panicThreshold: 50, slowStart: 0, maxConns: 0 });
    expect(p.pick(ctx)?.id).toBe('a');
  });
});

describe('zone-aware candidates', () => {
  // members: [id, zone, available, draining]
  type Row = readonly [name: string, zone: string | undefined, threshold: number, members: readonly (readonly [string, string | undefined, boolean, boolean])[], expected: readonly string[]];
  const rows: Row[] = [
    ['off: every candidate', undefined, 50, [['a1', 'a', true, false], ['b1', 'b', true, false]], ['a1', 'b1']],
    ['local zone healthy: local only', 'a', 50, [['a1', 'a', true, false], ['a2', 'a', true, false], ['b1', 'b', true, false]], ['a1', 'a2']],
    ['half the local zone down, threshold 50: still local', 'a', 50, [['a1', 'a', true, false], ['a2', 'a', false, false], ['b1', 'b', true, false]], ['a1']],
    ['below the threshold: spill over to all', 'a', 50, [['a1', 'a', true, false], ['a2', 'a', false, false], ['a3', 'a', false, false], ['b1', 'b', true, false]], ['a1', 'b1']],
    ['whole local zone down: spill over', 'a', 0, [['a1', 'a', false, false], ['b1', 'b', true, false], ['c1', 'c', true, false]], ['b1', 'c1']],
    ['threshold 0: one local backend is enough', 'a', 0, [['a1', 'a', true, false], ['a2', 'a', false, false], ['a3', 'a', false, false], ['b1', 'b', true, false]], ['a1']],
    ['no member in the local zone: all', 'z', 50, [['a1', 'a', true, false], ['b1', 'b', true, false]], ['a1', 'b1']],
    ['members without a zone are not local', 'a', 50, [['x', undefined, true, false], ['a1', 'a', true, false]], ['a1']],
    ['draining local members do not count against the zone', 'a', 50, [['a1', 'a', true, false], ['a2', 'a', false, true], ['a3', 'a', false, true], ['b1', 'b', true, false]], ['a1']],
  ];
  it.each(rows)('%s', (_name, zone, threshold, members, expected) => {
    // through a real pool, so "candidates" are what health, draining and panic mode leave
    const p = pool({ panicThreshold: 0, localZone: zone });
    p.sync(members.map(([id, z, , draining]) => m(id, z, { draining })));
    for (const [id, , available] of members) p.setAvailable(id, available);
    const all = p.backends().filter((b) => b.available && !b.draining);
    expect(ids(zoneCandidates(zone, threshold, p.backends(), all))).toEqual([...expected].sort());
  });

  it('the pool balances over the local zone and spills over when it fails, recomputed on change', () => {
    const p = pool({ localZone: 'a', panicThreshold: 50 });
    p.sync([m('a1', 'a'), m('a2', 'a'), m('b1', 'b'), m('b2', 'b')]);
    expect(ids(p.candidates())).toEqual(['a1', 'a2']);
    const seen = new Set(Array.from({ length: 20 }, () => p.pick(ctx)?.id));
    expect([...seen].sort()).toEqual(['a1', 'a2']);
    p.setAvailable('a1', false); // 1 of 2 = 50 %: still local
    expect(ids(p.candidates())).toEqual(['a2']);
    p.setAvailable('a2', false); // 0 %: spill over to the other zone
    expect(ids(p.candidates())).toEqual(['b1', 'b2']);
    p.setAvailable('a1', true);
    expect(ids(p.candidates())).toEqual(['a1']);
    // a reload that turns zone awareness off balances over everything again
    p.reconfigure({ balancer: 'round_robin', panicThreshold: 50, slowStart: 0 });
    expect(ids(p.candidates())).toEqual(['a1', 'b1', 'b2']);
  });
});
