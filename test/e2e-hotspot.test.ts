/**
 * End-to-end, balancing against hot spots (contract section 10): the real `bin/drover` in front
 * of real backends, driven by real clients. Backends name themselves in their bodies and count
 * their own concurrency, so assertions are about who answered and what each backend saw.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { browserTests, launch, noteSkipped, watchErrors } from './helpers/browser.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { BIN, startDrover, type DroverProcess } from './helpers/drover.js';
import { scrapeSum } from './helpers/metrics.js';
import { adminBackends } from './helpers/raw-backend.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();
const run = promisify(execFile);
noteSkipped('e2e-hotspot.test.ts (the dashboard part)');

async function backend(name: string): Promise<TestBackend> {
  const b = await startBackend(name);
  later(() => b.close());
  return b;
}

async function drover(yaml: string, env?: NodeJS.ProcessEnv): Promise<DroverProcess> {
  const d = await startDrover(yaml, env === undefined ? {} : { env });
  later(() => d.stop());
  return d;
}

/** Answers `name` after `delay()` ms, counting how many requests it holds at once (and the most). */
function delayed(b: TestBackend, delay: () => number): { max: () => number } {
  let now = 0;
  let max = 0;
  b.behave((_req, res) => {
    now++;
    if (now > max) max = now;
    res.on('close', () => now--);
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(b.name);
    }, delay());
  });
  return { max: () => max };
}

/** Holds every request until `release()`: the test decides when each is answered. */
function gated(b: TestBackend): { release: () => void; held: () => number } {
  const held: http.ServerResponse[] = [];
  b.behave((_req, res) => {
    held.push(res);
  });
  return {
    release: () => {
      for (const res of held.splice(0)) res.end(b.name);
    },
    held: () => held.length,
  };
}

/**
 * `concurrency` keep-alive clients sending requests back to back until `stop()`; every answer's
 * body (the backend's name) is passed to `seen`.
 */
function load(port: number, concurrency: number, seen: (body: string, status: number) => void): { stop: () => Promise<void> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        const r = await request(port, { agent });
        seen(r.body, r.status);
      } catch {
        // a refused or reset request counts as nothing
      }
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

const queueDepth = (d: DroverProcess): Promise<number> => scrapeSum(d.adminPort, 'drover_queue_depth', { service: 'web' });

describe('balancer: ewma', () => {
  it('shifts traffic off a backend that turns slow, and back when it recovers', async () => {
    const [a, b, c] = await Promise.all([backend('a'), backend('b'), backend('c')]);
    let slowB = false;
    // 20 ms normally; b takes 15 x as long while slowB (a wide margin: on a loaded machine drover
    // also sees the fast backends' answers late now and then)
    delayed(a, () => 20);
    delayed(b, () => (slowB ? 300 : 20));
    delayed(c, () => 20);
    const d = await drover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    balancer: ewma
    backends: [{url: ${a.url}, id: a}, {url: ${b.url}, id: b}, {url: ${c.url}, id: c}]
routes: [{match: {path_prefix: /}, service: web}]
`);
    let window = new Map<string, number>();
    const share = (name: string): number => {
      let total = 0;
      for (const n of window.values()) total += n;
      return total === 0 ? 0 : (window.get(name) ?? 0) / total;
    };
    const total = (): number => [...window.values()].reduce((s, n) => s + n, 0);
    const l = load(d.port, 8, (body) => window.set(body, (window.get(body) ?? 0) + 1));
    later(() => l.stop());
    await waitFor(() => total() >= 150, 20_000);
    expect(share('b')).toBeGreaterThan(0.15); // all equal: b has its share

    slowB = true;
    await new Promise((r) => setTimeout(r, 1000)); // b's in-flight requests come back slow
    window = new Map();
    await waitFor(() => total() >= 300, 30_000);
    // round_robin would keep sending b a third; ewma sends it only the odd probe
    expect(share('b')).toBeLessThan(0.12);
    const views = await adminBackends(d.adminPort);
    const latency = new Map(views.map((v) => [v.id, v.latency_ewma_ms]));
    expect(latency.get('b')).toBeGreaterThan(latency.get('a')!);

    slowB = false;
    // b's estimate decays (tau 10 s) until a probe lands; the probe's fast answer wins it back
    await waitFor(async () => {
      if (total() < 200) return false;
      const recovered = share('b') > 0.2;
      window = new Map();
      return recovered;
    }, 40_000);
    await l.stop();
  }, 90_000);
});

describe('max_conns and the queue', () => {
  it('max_conns is never exceeded under 200 concurrent clients; every request is answered once', async () => {
    const names = ['a', 'b', 'c'];
    const bs = await Promise.all(names.map((n) => backend(n)));
    const counters = bs.map((b) => delayed(b, () => 5 + Math.random() * 10));
    const d = await drover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    balancer: least_conn
    max_conns: 4
    queue: {size: 1000, timeout: 30s}
    backends: [${bs.map((b) => `{url: ${b.url}, id: ${b.name}}`).join(', ')}]
routes: [{match: {path_prefix: /}, service: web}]
`);
    const clients = 200;
    const perClient = 3;
    const answers = await Promise.all(
      Array.from({ length: clients }, async (_, i) => {
        const got: string[] = [];
        for (let k = 0; k < perClient; k++) {
          const r = await request(d.port, { headers: { 'x-req': `${i}-${k}` } });
          got.push(`${r.status} ${r.body}`);
        }
        return got;
      }),
    );
    const flat = answers.flat();
    expect(flat).toHaveLength(clients * perClient);
    expect(flat.filter((s) => !/^200 [abc]$/.test(s))).toEqual([]);
    // each backend's own count of concurrent requests stayed within the limit, and the limit bound
    for (const [i, c] of counters.entries()) expect(c.max(), names[i]).toBeLessThanOrEqual(4);
    expect(Math.max(...counters.map((c) => c.max()))).toBe(4);
    // no request lost or sent twice: every id reached exactly one backend, exactly once
    const ids = bs.flatMap((b) => b.seen.map((s) => String(s.headers['x-req'])));
    expect(ids).toHaveLength(clients * perClient);
    expect(new Set(ids).size).toBe(clients * perClient);
    expect(await scrapeSum(d.adminPort, 'drover_queue_wait_seconds_count', { service: 'web' })).toBeGreaterThan(0);
    expect(await queueDepth(d)).toBe(0);
    const views = await adminBackends(d.adminPort);
    expect(views.map((v) => v.max_conns)).toEqual([4, 4, 4]);
  }, 60_000);

  const one = (b: TestBackend, queue: string): string => `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    max_conns: 1
    ${queue}
    backends: [{url: ${b.url}, id: ${b.name}}]
routes: [{match: {path_prefix: /}, service: web}]
`;

  it('queued requests are dispatched in arrival order as the slot frees', async () => {
    const b = await backend('only');
    const gate = gated(b);
    const d = await drover(one(b, 'queue: {size: 10, timeout: 20s}'));
    const answers: Promise<unknown>[] = [request(d.port, { path: '/r0' })];
    await waitFor(() => gate.held() === 1);
    for (let i = 1; i <= 5; i++) {
      answers.push(request(d.port, { path: `/r${i}` }));
      // the next one is sent only once this one waits: the arrival order is certain
      await waitFor(async () => (await queueDepth(d)) === i);
    }
    expect(b.seen.map((s) => s.url)).toEqual(['/r0']);
    const api = (await (await fetch(`http://127.0.0.1:${d.adminPort}/api/services`)).json()) as { services: { name: string; queue_depth?: number }[] };
    expect(api.services.find((s) => s.name === 'web')?.queue_depth).toBe(5);
    for (let i = 1; i <= 5; i++) {
      gate.release();
      await waitFor(() => gate.held() === 1);
    }
    gate.release();
    const got = (await Promise.all(answers)) as { status: number; body: string }[];
    expect(got.map((r) => `${r.status} ${r.body}`)).toEqual(Array(6).fill('200 only'));
    expect(b.seen.map((s) => s.url)).toEqual(['/r0', '/r1', '/r2', '/r3', '/r4', '/r5']);
    expect(await queueDepth(d)).toBe(0);
  }, 30_000);

  /**
   * One gated backend behind `max_conns: 1` with `queue`, its one slot taken by `/first`:
   * `finish()` answers it and returns the backend's view of what reached it.
   */
  async function occupied(queue: string): Promise<{ d: DroverProcess; gate: ReturnType<typeof gated>; finish: () => Promise<string[]> }> {
    const b = await backend('only');
    const gate = gated(b);
    const d = await drover(one(b, queue));
    const first = request(d.port, { path: '/first' });
    await waitFor(() => gate.held() === 1);
    return {
      d,
      gate,
      finish: async () => {
        gate.release();
        expect((await first).body).toBe('only');
        return b.seen.map((s) => s.url);
      },
    };
  }

  it.each([
    ['a request that waits longer than queue.timeout gets 503 queue_timeout', 'queue: {size: 10, timeout: 300ms}', 'queue_timeout'],
    ['with queue size 0 a request finding every backend full gets 503 backend_saturated at once', '', 'backend_saturated'],
  ])('%s and never reaches the backend', async (_name, queue, error) => {
    const { d, finish } = await occupied(queue);
    const r = await request(d.port, { path: '/refused' });
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toEqual({ error, service: 'web' });
    expect(await finish()).toEqual(['/first']);
    expect(await queueDepth(d)).toBe(0);
  }, 30_000);

  it('a client that gives up leaves the queue at once and its request never reaches the backend', async () => {
    const { d, gate, finish } = await occupied('queue: {size: 10, timeout: 20s}');
    const abandoned = http.request({ host: '127.0.0.1', port: d.port, path: '/abandoned', agent: false });
    abandoned.on('error', () => undefined);
    abandoned.end();
    await waitFor(async () => (await queueDepth(d)) === 1);
    abandoned.destroy();
    // well before the 20 s timeout: the queue let go of it when the client did
    await waitFor(async () => (await queueDepth(d)) === 0, 5_000);
    expect(await finish()).toEqual(['/first']);
    // the slot is free again and the next request is served; the abandoned one never was
    const next = request(d.port, { path: '/next' });
    await waitFor(() => gate.held() === 1);
    gate.release();
    expect((await next).body).toBe('only');
    expect((await finish()).slice(1)).toEqual(['/next']);
  }, 30_000);
});

describe('zone_aware', () => {
  it('prefers the local zone (DROVER_ZONE) and spills over when it fails, and back', async () => {
    const [a1, b1, b2] = await Promise.all([backend('a1'), backend('b1'), backend('b2')]);
    let a1Down = false;
    a1.behave((req, res) => {
      if (req.url === '/healthz') {
        res.writeHead(a1Down ? 503 : 200);
        res.end();
        return;
      }
      res.end('a1');
    });
    const d = await drover(
      `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    zone_aware: true
    health:
      active: {path: /healthz, interval: 100ms, timeout: 1s, rise: 1, fall: 1}
    backends: [{url: ${a1.url}, id: a1, zone: a}, {url: ${b1.url}, id: b1, zone: b}, {url: ${b2.url}, id: b2, zone: b}]
routes: [{match: {path_prefix: /}, service: web}]
`,
      { DROVER_ZONE: 'a' },
    );
    const bodies = async (n: number): Promise<string[]> => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push((await request(d.port, { path: '/x' })).body);
      return out;
    };
    await waitFor(async () => (await adminBackends(d.adminPort)).every((v) => v.state === 'healthy'));
    expect(await bodies(12)).toEqual(Array(12).fill('a1'));

    a1Down = true;
    await waitFor(async () => (await adminBackends(d.adminPort)).find((v) => v.id === 'a1')?.state === 'unhealthy');
    const spilled = await bodies(12);
    expect(spilled.filter((s) => s !== 'b1' && s !== 'b2')).toEqual([]);
    expect(new Set(spilled)).toEqual(new Set(['b1', 'b2']));

    a1Down = false;
    await waitFor(async () => (await adminBackends(d.adminPort)).find((v) => v.id === 'a1')?.state === 'healthy');
    expect(await bodies(12)).toEqual(Array(12).fill('a1'));
  }, 30_000);

  it('without DROVER_ZONE every zone is used', async () => {
    const [a1, b1] = await Promise.all([backend('a1'), backend('b1')]);
    const d = await drover(
      `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    zone_aware: true
    backends: [{url: ${a1.url}, id: a1, zone: a}, {url: ${b1.url}, id: b1, zone: b}]
routes: [{match: {path_prefix: /}, service: web}]
`,
      { DROVER_ZONE: '' },
    );
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push((await request(d.port)).body);
    expect(got).toEqual(['a1', 'b1', 'a1', 'b1']);
  }, 30_000);
});

describe('each backend\'s EWMA latency and max_conns, as a real drover shows them', () => {
  it('in /api/services, drover status and the dashboard', async () => {
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    delayed(a, () => 30);
    const gate = gated(b);
    const d = await drover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    balancer: ewma
    max_conns: 4
    backends: [{url: ${a.url}, id: a}]
  held:
    max_conns: 2
    backends: [{url: ${b.url}, id: b}]
routes:
  - {match: {path_prefix: /held}, service: held}
  - {match: {path_prefix: /}, service: web}
`);
    // a answers in 30 ms; b holds both of its slots and has answered nothing yet
    for (let i = 0; i < 5; i++) expect((await request(d.port)).body).toBe('a');
    const held = [request(d.port, { path: '/held/1' }), request(d.port, { path: '/held/2' })];
    await waitFor(() => gate.held() === 2);
    const full = await request(d.port, { path: '/held/3' });
    expect([full.status, JSON.parse(full.body)]).toEqual([503, { error: 'backend_saturated', service: 'held' }]);

    const api = new Map((await adminBackends(d.adminPort)).map((v) => [v.id, v]));
    expect(api.get('a')?.latency_ewma_ms).toBeGreaterThanOrEqual(29);
    expect(api.get('a')?.max_conns).toBe(4);
    expect(api.get('b')?.latency_ewma_ms).toBeNull();
    expect([api.get('b')?.inflight, api.get('b')?.max_conns]).toEqual([2, 2]);

    // drover status: SERVICE BACKEND URL STATE WEIGHT INFLIGHT MAX-CONNS REQUESTS EWMA-MS ...
    const { stdout } = await run(process.execPath, [BIN, 'status', '--admin', `http://127.0.0.1:${d.adminPort}`], { timeout: 10_000 });
    const rows = stdout.trim().split('\n').map((l) => l.split(/\s+/));
    expect(rows[0]?.slice(5, 9)).toEqual(['INFLIGHT', 'MAX-CONNS', 'REQUESTS', 'EWMA-MS']);
    const row = (id: string): string[] => rows.find((r) => r[1] === id) ?? [];
    expect(row('a').slice(5, 8)).toEqual(['0', '4', '5']);
    expect(Number(row('a')[8])).toBeGreaterThanOrEqual(29);
    expect(row('b').slice(5, 9)).toEqual(['2', '2', '2', '-']);

    if (browserTests) {
      const browser = await launch();
      later(() => browser.close());
      const page = await browser.newPage();
      const errors = watchErrors(page);
      const cell = (id: string, col: string) => page.locator(`#svc-backends tr[data-backend="${id}"] td[data-col="${col}"]`);
      await page.goto(`http://127.0.0.1:${d.adminPort}/#/service/web`);
      await expect.poll(() => cell('a', 'inflight').textContent()).toBe('0 / 4');
      expect(Number(await cell('a', 'ewma').textContent())).toBeGreaterThanOrEqual(29);
      await page.goto(`http://127.0.0.1:${d.adminPort}/#/service/held`);
      await expect.poll(() => cell('b', 'inflight').textContent()).toBe('2 / 2');
      expect(await cell('b', 'ewma').textContent()).toBe('-');
      expect(errors).toEqual([]);
    }
    gate.release();
    expect((await Promise.all(held)).map((r) => r.body)).toEqual(['b', 'b']);
  }, 60_000);
});
