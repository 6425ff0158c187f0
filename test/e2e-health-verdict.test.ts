/**
 * End-to-end, issue 12: no request to an unverified backend, slow start on every recovery, one
 * owner of availability, services that leave. The real `bin/drover` in front of real backends on
 * 127.0.0.1 that name themselves; "sick" backends answer 503 on their health path and 200 on
 * everything else, so any request that reaches one is visible in what it saw.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { parseMetrics } from './helpers/metrics.js';
import { waitFor } from './helpers/wait.js';
import { freePort } from './helpers/etcd.js';

const TOKEN = 'test-token-12';
const AUTH = { authorization: `Bearer ${TOKEN}` };

/** A backend with a settable `/healthz` (status, and a delay before answering it). */
interface Node {
  readonly name: string;
  readonly url: string;
  readonly backend: TestBackend;
  health: number;
  healthDelayMs: number;
  /** when set, health checks are answered only once it resolves */
  gate?: Promise<void>;
  /** every non-health request it saw */
  readonly app: string[];
  readonly probes: number[];
}

async function node(name: string, health = 200, healthDelayMs = 0): Promise<Node> {
  const backend = await startBackend(name);
  const n: Node = { name, url: backend.url, backend, health, healthDelayMs, app: [], probes: [] };
  backend.behave((req, res) => {
    if (req.url === '/healthz') {
      n.probes.push(Date.now());
      const status = n.health;
      void Promise.resolve(n.gate).then(() =>
        setTimeout(() => {
          res.writeHead(status, { 'content-type': 'text/plain' });
          res.end(name);
        }, n.healthDelayMs),
      );
      return;
    }
    n.app.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(name);
  });
  return n;
}

interface BackendView {
  id: string;
  state: string;
  reason: string;
  weight: number;
}

async function servicesOf(adminPort: number): Promise<{ name: string; backends: BackendView[] }[]> {
  const a = await request(adminPort, { path: '/api/services' });
  return (JSON.parse(a.body) as { services: { name: string; backends: BackendView[] }[] }).services;
}

async function view(adminPort: number, svc: string, id: string): Promise<BackendView | undefined> {
  return (await servicesOf(adminPort)).find((s) => s.name === svc)?.backends.find((b) => b.id === id);
}

async function readyz(adminPort: number): Promise<number> {
  return (await request(adminPort, { path: '/readyz' })).status;
}

/** One answered request of a load loop. */
interface Result {
  readonly sentAt: number;
  readonly status: number;
  readonly body: string;
}

/**
 * `loops` clients sending GET `path` back to back on fresh connections until `stop()`. A refused
 * connection (nothing listening: a drover restarting) is retried after 5 ms and counted apart;
 * any other transport error is recorded in `errors` with the time it happened.
 */
function load(port: number, urlPath: string, loops = 4): { results: Result[]; errors: { at: number; err: string }[]; refused: () => number; stop: () => Promise<void> } {
  const results: Result[] = [];
  const errors: { at: number; err: string }[] = [];
  let refused = 0;
  let running = true;
  const loop = async (): Promise<void> => {
    while (running) {
      const sentAt = Date.now();
      try {
        const a = await request(port, { path: urlPath, timeoutMs: 10_000 });
        results.push({ sentAt, status: a.status, body: a.body });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') refused++;
        else errors.push({ at: Date.now(), err: String(err) });
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  };
  const all = Promise.all(Array.from({ length: loops }, () => loop()));
  return {
    results,
    errors,
    refused: () => refused,
    stop: async () => {
      running = false;
      await all;
    },
  };
}

/** A log line's time in epoch ms (pino writes an ISO string or a number). */
function logTime(line: Record<string, unknown>): number {
  const t = line['time'];
  return typeof t === 'number' ? t : Date.parse(String(t));
}

/** When drover logged `id` becoming healthy (its first verdict); fails the test if it did not. */
function verdictAt(d: DroverProcess, id: string): number {
  const line = d.logs.find((l) => l['msg'] === 'health transition' && l['backend'] === id && l['to'] === 'healthy');
  if (line === undefined) throw new Error(`no verdict logged for ${id}`);
  return logTime(line);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const later = cleanupAfterEach();

function webYaml(listen: string, good: Node, sick: Node): string {
  return `
listen: [{address: ${listen}}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    health:
      active: {path: /healthz, interval: 300ms, timeout: 2s, rise: 2, fall: 3}
    backends: [{url: ${good.url}, id: good}, {url: ${sick.url}, id: sick}]
routes: [{match: {path_prefix: /}, service: web}]
`;
}

describe('verdict before traffic, at start', () => {
  it('a sick backend gets no request at start; /readyz waits for the first verdicts; early requests wait and are served', async () => {
    // The good backend's first check takes 700 ms: requests that arrive before it must wait for
    // it (panic mode must not send them to the sick one, which is judged within milliseconds).
    const good = await node('good', 200, 700);
    const sick = await node('sick', 503);
    later(() => Promise.all([good.backend.close(), sick.backend.close()]));
    const d = await startDrover(webYaml('127.0.0.1:0', good, sick));
    later(() => d.stop());
    const traffic = load(d.port, '/app');
    expect(await readyz(d.adminPort)).toBe(503);
    await waitFor(async () => (await readyz(d.adminPort)) === 200);
    await sleep(300);
    await traffic.stop();

    expect(traffic.errors).toEqual([]);
    expect(traffic.results.length).toBeGreaterThan(4);
    expect(new Set(traffic.results.map((r) => `${r.status} ${r.body}`))).toEqual(new Set(['200 good']));
    expect(sick.app).toEqual([]);
    // some were sent before the good backend's verdict (its check takes 700 ms): they waited for it
    expect(traffic.results.some((r) => r.sentAt < verdictAt(d, 'good'))).toBe(true);
    expect(await view(d.adminPort, 'web', 'good')).toMatchObject({ state: 'healthy', reason: 'first check passed' });
    expect(await view(d.adminPort, 'web', 'sick')).toMatchObject({ state: 'unhealthy', reason: 'first check failed: status 503' });
  });

  it('restarting drover under load loses no request and sends none to an unverified backend', async () => {
    const good = await node('good', 200, 600);
    const sick = await node('sick', 503);
    later(() => Promise.all([good.backend.close(), sick.backend.close()]));
    const port = await freePort();
    const yaml = webYaml(`127.0.0.1:${port}`, good, sick);
    const first = await startDrover(yaml);
    later(() => first.stop());
    await waitFor(async () => (await readyz(first.adminPort)) === 200);
    const traffic = load(port, '/app');
    await sleep(400);
    // SIGTERM: the old process stops accepting and finishes what it has in flight. Only while it
    // closes may a connection it never accepted be reset (that is the kernel, not drover).
    const stopAt = Date.now();
    await first.stop();
    const stoppedAt = Date.now();
    const secondAt = Date.now();
    const second = await startDrover(yaml);
    later(() => second.stop());
    await waitFor(async () => (await readyz(second.adminPort)) === 200);
    await sleep(300);
    await traffic.stop();

    const unexpected = traffic.errors.filter((e) => e.at < stopAt || e.at > stoppedAt);
    expect(unexpected).toEqual([]);
    expect(new Set(traffic.results.map((r) => `${r.status} ${r.body}`))).toEqual(new Set(['200 good']));
    const toSecond = traffic.results.filter((r) => r.sentAt >= secondAt);
    expect(toSecond.length).toBeGreaterThan(4);
    // requests reached the new drover before its first verdict and waited for it
    expect(toSecond.some((r) => r.sentAt < verdictAt(second, 'good'))).toBe(true);
    expect(sick.app).toEqual([]);
  });
});

describe('slow start on an early recovery (HAProxy rule, no warm-up window)', () => {
  it('a backend that recovers 1 s after start ramps: a small share of the first 40 requests, its full share after the window', async () => {
    const s1 = await node('s1');
    const s2 = await node('s2', 500);
    later(() => Promise.all([s1.backend.close(), s2.backend.close()]));
    const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  ramp:
    panic_threshold: 0
    slow_start: 6s
    health:
      active: {path: /healthz, interval: 100ms, timeout: 1s, rise: 1, fall: 3}
    backends: [{url: ${s1.url}, id: s1}, {url: ${s2.url}, id: s2}]
routes: [{match: {path_prefix: /}, service: ramp}]
`);
    later(() => d.stop());
    await waitFor(async () => (await view(d.adminPort, 'ramp', 's2'))?.state === 'unhealthy');
    await sleep(700);
    s2.health = 200;
    await waitFor(async () => (await view(d.adminPort, 'ramp', 's2'))?.state === 'healthy', 5000);
    const recoveredAt = Date.now();
    const first: string[] = [];
    for (let i = 0; i < 40; i++) first.push((await request(d.port, { path: '/r' })).body);
    const firstShare = first.filter((b) => b === 's2').length;
    // full share would be 20 of 40; early in a 6 s ramp its weight is a fraction of the other's
    expect(firstShare).toBeLessThan(12);
    expect(firstShare).toBeGreaterThan(0);
    await sleep(Math.max(0, recoveredAt + 6500 - Date.now()));
    const after: string[] = [];
    for (let i = 0; i < 40; i++) after.push((await request(d.port, { path: '/r' })).body);
    expect(after.filter((b) => b === 's2').length).toBe(20);
  });
});

describe('one drover: a reload that adds a service, registry joins, the drain sequence, services that leave', () => {
  let d: DroverProcess;
  const n: Record<string, Node> = {};

  function yaml(withLate: boolean): string {
    return `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry: {file: services.yaml}
services:
  web:
    backends: [{url: ${n['w1']?.url}, id: w1}]
  reg:
    health:
      active: {path: /healthz, interval: 300ms, timeout: 2s, rise: 2, fall: 3}
  dr:
    health:
      active: {path: /healthz, interval: 100ms, timeout: 2s, rise: 1, fall: 3}
${
  withLate
    ? `  late:
    health:
      active: {path: /healthz, interval: 300ms, timeout: 2s, rise: 2, fall: 3}
    backends: [{url: ${n['late-good']?.url}, id: late-good}, {url: ${n['late-sick']?.url}, id: late-sick}]
`
    : ''
}routes:
  - {match: {path_prefix: /reg}, service: reg}
  - {match: {path_prefix: /dr}, service: dr}
  - {match: {path_prefix: /tmp}, service: tmp}
${withLate ? '  - {match: {path_prefix: /late}, service: late}\n' : ''}  - {match: {path_prefix: /}, service: web}
`;
  }

  interface FileState {
    reg: boolean;
    drDraining: boolean;
    tmp: boolean;
  }
  function registry(s: FileState): string {
    const lines = ['services:'];
    lines.push(`  dr:\n    backends: [{url: ${n['dr1']?.url}, id: dr1, draining: ${s.drDraining}}, {url: ${n['dr2']?.url}, id: dr2}]`);
    if (s.reg) lines.push(`  reg:\n    backends: [{url: ${n['reg-good']?.url}, id: reg-good}, {url: ${n['reg-sick']?.url}, id: reg-sick}]`);
    if (s.tmp) lines.push(`  tmp:\n    backends: [{url: ${n['t1']?.url}, id: t1}]`);
    return `${lines.join('\n')}\n`;
  }
  function writeRegistry(s: FileState): void {
    const file = path.join(d.dir, 'services.yaml');
    fs.writeFileSync(`${file}.tmp`, registry(s));
    fs.renameSync(`${file}.tmp`, file);
  }

  beforeAll(async () => {
    n['w1'] = await node('w1');
    n['late-good'] = await node('late-good', 200, 800);
    n['late-sick'] = await node('late-sick', 503);
    n['reg-good'] = await node('reg-good', 200, 300);
    n['reg-sick'] = await node('reg-sick', 503);
    n['dr1'] = await node('dr1');
    n['dr2'] = await node('dr2');
    n['t1'] = await node('t1');
    d = await startDrover(yaml(false), { env: { DROVER_ADMIN_TOKEN: TOKEN }, files: { 'services.yaml': registry({ reg: false, drDraining: false, tmp: true }) } });
  });

  afterAll(async () => {
    await d?.stop();
    await Promise.all(Object.values(n).map((x) => x.backend.close()));
  });

  it('a reload that adds a service with a sick backend: requests wait for the verdicts, none reaches the sick one', async () => {
    const traffic = load(d.port, '/late/x');
    await waitFor(() => traffic.results.some((r) => r.body === 'w1'));
    const reloads = d.logs.filter((l) => l['msg'] === 'config reloaded').length;
    d.writeConfig(yaml(true));
    await waitFor(() => d.logs.filter((l) => l['msg'] === 'config reloaded').length > reloads);
    const reloaded = d.logs.filter((l) => l['msg'] === 'config reloaded')[reloads] as Record<string, unknown>;
    await waitFor(() => traffic.results.filter((r) => r.body === 'late-good').length >= 5);
    await traffic.stop();
    expect(traffic.errors).toEqual([]);
    // before the reload /late/x went to web (the catch-all route), after it to late-good only
    expect(new Set(traffic.results.map((r) => `${r.status} ${r.body}`))).toEqual(new Set(['200 w1', '200 late-good']));
    const afterReload = traffic.results.filter((r) => r.sentAt > logTime(reloaded));
    expect(new Set(afterReload.map((r) => r.body))).toEqual(new Set(['late-good']));
    expect(afterReload.length).toBeGreaterThan(0);
    expect(n['late-sick']?.app).toEqual([]);
  });

  it('backends that join through the registry, one of them sick: it gets no request', async () => {
    const traffic = load(d.port, '/reg/x');
    await waitFor(() => traffic.results.some((r) => r.status === 503));
    writeRegistry({ reg: true, drDraining: false, tmp: true });
    const joined = await d.waitForLog((l) => l['msg'] === 'pool changed' && l['service'] === 'reg');
    const joinedAt = logTime(joined);
    await waitFor(() => traffic.results.filter((r) => r.body === 'reg-good').length >= 5);
    await traffic.stop();
    expect(traffic.errors).toEqual([]);
    const afterJoin = traffic.results.filter((r) => r.sentAt > joinedAt);
    expect(afterJoin.length).toBeGreaterThan(4);
    expect(new Set(afterJoin.map((r) => `${r.status} ${r.body}`))).toEqual(new Set(['200 reg-good']));
    expect(n['reg-sick']?.app).toEqual([]);
    expect(await view(d.adminPort, 'reg', 'reg-sick')).toMatchObject({ state: 'unhealthy' });
  });

  it('admin drain, then the registry sets and clears draining: consistent everywhere, no false transition', async () => {
    const dr1 = n['dr1'] as Node;
    await waitFor(async () => {
      const [a, b] = [await view(d.adminPort, 'dr', 'dr1'), await view(d.adminPort, 'dr', 'dr2')];
      return a?.state === 'healthy' && b?.state === 'healthy';
    });
    const drained = await request(d.adminPort, { method: 'POST', path: '/api/services/dr/backends/dr1/drain', headers: AUTH });
    expect(drained.status).toBe(200);
    expect(JSON.parse(drained.body)).toMatchObject({ id: 'dr1', state: 'draining', reason: 'drained through the admin API' });

    writeRegistry({ reg: true, drDraining: true, tmp: true });
    await waitFor(async () => (await view(d.adminPort, 'dr', 'dr1'))?.reason === 'draining (registry); drained through the admin API');
    writeRegistry({ reg: true, drDraining: false, tmp: true });
    await waitFor(async () => (await view(d.adminPort, 'dr', 'dr1'))?.reason === 'drained through the admin API');
    // health, the pool (who gets requests) and /metrics agree: still drained
    expect((await view(d.adminPort, 'dr', 'dr1'))?.state).toBe('draining');
    const seen = dr1.app.length;
    for (let i = 0; i < 8; i++) expect((await request(d.port, { path: '/dr/x' })).body).toBe('dr2');
    expect(dr1.app.length).toBe(seen);
    const series = parseMetrics((await request(d.adminPort, { path: '/metrics' })).body);
    expect(series.find((s) => s.name === 'drover_backend_up' && s.labels['backend'] === 'dr1')?.value).toBe(0);

    const undrained = await request(d.adminPort, { method: 'POST', path: '/api/services/dr/backends/dr1/undrain', headers: AUTH });
    expect(JSON.parse(undrained.body)).toMatchObject({ id: 'dr1', state: 'healthy', reason: 'undrained through the admin API' });
    const bodies = new Set<string>();
    for (let i = 0; i < 8; i++) bodies.add((await request(d.port, { path: '/dr/x' })).body);
    expect(bodies).toEqual(new Set(['dr1', 'dr2']));
    const after = parseMetrics((await request(d.adminPort, { path: '/metrics' })).body);
    expect(after.find((s) => s.name === 'drover_backend_up' && s.labels['backend'] === 'dr1')?.value).toBe(1);
    const transitions = d.logs.filter((l) => l['msg'] === 'health transition' && l['backend'] === 'dr1').map((l) => `${String(l['from'])}->${String(l['to'])}`);
    expect(transitions).toEqual(['unknown->healthy', 'healthy->draining', 'draining->healthy']);
  });

  it('a service that leaves the registry (and one that leaves the config) is retired: no admin entry, no series in /metrics', async () => {
    for (let i = 0; i < 3; i++) expect((await request(d.port, { path: '/tmp/x' })).body).toBe('t1');
    expect((await request(d.port, { path: '/late/x' })).body).toBe('late-good');
    const hasSeries = async (svc: string): Promise<boolean> =>
      parseMetrics((await request(d.adminPort, { path: '/metrics' })).body).some((s) => s.labels['service'] === svc);
    expect(await hasSeries('tmp')).toBe(true);
    expect(await hasSeries('late')).toBe(true);

    // the config first: once tmp has left the registry file, a route naming it fails `check`
    const reloads = d.logs.filter((l) => l['msg'] === 'config reloaded').length;
    d.writeConfig(yaml(false));
    await waitFor(() => d.logs.filter((l) => l['msg'] === 'config reloaded').length > reloads);
    await d.waitForLog((l) => l['msg'] === 'service retired' && l['service'] === 'late');
    writeRegistry({ reg: true, drDraining: false, tmp: false });
    await d.waitForLog((l) => l['msg'] === 'service retired' && l['service'] === 'tmp');

    const names = (await servicesOf(d.adminPort)).map((s) => s.name);
    expect(names).not.toContain('tmp');
    expect(names).not.toContain('late');
    await waitFor(async () => !(await hasSeries('tmp')) && !(await hasSeries('late')), 5000);
    // a route that still names the retired service answers 503, as for any service with no backend
    const a = await request(d.port, { path: '/tmp/x' });
    expect(a.status).toBe(503);
    expect(JSON.parse(a.body)).toEqual({ error: 'no_available_backend', service: 'tmp' });
    expect(await hasSeries('tmp')).toBe(false);
  });
});

describe('the same rules with workers: 2 (verdicts and drains reach the workers through the primary)', () => {
  it('a sick backend gets no request at start; an admin drain holds through a registry drain and undrain', async () => {
    // good's first check is held until requests have arrived: they come while it is pending and
    // sick is judged (other serves them; panic must not bring sick in)
    const good = await node('good');
    let release = (): void => undefined;
    good.gate = new Promise((resolve) => (release = resolve));
    const sick = await node('sick', 503);
    const other = await node('other');
    later(() => Promise.all([good.backend.close(), sick.backend.close(), other.backend.close()]));
    const file = (draining: boolean): string => `services:\n  web:\n    backends: [{url: ${other.url}, id: other, draining: ${draining}}]\n`;
    const d = await startDrover(
      `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
workers: 2
registry: {file: services.yaml}
services:
  web:
    health:
      active: {path: /healthz, interval: 300ms, timeout: 10s, rise: 2, fall: 3}
    backends: [{url: ${good.url}, id: good}, {url: ${sick.url}, id: sick}]
routes: [{match: {path_prefix: /}, service: web}]
`,
      { env: { DROVER_ADMIN_TOKEN: TOKEN }, files: { 'services.yaml': file(false) } },
    );
    later(() => d.stop());
    const traffic = load(d.port, '/app');
    await waitFor(() => traffic.results.length >= 10);
    release();
    await waitFor(async () => (await readyz(d.adminPort)) === 200);
    await sleep(300);
    await traffic.stop();
    expect(traffic.errors).toEqual([]);
    expect(new Set(traffic.results.map((r) => `${r.status} ${r.body}`))).toEqual(new Set(['200 good', '200 other']));
    expect(traffic.results.some((r) => r.sentAt < verdictAt(d, 'good'))).toBe(true);
    expect(sick.app).toEqual([]);

    expect((await request(d.adminPort, { method: 'POST', path: '/api/services/web/backends/other/drain', headers: AUTH })).status).toBe(200);
    const registry = path.join(d.dir, 'services.yaml');
    for (const draining of [true, false]) {
      fs.writeFileSync(`${registry}.tmp`, file(draining));
      fs.renameSync(`${registry}.tmp`, registry);
      const want = draining ? 'draining (registry); drained through the admin API' : 'drained through the admin API';
      await waitFor(async () => (await view(d.adminPort, 'web', 'other'))?.reason === want);
    }
    await sleep(100); // the primary's snapshot reaches the workers within a turn of its loop
    const seen = other.app.length;
    for (let i = 0; i < 10; i++) expect((await request(d.port, { path: '/x' })).body).toBe('good');
    expect(other.app.length).toBe(seen);
    const transitions = d.logs.filter((l) => l['msg'] === 'health transition' && l['backend'] === 'other').map((l) => `${String(l['from'])}->${String(l['to'])}`);
    expect(transitions).toEqual(['unknown->healthy', 'healthy->draining']);
  });
});
