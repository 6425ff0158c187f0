import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ServicePool, SLOW_START_FLOOR, servingLevel } from '../routing/pool.js';
import type { ServicePoolOptions } from '../routing/pool.js';
import { POLICIES } from '../routing/policies.js';
import type { Backend } from '../routing/backend.js';
import type { Policy } from '../routing/policy.js';
import type { Availability, MemberSpec, PickContext } from '../routing/types.js';
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

const AVAILABILITY = { a: 'available', f: 'failed', p: 'pending', d: 'draining' } as const;

/**
 * `sync`, then every new member available (what health says at once of a backend without
 * active checks), in one batch as the runtime does it.
 */
function up(p: ServicePool, members: readonly MemberSpec[]): void {
  p.batch(() => {
    const { added } = p.sync(members);
    for (const b of added) p.setAvailable(b.id, 'available');
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
    for (const b of d1.added) p.setAvailable(b.id, 'available');
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
    for (const x of d3.added) p.setAvailable(x.id, 'available');
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

  it('rebuilds the policy once per batch (a sync and its verdicts) and notifies once', () => {
    const rb = countRebuilds();
    try {
      const p = pool();
      const changes = vi.fn();
      p.onChange = changes;
      const base = rb.count();
      up(p, [m('a'), m('b'), m('c'), m('d')]);
      expect(rb.count() - base).toBe(1);
      expect(changes).toHaveBeenCalledTimes(1);
      up(p, [m('a', { weight: 2 }), m('b', { weight: 3 }), m('e'), m('f')]);
      expect(rb.count() - base).toBe(2);
      expect(changes).toHaveBeenCalledTimes(2);
      up(p, [m('a', { weight: 2 }), m('b', { weight: 3 }), m('e'), m('f')]); // nothing changed
      expect(rb.count() - base).toBe(2);
      expect(changes).toHaveBeenCalledTimes(2);
      up(p, [m('a', { weight: 2, zone: 'z' }), m('b', { weight: 3 }), m('e'), m('f')]); // zone: no rebuild needed
      expect(rb.count() - base).toBe(2);
      expect(changes).toHaveBeenCalledTimes(3);
      expect(changes).toHaveBeenLastCalledWith(p);
    } finally {
      rb.restore();
    }
  });

  it('passes the exclusion set to the policy', () => {
    const p = pool();
    up(p, [m('a'), m('b')]);
    const a = p.get('a')!;
    expect(picked(p, 10, new Set([a]))).toEqual(new Set(['b']));
    expect(p.pick(ctx, new Set(p.backends()))).toBeUndefined();
  });
});

describe('ServicePool availability (health is its only owner)', () => {
  it.each([
    // id:flag with a = available, f = failed, p = pending, d = draining; expected candidates and panic
    { threshold: 0, members: ['a:f', 'b:f'], panic: false, cands: [] },
    { threshold: 0, members: ['a:a', 'b:f'], panic: false, cands: ['a'] },
    { threshold: 50, members: [], panic: false, cands: [] },
    { threshold: 50, members: ['a:a', 'b:f', 'c:f', 'd:f'], panic: true, cands: ['a', 'b', 'c', 'd'] },
    { threshold: 50, members: ['a:a', 'b:a', 'c:f', 'd:f'], panic: false, cands: ['a', 'b'] },
    { threshold: 50, members: ['a:f', 'b:f'], panic: true, cands: ['a', 'b'] },
    { threshold: 50, members: ['a:a', 'b:f', 'c:d', 'd:d'], panic: false, cands: ['a'] }, // draining not counted
    { threshold: 50, members: ['a:f', 'b:f', 'c:d'], panic: true, cands: ['a', 'b'] }, // draining never used
    { threshold: 50, members: ['a:d', 'b:d'], panic: false, cands: [] },
    // pending (no verdict yet): never a candidate, in panic or not, and not counted
    { threshold: 50, members: ['a:p', 'b:p'], panic: false, cands: [] },
    { threshold: 100, members: ['a:p'], panic: false, cands: [] },
    { threshold: 50, members: ['a:a', 'b:p', 'c:p', 'd:p'], panic: false, cands: ['a'] },
    // ... and with nothing available, panic waits for the pending verdicts (requests wait too)
    { threshold: 50, members: ['a:f', 'b:p'], panic: false, cands: [] },
    { threshold: 50, members: ['a:f', 'b:f', 'c:p'], panic: false, cands: [] },
    { threshold: 50, members: ['a:a', 'b:f', 'c:f', 'd:p'], panic: true, cands: ['a', 'b', 'c'] },
    { threshold: 50, members: ['a:a', 'b:f', 'c:p'], panic: false, cands: ['a'] },
    { threshold: 100, members: ['a:a', 'b:a', 'c:a', 'd:f'], panic: true, cands: ['a', 'b', 'c', 'd'] },
    { threshold: 100, members: ['a:a', 'b:a'], panic: false, cands: ['a', 'b'] },
    { threshold: 34, members: ['a:a', 'b:f', 'c:f'], panic: true, cands: ['a', 'b', 'c'] },
    { threshold: 33, members: ['a:a', 'b:f', 'c:f'], panic: false, cands: ['a'] },
  ])('threshold $threshold, members $members', ({ threshold, members, panic, cands }) => {
    const p = pool({ panicThreshold: threshold });
    p.batch(() => {
      p.sync(members.map((s) => m(s.split(':')[0]!)));
      for (const s of members) p.setAvailable(s.split(':')[0]!, AVAILABILITY[s.split(':')[1] as keyof typeof AVAILABILITY]);
    });
    expect(p.panic).toBe(panic);
    expect(p.awaitingVerdict).toBe(members.filter((s) => s.endsWith(':p')).length);
    expect(ids(p.candidates())).toEqual(cands);
    const got = picked(p, 40);
    expect(got).toEqual(cands.length === 0 ? new Set([undefined]) : new Set(cands));
  });

  it('a new Backend is pending until health says otherwise; the registry drain flag is not read here', () => {
    const p = pool();
    p.sync([m('a'), m('b', { draining: true })]);
    expect(p.backends().map((b) => b.availability)).toEqual(['pending', 'pending']);
    expect(p.candidates()).toEqual([]);
    p.setAvailable('b', 'available'); // health's answer wins: it folded the flag in (or not)
    expect(ids(p.candidates())).toEqual(['b']);
    p.sync([m('a'), m('b', { draining: false })]);
    expect(p.get('b')!.availability).toBe('available');
  });

  it('leaves panic when backends recover, and follows a new threshold on reconfigure', () => {
    const p = pool({ panicThreshold: 50 });
    up(p, [m('a'), m('b'), m('c')]);
    p.setAvailable('a', 'failed');
    p.setAvailable('b', 'failed');
    expect(p.panic).toBe(true);
    p.setAvailable('b', 'available');
    expect(p.panic).toBe(false);
    expect(ids(p.candidates())).toEqual(['b', 'c']);
    p.reconfigure({ balancer: 'round_robin', panicThreshold: 80, slowStart: 0 });
    expect(p.panic).toBe(true);
    expect(ids(p.candidates())).toEqual(['a', 'b', 'c']);
  });

  it('ignores unknown ids and repeated verdicts', () => {
    const p = pool();
    up(p, [m('a')]);
    const changes = vi.fn();
    p.onChange = changes;
    p.setAvailable('zz', 'failed');
    p.setAvailable('a', 'available');
    expect(changes).not.toHaveBeenCalled();
    p.setAvailable('a', 'failed');
    p.setAvailable('a', 'failed');
    expect(changes).toHaveBeenCalledTimes(1);
  });
});

describe('ServicePool priority levels (SRV priority: the lowest level with an available member serves)', () => {
  it.each([
    // id:flag:priority with a = available, f = failed, p = pending, d = draining
    { threshold: 0, members: ['a:a:0', 'b:a:0', 'c:a:1'], panic: false, cands: ['a', 'b'], level: 0 },
    { threshold: 0, members: ['a:f:0', 'b:a:0', 'c:a:1'], panic: false, cands: ['b'], level: 0 },
    // every member of level 0 down: level 1 serves
    { threshold: 0, members: ['a:f:0', 'b:f:0', 'c:a:1', 'd:a:2'], panic: false, cands: ['c'], level: 1 },
    { threshold: 0, members: ['a:d:0', 'b:f:0', 'c:f:1', 'd:a:2'], panic: false, cands: ['d'], level: 2 },
    // panic is judged within the serving level: 1 of 4 available at level 0 -> level 0's failed serve too, never level 1
    { threshold: 50, members: ['a:a:0', 'b:f:0', 'c:f:0', 'd:f:0', 'e:a:1'], panic: true, cands: ['a', 'b', 'c', 'd'], level: 0 },
    // nothing available anywhere: every level counts, panic over all of them
    { threshold: 50, members: ['a:f:0', 'b:f:1'], panic: true, cands: ['a', 'b'], level: undefined },
    { threshold: 0, members: ['a:f:0', 'b:f:1'], panic: false, cands: [], level: undefined },
    // nothing available, level 0 waiting for its first verdict: level 0 (requests wait for it)
    { threshold: 50, members: ['a:p:0', 'b:f:1'], panic: false, cands: [], level: 0 },
    // a fallback already available does not wait for level 0's verdicts, and a pending level-0 member does not stop it
    { threshold: 0, members: ['a:p:0', 'b:a:1'], panic: false, cands: ['b'], level: 1 },
    { threshold: 0, members: ['a:p:0', 'b:f:0', 'c:a:1'], panic: false, cands: ['c'], level: 1 },
    // a lower number wins whatever the order of the members
    { threshold: 0, members: ['a:a:20', 'b:a:10', 'c:a:10'], panic: false, cands: ['b', 'c'], level: 10 },
  ])('threshold $threshold, members $members', ({ threshold, members, panic, cands, level }) => {
    const p = pool({ panicThreshold: threshold });
    p.batch(() => {
      p.sync(members.map((s) => m(s.split(':')[0]!, { priority: Number(s.split(':')[2]) })));
      for (const s of members) p.setAvailable(s.split(':')[0]!, AVAILABILITY[s.split(':')[1] as keyof typeof AVAILABILITY]);
    });
    expect(servingLevel(p.backends().map((backend) => ({ backend })))).toBe(level);
    expect(p.panic).toBe(panic);
    expect(ids(p.candidates())).toEqual(cands);
    expect(picked(p, 40)).toEqual(cands.length === 0 ? new Set([undefined]) : new Set(cands));
  });

  it('a fallback serves while the primary level is down and stops once a primary member is back; a priority change applies', () => {
    const p = pool();
    up(p, [m('a', { priority: 0 }), m('b', { priority: 1 })]);
    expect(ids(p.candidates())).toEqual(['a']);
    p.setAvailable('a', 'failed');
    expect(ids(p.candidates())).toEqual(['b']);
    p.setAvailable('a', 'available');
    expect(ids(p.candidates())).toEqual(['a']);
    const { updated } = p.sync([m('a', { priority: 2 }), m('b', { priority: 1 })]);
    expect(ids(updated)).toEqual(['a']);
    expect(ids(p.candidates())).toEqual(['b']);
  });
});

describe('ServicePool.whenDecided (a request waiting for first verdicts)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const flush = (): Promise<void> => Promise.resolve();

  it.each([
    // what happens while one request waits (timeout 1000 ms) on a pool of two pending members
    { desc: 'a passes first: released at once, with a candidate', steps: [[10, 'a', 'available']], released: 10, cands: ['a'] },
    { desc: 'one fails, then the other passes: released when the second verdict comes', steps: [[10, 'a', 'failed'], [30, 'b', 'available']], released: 30, cands: ['b'] },
    { desc: 'both fail: released once nothing is pending (then 503)', steps: [[10, 'a', 'failed'], [20, 'b', 'failed']], released: 20, cands: [] },
    { desc: 'no verdict in time: released at the timeout', steps: [], released: 1000, cands: [] },
    { desc: 'a drain is no verdict: still waiting for b', steps: [[10, 'a', 'draining'], [40, 'b', 'available']], released: 40, cands: ['b'] },
  ] as const)('$desc', async ({ steps, released, cands }) => {
    const p = pool();
    p.sync([m('a'), m('b')]);
    expect(p.awaitingVerdict).toBe(2);
    let at: number | undefined;
    const start = Date.now();
    p.whenDecided(1000, () => {
      at = Date.now() - start;
    });
    let now = 0;
    for (const [t, id, a] of steps) {
      vi.advanceTimersByTime(t - now);
      now = t;
      p.setAvailable(id, a);
      await flush();
    }
    vi.advanceTimersByTime(1000 - now);
    await flush();
    expect(at).toBe(released);
    expect(ids(p.candidates())).toEqual(cands);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('answers at once when there is a candidate or nothing pending; cancel and close', async () => {
    const p = pool();
    const calls: string[] = [];
    p.whenDecided(1000, () => calls.push('empty pool'));
    await flush();
    p.sync([m('a')]);
    const cancel = p.whenDecided(1000, () => calls.push('cancelled'));
    cancel();
    p.whenDecided(1000, () => calls.push('closed'));
    p.close();
    await flush();
    vi.advanceTimersByTime(2000);
    expect(calls).toEqual(['empty pool', 'closed']);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('ServicePool slow start (HAProxy rule: after a failure, or for a late joiner; never for the initial set)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const S = 4_000;
  type Step = readonly [at: number, what: 'sync', ids: readonly string[], initial?: boolean] | readonly [at: number, id: string, a: Availability];

  it.each([
    {
      desc: 'initial members are not ramped, even when their first verdict comes late',
      steps: [[0, 'sync', ['a', 'b']], [300, 'a', 'available'], [3000, 'b', 'available']],
      at: 3000,
      weights: { a: 10, b: 10 },
    },
    {
      desc: 'an initial member that failed its first check ramps when it recovers, even 1.5 s after start (no warm-up window)',
      steps: [[0, 'sync', ['a', 'b']], [10, 'a', 'available'], [10, 'b', 'failed'], [1500, 'b', 'available']],
      at: 1500 + S / 2,
      weights: { a: 10, b: 10 * (0.1 + 0.9 * 0.5) },
    },
    {
      desc: 'a healthy member that fails and recovers ramps from the floor',
      steps: [[0, 'sync', ['a', 'b']], [10, 'a', 'available'], [10, 'b', 'available'], [500, 'b', 'failed'], [900, 'b', 'available']],
      at: 900,
      weights: { a: 10, b: 1 },
    },
    {
      desc: 'a member that joins right after the first sync ramps once it has passed its first check',
      steps: [[0, 'sync', ['a']], [10, 'a', 'available'], [100, 'sync', ['a', 'c']], [200, 'c', 'available']],
      at: 200 + (3 * S) / 10, // three of its ten steps
      weights: { a: 10, c: 10 * (0.1 + 0.9 * 0.3) },
    },
    {
      desc: 'a sync marked initial (a second registry listing before drover settled) does not ramp',
      steps: [[0, 'sync', ['a']], [10, 'a', 'available'], [100, 'sync', ['a', 'c'], true], [200, 'c', 'available']],
      at: 200,
      weights: { a: 10, c: 10 },
    },
    {
      desc: 'an undrain is no recovery: no ramp',
      steps: [[0, 'sync', ['a', 'b']], [10, 'a', 'available'], [10, 'b', 'available'], [500, 'b', 'draining'], [900, 'b', 'available']],
      at: 900,
      weights: { a: 10, b: 10 },
    },
    {
      desc: 'a drain that interrupts a ramp: the ramp starts over when it is back',
      steps: [[0, 'sync', ['a', 'b']], [10, 'a', 'available'], [10, 'b', 'failed'], [100, 'b', 'available'], [2100, 'b', 'draining'], [3000, 'b', 'available']],
      at: 3000 + S / 2,
      weights: { a: 10, b: 10 * (0.1 + 0.9 * 0.5) },
    },
    {
      desc: 'a ramp ends at full weight after the window',
      steps: [[0, 'sync', ['a', 'b']], [10, 'a', 'available'], [10, 'b', 'failed'], [100, 'b', 'available']],
      at: 100 + S + 1,
      weights: { a: 10, b: 10 },
    },
  ] as { desc: string; steps: Step[]; at: number; weights: Record<string, number> }[])('$desc', ({ steps, at, weights }) => {
    const p = pool({ slowStart: S });
    let now = 0;
    for (const step of steps) {
      vi.advanceTimersByTime(step[0] - now);
      now = step[0];
      if (step[1] === 'sync') {
        const [, , list, initial] = step as readonly [number, 'sync', readonly string[], boolean?];
        p.sync(list.map((id) => m(id, { weight: 10 })), initial === undefined ? {} : { initial });
      }
      else p.setAvailable(step[1], step[2] as Availability);
    }
    vi.advanceTimersByTime(at - now);
    for (const [id, w] of Object.entries(weights)) expect(p.get(id)!.effectiveWeight, id).toBeCloseTo(w, 1);
  });

  it('ramps a later joiner linearly in ~10 steps, one rebuild per step', () => {
    const rb = countRebuilds();
    try {
      const p = pool({ slowStart: S });
      up(p, [m('a', { weight: 10 }), m('b', { weight: 10 })]);
      expect(p.backends().map((b) => b.effectiveWeight)).toEqual([10, 10]);
      expect(vi.getTimerCount()).toBe(0);

      const before = rb.count();
      up(p, [m('a', { weight: 10 }), m('b', { weight: 10 }), m('c', { weight: 10 })]);
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
      // one rebuild for the join (sync and verdict in one batch), one per step
      expect(rb.count() - before).toBe(11);
      expect(p.get('a')!.effectiveWeight).toBe(10);
    } finally {
      rb.restore();
    }
  });

  it('the policy sees the ramped weight: a recovered backend gets a small share of the first requests', () => {
    const p = pool({ slowStart: S });
    up(p, [m('a', { weight: 10 }), m('b', { weight: 10 })]);
    p.setAvailable('b', 'failed');
    vi.advanceTimersByTime(1500);
    p.setAvailable('b', 'available');
    const early = Array.from({ length: 110 }, () => p.pick(ctx)!.id).filter((x) => x === 'b').length;
    expect(early).toBe(10); // 10 : 1
    vi.advanceTimersByTime(S);
    const late = Array.from({ length: 100 }, () => p.pick(ctx)!.id).filter((x) => x === 'b').length;
    expect(late).toBe(50);
  });

  it('slow_start 0 gives full weight at once', () => {
    const p = pool({ slowStart: 0 });
    up(p, [m('a')]);
    up(p, [m('a'), m('b', { weight: 7 })]);
    expect(p.get('b')!.effectiveWeight).toBe(7);
    p.setAvailable('b', 'failed');
    p.setAvailable('b', 'available');
    expect(p.get('b')!.effectiveWeight).toBe(7);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a weight change mid-ramp scales the ramped weight', () => {
    const p = pool({ slowStart: S });
    up(p, [m('a')]);
    up(p, [m('a'), m('b', { weight: 10 })]);
    vi.advanceTimersByTime(S / 2);
    p.sync([m('a'), m('b', { weight: 20 })]);
    expect(p.get('b')!.effectiveWeight).toBeCloseTo(20 * 0.55);
    vi.advanceTimersByTime(S / 2);
    expect(p.get('b')!.effectiveWeight).toBe(20);
  });

  it('close() stops the ramp timer; reconfigure to 0 finishes ramps', () => {
    const p = pool({ slowStart: S });
    up(p, [m('a')]);
    up(p, [m('a'), m('b', { weight: 10 })]);
    expect(vi.getTimerCount()).toBe(1);
    p.reconfigure({ balancer: 'round_robin', panicThreshold: 0, slowStart: 0 });
    expect(p.get('b')!.effectiveWeight).toBe(10);
    p.reconfigure({ balancer: 'round_robin', panicThreshold: 0, slowStart: S });
    up(p, [m('a'), m('b', { weight: 10 }), m('c', { weight: 10 })]);
    expect(vi.getTimerCount()).toBe(1);
    p.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(p.get('c')!.effectiveWeight).toBeCloseTo(1);
  });

  it('a throwing onChange does not escape the timer', () => {
    const p = pool({ slowStart: S });
    up(p, [m('a')]);
    up(p, [m('a'), m('b')]);
    p.onChange = () => {
      throw new Error('listener bug');
    };
    expect(() => vi.advanceTimersByTime(S)).not.toThrow();
  });
});

describe('ServicePool.reconfigure', () => {
  it('switches policy and keeps the Backend objects', () => {
    const p = pool();
    up(p, [m('a'), m('b'), m('c')]);
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
    up(p, [m('a', { weight: 3 }), m('b'), m('c')]);
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
    up(p, [m('a')]);
    now = 60_000;
    const before = timeouts();
    up(p, [m('a'), m('b')]);
    expect(p.get('b')!.effectiveWeight).toBeLessThan(1); // ramping, so a timer exists
    expect(timeouts()).toBe(before);
    p.close();
  });
});
