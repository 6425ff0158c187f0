import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ServicePool, SLOW_START_FLOOR } from '../routing/pool.js';
import type { ServicePoolOptions } from '../routing/pool.js';
import { POLICIES } from '../routing/policies.js';
import type { Backend } from '../routing/backend.js';
import type { Policy } from '../routing/policy.js';
import type { MemberSpec, PickContext } from '../routing/types.js';
import { mulberry32 } from './helpers/random.js';

const ctx: PickContext = { clientIp: '10.0.0.1', path: '/', headers: {} };

function m(id: string, over: Partial<MemberSpec> = {}): MemberSpec {
  return { id, url: `http://127.0.0.1:${9000 + id.charCodeAt(0)}`, weight: 1, draining: false, source: 'file', ...over };
}

function pool(over: Partial<ServicePoolOptions> = {}): ServicePool {
  return new ServicePool({
    name: 'web',
    balancer: 'round_robin',
    panicThreshold: 0,
    slowStart: 0,
    clock: () => Date.now(),
    random: mulberry32(1),
    ...over,
  });
}

function ids(bs: readonly Backend[]): string[] {
  return bs.map((b) => b.id);
}

function picked(p: ServicePool, n: number, exclude?: ReadonlySet<Backend>): Set<string | undefined> {
  return new Set(Array.from({ length: n }, () => p.pick(ctx, exclude)?.id));
}

/** Wraps every policy a pool creates so the test can count `rebuild` calls. */
function countRebuilds(): { count: () => number; restore: () => void } {
  let n = 0;
  const spies = POLICIES.map((def) => {
    const original = def.create.bind(def);
    return vi.spyOn(def, 'create').mockImplementation((opts) => {
      const inner: Policy = original(opts);
      return {
        rebuild: (c) => {
          n++;
          inner.rebuild(c);
        },
        pick: (c, e) => inner.pick(c, e),
      };
    });
  });
  return { count: () => n, restore: () => spies.forEach((s) => s.mockRestore()) };
}

describe('ServicePool.sync', () => {
  it('diffs by id and keeps the same Backend objects', () => {
    const p = pool();
    const d1 = p.sync([m('a'), m('b'), m('c')]);
    expect(ids(d1.added)).toEqual(['a', 'b', 'c']);
    expect(d1.removed).toEqual([]);
    const [a, b, c] = p.backends();
    a!.inflight = 3;
    a!.requests = 42;
    b!.inflight = 1;

    const d2 = p.sync([m('a'), m('b'), m('c')]);
    expect(d2).toEqual({ added: [], removed: [], updated: [] });
    expect(p.get('a')).toBe(a);

    const d3 = p.sync([m('a', { weight: 5, zone: 'z1', meta: { v: 2 } }), m('b', { url: 'http://127.0.0.1:1234' }), m('d')]);
    expect(d3.updated).toEqual([a]);
    expect(a!.weight).toBe(5);
    expect(a!.effectiveWeight).toBe(5);
    expect(a!.zone).toBe('z1');
    expect(a!.meta).toEqual({ v: 2 });
    expect(a!.inflight).toBe(3);
    expect(a!.requests).toBe(42);
    // url change = remove + add; c removed
    expect(d3.removed).toEqual([c, b]);
    expect(ids(d3.added)).toEqual(['b', 'd']);
    expect(p.get('b')).not.toBe(b);
    expect(p.get('b')!.url).toBe('http://127.0.0.1:1234');
    expect(b!.member).toBe(false);
    expect(b!.inflight).toBe(1); // in-flight requests finish on the old object
    expect(c!.member).toBe(false);
    expect(p.get('c')).toBeUndefined();
    expect(ids(p.backends())).toEqual(['a', 'b', 'd']);
    expect(p.backends().every((x) => x.member)).toBe(true);
    expect(picked(p, 30)).toEqual(new Set(['a', 'b', 'd']));
  });

  it('updates only changed fields, and meta by value', () => {
    const p = pool();
    p.sync([m('a', { meta: { x: [1, 2] } })]);
    expect(p.sync([m('a', { meta: { x: [1, 2] } })]).updated).toEqual([]);
    expect(p.sync([m('a', { meta: { x: [1, 3] } })]).updated).toHaveLength(1);
    expect(p.sync([m('a', { meta: { x: [1, 3] }, source: 'etcd' })]).updated).toHaveLength(1);
    expect(p.get('a')!.source).toBe('etcd');
  });

  it('an empty list empties the pool; pick gives undefined', () => {
    const p = pool();
    p.sync([m('a')]);
    const a = p.get('a')!;
    expect(p.sync([]).removed).toEqual([a]);
    expect(p.backends()).toEqual([]);
    expect(p.pick(ctx)).toBeUndefined();
  });

  it('rebuilds the policy once per batch and notifies once', () => {
    const rb = countRebuilds();
    try {
      const p = pool();
      const changes = vi.fn();
      p.onChange = changes;
      const base = rb.count();
      p.sync([m('a'), m('b'), m('c'), m('d')]);
      expect(rb.count() - base).toBe(1);
      expect(changes).toHaveBeenCalledTimes(1);
      p.sync([m('a', { weight: 2 }), m('b', { weight: 3 }), m('e'), m('f')]);
      expect(rb.count() - base).toBe(2);
      expect(changes).toHaveBeenCalledTimes(2);
      p.sync([m('a', { weight: 2 }), m('b', { weight: 3 }), m('e'), m('f')]); // nothing changed
      expect(rb.count() - base).toBe(2);
      expect(changes).toHaveBeenCalledTimes(2);
      p.sync([m('a', { weight: 2, zone: 'z' }), m('b', { weight: 3 }), m('e'), m('f')]); // zone: no rebuild needed
      expect(rb.count() - base).toBe(2);
      expect(changes).toHaveBeenCalledTimes(3);
      expect(changes).toHaveBeenLastCalledWith(p);
    } finally {
      rb.restore();
    }
  });

  it('passes the exclusion set to the policy', () => {
    const p = pool();
    p.sync([m('a'), m('b')]);
    const a = p.get('a')!;
    expect(picked(p, 10, new Set([a]))).toEqual(new Set(['b']));
    expect(p.pick(ctx, new Set(p.backends()))).toBeUndefined();
  });
});

describe('ServicePool draining', () => {
  it.each([
    // steps applied in order to member b; expected: b.draining and whether b is picked
    { desc: 'registry drain', steps: [['reg', true]], draining: true },
    { desc: 'registry drain then undrain', steps: [['reg', true], ['reg', false]], draining: false },
    { desc: 'admin drain', steps: [['admin', true]], draining: true },
    { desc: 'admin drain survives a registry update', steps: [['admin', true], ['reg', false], ['reg', true], ['reg', false]], draining: true },
    { desc: 'admin undrain does not undo a registry drain', steps: [['reg', true], ['admin', true], ['admin', false]], draining: true },
    { desc: 'both lifted', steps: [['reg', true], ['admin', true], ['admin', false], ['reg', false]], draining: false },
    { desc: 'admin drain and undrain', steps: [['admin', true], ['admin', false]], draining: false },
  ] as const)('$desc', ({ steps, draining }) => {
    const p = pool();
    p.sync([m('a'), m('b')]);
    const b = p.get('b')!;
    for (const [who, value] of steps) {
      if (who === 'reg') p.sync([m('a'), m('b', { draining: value })]);
      else expect(p.setAdminDraining('b', value)).toBe(b);
    }
    expect(p.get('b')).toBe(b);
    expect(b.draining).toBe(draining);
    expect(picked(p, 20).has('b')).toBe(!draining);
    expect(p.candidates().includes(b)).toBe(!draining);
  });

  it('admin drain of an unknown id gives undefined', () => {
    const p = pool();
    p.sync([m('a')]);
    expect(p.setAdminDraining('zz', true)).toBeUndefined();
    expect(p.isAdminDraining('a')).toBe(false);
    p.setAdminDraining('a', true);
    expect(p.isAdminDraining('a')).toBe(true);
  });
});

describe('ServicePool panic mode', () => {
  it.each([
    // members: id + flags (u = unavailable, d = draining); expected candidates and panic
    { threshold: 0, members: ['a:u', 'b:u'], panic: false, cands: [] },
    { threshold: 0, members: ['a', 'b:u'], panic: false, cands: ['a'] },
    { threshold: 50, members: [], panic: false, cands: [] },
    { threshold: 50, members: ['a', 'b:u', 'c:u', 'd:u'], panic: true, cands: ['a', 'b', 'c', 'd'] },
    { threshold: 50, members: ['a', 'b', 'c:u', 'd:u'], panic: false, cands: ['a', 'b'] },
    { threshold: 50, members: ['a:u', 'b:u'], panic: true, cands: ['a', 'b'] },
    { threshold: 50, members: ['a', 'b:u', 'c:d', 'd:d'], panic: false, cands: ['a'] }, // draining not counted
    { threshold: 50, members: ['a:u', 'b:u', 'c:d'], panic: true, cands: ['a', 'b'] }, // draining never used
    { threshold: 50, members: ['a:d', 'b:d'], panic: false, cands: [] },
    { threshold: 100, members: ['a', 'b', 'c', 'd:u'], panic: true, cands: ['a', 'b', 'c', 'd'] },
    { threshold: 100, members: ['a', 'b'], panic: false, cands: ['a', 'b'] },
    { threshold: 34, members: ['a', 'b:u', 'c:u'], panic: true, cands: ['a', 'b', 'c'] },
    { threshold: 33, members: ['a', 'b:u', 'c:u'], panic: false, cands: ['a'] },
  ])('threshold $threshold, members $members', ({ threshold, members, panic, cands }) => {
    const p = pool({ panicThreshold: threshold });
    p.sync(members.map((s) => m(s.split(':')[0]!, { draining: s.endsWith(':d') })));
    for (const s of members) if (s.endsWith(':u')) p.setAvailable(s.split(':')[0]!, false);
    expect(p.panic).toBe(panic);
    expect(ids(p.candidates())).toEqual(cands);
    const got = picked(p, 40);
    expect(got).toEqual(cands.length === 0 ? new Set([undefined]) : new Set(cands));
  });

  it('leaves panic when backends recover, and follows a new threshold on reconfigure', () => {
    const p = pool({ panicThreshold: 50 });
    p.sync([m('a'), m('b'), m('c')]);
    p.setAvailable('a', false);
    p.setAvailable('b', false);
    expect(p.panic).toBe(true);
    p.setAvailable('b', true);
    expect(p.panic).toBe(false);
    expect(ids(p.candidates())).toEqual(['b', 'c']);
    p.reconfigure({ balancer: 'round_robin', panicThreshold: 80, slowStart: 0 });
    expect(p.panic).toBe(true);
    expect(ids(p.candidates())).toEqual(['a', 'b', 'c']);
  });

  it('ignores unknown ids and repeated verdicts', () => {
    const p = pool();
    p.sync([m('a')]);
    const changes = vi.fn();
    p.onChange = changes;
    p.setAvailable('zz', false);
    p.setAvailable('a', true);
    expect(changes).not.toHaveBeenCalled();
    p.setAvailable('a', false);
    p.setAvailable('a', false);
    expect(changes).toHaveBeenCalledTimes(1);
  });
});

describe('ServicePool slow start', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const S = 10_000;

  it('does not ramp the first members, ramps a later joiner linearly in ~10 steps', () => {
    const rb = countRebuilds();
    try {
      const p = pool({ slowStart: S });
      p.sync([m('a', { weight: 10 }), m('b', { weight: 10 })]);
      expect(p.backends().map((b) => b.effectiveWeight)).toEqual([10, 10]);
      expect(vi.getTimerCount()).toBe(0);
      vi.advanceTimersByTime(S); // past the pool's warm-up

      const before = rb.count();
      p.sync([m('a', { weight: 10 }), m('b', { weight: 10 }), m('c', { weight: 10 })]);
      const c = p.get('c')!;
      expect(c.effectiveWeight).toBeCloseTo(10 * SLOW_START_FLOOR);
      expect(c.availableSince).toBe(Date.now());
      const seen: number[] = [c.effectiveWeight];
      for (let i = 1; i <= 10; i++) {
        vi.advanceTimersByTime(S / 10);
        seen.push(c.effectiveWeight);
        expect(c.effectiveWeight).toBeCloseTo(10 * (SLOW_START_FLOOR + (1 - SLOW_START_FLOOR) * (i / 10)));
      }
      expect(seen[10]).toBe(10);
      expect(vi.getTimerCount()).toBe(0); // done: no timer left
      // one rebuild for the join, one per step
      expect(rb.count() - before).toBe(11);
      expect(p.get('a')!.effectiveWeight).toBe(10);
    } finally {
      rb.restore();
    }
  });

  it('the policy sees the ramped weight', () => {
    const p = pool({ slowStart: S });
    p.sync([m('a', { weight: 10 })]);
    vi.advanceTimersByTime(S);
    p.sync([m('a', { weight: 10 }), m('b', { weight: 10 })]);
    const early = Array.from({ length: 110 }, () => p.pick(ctx)!.id).filter((x) => x === 'b').length;
    expect(early).toBe(10); // 10 : 1
    vi.advanceTimersByTime(S);
    const late = Array.from({ length: 100 }, () => p.pick(ctx)!.id).filter((x) => x === 'b').length;
    expect(late).toBe(50);
  });

  it('ramps a backend that becomes available again', () => {
    const p = pool({ slowStart: S });
    p.sync([m('a', { weight: 4 }), m('b', { weight: 4 })]);
    vi.advanceTimersByTime(S);
    p.setAvailable('b', false);
    vi.advanceTimersByTime(5_000);
    expect(vi.getTimerCount()).toBe(0);
    p.setAvailable('b', true);
    const b = p.get('b')!;
    expect(b.effectiveWeight).toBeCloseTo(0.4);
    vi.advanceTimersByTime(S / 2);
    expect(b.effectiveWeight).toBeCloseTo(4 * (0.1 + 0.9 * 0.5));
    vi.advanceTimersByTime(S / 2);
    expect(b.effectiveWeight).toBe(4);
  });

  it('does not ramp during the warm-up after the first sync', () => {
    const p = pool({ slowStart: S });
    p.sync([m('a')]);
    vi.advanceTimersByTime(S / 2);
    p.sync([m('a'), m('b', { weight: 3 })]); // e.g. a second registry's first list
    expect(p.get('b')!.effectiveWeight).toBe(3);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('slow_start 0 gives full weight at once', () => {
    const p = pool({ slowStart: 0 });
    p.sync([m('a')]);
    vi.advanceTimersByTime(60_000);
    p.sync([m('a'), m('b', { weight: 7 })]);
    expect(p.get('b')!.effectiveWeight).toBe(7);
    p.setAvailable('b', false);
    p.setAvailable('b', true);
    expect(p.get('b')!.effectiveWeight).toBe(7);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a weight change mid-ramp scales the ramped weight', () => {
    const p = pool({ slowStart: S });
    p.sync([m('a')]);
    vi.advanceTimersByTime(S);
    p.sync([m('a'), m('b', { weight: 10 })]);
    vi.advanceTimersByTime(S / 2);
    p.sync([m('a'), m('b', { weight: 20 })]);
    expect(p.get('b')!.effectiveWeight).toBeCloseTo(20 * 0.55);
    vi.advanceTimersByTime(S / 2);
    expect(p.get('b')!.effectiveWeight).toBe(20);
  });

  it('close() stops the ramp timer; reconfigure to 0 finishes ramps', () => {
    const p = pool({ slowStart: S });
    p.sync([m('a')]);
    vi.advanceTimersByTime(S);
    p.sync([m('a'), m('b', { weight: 10 })]);
    expect(vi.getTimerCount()).toBe(1);
    p.reconfigure({ balancer: 'round_robin', panicThreshold: 0, slowStart: 0 });
    expect(p.get('b')!.effectiveWeight).toBe(10);
    p.reconfigure({ balancer: 'round_robin', panicThreshold: 0, slowStart: S });
    p.sync([m('a'), m('b', { weight: 10 }), m('c', { weight: 10 })]);
    expect(vi.getTimerCount()).toBe(1);
    p.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(p.get('c')!.effectiveWeight).toBeCloseTo(1);
  });

  it('a throwing onChange does not escape the timer', () => {
    const p = pool({ slowStart: S });
    p.sync([m('a')]);
    vi.advanceTimersByTime(S);
    p.sync([m('a'), m('b')]);
    p.onChange = () => {
      throw new Error('listener bug');
    };
    expect(() => vi.advanceTimersByTime(S)).not.toThrow();
  });
});

describe('ServicePool.reconfigure', () => {
  it('switches policy and keeps the Backend objects', () => {
    const p = pool();
    p.sync([m('a'), m('b'), m('c')]);
    const before = p.backends();
    p.reconfigure({ balancer: 'hash', hashKey: { kind: 'ip' }, panicThreshold: 0, slowStart: 0 });
    expect(p.balancer).toBe('hash');
    expect(p.backends()).toEqual(before);
    expect(p.backends().every((b, i) => b === before[i])).toBe(true);
    const first = p.pick(ctx);
    expect(picked(p, 20)).toEqual(new Set([first!.id])); // sticky for one client ip
  });

  it('keeps round-robin position when the balancer is unchanged', () => {
    const p = pool();
    p.sync([m('a', { weight: 3 }), m('b'), m('c')]);
    const seq: string[] = [];
    for (let i = 0; i < 10; i++) {
      if (i === 3) p.reconfigure({ balancer: 'round_robin', panicThreshold: 10, slowStart: 0 });
      seq.push(p.pick(ctx)!.id);
    }
    expect(seq.join('')).toBe('abacaabaca');
  });
});

describe('ServicePool timers (real)', () => {
  it('the slow-start timer does not keep the process alive', () => {
    const timeouts = (): number => process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length;
    let now = 0;
    const p = pool({ slowStart: 60_000, clock: () => now });
    p.sync([m('a')]);
    now = 60_000;
    const before = timeouts();
    p.sync([m('a'), m('b')]);
    expect(p.get('b')!.effectiveWeight).toBeLessThan(1); // ramping, so a timer exists
    expect(timeouts()).toBe(before);
    p.close();
  });
});
