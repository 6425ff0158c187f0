import { describe, expect, it } from 'vitest';
import { Backend } from '../routing/backend.js';
import { BALANCER_NAMES, POLICIES, createPolicy } from '../routing/policies.js';
import { hashRequestKey } from '../routing/hash-key.js';
import type { Policy, PolicyDefinition } from '../routing/policy.js';
import type { HashKeySpec, PickContext } from '../routing/types.js';
import { mulberry32 } from './helpers/random.js';

let port = 9000;
function backend(id: string, weight = 1): Backend {
  port++;
  return new Backend('svc', { id, url: `http://127.0.0.1:${port}`, weight, draining: false, source: 'static' }, 0);
}

function ctx(clientIp = '10.0.0.1', headers: PickContext['headers'] = {}, path = '/'): PickContext {
  return { clientIp, path, headers };
}

/** Distinct client IPs from a seeded source, so `hash` sees many keys. */
function ipStream(seed: number): () => PickContext {
  const r = mulberry32(seed);
  return () => ctx(`10.${(r() * 256) | 0}.${(r() * 256) | 0}.${(r() * 256) | 0}`);
}

function make(def: PolicyDefinition, seed = 1, hashKey?: HashKeySpec): Policy {
  return def.create({ random: mulberry32(seed), hashKey });
}

function counts(p: Policy, n: number, next: () => PickContext, exclude?: ReadonlySet<Backend>): Map<Backend | undefined, number> {
  const m = new Map<Backend | undefined, number>();
  for (let i = 0; i < n; i++) {
    const b = p.pick(next(), exclude);
    m.set(b, (m.get(b) ?? 0) + 1);
  }
  return m;
}

function expectShares(got: Map<Backend | undefined, number>, expected: readonly [Backend, number][], n: number, tol: number): void {
  const total = expected.reduce((s, [, w]) => s + w, 0);
  for (const [b, w] of expected) {
    expect(Math.abs((got.get(b) ?? 0) / n - w / total), `${b.id} share`).toBeLessThan(tol);
  }
  expect([...got.keys()].every((b) => b !== undefined && expected.some(([e]) => e === b))).toBe(true);
}

describe('policy registry', () => {
  it('BALANCER_NAMES lists POLICIES in order', () => {
    expect(POLICIES.map((p) => p.name)).toEqual([...BALANCER_NAMES]);
    expect(new Set(BALANCER_NAMES).size).toBe(6);
    for (const p of POLICIES) expect(p.description.length).toBeGreaterThan(10);
  });
  it('createPolicy builds each by name and rejects unknown names', () => {
    for (const name of BALANCER_NAMES) {
      const p = createPolicy(name, { random: mulberry32(1) });
      const a = backend('a');
      p.rebuild([a]);
      expect(p.pick(ctx())).toBe(a);
    }
    expect(() => createPolicy('nope' as never, { random: Math.random })).toThrow(/unknown balancer/);
  });
});

describe.each(POLICIES.map((p) => [p.name, p] as const))('conformance: %s', (_name, def) => {
  it('returns undefined with no candidates (before and after rebuild)', () => {
    const p = make(def);
    expect(p.pick(ctx())).toBeUndefined();
    p.rebuild([]);
    expect(p.pick(ctx())).toBeUndefined();
    expect(p.pick(ctx(), new Set([backend('x')]))).toBeUndefined();
  });

  it('with one candidate, picks it unless excluded', () => {
    const p = make(def);
    const a = backend('a', 3);
    p.rebuild([a]);
    for (let i = 0; i < 10; i++) expect(p.pick(ctx(`10.0.0.${i}`))).toBe(a);
    expect(p.pick(ctx(), new Set([a]))).toBeUndefined();
    expect(p.pick(ctx(), new Set([backend('other')]))).toBe(a);
  });

  it('never picks an excluded backend or a non-candidate', () => {
    const all = ['a', 'b', 'c', 'd', 'e', 'f'].map((id, i) => backend(id, i + 1));
    const cands = all.slice(0, 5); // f exists but is no candidate
    const p = make(def, 7);
    p.rebuild(cands);
    const r = mulberry32(99);
    const next = ipStream(3);
    for (let i = 0; i < 2000; i++) {
      const exclude = new Set(cands.filter(() => r() < 0.4));
      const b = p.pick(next(), exclude);
      if (exclude.size === cands.length) {
        expect(b).toBeUndefined();
      } else {
        expect(b).toBeDefined();
        expect(cands).toContain(b);
        expect(exclude.has(b!)).toBe(false);
      }
    }
  });

  it('returns undefined when every candidate is excluded', () => {
    const cands = [backend('a'), backend('b', 2), backend('c', 5)];
    const p = make(def);
    p.rebuild(cands);
    expect(p.pick(ctx(), new Set(cands))).toBeUndefined();
  });

  it('spreads picks in proportion to effective weight', () => {
    const [a, b, c, d] = [backend('a', 1), backend('b', 2), backend('c', 3), backend('d', 4)];
    const p = make(def, 11);
    p.rebuild([a!, b!, c!, d!]);
    const n = 20_000;
    expectShares(counts(p, n, ipStream(5)), [[a!, 1], [b!, 2], [c!, 3], [d!, 4]], n, 0.03);
  });

  it('reads effectiveWeight, not weight', () => {
    const a = backend('a', 10);
    const b = backend('b', 10);
    a.effectiveWeight = 1; // as during slow start
    const p = make(def, 12);
    p.rebuild([a, b]);
    const n = 20_000;
    expectShares(counts(p, n, ipStream(6)), [[a, 1], [b, 10]], n, 0.03);
  });

  it('spreads by weight among the rest when some are excluded', () => {
    const [a, b, c] = [backend('a', 1), backend('b', 3), backend('c', 50)];
    const p = make(def, 13);
    p.rebuild([a!, b!, c!]);
    const n = 20_000;
    expectShares(counts(p, n, ipStream(8), new Set([c!])), [[a!, 1], [b!, 3]], n, 0.03);
  });

  it('survives rebuilds with different candidate sets', () => {
    const [a, b, c, d] = [backend('a'), backend('b'), backend('c'), backend('d', 2)];
    const p = make(def, 17);
    const next = ipStream(9);
    const sets: Backend[][] = [[a!, b!, c!], [b!, c!, d!], [], [d!], [a!, b!, c!, d!], [c!, a!]];
    for (const set of sets) {
      p.rebuild(set);
      const n = 6_000;
      const got = counts(p, n, next);
      if (set.length === 0) {
        expect(got.get(undefined)).toBe(n);
        continue;
      }
      expectShares(got, set.map((x) => [x, x.effectiveWeight] as [Backend, number]), n, 0.04);
    }
  });

  it('is deterministic for a given random source', () => {
    const cands = [backend('a'), backend('b', 2), backend('c', 3)];
    const run = (): string[] => {
      const p = make(def, 21);
      p.rebuild(cands);
      const next = ipStream(4);
      return Array.from({ length: 50 }, () => p.pick(next())!.id);
    };
    expect(run()).toEqual(run());
  });
});

describe('round_robin', () => {
  const rr = (): Policy => createPolicy('round_robin', { random: mulberry32(1) });

  it.each([
    { weights: [3, 1, 1], seq: 'abacaabaca' },
    { weights: [1, 1, 1], seq: 'abcabc' },
    { weights: [5, 1, 1], seq: 'aabacaa' }, // NGINX's documented example
    { weights: [2, 1], seq: 'abaaba' },
  ])('weights $weights give $seq', ({ weights, seq }) => {
    const bs = weights.map((w, i) => backend(String.fromCharCode(97 + i), w));
    const p = rr();
    p.rebuild(bs);
    expect(Array.from(seq, () => p.pick(ctx())!.id).join('')).toBe(seq);
  });

  it('keeps current weights across a rebuild of the same members', () => {
    const bs = [backend('a', 3), backend('b', 1), backend('c', 1)];
    const p = rr();
    p.rebuild(bs);
    const got: string[] = [];
    for (let i = 0; i < 10; i++) {
      if (i % 3 === 0) p.rebuild([...bs]); // a new array, as the pool gives on every change
      got.push(p.pick(ctx())!.id);
    }
    expect(got.join('')).toBe('abacaabaca');
  });

  it('a newcomer starts at zero while the others keep their place', () => {
    const [a, b, c] = [backend('a', 3), backend('b', 1), backend('c', 1)];
    const p = rr();
    p.rebuild([a!, b!]);
    expect([p.pick(ctx())!.id, p.pick(ctx())!.id]).toEqual(['a', 'a']); // a:-2+... see NGINX: 3:1 -> a,a,b,a
    p.rebuild([a!, b!, c!]);
    // currents: a=-2, b=2, c=0 -> +3/+1/+1 -> a=1,b=3,c=1 -> b
    expect(p.pick(ctx())!.id).toBe('b');
  });

  it('skips excluded backends without letting them accumulate', () => {
    const [a, b, c] = [backend('a', 3), backend('b', 1), backend('c', 1)];
    const p = rr();
    p.rebuild([a!, b!, c!]);
    const ex = new Set([a!]);
    expect(Array.from({ length: 4 }, () => p.pick(ctx(), ex)!.id).join('')).toBe('bcbc');
    // a did not bank credit while excluded: the plain 3:1:1 pattern resumes
    expect(Array.from({ length: 5 }, () => p.pick(ctx())!.id).join('')).toBe('abaca');
  });
});

describe('least_conn', () => {
  it('avoids a backend with many in-flight requests', () => {
    const [a, b, c] = [backend('a'), backend('b'), backend('c')];
    a!.inflight = 10;
    const p = createPolicy('least_conn', { random: mulberry32(3) });
    p.rebuild([a!, b!, c!]);
    const got = counts(p, 1000, () => ctx());
    expect(got.get(a)).toBeUndefined();
    expect(got.get(b)).toBeGreaterThan(350);
    expect(got.get(c)).toBeGreaterThan(350);
  });

  it.each([
    // [inflight, weight] per backend -> ids that may win
    { desc: 'lowest count wins', load: [[3, 1], [1, 1], [2, 1]], winners: ['b'] },
    { desc: 'per unit of weight', load: [[4, 4], [2, 1], [3, 2]], winners: ['a'] },
    { desc: 'ties share', load: [[2, 2], [1, 1], [2, 1]], winners: ['a', 'b'] },
    { desc: 'all idle', load: [[0, 1], [0, 1], [0, 1]], winners: ['a', 'b', 'c'] },
  ])('$desc', ({ load, winners }) => {
    const bs = load.map(([inflight, w], i) => {
      const b = backend(String.fromCharCode(97 + i), w!);
      b.inflight = inflight!;
      return b;
    });
    const p = createPolicy('least_conn', { random: mulberry32(5) });
    p.rebuild(bs);
    const seen = new Set(Array.from({ length: 300 }, () => p.pick(ctx())!.id));
    expect([...seen].sort()).toEqual(winners);
  });

  it('tracks load as the proxy updates inflight', () => {
    const bs = [backend('a'), backend('b'), backend('c')];
    const p = createPolicy('least_conn', { random: mulberry32(8) });
    p.rebuild(bs);
    for (let i = 0; i < 30; i++) p.pick(ctx())!.inflight++;
    expect(bs.map((b) => b.inflight)).toEqual([10, 10, 10]);
  });
});

describe('p2c', () => {
  it.each([2, 3, 5, 20])('never picks the one loaded backend among %i', (n) => {
    const bs = Array.from({ length: n }, (_, i) => backend(`b${i}`));
    bs[0]!.inflight = 100;
    const p = createPolicy('p2c', { random: mulberry32(n) });
    p.rebuild(bs);
    const got = counts(p, 2000, () => ctx());
    expect(got.get(bs[0])).toBeUndefined();
  });

  it('draws the second candidate fairly among the others', () => {
    // a always loses, so every pick is decided by which of b, c gets drawn: both must get half.
    const [a, b, c] = [backend('a'), backend('b'), backend('c')];
    a!.inflight = 1;
    const p = createPolicy('p2c', { random: mulberry32(6) });
    p.rebuild([a!, b!, c!]);
    const n = 20_000;
    expectShares(counts(p, n, () => ctx()), [[b!, 1], [c!, 1]], n, 0.02);
  });

  it('also with an exclusion set (retry path)', () => {
    const bs = [backend('a'), backend('b'), backend('c'), backend('d')];
    bs[1]!.inflight = 100;
    const p = createPolicy('p2c', { random: mulberry32(2) });
    p.rebuild(bs);
    const got = counts(p, 2000, () => ctx(), new Set([bs[0]!]));
    expect(got.get(bs[1])).toBeUndefined();
    expect(got.get(bs[0])).toBeUndefined();
    expect(got.get(bs[2])! + got.get(bs[3])!).toBe(2000);
  });

  it('balances in-flight load when requests pile up', () => {
    const bs = Array.from({ length: 4 }, (_, i) => backend(`b${i}`));
    const p = createPolicy('p2c', { random: mulberry32(4) });
    p.rebuild(bs);
    for (let i = 0; i < 400; i++) p.pick(ctx())!.inflight++;
    const loads = bs.map((b) => b.inflight);
    expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(3);
  });
});

describe('hash', () => {
  const keyCtx = (i: number): PickContext => ctx('10.0.0.1', { 'x-user': `user-${i}` });
  const spec: HashKeySpec = { kind: 'header', name: 'x-user' };

  function assign(p: Policy, n: number): string[] {
    return Array.from({ length: n }, (_, i) => p.pick(keyCtx(i))!.id);
  }

  it('removing one of 5 backends moves only the keys that were on it', () => {
    const bs = ['a', 'b', 'c', 'd', 'e'].map((id) => backend(id));
    const p = createPolicy('hash', { random: mulberry32(1), hashKey: spec });
    p.rebuild(bs);
    const before = assign(p, 10_000);
    for (const id of 'abcde') expect(before.filter((x) => x === id).length).toBeGreaterThan(1700);
    p.rebuild(bs.filter((b) => b.id !== 'c'));
    const after = assign(p, 10_000);
    let moved = 0;
    for (let i = 0; i < before.length; i++) {
      if (before[i] === 'c') {
        expect(after[i]).not.toBe('c');
        moved++;
      } else {
        expect(after[i]).toBe(before[i]);
      }
    }
    expect(moved).toBeGreaterThan(1700);
  });

  it('adding a 6th backend moves about 1/6 of the keys, all onto it', () => {
    const bs = ['a', 'b', 'c', 'd', 'e'].map((id) => backend(id));
    const p = createPolicy('hash', { random: mulberry32(1), hashKey: spec });
    p.rebuild(bs);
    const before = assign(p, 10_000);
    p.rebuild([...bs, backend('f')]);
    const after = assign(p, 10_000);
    let moved = 0;
    for (let i = 0; i < before.length; i++) {
      if (after[i] !== before[i]) {
        expect(after[i]).toBe('f');
        moved++;
      }
    }
    expect(moved / 10_000).toBeGreaterThan(1 / 6 - 0.03);
    expect(moved / 10_000).toBeLessThan(1 / 6 + 0.03);
  });

  it('a retry excluding the first choice gets a stable second choice', () => {
    const bs = ['a', 'b', 'c', 'd'].map((id) => backend(id));
    const p = createPolicy('hash', { random: mulberry32(1), hashKey: spec });
    p.rebuild(bs);
    for (let i = 0; i < 200; i++) {
      const first = p.pick(keyCtx(i))!;
      const second = p.pick(keyCtx(i), new Set([first]))!;
      expect(second).not.toBe(first);
      expect(p.pick(keyCtx(i), new Set([first]))).toBe(second);
      // and it is where the key goes once the first choice leaves
      const q = createPolicy('hash', { random: mulberry32(1), hashKey: spec });
      q.rebuild(bs.filter((b) => b !== first));
      expect(q.pick(keyCtx(i))).toBe(second);
    }
  });

  it('does not depend on the random source or on candidate order', () => {
    const bs = ['a', 'b', 'c', 'd'].map((id) => backend(id));
    const p = createPolicy('hash', { random: mulberry32(1), hashKey: spec });
    const q = createPolicy('hash', { random: mulberry32(2), hashKey: spec });
    p.rebuild(bs);
    q.rebuild([...bs].reverse());
    expect(assign(q, 2000)).toEqual(assign(p, 2000));
  });

  const ip = '192.0.2.7';
  it.each<{ desc: string; spec: HashKeySpec; a: PickContext; b: PickContext; same: boolean }>([
    { desc: 'ip: same ip, different headers', spec: { kind: 'ip' }, a: ctx(ip, { 'x-user': '1' }), b: ctx(ip, { 'x-user': '2' }), same: true },
    { desc: 'header: same value, different ip', spec, a: ctx('10.0.0.1', { 'x-user': 'u' }), b: ctx('10.0.0.2', { 'x-user': 'u' }), same: true },
    { desc: 'header: array uses first value', spec, a: ctx('10.0.0.1', { 'x-user': ['u', 'v'] }), b: ctx('10.0.0.2', { 'x-user': 'u' }), same: true },
    { desc: 'header missing: falls back to ip', spec, a: ctx(ip), b: ctx(ip, { 'x-user': ip }), same: true },
    { desc: 'header empty: falls back to ip', spec, a: ctx(ip, { 'x-user': '' }), b: ctx(ip), same: true },
    { desc: 'cookie: found among others', spec: { kind: 'cookie', name: 'sid' }, a: ctx('10.0.0.1', { cookie: 'a=1; sid=xyz; b=2' }), b: ctx('10.0.0.2', { cookie: 'sid=xyz' }), same: true },
    { desc: 'cookie: quoted value', spec: { kind: 'cookie', name: 'sid' }, a: ctx('10.0.0.1', { cookie: 'sid="xyz"' }), b: ctx('10.0.0.2', { cookie: 'x=0;sid=xyz' }), same: true },
    { desc: 'cookie: name is not a suffix match', spec: { kind: 'cookie', name: 'sid' }, a: ctx(ip, { cookie: 'xsid=abc' }), b: ctx(ip), same: true },
    { desc: 'cookie: missing falls back to ip', spec: { kind: 'cookie', name: 'sid' }, a: ctx(ip, { cookie: 'other=1' }), b: ctx(ip, { cookie: 'sid=' + ip }), same: true },
    { desc: 'path: same path, different ip', spec: { kind: 'path' }, a: ctx('10.0.0.1', {}, '/x/y'), b: ctx('10.0.0.2', {}, '/x/y'), same: true },
    { desc: 'path: different paths differ', spec: { kind: 'path' }, a: ctx(ip, {}, '/x/y'), b: ctx(ip, {}, '/x/z'), same: false },
    { desc: 'cookie: different values differ', spec: { kind: 'cookie', name: 'sid' }, a: ctx(ip, { cookie: 'sid=1' }), b: ctx(ip, { cookie: 'sid=2' }), same: false },
  ])('key: $desc', ({ spec: s, a, b, same }) => {
    expect(hashRequestKey(s, a) === hashRequestKey(s, b)).toBe(same);
  });

  it('follows weights per key across many keys', () => {
    const [a, b] = [backend('a', 1), backend('b', 3)];
    const p = createPolicy('hash', { random: mulberry32(1), hashKey: spec });
    p.rebuild([a!, b!]);
    const got = assign(p, 10_000);
    expect(got.filter((x) => x === 'b').length / 10_000).toBeCloseTo(0.75, 1);
  });
});
