import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { REFUSING_PORT, startBackend } from './helpers/backends.js';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { ActiveChecker } from '../health/active.js';
import { startProbe } from '../health/probe.js';
import { HealthMonitor } from '../health/monitor.js';
import { HealthStore } from '../health/store.js';
import type { ServiceHealth } from '../health/state.js';
import type { ActiveCheckConfig, HealthTransition, ServiceHealthConfig } from '../health/types.js';
import { waitFor } from './helpers/wait.js';

const ACTIVE: ActiveCheckConfig = {
  path: '/healthz',
  tcp: false,
  interval: 60,
  timeout: 300,
  rise: 2,
  fall: 3,
  expectStatus: { min: 200, max: 399 },
};
const PASSIVE = { consecutiveFailures: 5, ejection: 30_000, maxEjectedPercent: 50 };

/** A backend (the shared factory) that answers /healthz with a settable status, or not at all. */
interface Backend {
  readonly url: string;
  status: number;
  hang: boolean;
  /** requests seen, `METHOD path`, in arrival order */
  readonly paths: string[];
  /** client connections open now */
  readonly open: number;
  close(): Promise<void>;
}

const later = cleanupAfterEach();

async function backend(name: string): Promise<Backend> {
  const ctl = { status: 200, hang: false };
  const base = await startBackend(name, {
    stream: (_req, res) => {
      if (ctl.hang) return; // never answers
      res.writeHead(ctl.status, { 'content-type': 'text/plain' });
      res.end(`backend ${name}\n`);
    },
  });
  later(() => base.close());
  return {
    url: base.url,
    get status() {
      return ctl.status;
    },
    set status(v: number) {
      ctl.status = v;
    },
    get hang() {
      return ctl.hang;
    },
    set hang(v: boolean) {
      ctl.hang = v;
    },
    get paths() {
      return base.seen.map((r) => `${r.method} ${r.url}`);
    },
    get open() {
      return base.connections.open;
    },
    close: () => base.close(),
  };
}

function setup(cfg: ServiceHealthConfig): { store: HealthStore; sh: ServiceHealth; checker: ActiveChecker; transitions: HealthTransition[] } {
  const transitions: HealthTransition[] = [];
  const store = new HealthStore({ transitions: { onTransition: (t) => transitions.push(t) } });
  const sh = store.service('web', cfg);
  if (cfg.active === undefined) throw new Error('needs active');
  const checker = new ActiveChecker({ service: 'web', sink: sh, config: cfg.active });
  later(() => {
    checker.close();
    store.close();
  });
  return { store, sh, checker, transitions };
}

describe('active HTTP checks against real servers', () => {
  it('a backend whose /healthz turns 500 goes unhealthy after fall checks and back after rise', async () => {
    const b = await backend('b1');
    const { sh, checker, transitions } = setup({ active: ACTIVE, passive: PASSIVE });
    sh.add('b1', Date.now());
    checker.add('b1', b.url);
    await waitFor(() => sh.snapshot('b1')?.state === 'healthy', { what: 'healthy', timeoutMs: 5000 });
    expect(sh.isAvailable('b1')).toBe(true);
    expect(sh.snapshot('b1')?.reason).toBe('first check passed'); // a new backend's first probe is its verdict

    b.status = 500;
    await waitFor(() => sh.snapshot('b1')?.state === 'unhealthy', { what: 'unhealthy', timeoutMs: 5000 });
    expect(sh.snapshot('b1')?.reason).toBe('3 failed checks: status 500');
    expect(sh.isAvailable('b1')).toBe(false);

    b.status = 204;
    await waitFor(() => sh.snapshot('b1')?.state === 'healthy', { what: 'healthy again', timeoutMs: 5000 });
    expect(transitions.map((t) => `${t.from}->${t.to}`)).toEqual(['unknown->healthy', 'healthy->unhealthy', 'unhealthy->healthy']);
    expect(new Set(b.paths)).toEqual(new Set(['GET /healthz']));
  });

  it('a status outside expect_status fails; a redirect inside it passes', async () => {
    const b = await backend('b2');
    b.status = 302;
    const { sh, checker } = setup({ active: { ...ACTIVE, expectStatus: { min: 200, max: 399 } }, passive: PASSIVE });
    sh.add('b2', Date.now());
    checker.add('b2', b.url);
    await waitFor(() => sh.snapshot('b2')?.state === 'healthy', { what: 'healthy', timeoutMs: 5000 });
    b.status = 404;
    await waitFor(() => sh.snapshot('b2')?.state === 'unhealthy', { what: 'unhealthy', timeoutMs: 5000 });
    expect(sh.snapshot('b2')?.reason).toBe('3 failed checks: status 404');
  });

  it('a refusing port is unhealthy with a connect reason', async () => {
    const { sh, checker } = setup({ active: ACTIVE, passive: PASSIVE });
    sh.add('dead', Date.now());
    checker.add('dead', `http://127.0.0.1:${REFUSING_PORT}`);
    await waitFor(() => sh.snapshot('dead')?.state === 'unhealthy', { what: 'unhealthy', timeoutMs: 5000 });
    expect(sh.snapshot('dead')?.reason).toBe('first check failed: connect ECONNREFUSED');
    expect(sh.isAvailable('dead')).toBe(false);
  });

  it('a hanging backend times out, with at most one probe in flight', async () => {
    const b = await backend('slow');
    b.hang = true;
    const store = new HealthStore();
    const sh = store.service('web', { active: { ...ACTIVE, interval: 30, timeout: 150 }, passive: PASSIVE });
    // Count probes in flight on the checker's side (the server sees a destroyed socket close late).
    let inFlight = 0;
    let maxInFlight = 0;
    const checker = new ActiveChecker({
      service: 'web',
      sink: sh,
      config: { ...ACTIVE, interval: 30, timeout: 150 },
      probe: (spec) => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        const running = startProbe(spec);
        void running.result.then(() => {
          inFlight -= 1;
        });
        return running;
      },
    });
    later(() => {
      checker.close();
      store.close();
    });
    sh.add('slow', Date.now());
    checker.add('slow', b.url);
    await waitFor(() => sh.snapshot('slow')?.state === 'unhealthy', { what: 'unhealthy', timeoutMs: 5000 });
    // the first probe's timeout is its verdict; the later ones still go one at a time
    expect(sh.snapshot('slow')?.reason).toBe('first check failed: timeout after 150ms');
    await waitFor(() => b.paths.length >= 3, { what: '3 probes', timeoutMs: 5000 });
    expect(maxInFlight).toBe(1);
  });

  it('a server that goes away mid-life: healthy, then connect errors', async () => {
    const b = await backend('gone');
    const { sh, checker } = setup({ active: ACTIVE, passive: PASSIVE });
    sh.add('gone', Date.now());
    checker.add('gone', b.url);
    await waitFor(() => sh.snapshot('gone')?.state === 'healthy', { what: 'healthy', timeoutMs: 5000 });
    await b.close();
    await waitFor(() => sh.snapshot('gone')?.state === 'unhealthy', { what: 'unhealthy', timeoutMs: 5000 });
    expect(sh.snapshot('gone')?.reason).toMatch(/^3 failed checks: connect ECONNREFUSED$/);
  });
});

/**
 * The checker's schedule on a fake clock: probes are recorded, not sent (`probe` injected), and
 * time moves only when the test moves it, so "no further probe" is an exact statement rather than
 * a sleep. Jitter is pinned (random 0.5): a first probe 25 ms after `add`, then one per interval.
 */
describe('ActiveChecker scheduling (fake timers)', () => {
  interface Started {
    at: number;
    url: string;
    cancelled: boolean;
    finish(ok: boolean): void;
  }

  function scheduled(config: ActiveCheckConfig, auto = true): { checker: ActiveChecker; started: Started[]; results: string[] } {
    const started: Started[] = [];
    const results: string[] = [];
    const checker = new ActiveChecker({
      service: 'web',
      sink: { activeResult: (id, ok) => results.push(`${Date.now()} ${id} ${ok ? 'pass' : 'fail'}`) },
      config,
      random: () => 0.5,
      probe: (spec) => {
        let resolve: (r: { ok: boolean; detail: string }) => void = () => undefined;
        const result = new Promise<{ ok: boolean; detail: string }>((r) => (resolve = r));
        const p: Started = {
          at: Date.now(),
          url: spec.url,
          cancelled: false,
          finish: (ok) => resolve({ ok, detail: ok ? 'status 200' : 'status 500' }),
        };
        started.push(p);
        if (auto) p.finish(true);
        return { result, cancel: () => ((p.cancelled = true), resolve({ ok: false, detail: 'cancelled' })) };
      },
    });
    later(() => checker.close());
    return { checker, started, results };
  }

  const starts = (started: readonly Started[], url?: string): number[] => started.filter((p) => url === undefined || p.url === url).map((p) => p.at);
  const INTERVAL = { ...ACTIVE, interval: 1000 };

  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a new backend is probed at once, then once per interval from probe start to probe start', async () => {
    const { checker, started, results } = scheduled(INTERVAL);
    checker.add('a', 'http://a:1');
    await vi.advanceTimersByTimeAsync(3100);
    expect(starts(started)).toEqual([25, 1025, 2025, 3025]);
    expect(results).toEqual(['25 a pass', '1025 a pass', '2025 a pass', '3025 a pass']);
  });

  it('remove stops probing that backend (its probe in flight is cancelled); the others go on', async () => {
    const { checker, started } = scheduled(INTERVAL, false);
    checker.add('a', 'http://a:1');
    checker.add('c', 'http://c:1');
    await vi.advanceTimersByTimeAsync(25);
    for (const p of started) p.finish(true);
    await vi.advanceTimersByTimeAsync(1000); // the second probes start at 1025 and stay in flight
    expect(starts(started, 'http://a:1')).toEqual([25, 1025]);
    checker.remove('a');
    expect(started.filter((p) => p.url === 'http://a:1').map((p) => p.cancelled)).toEqual([false, true]);
    for (let round = 0; round < 10; round++) {
      for (const p of started) if (p.url === 'http://c:1') p.finish(true);
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(starts(started, 'http://a:1')).toEqual([25, 1025]);
    expect(starts(started, 'http://c:1')).toEqual([25, 1025, 2025, 3025, 4025, 5025, 6025, 7025, 8025, 9025, 10_025, 11_025]);
    expect(checker.ids()).toEqual(['c']);
  });

  it('close stops every timer and probe', async () => {
    const { checker, started, results } = scheduled(INTERVAL);
    checker.add('a', 'http://a:1');
    checker.add('c', 'http://c:1');
    await vi.advanceTimersByTimeAsync(1100);
    const before = started.length;
    checker.close();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(started.length).toBe(before);
    expect(results.length).toBe(before);
    expect(checker.ids()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a changed URL cancels the probe in flight on the old address and probes the new one at once', async () => {
    const { checker, started, results } = scheduled(INTERVAL, false);
    checker.add('x', 'http://a:1');
    await vi.advanceTimersByTimeAsync(25);
    checker.add('x', 'http://b:1');
    expect(started.map((p) => [p.url, p.cancelled])).toEqual([['http://a:1', true]]);
    await vi.advanceTimersByTimeAsync(25);
    started.at(-1)?.finish(true);
    await vi.advanceTimersByTimeAsync(3000);
    for (const p of started) p.finish(true);
    expect(starts(started, 'http://a:1')).toEqual([25]);
    expect(starts(started, 'http://b:1')[0]).toBe(50);
    expect(results[0]).toBe('50 x pass'); // the cancelled probe on the old address reported nothing
    checker.add('x', 'http://b:1'); // the same URL again changes nothing
    expect(started.filter((p) => p.cancelled).length).toBe(1);
  });

  it('a shorter interval on reconfigure takes effect without waiting out the old one; a longer one from the next probe', async () => {
    const { checker, started } = scheduled({ ...ACTIVE, interval: 60_000 });
    checker.add('r', 'http://r:1');
    await vi.advanceTimersByTimeAsync(100);
    expect(starts(started)).toEqual([25]);
    checker.reconfigure({ ...ACTIVE, interval: 40 });
    await vi.advanceTimersByTimeAsync(100);
    expect(starts(started)).toEqual([25, 140, 180]); // pulled in: one interval from the change, then every 40 ms
    checker.reconfigure({ ...ACTIVE, interval: 1000 });
    await vi.advanceTimersByTimeAsync(2100);
    expect(starts(started)).toEqual([25, 140, 180, 220, 1220, 2220]); // the probe already due at 220 keeps its time
  });

  it('HealthMonitor: a member that leaves is probed no more, nor is any once active checks are turned off', async () => {
    const probed: string[] = [];
    const monitor = new HealthMonitor({
      store: new HealthStore(),
      random: () => 0.5,
      probe: (spec) => {
        probed.push(`${Date.now()} ${spec.url}`);
        return { result: Promise.resolve({ ok: true, detail: 'status 200' }), cancel: () => undefined };
      },
    });
    later(() => monitor.close());
    const members = [
      { id: 'a', url: 'http://a:1', draining: false },
      { id: 'b', url: 'http://b:1', draining: false },
    ];
    monitor.sync('web', { active: INTERVAL, passive: PASSIVE }, members);
    await vi.advanceTimersByTimeAsync(1100);
    expect(probed).toEqual(['25 http://a:1', '25 http://b:1', '1025 http://a:1', '1025 http://b:1']);
    monitor.sync('web', { active: INTERVAL, passive: PASSIVE }, [members[0]!]); // b leaves
    await vi.advanceTimersByTimeAsync(2000);
    expect(probed.slice(4)).toEqual(['2025 http://a:1', '3025 http://a:1']);
    monitor.sync('web', { passive: PASSIVE }, [members[0]!]); // active checks off
    await vi.advanceTimersByTimeAsync(5000);
    expect(probed).toHaveLength(6);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('at most one probe in flight per backend: a slow probe delays only its own next one', async () => {
    const { checker, started } = scheduled(INTERVAL, false);
    checker.add('s', 'http://s:1');
    await vi.advanceTimersByTimeAsync(5000);
    expect(starts(started)).toEqual([25]);
    vi.setSystemTime(5025);
    started[0]?.finish(false); // answered after 5 s: the next one starts at once
    await vi.advanceTimersByTimeAsync(0);
    expect(starts(started)).toEqual([25, 5025]);
  });
});

describe('active TCP checks', () => {
  it('tcp: true passes on connect and fails with a connect reason once the port closes', async () => {
    let accepted = 0;
    const server = net.createServer((s) => {
      accepted += 1;
      s.on('error', () => undefined);
      s.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    later(() => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())));
    const { sh, checker } = setup({ active: { ...ACTIVE, tcp: true, path: undefined }, passive: PASSIVE });
    sh.add('t', Date.now());
    checker.add('t', `http://127.0.0.1:${port}`);
    await waitFor(() => sh.snapshot('t')?.state === 'healthy', { what: 'healthy', timeoutMs: 5000 });
    expect(accepted).toBeGreaterThanOrEqual(1);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await waitFor(() => sh.snapshot('t')?.state === 'unhealthy', { what: 'unhealthy', timeoutMs: 5000 });
    expect(sh.snapshot('t')?.reason).toBe('3 failed checks: connect ECONNREFUSED');
  });
});

describe('startProbe', () => {
  it('reports status, connect errors, timeouts, and cancels cleanly', async () => {
    const b = await backend('p');
    const spec = { url: b.url, path: '/x', tcp: false, timeout: 200, expectStatus: { min: 200, max: 299 } };
    expect(await startProbe(spec).result).toEqual({ ok: true, detail: 'status 200' });
    b.status = 503;
    expect(await startProbe(spec).result).toEqual({ ok: false, detail: 'status 503' });
    b.hang = true;
    expect(await startProbe(spec).result).toEqual({ ok: false, detail: 'timeout after 200ms' });
    const running = startProbe({ ...spec, timeout: 5000 });
    await waitFor(() => b.paths.length >= 4, { what: 'request arrived', timeoutMs: 5000 });
    running.cancel();
    expect(await running.result).toEqual({ ok: false, detail: 'cancelled' });
    await waitFor(() => b.open === 0, { what: 'sockets closed', timeoutMs: 5000 });
    const refusing = `http://127.0.0.1:${REFUSING_PORT}`;
    expect(await startProbe({ ...spec, url: refusing }).result).toEqual({ ok: false, detail: 'connect ECONNREFUSED' });
    expect(await startProbe({ ...spec, url: refusing, tcp: true }).result).toEqual({ ok: false, detail: 'connect ECONNREFUSED' });
  });

  it('a backend that resets after accepting is reported as a reset', async () => {
    const server = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.resetAndDestroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    later(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;
    const r = await startProbe({ url: `http://127.0.0.1:${port}`, path: '/', tcp: false, timeout: 1000, expectStatus: { min: 200, max: 399 } }).result;
    expect(r).toEqual({ ok: false, detail: 'reset ECONNRESET' });
  });
});

describe('HealthMonitor (wiring glue)', () => {
  it('syncs members, checkers and registry draining; survives a reload that changes the interval', async () => {
    const a = await backend('a');
    const b = await backend('b');
    const avail = new Map<string, string>();
    const store = new HealthStore({ availability: { setAvailable: (_s, id, v) => avail.set(id, v) } });
    const monitor = new HealthMonitor({ store });
    later(() => monitor.close());
    const cfg: ServiceHealthConfig = { active: ACTIVE, passive: PASSIVE };
    monitor.sync('web', cfg, [
      { id: 'a', url: a.url, draining: false },
      { id: 'b', url: b.url, draining: false },
    ]);
    expect(avail).toEqual(new Map([['a', 'pending'], ['b', 'pending']]));
    await waitFor(() => avail.get('a') === 'available' && avail.get('b') === 'available', { what: 'both healthy', timeoutMs: 5000 });
    // one passed check each was enough: a new backend's first probe is its verdict
    expect(store.snapshot('web', 'a')?.reason).toBe('first check passed');

    // reload with another interval: same records, still healthy, no flap
    monitor.sync('web', { active: { ...ACTIVE, interval: 50 }, passive: PASSIVE }, [
      { id: 'a', url: a.url, draining: false },
      { id: 'b', url: b.url, draining: true },
    ]);
    expect(store.snapshot('web', 'a')?.state).toBe('healthy');
    expect(store.snapshot('web', 'b')).toMatchObject({ state: 'draining', reason: 'draining (registry)' });
    expect(avail.get('b')).toBe('draining');

    // the admin drain and the registry's are held apart: an admin undrain does not override
    // the registry's drain, and a registry update does not undo an admin drain
    expect(monitor.setDraining('web', 'b', false)).toBe(true);
    expect(monitor.setDraining('web', 'a', true)).toBe(true);
    monitor.sync('web', { active: { ...ACTIVE, interval: 50 }, passive: PASSIVE }, [
      { id: 'a', url: a.url, draining: false },
      { id: 'b', url: b.url, draining: true },
    ]);
    expect(store.snapshot('web', 'b')).toMatchObject({ state: 'draining', reason: 'draining (registry)' });
    expect(store.snapshot('web', 'a')).toMatchObject({ state: 'draining', reason: 'drained through the admin API' });
    monitor.sync('web', { active: { ...ACTIVE, interval: 50 }, passive: PASSIVE }, [
      { id: 'a', url: a.url, draining: false },
      { id: 'b', url: b.url, draining: false },
    ]);
    expect(store.snapshot('web', 'b')).toMatchObject({ state: 'healthy', reason: 'undrained (registry)' });
    expect(store.snapshot('web', 'a')?.state).toBe('draining');
    expect(monitor.setDraining('web', 'a', false)).toBe(true);
    expect(store.snapshot('web', 'a')).toMatchObject({ state: 'healthy', reason: 'undrained through the admin API' });
    expect(monitor.setDraining('web', 'nope', true)).toBe(false);

    // b leaves: its record and its probes go
    monitor.sync('web', cfg, [{ id: 'a', url: a.url, draining: false }]);
    expect(store.snapshot('web', 'b')).toBeUndefined();

    // active checks off: the checker stops, a stays available
    monitor.sync('web', { passive: PASSIVE }, [{ id: 'a', url: a.url, draining: false }]);
    expect(avail.get('a')).toBe('available');

    // passive outcomes flow through
    monitor.sync('web', { passive: { ...PASSIVE, maxEjectedPercent: 100 } }, [{ id: 'a', url: a.url, draining: false }]);
    for (let i = 0; i < 5; i++) monitor.passive('web', 'a', { kind: 'connect' });
    expect(store.snapshot('web', 'a')?.state).toBe('ejected');
    expect(avail.get('a')).toBe('failed');

    monitor.removeService('web');
    expect(store.get('web')).toBeUndefined();
  });
});
