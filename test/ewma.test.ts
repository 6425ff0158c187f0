import { describe, expect, it } from 'vitest';
import { Backend } from '../routing/backend.js';
import { ewma } from '../routing/ewma.js';
import { EWMA_DECAY_MS, FAILURE_PENALTY_CEILING_MS, FAILURE_PENALTY_FLOOR_MS, failurePenalty, medianLatency, PeakEwma } from '../routing/latency.js';
import type { PickContext } from '../routing/types.js';
import { mulberry32 } from './helpers/random.js';

const ctx: PickContext = { clientIp: '10.0.0.1', path: '/', headers: {} };

let port = 7000;
function backend(id: string, weight = 1): Backend {
  port++;
  return new Backend('svc', { id, url: `http://127.0.0.1:${port}`, weight, draining: false, source: 'static' }, 0);
}

describe('PeakEwma', () => {
  // [clock ms, sample ms] steps, then the expected estimate right after the last one
  const w = (dt: number): number => Math.exp(-dt / EWMA_DECAY_MS);
  it.each([
    ['the first sample is taken as is', [[0, 40]], 40],
    ['a higher sample is believed at once (peak)', [[0, 5], [100, 80]], 80],
    ['a lower sample moves the estimate by 1 - exp(-dt/tau)', [[0, 80], [1000, 5]], 80 * w(1000) + 5 * (1 - w(1000))],
    ['a lower sample at the same instant changes nothing', [[0, 80], [0, 5]], 80],
    ['a clock that goes back counts as no time passed', [[1000, 80], [500, 5]], 80],
    ['after a long idle spell a sample above the decayed estimate is the new peak', [[0, 50], [30_000, 5]], 5],
    ['negative samples count as 0', [[0, 10], [EWMA_DECAY_MS, -3]], 10 * w(EWMA_DECAY_MS)],
  ] as const)('%s', (_name, steps, expected) => {
    const e = new PeakEwma();
    for (const [t, ms] of steps) e.observe(ms, t);
    const last = steps[steps.length - 1]![0];
    expect(e.value(last)).toBeCloseTo(expected, 9);
  });

  it('has no value before a sample and decays towards 0 between samples (tau 10 s)', () => {
    const e = new PeakEwma();
    expect(e.value(0)).toBeUndefined();
    expect(e.sampled).toBe(false);
    e.observe(100, 1000);
    expect(e.value(1000)).toBe(100);
    expect(e.value(1000 + EWMA_DECAY_MS)).toBeCloseTo(100 / Math.E, 9);
    expect(e.value(1000 + 3 * EWMA_DECAY_MS)).toBeCloseTo(100 / Math.E ** 3, 9);
  });

  it('progress: counts requests waiting for headers; the first sent and every answer move progressAt', () => {
    const e = new PeakEwma();
    e.sent(50);
    e.sent(60); // a second waiter does not reset the clock of the first
    expect([e.waiting, e.progressAt]).toEqual([2, 50]);
    e.observe(3, 70);
    expect([e.waiting, e.progressAt]).toEqual([1, 70]);
    e.abandon();
    e.abandon(); // never below 0
    expect(e.waiting).toBe(0);
    e.sent(90);
    expect([e.waiting, e.progressAt]).toEqual([1, 90]);
  });
});

describe('median and failure penalty', () => {
  it.each([
    ['no backend', [], undefined],
    ['no sample anywhere', [undefined, undefined], undefined],
    ['one sample', [7, undefined], 7],
    ['odd count', [30, 10, 20], 20],
    ['even count: the lower middle', [40, 10, 30, 20], 20],
    ['unsampled ones do not count', [5, undefined, 100, undefined, 9], 9],
  ] as const)('median: %s', (_name, samples, expected) => {
    const bs = samples.map((s, i) => {
      const b = backend(`m${i}`);
      if (s !== undefined) b.latency.observe(s, 0);
      return b;
    });
    expect(medianLatency(bs, 0, { buf: new Float64Array(1) })).toBe(expected);
  });

  it.each([
    ['a fast failure with no median: the floor', 2, undefined, 250],
    ['a fast failure: 10 x the median', 2, 40, 400],
    ['a slow failure (a timeout): its own time', 5000, 40, 5000],
    ['a small median: still the floor', 1, 3, 250],
    ['a huge median: the ceiling', 2, 1e9, FAILURE_PENALTY_CEILING_MS],
    ['a failure slower than the ceiling: its own time', 45_000, 1e9, 45_000],
  ] as const)('penalty: %s', (_name, elapsed, median, expected) => {
    expect(failurePenalty(elapsed, median)).toBe(expected);
  });

  it('okValue: the estimate over successful answers only; a penalty sample moves value, not okValue', () => {
    const e = new PeakEwma();
    e.observe(250, 0, false);
    expect([e.value(0), e.okValue(0)]).toEqual([250, undefined]);
    e.observe(4, 100);
    e.observe(2500, 200, false);
    expect(e.value(200)).toBe(2500);
    expect(e.okValue(200)).toBeCloseTo(4 * Math.exp(-100 / EWMA_DECAY_MS), 9);
  });

  it.each([
    // [name, backends, failing: [id, one failure every N of its answers]]
    ['one backend that always fails', ['x'], [['x', 1]]],
    ['two failing of three (a panicking pool)', ['x', 'y', 'ok'], [['x', 1], ['y', 1]]],
    ['two of three failing one answer in 20 (seen: 20-25 s estimates at 40 req/s)', ['x', 'y', 'ok'], [['x', 20], ['y', 20]]],
  ] as const)('the data path loop stays at the floor with 5 ms answers: %s', (_name, ids, failing) => {
    // src/proxy/service.ts attemptSettled: a failure's penalty is relative to the median of the
    // successful answers' estimates; every other answer is a 5 ms sample
    const bs = ids.map((id) => backend(id));
    const every = new Map<string, number>(failing.map(([id, n]) => [id, n]));
    const scratch = { buf: new Float64Array(1) };
    let now = 0;
    let worst = 0;
    for (let i = 0; i < 2400; i++) {
      now += 25; // 40 req/s, round robin, for 60 s
      const b = bs[i % bs.length]!;
      const n = every.get(b.id);
      const turn = Math.floor(i / bs.length);
      if (n !== undefined && turn % n === 0) b.latency.observe(failurePenalty(2, medianLatency(bs, now, scratch, true)), now, false);
      else b.latency.observe(5, now);
      for (const x of bs) worst = Math.max(worst, x.latency.value(now) ?? 0);
    }
    expect(worst).toBe(FAILURE_PENALTY_FLOOR_MS);
  });
});

/**
 * A simulated service: every `stepMs` one request is picked and answered after the picked
 * backend's latency at that moment (sequential, so in-flight counts stay 0). Returns each
 * backend's share of the picks per window.
 */
function simulate(
  backends: readonly Backend[],
  latencyAt: (b: Backend, t: number) => number,
  windows: readonly (readonly [from: number, to: number])[],
  seed = 1,
): Map<string, number>[] {
  let now = 0;
  const p = ewma.create({ random: mulberry32(seed), clock: () => now });
  p.rebuild(backends);
  const end = Math.max(...windows.map(([, to]) => to));
  const counts = windows.map(() => new Map<string, number>());
  const totals = windows.map(() => 0);
  const stepMs = 10;
  for (now = 0; now < end; now += stepMs) {
    const b = p.pick(ctx)!;
    b.latency.observe(latencyAt(b, now), now);
    windows.forEach(([from, to], i) => {
      if (now >= from && now < to) {
        counts[i]!.set(b.id, (counts[i]!.get(b.id) ?? 0) + 1);
        totals[i]!++;
      }
    });
  }
  return counts.map((m, i) => new Map([...backends].map((b) => [b.id, (m.get(b.id) ?? 0) / totals[i]!])));
}

describe('ewma policy', () => {
  it('moves traffic away from a backend whose latency rises, and back when it recovers', () => {
    const [a, b, c] = [backend('a'), backend('b'), backend('c')];
    // b: 5 ms, then 50 ms from 20 s to 40 s, then 5 ms again
    const latency = (x: Backend, t: number): number => (x === b && t >= 20_000 && t < 40_000 ? 50 : 5);
    const [before, slow, recovered] = simulate([a, b, c], latency, [
      [5_000, 20_000],
      [25_000, 40_000],
      [70_000, 100_000],
    ]);
    for (const x of ['a', 'b', 'c']) expect(Math.abs(before!.get(x)! - 1 / 3), `${x} before`).toBeLessThan(0.08);
    expect(slow!.get('b')).toBeLessThan(0.05);
    expect(Math.abs(recovered!.get('b')! - 1 / 3)).toBeLessThan(0.08);
  });

  it('a gradually degrading backend loses its share as it degrades', () => {
    const [a, b, c] = [backend('a'), backend('b'), backend('c')];
    // c: 5 ms like the others for 10 s, then 1 ms slower every second
    const latency = (x: Backend, t: number): number => (x === c && t > 10_000 ? 5 + (t - 10_000) / 1000 : 5);
    const [early, late] = simulate([a, b, c], latency, [
      [0, 10_000],
      [30_000, 60_000],
    ]);
    expect(Math.abs(early!.get('c')! - 1 / 3)).toBeLessThan(0.08);
    expect(late!.get('c')).toBeLessThan(0.05);
  });

  it('a new backend starts at the median of the sampled ones, not at 0', () => {
    const [a, b, c, d] = [backend('a'), backend('b'), backend('c'), backend('d')];
    a.latency.observe(5, 0);
    b.latency.observe(20, 0);
    c.latency.observe(80, 0);
    const p = ewma.create({ random: mulberry32(3), clock: () => 0 });
    p.rebuild([a, b, c, d]);
    const n = 6000;
    const share = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const x = p.pick(ctx)!.id;
      share.set(x, (share.get(x) ?? 0) + 1 / n);
    }
    // d is priced at 20 ms, like b: of the 6 equally likely pairs, a wins 3, b and d one each
    // plus half their tie, c none. Priced at 0 (leasttime's rule) d would win every pair it is in.
    expect(Math.abs(share.get('a')! - 0.5)).toBeLessThan(0.04);
    expect(Math.abs(share.get('d')! - 0.25)).toBeLessThan(0.04);
    expect(Math.abs(share.get('b')! - 0.25)).toBeLessThan(0.04);
    expect(share.get('c') ?? 0).toBe(0);
  });

  it('weighs in-flight requests per unit of weight', () => {
    const [a, b] = [backend('a', 1), backend('b', 4)];
    a.latency.observe(10, 0);
    b.latency.observe(10, 0);
    const p = ewma.create({ random: mulberry32(5), clock: () => 0 });
    p.rebuild([a, b]);
    // a: 10 x (1/1 + 1) = 20; b: 10 x (3/4 + 1) = 17.5: b, although it has more in flight
    a.inflight = 1;
    b.inflight = 3;
    for (let i = 0; i < 20; i++) expect(p.pick(ctx)).toBe(b);
    b.inflight = 5; // 10 x (5/4 + 1) = 22.5
    for (let i = 0; i < 20; i++) expect(p.pick(ctx)).toBe(a);
  });

  it('avoids a backend whose requests have waited for headers longer than its latency (a stall)', () => {
    let now = 0;
    const [a, b] = [backend('a'), backend('b')];
    a.latency.observe(5, 0);
    b.latency.observe(5, 0);
    const p = ewma.create({ random: mulberry32(9), clock: () => now });
    p.rebuild([a, b]);
    // both were sent a request at t=0; a answers at t=1000 (and streams its body on), b does not
    for (const x of [a, b]) {
      x.latency.sent(0);
      x.inflight = 1;
    }
    now = 1000;
    a.latency.observe(5, now);
    // b's estimate is still 5 ms, but it has held a request for 200 ms: it looks 200 ms slow
    now = 1200;
    for (let i = 0; i < 20; i++) expect(p.pick(ctx)).toBe(a);
    // a request streaming its body after the headers is no stall: once both answered at the same
    // time, with one response each still streaming, they are even again
    a.latency.sent(now);
    a.latency.observe(5, now);
    b.latency.observe(5, now);
    expect(new Set(Array.from({ length: 40 }, () => p.pick(ctx)))).toEqual(new Set([a, b]));
  });
});
