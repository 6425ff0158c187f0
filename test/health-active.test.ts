import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { REFUSING_PORT } from './helpers/backends.js';
import http from 'node:http';
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

/** A backend on 127.0.0.1:0 that names itself and answers /healthz with a settable status. */
interface Backend {
  name: string;
  url: string;
  port: number;
  status: number;
  /** requests seen, by path */
  paths: string[];
  /** open connections now, and the most ever open at once */
  open: number;
  maxOpen: number;
  hang: boolean;
  server: http.Server;
  close(): Promise<void>;
}

const later = cleanupAfterEach();

async function backend(name: string): Promise<Backend> {
  const b = { name, status: 200, paths: [] as string[], open: 0, maxOpen: 0, hang: false } as Backend;
  b.server = http.createServer((req, res) => {
    b.paths.push(`${req.method} ${req.url}`);
    if (b.hang) return; // never answers
    res.writeHead(b.status, { 'content-type': 'text/plain' });
    res.end(`backend ${name}\n`);
  });
  b.server.on('connection', (socket) => {
    b.open += 1;
    b.maxOpen = Math.max(b.maxOpen, b.open);
    socket.on('close', () => {
      b.open -= 1;
    });
  });
  await new Promise<void>((resolve) => b.server.listen(0, '127.0.0.1', resolve));
  b.port = (b.server.address() as AddressInfo).port;
  b.url = `http://127.0.0.1:${b.port}`;
  b.close = () =>
    new Promise<void>((resolve) => {
      b.server.closeAllConnections();
      b.server.close(() => resolve());
    });
  later(() => (b.server.listening ? b.close() : undefined));
  return b;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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

  it('remove stops probing; close stops everything', async () => {
    const a = await backend('a');
    const c = await backend('c');
    const { sh, checker } = setup({ active: ACTIVE, passive: PASSIVE });
    sh.add('a', Date.now());
    sh.add('c', Date.now());
    checker.add('a', a.url);
    checker.add('c', c.url);
    await waitFor(() => a.paths.length >= 2 && c.paths.length >= 2, { what: 'both probed twice', timeoutMs: 5000 });
    checker.remove('a');
    await waitFor(() => a.open === 0, { what: 'a has no open connection', timeoutMs: 5000 }); // a probe already sent may still land
    const seenA = a.paths.length;
    await sleep(250);
    expect(a.paths.length).toBe(seenA);
    expect(c.paths.length).toBeGreaterThan(2);
    expect(checker.ids()).toEqual(['c']);
    checker.close();
    await waitFor(() => c.open === 0, { what: 'c has no open connection', timeoutMs: 5000 });
    const seenC = c.paths.length;
    await sleep(250);
    expect(c.paths.length).toBe(seenC);
  });

  it('a changed URL probes the new address', async () => {
    const a = await backend('a');
    const b = await backend('b');
    const { sh, checker } = setup({ active: ACTIVE, passive: PASSIVE });
    sh.add('x', Date.now());
    checker.add('x', a.url);
    await waitFor(() => a.paths.length >= 1, { what: 'a probed', timeoutMs: 5000 });
    checker.add('x', b.url);
    await waitFor(() => b.paths.length >= 2, { what: 'b probed', timeoutMs: 5000 });
    await waitFor(() => a.open === 0, { what: 'a has no open connection', timeoutMs: 5000 });
    const seenA = a.paths.length;
    await sleep(200);
    expect(a.paths.length).toBe(seenA);
  });

  it('a shorter interval on reconfigure takes effect without waiting out the old one', async () => {
    const b = await backend('r');
    const { sh, checker } = setup({ active: { ...ACTIVE, interval: 60_000 }, passive: PASSIVE });
    sh.add('r', Date.now());
    checker.add('r', b.url);
    await waitFor(() => b.paths.length === 1, { what: 'first probe', timeoutMs: 5000 });
    await sleep(50);
    checker.reconfigure({ ...ACTIVE, interval: 40 });
    await waitFor(() => b.paths.length >= 3, { what: 'more probes', timeoutMs: 3000 });
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
    await waitFor(() => b.open === 0, { what: 'b has no open connection', timeoutMs: 5000 });
    const seenB = b.paths.length;
    await sleep(200);
    expect(b.paths.length).toBe(seenB);

    // active checks off: the checker stops, a stays available
    monitor.sync('web', { passive: PASSIVE }, [{ id: 'a', url: a.url, draining: false }]);
    await waitFor(() => a.open === 0, { what: 'a has no open connection', timeoutMs: 5000 });
    const seenA = a.paths.length;
    await sleep(200);
    expect(a.paths.length).toBe(seenA);
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
