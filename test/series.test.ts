/**
 * The dashboard's per-second series (src/observability/series/): ring arithmetic under a fake clock, quantiles
 * from the per-second histogram, caps, and dropping.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bucketUpperMs, latencyBucket, SERIES_SECONDS, SeriesRing, statusClass } from '../src/observability/series/ring.js';
import { SeriesDeltas } from '../src/observability/series/deltas.js';
import { SeriesStore } from '../src/observability/series/store.js';

const T0 = 1_700_000_000; // a Unix second

function fakeClock(sec: number): { now: () => number; set: (s: number) => void } {
  let ms = sec * 1000;
  return { now: () => ms, set: (s) => (ms = s * 1000) };
}

describe('latency buckets', () => {
  it.each([
    [0, 0],
    [-1, 0],
    [Number.NaN, 0],
    [0.00005, 0],
    [1000, 191],
  ])('latencyBucket(%s s) = %i', (seconds, bucket) => {
    expect(latencyBucket(seconds)).toBe(bucket);
  });

  it('puts every latency in a bucket whose bound is at least it and at most 8 % above', () => {
    for (const ms of [0.06, 0.5, 1, 2.5, 10, 42, 99.9, 250, 1000, 7777, 60_000]) {
      const b = latencyBucket(ms / 1000);
      expect(bucketUpperMs(b)).toBeGreaterThanOrEqual(ms * (1 - 1e-9));
      expect(bucketUpperMs(b)).toBeLessThanOrEqual(ms * 1.08 + 1e-9);
    }
  });

  it.each([
    [101, 0],
    [200, 1],
    [204, 1],
    [302, 2],
    [404, 3],
    [499, 3],
    [503, 4],
    [42, 0],
    [700, 4],
  ])('statusClass(%i) = %i', (code, cls) => {
    expect(statusClass(code)).toBe(cls);
  });
});

describe('SeriesRing', () => {
  it('counts by second and status class, and returns complete seconds only', () => {
    const r = new SeriesRing(T0, 16);
    r.request(T0, statusClass(200), latencyBucket(0.01));
    r.request(T0, statusClass(200), latencyBucket(0.01));
    r.request(T0, statusClass(503), latencyBucket(0.01));
    r.request(T0 + 2, statusClass(404), latencyBucket(0.002));
    const d = r.read(T0 + 3);
    expect(d.t).toEqual([T0, T0 + 1, T0 + 2]);
    expect(d.req['2xx']).toEqual([2, 0, 0]);
    expect(d.req['5xx']).toEqual([1, 0, 0]);
    expect(d.req['4xx']).toEqual([0, 0, 1]);
    expect(d.p50_ms[1]).toBeNull();
    // the current second (T0 + 3) is not returned
    expect(r.read(T0 + 3, T0 + 1).t).toEqual([T0 + 2]);
  });

  it('computes p50 and p99 of each second from its histogram', () => {
    const r = new SeriesRing(T0, 32);
    // 98 requests at 1 ms, 2 at 500 ms: p50 = 1 ms, p99 = 500 ms (nearest rank)
    for (let i = 0; i < 98; i++) r.request(T0, 1, latencyBucket(0.001));
    r.request(T0, 1, latencyBucket(0.5));
    r.request(T0, 1, latencyBucket(0.5));
    const d = r.read(T0 + 1);
    expect(d.p50_ms[0]).toBeGreaterThanOrEqual(1);
    expect(d.p50_ms[0]).toBeLessThanOrEqual(1.08);
    expect(d.p99_ms[0]).toBeGreaterThanOrEqual(500);
    expect(d.p99_ms[0]).toBeLessThanOrEqual(540);
  });

  it('counts errors by kind and ignores an unknown kind', () => {
    const clock = fakeClock(T0);
    const store = new SeriesStore({ clock: clock.now });
    const rec = store.recorder('web', 'a');
    rec.error('connect');
    rec.error('timeout');
    rec.error('timeout');
    rec.error('nonsense');
    // nothing complete yet in the current second
    expect(store.read('web', 'a')?.t).toEqual([]);
    clock.set(T0 + 1);
    const d = store.read('web', 'a')!;
    expect([d.err.connect[0], d.err.timeout[0], d.err.reset[0], d.err.status[0]]).toEqual([1, 2, 0, 0]);
  });

  it('forgets seconds older than 15 minutes and zeroes the seconds without traffic', () => {
    const r = new SeriesRing(T0, 16);
    r.request(T0, 1, -1);
    r.request(T0 + 10, 1, -1);
    r.request(T0 + SERIES_SECONDS + 5, 1, -1);
    const d = r.read(T0 + SERIES_SECONDS + 6);
    // 900 slots: the 899 complete seconds returned, and the current one
    expect(d.t.length).toBe(SERIES_SECONDS - 1);
    expect(d.t[0]).toBe(T0 + 7);
    const sum = d.req['2xx'].reduce((a, b) => a + b, 0);
    // T0 fell out; T0+10 and T0+905 remain
    expect(sum).toBe(2);
    // a jump of more than the whole window clears everything
    r.request(T0 + 5000, 1, -1);
    const e = r.read(T0 + 5001);
    expect(e.req['2xx'].reduce((a, b) => a + b, 0)).toBe(1);
  });

  it('keeps counting into the newest second when the clock steps back', () => {
    const r = new SeriesRing(T0 + 5, 16);
    r.request(T0 + 5, 1, -1);
    r.request(T0 + 2, 1, -1);
    expect(r.read(T0 + 6).req['2xx']).toEqual([2]);
  });

  it('saturates 16-bit counters instead of wrapping', () => {
    const r = new SeriesRing(T0, 16);
    for (let i = 0; i < 70_000; i++) r.request(T0, 1, -1);
    expect(r.read(T0 + 1).req['2xx']).toEqual([65_535]);
  });

  it.each([
    [16, 18_768, 'backend'],
    [32, 34_968, 'service'],
  ] as const)('%i-bit: holds exactly the typed arrays README counts, %i bytes per %s', (width, bytes, per) => {
    const ring = new SeriesRing(T0, width);
    // every typed array the ring holds, counted from the object itself (not from the formula)
    const held = Object.values(ring)
      .filter((v): v is ArrayBufferView => ArrayBuffer.isView(v))
      .reduce((n, v) => n + v.byteLength, 0);
    expect(held).toBe(bytes);
    expect(SeriesRing.bytes(width)).toBe(bytes);
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8').replace(/\s+/g, ' ');
    expect(readme).toContain(`**${String(bytes).replace(/(\d)(\d{3})$/, '$1 $2')} bytes per ${per}**`);
  });
});

describe('SeriesStore', () => {
  it('records a request into the service and the backend, and errors by kind', () => {
    const clock = fakeClock(T0);
    const store = new SeriesStore({ clock: clock.now });
    const a = store.recorder('web', 'a');
    const orphan = store.recorder('web');
    a.request(200, 0.004);
    a.request(502, 0.01);
    a.error('connect');
    orphan.request(503, 0.0001);
    clock.set(T0 + 1);
    const svc = store.read('web', undefined)!;
    const be = store.read('web', 'a')!;
    expect(svc.t).toEqual([T0]);
    expect([svc.req['2xx'][0], svc.req['5xx'][0], svc.err.connect[0]]).toEqual([1, 2, 1]);
    expect([be.req['2xx'][0], be.req['5xx'][0], be.err.connect[0]]).toEqual([1, 1, 1]);
    expect(svc.backend).toBeNull();
    expect(be.backend).toBe('a');
    expect(store.backendIds('web')).toEqual(['a']);
  });

  it("backends' rings count in 16 bits (saturating), services' in 32", () => {
    const clock = fakeClock(T0);
    const store = new SeriesStore({ clock: clock.now });
    const rec = store.recorder('web', 'a');
    for (let i = 0; i < 70_000; i++) rec.request(200);
    clock.set(T0 + 1);
    expect(store.read('web', 'a')?.req['2xx']).toEqual([65_535]);
    expect(store.read('web', undefined)?.req['2xx']).toEqual([70_000]);
  });

  it('caps the number of backend series; the service still counts the rest', () => {
    const clock = fakeClock(T0);
    const store = new SeriesStore({ clock: clock.now, maxBackends: 2 });
    for (const id of ['a', 'b', 'c']) store.recorder('web', id).request(200, 0.001);
    clock.set(T0 + 1);
    expect(store.size).toEqual({ services: 1, backends: 2 });
    expect(store.read('web', 'c')).toBeUndefined();
    expect(store.read('web', undefined)?.req['2xx']).toEqual([3]);
    // dropping one frees a place
    store.dropBackend('web', 'a');
    expect(store.read('web', 'a')).toBeUndefined();
    store.recorder('web', 'c');
    expect(store.backendIds('web')).toEqual(['b', 'c']);
    store.dropService('web');
    expect(store.size).toEqual({ services: 0, backends: 0 });
  });
});

describe('SeriesDeltas (cluster workers) into SeriesStore.apply (the primary)', () => {
  it('caps its cells as the primary caps its rings: a backend beyond the cap counts in its service only', () => {
    const w = new SeriesDeltas({ maxServices: 2, maxBackends: 2 });
    for (const id of ['a', 'b', 'c', 'd']) w.recorder('web', id).request(200, 0.001);
    w.recorder('api', 'x').request(500, 0.001); // beyond maxBackends: api's own cell
    w.recorder('third').request(200); // beyond maxServices: not counted (the primary keeps none either)
    expect(w.size).toEqual({ cells: 4, backends: 2 });
    const d = w.take();
    expect(d.map((x) => [x.service, x.backend, x.cells[1], x.cells[4]])).toEqual([
      ['web', 'a', 1, 0],
      ['web', 'b', 1, 0],
      ['web', '', 2, 0], // c and d
      ['api', '', 0, 1],
    ]);
    // leaving frees places: api's backend gets a cell now
    w.dropBackend('web', 'a');
    w.dropService('web');
    expect(w.size).toEqual({ cells: 1, backends: 0 });
    w.recorder('api', 'x').request(500, 0.001);
    expect(w.take().map((x) => [x.service, x.backend, x.cells[4]])).toEqual([['api', 'x', 1]]);
    // churn does not grow it: 10 000 backends that come and go
    for (let i = 0; i < 10_000; i++) {
      w.recorder('api', `b${i}`).request(200);
      w.dropBackend('api', `b${i}`);
    }
    expect(w.size).toEqual({ cells: 2, backends: 1 });
  });

  it('hands over only what was counted since the last take, and the primary gets exact quantiles from the merged histograms', () => {
    const w1 = new SeriesDeltas();
    const w2 = new SeriesDeltas();
    // worker 1: 99 fast answers; worker 2: one slow failure and a connect error
    for (let i = 0; i < 99; i++) w1.recorder('web', 'a').request(200, 0.002);
    w2.recorder('web', 'a').request(502, 2);
    w2.recorder('web', 'a').error('connect');
    w2.recorder('web').request(503, 0.0001);
    const d1 = w1.take();
    const d2 = w2.take();
    expect(d1.map((d) => [d.service, d.backend, d.cells])).toEqual([['web', 'a', [0, 99, 0, 0, 0, 0, 0, 0, 0]]]);
    expect(d2.map((d) => [d.backend, d.cells])).toEqual([
      ['a', [0, 0, 0, 0, 1, 1, 0, 0, 0]],
      ['', [0, 0, 0, 0, 1, 0, 0, 0, 0]],
    ]);
    expect(w1.take()).toEqual([]);

    const clock = fakeClock(T0);
    const primary = new SeriesStore({ clock: clock.now });
    for (const d of [...d1, ...d2]) primary.apply(d);
    clock.set(T0 + 1);
    const a = primary.read('web', 'a')!;
    const svc = primary.read('web', undefined)!;
    expect([a.req['2xx'][0], a.req['5xx'][0], a.err.connect[0]]).toEqual([99, 1, 1]);
    expect([svc.req['2xx'][0], svc.req['5xx'][0]]).toEqual([99, 2]);
    // 100 samples at the backend: p50 is a fast one, p99 still fast (rank 99), the slow one is the max
    expect(a.p50_ms[0]).toBeLessThan(2.2);
    expect(a.p99_ms[0]).toBeLessThan(2.2);
  });
});
