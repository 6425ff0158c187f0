/**
 * End-to-end observability (issue 5): the real `bin/drover` in front of real backends on
 * 127.0.0.1, checked from the outside only: `/metrics` text, the access log file, the admin API,
 * `drover status`, and the dashboard in a real chromium. Every count is compared with what the
 * test itself sent or what the backends themselves saw.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { REFUSING_PORT, request, startBackend, type TestBackend } from './helpers/backends.js';
import { BIN, startDrover, type DroverProcess } from './helpers/drover.js';
import { parseMetrics, seriesValue, type Series } from './helpers/metrics.js';
import { waitFor } from './helpers/wait.js';

const run = promisify(execFile);
const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const browserTests = haveChromium || process.env['CI'] === 'true';
if (!browserTests) console.warn(`e2e-observability.test.ts: ${CHROMIUM} not found, the dashboard test is skipped (apt-get install -y chromium)`);

// ---- Prometheus text parsing ---------------------------------------------------------------

/** Contract section 5: every drover_ metric and its exact label set. */
const CONTRACT: Record<string, string[]> = {
  drover_requests_total: ['backend', 'code', 'service'],
  drover_request_duration_seconds: ['service'],
  drover_upstream_errors_total: ['backend', 'kind', 'service'],
  drover_backend_up: ['backend', 'service'],
  drover_backend_inflight: ['backend', 'service'],
  drover_retries_total: ['service'],
  drover_health_transitions_total: ['service', 'to'],
  drover_registry_events_total: ['source', 'type'],
  drover_registry_connected: ['source'],
  drover_registry_invalid_entries_total: ['source'],
  drover_config_reloads_total: ['result'],
};

// ---- helpers ---------------------------------------------------------------------------------

async function getText(port: number, p: string): Promise<string> {
  const res = await request(port, { path: p });
  expect(res.status, `GET ${p}`).toBe(200);
  return res.body;
}

async function scrape(d: DroverProcess): Promise<Series[]> {
  return parseMetrics(await getText(d.adminPort, '/metrics'));
}

interface ApiBackend {
  id: string;
  state: string;
  requests: number;
}
async function apiBackends(d: DroverProcess, service: string): Promise<ApiBackend[]> {
  const body = JSON.parse(await getText(d.adminPort, '/api/services')) as { services: { name: string; backends: ApiBackend[] }[] };
  return body.services.find((s) => s.name === service)?.backends ?? [];
}

function lines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The access log fields, in the order drover writes them (`error` only on failures). */
const FIELDS = ['time', 'request_id', 'client', 'method', 'host', 'path', 'route', 'service', 'backend', 'status', 'duration_ms', 'bytes_in', 'bytes_out', 'retries', 'protocol'];

// ---- the main drover ---------------------------------------------------------------------------

let a: TestBackend;
let b: TestBackend;
let boom: TestBackend;
let doomed: TestBackend;
let c: TestBackend;
let d: TestBackend;
let dead: number;
let drover: DroverProcess;

function mainConfig(extra = ''): string {
  return `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: access.log
registry: {file: services.yaml}
services:
  web:
    # generous timeout and fall: a loaded CI machine must not flap these (the test counts transitions)
    health: {active: {path: /, interval: 150ms, timeout: 2s, rise: 1, fall: 3}}
    backends: [{url: ${a.url}, id: a}, {url: ${b.url}, id: b}]
  flaky:
    retries: 1
    balancer: round_robin
    backends: [{url: http://127.0.0.1:${dead}, id: dead}, {url: ${a.url}, id: a}]
  boom:
    retries: 0
    backends: [{url: ${boom.url}, id: boom}]
  hc:
    health: {active: {path: /, interval: 100ms, timeout: 2s, rise: 1, fall: 2}}
    backends: [{url: ${doomed.url}, id: doomed}]
  dash:
    backends: [{url: ${c.url}, id: c}, {url: ${d.url}, id: d}]
routes:
  - match: {path_prefix: /flaky}
    service: flaky
  - match: {path_prefix: /boom}
    service: boom
  - match: {path_prefix: /churn}
    service: churn
  - match: {path_prefix: /dash}
    service: dash
  - match: {path_prefix: /web}
    service: web
    request_headers: {set: {Authorization: "Bearer s3cret-upstream-token", X-Env: prod-visible}}
  - match: {path_prefix: /keyed, headers: {X-Api-Key: k3y-in-match}}
    service: web
${extra}`;
}

function churnFile(ids: string[]): string {
  const rows = ids.map((id) => `      - {url: ${a.url}, id: ${id}}`).join('\n');
  return `services:\n  churn:\n    backends:\n${rows}\n`;
}

beforeAll(async () => {
  a = await startBackend('a');
  b = await startBackend('b');
  boom = await startBackend('boom');
  boom.behave((_req, res) => {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end('boom');
  });
  doomed = await startBackend('doomed');
  c = await startBackend('c');
  d = await startBackend('d');
  dead = REFUSING_PORT;
  drover = await startDrover(mainConfig(), { files: { 'services.yaml': churnFile(['keep']) } });
  await waitFor(async () => (await apiBackends(drover, 'web')).every((x) => x.state === 'healthy'), { what: 'web backends healthy' });
  await waitFor(async () => (await apiBackends(drover, 'hc')).every((x) => x.state === 'healthy'), { what: 'hc backend healthy' });
});

afterAll(async () => {
  await drover?.stop();
  for (const s of [a, b, boom, doomed, c, d]) await s?.close();
});

describe('/metrics of the real proxy', () => {
  it('has every contract metric with exactly its labels, counting what was sent, plus process metrics', async () => {
    for (let i = 0; i < 10; i++) expect((await request(drover.port, { path: '/web/x' })).status).toBe(200);
    // flaky: round robin over [dead, a] with retries 1: each request answered by a, some retried.
    for (let i = 0; i < 4; i++) expect((await request(drover.port, { path: '/flaky' })).body).toBe('a');
    for (let i = 0; i < 3; i++) expect((await request(drover.port, { path: '/boom' })).status).toBe(500);
    const toA = a.seen.filter((r) => r.url === '/web/x').length;
    const toB = b.seen.filter((r) => r.url === '/web/x').length;
    expect(toA + toB).toBe(10);
    expect(toA).toBeGreaterThan(0); // both backends served: the per-backend counts below are not trivial
    expect(toB).toBeGreaterThan(0);

    const s = await scrape(drover);
    for (const [name, labels] of Object.entries(CONTRACT)) {
      const series = s.filter((x) => x.name === name || x.name === `${name}_bucket` || x.name === `${name}_sum` || x.name === `${name}_count`);
      expect(series.length, `${name} has series`).toBeGreaterThan(0);
      for (const x of series) expect(Object.keys(x.labels).filter((k) => k !== 'le').sort(), `${name} labels`).toEqual(labels);
    }
    expect(seriesValue(s, 'drover_requests_total', { service: 'web', backend: 'a', code: '200' })).toBe(toA);
    expect(seriesValue(s, 'drover_requests_total', { service: 'web', backend: 'b', code: '200' })).toBe(toB);
    expect(seriesValue(s, 'drover_requests_total', { service: 'flaky', backend: 'a', code: '200' })).toBe(4);
    expect(seriesValue(s, 'drover_requests_total', { service: 'boom', backend: 'boom', code: '500' })).toBe(3);
    expect(seriesValue(s, 'drover_upstream_errors_total', { service: 'boom', backend: 'boom', kind: 'status' })).toBe(3);
    const connectErrors = seriesValue(s, 'drover_upstream_errors_total', { service: 'flaky', backend: 'dead', kind: 'connect' }) ?? 0;
    expect(connectErrors).toBeGreaterThanOrEqual(1);
    expect(seriesValue(s, 'drover_retries_total', { service: 'flaky' })).toBe(connectErrors);
    expect(seriesValue(s, 'drover_retries_total', { service: 'web' })).toBe(0);
    expect(seriesValue(s, 'drover_request_duration_seconds_count', { service: 'web' })).toBe(10);
    expect(seriesValue(s, 'drover_request_duration_seconds_bucket', { service: 'web', le: '+Inf' })).toBe(10);
    expect(seriesValue(s, 'drover_backend_up', { service: 'web', backend: 'a' })).toBe(1);
    expect(seriesValue(s, 'drover_backend_inflight', { service: 'web', backend: 'a' })).toBe(0);
    expect(seriesValue(s, 'drover_registry_connected', { source: 'file' })).toBe(1);
    expect(seriesValue(s, 'drover_registry_events_total', { source: 'file', type: 'resync' })).toBeGreaterThanOrEqual(1);
    expect(seriesValue(s, 'drover_registry_invalid_entries_total', { source: 'file' })).toBe(0);
    expect(seriesValue(s, 'drover_health_transitions_total', { service: 'web', to: 'healthy' })).toBe(2);
    // No request went through a service-level pseudo backend, so it exports nothing.
    expect(s.filter((x) => x.labels['backend'] === '')).toEqual([]);
    // prom-client's default process metrics
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect(s.some((x) => x.name === name), name).toBe(true);
    }
  });

  it('drops the series of removed backends: 50 backends added and removed 3 times, no growth', async () => {
    const churnSeries = (s: Series[]) => s.filter((x) => x.labels['service'] === 'churn' && x.labels['backend'] !== undefined && x.labels['backend'] !== 'keep');
    const sizes: number[] = [];
    for (let round = 0; round < 3; round++) {
      const ids = Array.from({ length: 50 }, (_, i) => `r${round}-${i}`);
      writeFileSync(path.join(drover.dir, 'services.yaml'), churnFile(['keep', ...ids]));
      await waitFor(async () => (await apiBackends(drover, 'churn')).length === 51, { what: `round ${round}: 51 churn backends` });
      // 102 requests over 51 backends, round robin: every backend answers twice.
      for (let i = 0; i < 102; i++) expect((await request(drover.port, { path: '/churn' })).body).toBe('a');
      const during = await scrape(drover);
      const withTraffic = new Set(churnSeries(during).filter((x) => x.name === 'drover_requests_total').map((x) => x.labels['backend']));
      expect(withTraffic.size).toBe(50);
      expect(churnSeries(during).length).toBeGreaterThanOrEqual(50 * 7); // requests, 4 error kinds, up, inflight

      writeFileSync(path.join(drover.dir, 'services.yaml'), churnFile(['keep']));
      await waitFor(async () => (await apiBackends(drover, 'churn')).length === 1, { what: `round ${round}: churn back to 1 backend` });
      await waitFor(async () => churnSeries(await scrape(drover)).length === 0, { what: `round ${round}: series of removed backends gone` });
      // the drover_ series only: process metrics (GC, handles) vary on their own
      sizes.push((await scrape(drover)).filter((x) => x.name.startsWith('drover_')).length);
    }
    // Round 1 may add the service-level series of `churn` and `keep`'s; after that, no growth.
    expect(sizes[2]).toBe(sizes[0]);
    expect(sizes[1]).toBe(sizes[0]);
    const after = await scrape(drover);
    expect(seriesValue(after, 'drover_requests_total', { service: 'churn', backend: 'keep', code: '200' })).toBe(6);
  });

  it('counts health transitions and lists them with reasons in /api/events', async () => {
    const s0 = await scrape(drover);
    expect((await apiBackends(drover, 'hc'))[0]?.state).toBe('healthy');
    expect(seriesValue(s0, 'drover_health_transitions_total', { service: 'hc', to: 'unhealthy' })).toBeUndefined();
    await doomed.close();
    await waitFor(async () => (await apiBackends(drover, 'hc'))[0]?.state === 'unhealthy', { what: 'hc/doomed unhealthy' });
    const s1 = await scrape(drover);
    expect(seriesValue(s1, 'drover_health_transitions_total', { service: 'hc', to: 'unhealthy' })).toBe(1);
    expect(seriesValue(s1, 'drover_health_transitions_total', { service: 'hc', to: 'healthy' })).toBe(1);
    expect(seriesValue(s1, 'drover_backend_up', { service: 'hc', backend: 'doomed' })).toBe(0);
    const events = (JSON.parse(await getText(drover.adminPort, '/api/events')) as { events: { service: string; backend: string; from: string; to: string; reason: string; at: string }[] }).events;
    const mine = events.filter((e) => e.service === 'hc' && e.backend === 'doomed').map((e) => [e.from, e.to]);
    expect(mine).toEqual([
      ['unknown', 'healthy'],
      ['healthy', 'unhealthy'],
    ]);
    const down = events.find((e) => e.service === 'hc' && e.to === 'unhealthy');
    expect(down?.reason).not.toBe('');
    expect(Number.isNaN(Date.parse(down?.at ?? ''))).toBe(false);
  });

  it('/api/config shows the effective config with secrets redacted', async () => {
    const text = await getText(drover.adminPort, '/api/config');
    expect(text).not.toContain('s3cret-upstream-token');
    expect(text).not.toContain('k3y-in-match');
    expect(text).toContain('prod-visible');
    expect(text).toContain('[redacted]');
    const body = JSON.parse(text) as { config: { services: { name: string }[] } };
    expect(body.config.services.map((x) => x.name)).toEqual(['web', 'flaky', 'boom', 'hc', 'dash']);
  });

  it('drover status --admin prints the backends of the real proxy', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'status', '--admin', `http://127.0.0.1:${drover.adminPort}`], { timeout: 10_000 });
    const rows = stdout.trim().split('\n').map((l) => l.split(/\s+/));
    expect(rows[0]?.slice(0, 4)).toEqual(['SERVICE', 'BACKEND', 'URL', 'STATE']);
    const web = rows.filter((r) => r[0] === 'web').map((r) => r.slice(0, 4));
    expect(web).toEqual([
      ['web', 'a', a.url, 'healthy'],
      ['web', 'b', b.url, 'healthy'],
    ]);
    const webA = await apiBackends(drover, 'web');
    // columns: SERVICE BACKEND URL STATE WEIGHT INFLIGHT MAX-CONNS REQUESTS EWMA-MS LAST-CHANGE
    expect(rows.find((r) => r[0] === 'web' && r[1] === 'a')?.[7]).toBe(String(webA.find((x) => x.id === 'a')?.requests));
    expect(rows.some((r) => r[0] === 'churn' && r[1] === 'keep')).toBe(true);
  });
});

describe('access log of the real proxy', () => {
  it('writes one line per request with every field, and reopens the file on SIGUSR1 after mv', async () => {
    const file = path.join(drover.dir, 'access.log');
    const start = lines(file).length;
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      const id = `get-${i}`;
      sent.push(id);
      expect((await request(drover.port, { path: `/web/get?i=${i}`, headers: { 'x-request-id': id, host: 'app.test:8080' } })).status).toBe(200);
    }
    const body = 'hello world';
    expect((await request(drover.port, { method: 'POST', path: '/web/post', body, headers: { 'x-request-id': 'post-1', 'content-type': 'text/plain' } })).status).toBe(200);
    expect((await request(drover.port, { path: '/nowhere', headers: { 'x-request-id': 'miss-1' } })).status).toBe(404);
    expect((await request(drover.port, { path: '/boom', headers: { 'x-request-id': 'boom-1' } })).status).toBe(500);
    await waitFor(() => lines(file).length >= start + 8, { what: '8 access log lines' });
    await new Promise((r) => setTimeout(r, 200));
    const got = lines(file).slice(start);
    expect(got.map((l) => l['request_id'])).toEqual([...sent, 'post-1', 'miss-1', 'boom-1']);
    for (const l of got) {
      expect(Object.keys(l).filter((k) => k !== 'error')).toEqual(FIELDS);
      expect(Number.isNaN(Date.parse(String(l['time'])))).toBe(false);
      expect(l['client']).toBe('127.0.0.1');
      expect(typeof l['duration_ms']).toBe('number');
    }
    const get0 = got[0]!;
    expect(get0).toMatchObject({ method: 'GET', host: 'app.test:8080', path: '/web/get?i=0', route: 4, service: 'web', status: 200, bytes_in: 0, retries: 0 });
    expect(['a', 'b']).toContain(get0['backend']);
    expect(get0['bytes_out']).toBe(1); // body "a" or "b"
    expect(get0['duration_ms']).toBeGreaterThan(0);
    const post = got[5]!;
    expect(post).toMatchObject({ method: 'POST', path: '/web/post', service: 'web', status: 200, bytes_in: Buffer.byteLength(body), bytes_out: 1 });
    expect(got[6]).toMatchObject({ method: 'GET', path: '/nowhere', route: null, service: null, backend: null, status: 404 });
    expect(got[7]).toMatchObject({ path: '/boom', route: 1, service: 'boom', backend: 'boom', status: 500, bytes_out: 4 });

    // A retried request: flaky is [dead, a]; one of two consecutive requests goes to dead first.
    for (const id of ['flaky-1', 'flaky-2']) await request(drover.port, { path: '/flaky', headers: { 'x-request-id': id } });
    await waitFor(() => lines(file).length >= start + 10, { what: 'flaky lines' });
    const flaky = lines(file).slice(start + 8);
    expect(flaky.map((l) => [l['backend'], l['status']])).toEqual([
      ['a', 200],
      ['a', 200],
    ]);
    expect(flaky.map((l) => l['retries']).sort()).toEqual([0, 1]);

    // Rotation: mv, SIGUSR1, and the next lines go to a new file at the configured path.
    const rotated = `${file}.1`;
    renameSync(file, rotated);
    const rotatedCount = lines(rotated).length;
    const reopened = drover.logs.filter((l) => l['msg'] === 'access log reopened').length;
    drover.child.kill('SIGUSR1');
    await waitFor(() => drover.logs.filter((l) => l['msg'] === 'access log reopened').length > reopened, { what: 'reopen log line' });
    for (const id of ['after-1', 'after-2', 'after-3']) await request(drover.port, { path: '/web/after', headers: { 'x-request-id': id } });
    await waitFor(() => lines(file).length >= 3, { what: 'lines in the new file' });
    await new Promise((r) => setTimeout(r, 200));
    expect(lines(file).map((l) => l['request_id'])).toEqual(['after-1', 'after-2', 'after-3']);
    expect(lines(rotated).length).toBe(rotatedCount);
  });
});

describe('config reloads and access_log switching', () => {
  it('counts good and bad reloads, and access_log: off writes nothing', async () => {
    const x = await startBackend('x');
    const cfg = (log: string, extra = '') => `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: ${log}
services:
  s: {backends: [{url: ${x.url}, id: x}]}
routes:
  - match: {path_prefix: /}
    service: s
${extra}`;
    const p = await startDrover(cfg('stdout'));
    try {
      const accessLines = () => p.logs.filter((l) => 'request_id' in l);
      for (const id of ['on-1', 'on-2']) await request(p.port, { path: '/on', headers: { 'x-request-id': id } });
      await waitFor(() => accessLines().length === 2, { what: 'stdout access lines' });
      expect(accessLines().map((l) => Object.keys(l))).toEqual([FIELDS, FIELDS]);

      // good reload: access log off
      p.writeConfig(cfg('off'));
      await p.waitForLog((l) => l['msg'] === 'config reloaded');
      for (const id of ['off-1', 'off-2', 'off-3']) expect((await request(p.port, { path: '/off', headers: { 'x-request-id': id } })).body).toBe('x');
      // bad reload: unknown key; refused, the old config keeps serving
      p.writeConfig(cfg('off', 'no_such_key: 1'));
      await p.waitForLog((l) => l['msg'] === 'config reload refused: the old config keeps serving');
      expect((await request(p.port, { path: '/still' })).body).toBe('x');
      await new Promise((r) => setTimeout(r, 300));
      expect(accessLines().map((l) => l['request_id'])).toEqual(['on-1', 'on-2']);
      expect(readdirSync(p.dir).sort()).toEqual(['drover.yaml']);

      const s = parseMetrics(await getText(p.adminPort, '/metrics'));
      const ok = p.logs.filter((l) => l['msg'] === 'config reloaded').length;
      const refused = p.logs.filter((l) => l['msg'] === 'config reload refused: the old config keeps serving').length;
      expect(ok).toBeGreaterThanOrEqual(1);
      expect(refused).toBeGreaterThanOrEqual(1);
      expect(seriesValue(s, 'drover_config_reloads_total', { result: 'success' })).toBe(ok);
      expect(seriesValue(s, 'drover_config_reloads_total', { result: 'failure' })).toBe(refused);
      expect(seriesValue(s, 'drover_requests_total', { service: 's', backend: 'x', code: '200' })).toBe(6);
    } finally {
      await p.stop();
      await x.close();
    }
  });
});

describe.skipIf(!browserTests)('dashboard of the real proxy in chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is required under CI=true`).toBe(true);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('shows the backends; the drain button drains without a reload and the proxy stops sending to it', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    try {
      await page.goto(`http://127.0.0.1:${drover.adminPort}/`);
      const row = (svc: string, id: string) => page.locator(`section[data-service="${svc}"] tr[data-backend="${id}"]`);
      // Services start collapsed when there are many; open `dash` if its rows are hidden.
      await expect.poll(() => page.locator('section[data-service="dash"]').count()).toBe(1);
      if (!(await row('dash', 'd').isVisible())) await page.locator('section[data-service="dash"] .svc-head').click();
      await expect.poll(() => row('dash', 'd').locator('td.st').textContent()).toMatch(/^(unknown|healthy)$/);
      await expect.poll(() => row('web', 'a').count()).toBe(1);
      expect(await row('dash', 'c').count()).toBe(1);

      // Before: both backends of dash get traffic.
      for (let i = 0; i < 6; i++) await request(drover.port, { path: '/dash' });
      expect(c.seen.length).toBe(3);
      expect(d.seen.length).toBe(3);

      await page.evaluate('window.marker = 7');
      await row('dash', 'd').getByRole('button', { name: 'drain' }).click();
      await expect.poll(() => row('dash', 'd').locator('td.st').textContent()).toBe('draining');
      expect(await page.evaluate('window.marker')).toBe(7); // no reload
      expect((await apiBackends(drover, 'dash')).find((x) => x.id === 'd')?.state).toBe('draining');
      const s = await scrape(drover);
      expect(seriesValue(s, 'drover_backend_up', { service: 'dash', backend: 'd' })).toBe(0);

      // After: the proxy really sends d nothing.
      for (let i = 0; i < 10; i++) expect((await request(drover.port, { path: '/dash' })).body).toBe('c');
      expect(d.seen.length).toBe(3);
      expect(c.seen.length).toBe(13);

      await row('dash', 'd').getByRole('button', { name: 'undrain' }).click();
      await expect.poll(() => row('dash', 'd').locator('td.st').textContent()).not.toBe('draining');
      for (let i = 0; i < 4; i++) await request(drover.port, { path: '/dash' });
      expect(d.seen.length).toBe(5);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
