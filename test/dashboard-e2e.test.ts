/**
 * The dashboard of a real drover (bin/drover as a child process, real backends, real requests)
 * in chromium: each view loads from its own URL, the charts draw the requests that were sent
 * (read from the uPlot instances' data arrays, not from the DOM), routes show their hits, events
 * show registry changes, reloads and the drain made from the page (with the admin token), and
 * the page is served under a CSP that refuses inline script. Screenshots go to test/artifacts/.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { ARTIFACTS, browserTests, launch, noteSkipped, watchErrors } from './helpers/browser.js';

noteSkipped('dashboard-e2e.test.ts');

const TOKEN = 'dash-e2e-token';
/** requests sent to each path, and what each backend answers */
const WEB_REQUESTS = 30;
const API_OK = 10;
const API_FAIL = 5;

/** Sums one data array of a chart (uPlot keeps `null` for gaps). */
function sum(values: readonly (number | null)[] | undefined): number {
  return (values ?? []).reduce<number>((a, v) => a + (v ?? 0), 0);
}

/** The data arrays of a chart the page drew, by its name in `window.droverCharts`. */
async function chartData(page: Page, name: string): Promise<(number | null)[][] | null> {
  // a string, evaluated in the page (this file is compiled without the DOM types)
  const js = `(() => { const c = (window.droverCharts || {})[${JSON.stringify(name)}]; return c ? c.data.map((a) => Array.from(a)) : null; })()`;
  return (await page.evaluate(js)) as (number | null)[][] | null;
}

/** A chart's y scale as drawn: [min, max]. */
async function yRange(page: Page, name: string): Promise<[number, number]> {
  return (await page.evaluate(`(() => { const y = window.droverCharts[${JSON.stringify(name)}].scales.y; return [y.min, y.max]; })()`)) as [number, number];
}

/** Cells (CSS selector) whose text does not fit: cut off or ended with an ellipsis. */
async function clipped(page: Page, selector: string): Promise<string[]> {
  const js = `Array.from(document.querySelectorAll(${JSON.stringify(selector)})).filter((e) => e.scrollWidth > e.clientWidth).map((e) => e.textContent)`;
  return (await page.evaluate(js)) as string[];
}

describe.skipIf(!browserTests)('dashboard of a real drover, in chromium', () => {
  let browser: Browser;
  let a: TestBackend;
  let b: TestBackend;
  let c: TestBackend;
  let drover: DroverProcess;
  let base: string;

  const config = (extra = ''): string => `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    health: {active: {path: /healthz, interval: 200ms, timeout: 2s, rise: 1, fall: 3}}
    backends: [{url: ${a.url}, id: a}, {url: ${b.url}, id: b}]
  api:
    backends: [{url: ${c.url}, id: c}]
  empty:
    backends: []
routes:
  - match: {path_prefix: /api}
    service: api
  - match: {path_prefix: /empty}
    service: empty
  - match: {path_prefix: /}
    service: web
${extra}`;

  beforeAll(async () => {
    [a, b, c] = await Promise.all([startBackend('a'), startBackend('b'), startBackend('c')]);
    c.behave((req, res) => {
      const fail = (req.url ?? '').startsWith('/api/fail');
      res.writeHead(fail ? 500 : 200, { 'content-type': 'text/plain' });
      res.end(fail ? 'c failed' : 'c');
    });
    drover = await startDrover(config(), { env: { DROVER_ADMIN_TOKEN: TOKEN } });
    base = `http://127.0.0.1:${drover.adminPort}`;
    browser = await launch();
    // The traffic every test reads back: sequential, so every answer is counted before the next.
    for (let i = 0; i < WEB_REQUESTS; i++) expect((await request(drover.port, { path: `/page/${i}` })).status).toBe(200);
    for (let i = 0; i < API_OK; i++) expect((await request(drover.port, { path: '/api/ok' })).status).toBe(200);
    for (let i = 0; i < API_FAIL; i++) expect((await request(drover.port, { path: '/api/fail' })).status).toBe(500);
  });

  afterAll(async () => {
    await browser?.close();
    await drover?.stop();
    await Promise.all([a?.close(), b?.close(), c?.close()]);
  });

  it('serves the page under a strict CSP: same-origin script and style only, inline script refused', async () => {
    const page = await browser.newPage();
    const errors = watchErrors(page);
    const res = await page.goto(`${base}/#/`);
    const csp = res?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    // uPlot comes from this origin, not a CDN, and each script carries its SRI hash.
    const scripts = await page.locator('script').evaluateAll((els) => els.map((e) => [e.getAttribute('src'), e.getAttribute('integrity')]));
    expect(scripts.map((s) => s[0])).toEqual(['/assets/uPlot.iife.min.js', '/assets/dashboard.js']);
    for (const s of scripts) expect(s[1]).toMatch(/^sha256-[A-Za-z0-9+/]+=*$/);
    await expect.poll(() => page.locator('#conn').textContent()).toBe('live');
    expect(errors).toEqual([]);
    // A script injected into the page does not run.
    await page.evaluate("const s = document.createElement('script'); s.textContent = 'window.inlineRan = 1'; document.body.appendChild(s);");
    expect(await page.evaluate('window.inlineRan')).toBeUndefined();
    await expect.poll(() => errors.some((e) => e.includes('Content Security Policy'))).toBe(true);
    // Assets are revalidated with their hash as ETag.
    const asset = await fetch(`${base}/assets/dashboard.js`);
    const etag = asset.headers.get('etag') ?? '';
    expect(etag).toMatch(/^"sha256-/);
    expect((await fetch(`${base}/assets/dashboard.js`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await fetch(`${base}/assets/nope.js`)).status).toBe(404);
    await page.close();
  });

  it('overview: each service with its sparkline drawing the requests sent', async () => {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors = watchErrors(page);
    await page.goto(`${base}/#/`);
    await expect.poll(() => page.locator('section.svc').count()).toBe(3);
    // sparkline data: [t, requests/s, 5xx/s]; complete seconds only, so wait for them
    await expect.poll(async () => sum((await chartData(page, 'spark:web'))?.[1]), { timeout: 15_000 }).toBe(WEB_REQUESTS);
    await expect.poll(async () => sum((await chartData(page, 'spark:api'))?.[1]), { timeout: 15_000 }).toBe(API_OK + API_FAIL);
    await expect.poll(async () => sum((await chartData(page, 'spark:api'))?.[2])).toBe(API_FAIL);
    // the y axis starts at 0, so a steady rate is not drawn as cliffs
    expect((await yRange(page, 'spark:web'))[0]).toBe(0);
    // the service name links to its view
    expect(await page.locator('section[data-service="web"] a.svc-link').getAttribute('href')).toBe('#/service/web');
    await page.screenshot({ path: `${ARTIFACTS}overview.png` });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('service view: charts of requests by status, latency and errors; per-backend charts; checks', async () => {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors = watchErrors(page);
    await page.goto(`${base}/#/service/api`);
    await expect.poll(() => page.locator('#svc-title').textContent()).toBe('api');
    // req chart: [t, 2xx, 3xx, 4xx, 5xx, 1xx]
    await expect.poll(async () => sum((await chartData(page, 'req'))?.[1]), { timeout: 15_000 }).toBe(API_OK);
    const req = (await chartData(page, 'req'))!;
    expect(sum(req[4])).toBe(API_FAIL);
    expect(sum(req[3])).toBe(0);
    // one x per second, increasing
    const xs = req[0] as number[];
    expect(xs.length).toBeGreaterThan(0);
    for (let i = 1; i < xs.length; i++) expect(xs[i]).toBe((xs[i - 1] as number) + 1);
    // errors chart: [t, connect, timeout, reset, status]: the 500s are `status` errors
    const err = (await chartData(page, 'err'))!;
    expect([sum(err[1]), sum(err[2]), sum(err[3]), sum(err[4])]).toEqual([0, 0, 0, API_FAIL]);
    // latency chart: [t, p50, p99]: drawn for the seconds that had requests, gaps elsewhere
    const lat = (await chartData(page, 'lat'))!;
    const withTraffic = xs.map((_x, i) => sum([req[1]![i] ?? 0, req[4]![i] ?? 0]) > 0);
    lat[2]!.forEach((v, i) => {
      if (withTraffic[i]) expect(v).toBeGreaterThan(0);
      else expect(v).toBeNull();
    });
    await expect.poll(() => page.locator('#svc-backends tr[data-backend="c"] td[data-col="state"]').textContent()).toBe('unknown');

    // web: two backends; their own charts split the requests between them
    await page.goto(`${base}/#/service/web/backend/a`);
    await expect.poll(() => page.locator('#svc-scope').textContent()).toBe('charts of backend a');
    await expect.poll(async () => sum((await chartData(page, 'req'))?.[1]), { timeout: 15_000 }).toBe(a.seen.filter((r) => r.url.startsWith('/page/')).length);
    await page.goto(`${base}/#/service/web/backend/b`);
    await expect.poll(async () => sum((await chartData(page, 'req'))?.[1]), { timeout: 15_000 }).toBe(b.seen.filter((r) => r.url.startsWith('/page/')).length);
    expect(a.seen.filter((r) => r.url.startsWith('/page/')).length + b.seen.filter((r) => r.url.startsWith('/page/')).length).toBe(WEB_REQUESTS);
    await page.goto(`${base}/#/service/web`);
    await expect.poll(async () => sum((await chartData(page, 'req'))?.[1]), { timeout: 15_000 }).toBe(WEB_REQUESTS);
    // active checks: state healthy, the latest results drawn (green marks) with their detail
    const rowA = page.locator('#svc-backends tr[data-backend="a"]');
    await expect.poll(() => rowA.locator('td[data-col="state"]').textContent()).toBe('healthy');
    await expect.poll(() => rowA.locator('td[data-col="checks"] i.ok').count()).toBeGreaterThan(1);
    expect(await rowA.locator('td[data-col="checks"]').textContent()).toContain('status 200');
    expect(await rowA.locator('td[data-col="weight"]').textContent()).toBe('1');
    // without the pointer over a chart its legend shows the newest second, not "--"
    const reqNow = (await chartData(page, 'req'))!;
    const newest = reqNow[0]!.length - 1;
    const legend = await page.locator('#chart-req .u-legend .u-value').allTextContents();
    const hms = new Date((reqNow[0]![newest] as number) * 1000).toTimeString().slice(0, 8);
    expect(legend).toEqual([hms, ...[1, 2, 3, 4, 5].map((k) => String(reqNow[k]![newest]))]);
    // no upstream error in web: the errors chart is a line at 0 on a 0..1 axis, not mid-way up 0..100
    expect(await yRange(page, 'err')).toEqual([0, 1]);
    // URLs, check results and reasons are read in full, not cut off
    expect(await clipped(page, '#svc-backends td')).toEqual([]);
    await page.screenshot({ path: `${ARTIFACTS}service.png` });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('routes view: the table in match order with the hits of each route', async () => {
    const page = await browser.newPage({ viewport: { width: 1440, height: 600 } });
    await page.goto(`${base}/#/routes`);
    const rows = page.locator('#routes tbody tr');
    await expect.poll(() => rows.count()).toBe(3);
    expect(await rows.nth(0).locator('td').nth(2).textContent()).toBe('/api*');
    expect(await rows.nth(0).locator('td').nth(5).textContent()).toBe('api');
    expect(await rows.nth(1).locator('td').nth(5).textContent()).toBe('empty');
    expect(await rows.nth(2).locator('td').nth(5).textContent()).toBe('web');
    expect(await rows.nth(0).locator('td[data-col="hits"]').textContent()).toBe(String(API_OK + API_FAIL));
    expect(await rows.nth(2).locator('td[data-col="hits"]').textContent()).toBe(String(WEB_REQUESTS));
    // more traffic shows up without a reload
    await request(drover.port, { path: '/api/ok' });
    await expect.poll(() => rows.nth(0).locator('td[data-col="hits"]').textContent()).toBe(String(API_OK + API_FAIL + 1));
    await page.screenshot({ path: `${ARTIFACTS}routes.png` });
    await page.close();
  });

  it('drain and undrain from the service view ask for the token once, then the events view shows it all', async () => {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const prompts: string[] = [];
    page.on('dialog', (d) => {
      prompts.push(d.message());
      void d.accept(TOKEN);
    });
    await page.goto(`${base}/#/service/web`);
    const rowB = page.locator('#svc-backends tr[data-backend="b"]');
    await expect.poll(() => rowB.locator('td[data-col="state"]').textContent()).toBe('healthy');
    await rowB.getByRole('button', { name: 'drain' }).click();
    await expect.poll(() => rowB.locator('td[data-col="state"]').textContent()).toBe('draining');
    expect(prompts.length).toBe(1);
    expect(await page.evaluate("sessionStorage.getItem('drover-admin-token')")).toBe(TOKEN);
    const state = async (): Promise<string | undefined> => {
      const j = (await (await fetch(`${base}/api/services`)).json()) as { services: { name: string; backends: { id: string; state: string }[] }[] };
      return j.services.find((s) => s.name === 'web')?.backends.find((x) => x.id === 'b')?.state;
    };
    expect(await state()).toBe('draining');
    // drained: new requests all go to a
    for (let i = 0; i < 4; i++) expect((await request(drover.port, { path: '/after-drain' })).body).toBe('a');
    // the stored token is sent as Bearer: no second prompt
    await rowB.getByRole('button', { name: 'undrain' }).click();
    await expect.poll(() => rowB.locator('td[data-col="state"]').textContent()).not.toBe('draining');
    expect(prompts.length).toBe(1);
    await expect.poll(state).not.toBe('draining');

    // a good and a bad reload
    drover.writeConfig(config('# reloaded'));
    await drover.waitForLog((l) => l['msg'] === 'config reloaded');
    drover.writeConfig(config('bogus_key: 1'));
    await drover.waitForLog((l) => l['msg'] === 'config reload refused: the old config keeps serving');

    await page.goto(`${base}/#/events`);
    const rows = page.locator('#event-table tbody tr');
    await expect.poll(() => page.locator('#event-table tbody tr[data-kind="reload"]').count()).toBe(2);
    const text = async (): Promise<string> => (await rows.allTextContents()).join('\n');
    await expect.poll(text).toContain('reload applied');
    expect(await text()).toContain('reload refused');
    expect(await text()).toContain('bogus_key');
    // the refused reload's errors are read in full (the reason wraps instead of ending in "...")
    expect(await clipped(page, '#event-table td')).toEqual([]);
    expect(await page.locator('#event-table tbody tr[data-kind="registry"]').count()).toBe(3); // a, b, c joined
    expect(await text()).toContain('web/b');
    expect(await text()).toMatch(/healthy\s*→\s*draining/);

    // the filter narrows the list and is kept in the URL, which opens the same view
    await page.fill('#ev-filter', 'draining');
    await expect.poll(() => page.evaluate('location.hash')).toBe('#/events?q=draining');
    await expect.poll(async () => (await rows.allTextContents()).every((t) => t.includes('draining'))).toBe(true);
    await page.locator('#view-events input[data-kind="health"]').uncheck();
    await expect.poll(() => page.evaluate('location.hash')).toBe('#/events?q=draining&kind=registry%2Creload');
    await expect.poll(() => rows.allTextContents()).toEqual(['No event matches.']);
    const shared = await browser.newPage();
    await shared.goto(`${base}/#/events?kind=reload`);
    await expect.poll(() => shared.locator('#event-table tbody tr[data-kind="reload"]').count()).toBe(2);
    expect(await shared.locator('#event-table tbody tr:not([data-kind="reload"])').count()).toBe(0);
    expect(await shared.locator('#view-events input[data-kind="health"]').isChecked()).toBe(false);
    await shared.close();
    await page.fill('#ev-filter', '');
    await page.locator('#view-events input[data-kind="health"]').check();
    await page.screenshot({ path: `${ARTIFACTS}events.png` });
    await page.close();
  });

  it('GET /api/series answers the same counts the charts drew, and 404s unknown names', async () => {
    const all = (await (await fetch(`${base}/api/series`)).json()) as { step: number; series: { service: string; backend: string | null; t: number[]; req: Record<string, number[]> }[] };
    expect(all.step).toBe(1);
    expect(all.series.map((s) => [s.service, s.backend])).toEqual([
      ['web', null],
      ['api', null],
      ['empty', null], // a service's series exists from its start: zeros until it has traffic
    ]);
    const api = all.series[1]!;
    expect(sum(api.req['5xx'])).toBe(API_FAIL);
    const last = api.t[api.t.length - 1]!;
    const since = (await (await fetch(`${base}/api/series?service=api&since=${last}`)).json()) as { series: { t: number[] }[] };
    expect(since.series[0]!.t.every((t) => t > last)).toBe(true);
    const backends = (await (await fetch(`${base}/api/series?service=web&backend=*`)).json()) as { series: { backend: string }[] };
    expect(backends.series.map((s) => s.backend).sort()).toEqual(['a', 'b']);
    expect((await fetch(`${base}/api/series?service=nope`)).status).toBe(404);
    expect((await fetch(`${base}/api/series?service=web&backend=nope`)).status).toBe(404);
    expect((await fetch(`${base}/api/series?since=x`)).status).toBe(400);
    expect((await fetch(`${base}/api/series`, { method: 'POST' })).status).toBe(405);
    const checks = (await (await fetch(`${base}/api/services/web/checks`)).json()) as { backends: { id: string; checks: { ok: boolean; detail: string }[] }[] };
    expect(checks.backends.map((x) => x.id)).toEqual(['a', 'b']);
    expect(checks.backends[0]!.checks.length).toBeGreaterThan(0);
    expect(checks.backends[0]!.checks.length).toBeLessThanOrEqual(10);
    expect((await fetch(`${base}/api/services/nope/checks`)).status).toBe(404);
  });

  it('service view: a backend that joins ramps up under slow_start (weight with its ramp, from the real pool)', async () => {
    const d = await startBackend('d');
    const reloads = (): number => drover.logs.filter((l) => l['msg'] === 'config reloaded').length;
    const before = reloads();
    try {
      drover.writeConfig(config('# reloaded').replace('  web:\n', '  web:\n    slow_start: 60s\n').replace(`{url: ${b.url}, id: b}]`, `{url: ${b.url}, id: b}, {url: ${d.url}, id: d}]`));
      await expect.poll(reloads, { timeout: 10_000 }).toBe(before + 1);
      const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      const errors = watchErrors(page);
      await page.goto(`${base}/#/service/web`);
      const weight = page.locator('#svc-backends tr[data-backend="d"] td[data-col="weight"]');
      // it joins, passes its first check (200 ms), then ramps over 60 s
      await expect.poll(() => weight.textContent(), { timeout: 10_000 }).toMatch(/^1ramp \d+%$/);
      const pct = Number(/ramp (\d+)%/.exec((await weight.textContent()) ?? '')?.[1]);
      expect(pct).toBeGreaterThan(0);
      expect(pct).toBeLessThan(100);
      const j = (await (await fetch(`${base}/api/services`)).json()) as { services: { name: string; backends: { id: string; weight: number; effective_weight?: number }[] }[] };
      const view = j.services.find((s) => s.name === 'web')!.backends.find((x) => x.id === 'd')!;
      expect(view.weight).toBe(1);
      expect(view.effective_weight).toBeLessThan(1);
      // the old members are at full weight: no ramp shown
      expect(await page.locator('#svc-backends tr[data-backend="a"] td[data-col="weight"]').textContent()).toBe('1');
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      drover.writeConfig(config('# reloaded'));
      await expect.poll(reloads, { timeout: 10_000 }).toBe(before + 2);
      await d.close();
    }
  });

  it("overview: a service's req/s, 5xx/s and the header's req/s come from the series, drover's own answers included", async () => {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors = watchErrors(page);
    await page.goto(`${base}/#/`);
    const figures = async (): Promise<{ req: number; err: number; total: number }> => {
      const rate = (await page.locator('section[data-service="empty"] .rate').textContent()) ?? '';
      const m = /^([\d.]+) req\/s · ([\d.]+) 5xx\/s · p99 /.exec(rate);
      const total = /([\d.]+) req\/s$/.exec((await page.locator('#totals').textContent()) ?? '');
      return { req: Number(m?.[1] ?? NaN), err: Number(m?.[2] ?? NaN), total: Number(total?.[1] ?? NaN) };
    };
    // `empty` has no backend: drover answers 503 itself, so no backend counter moves; steady
    // traffic until the page shows it (its figures are the last 5 complete seconds)
    let stop = false;
    let sent = 0;
    const load = (async () => {
      while (!stop) {
        expect((await request(drover.port, { path: '/empty/x' })).status).toBe(503);
        sent++;
        await sleep(50);
      }
    })();
    try {
      await expect.poll(async () => (await figures()).err, { timeout: 15_000 }).toBeGreaterThan(1);
      const f = await figures();
      // every answer was a 503: the two figures are the same answers
      expect(f.req).toBe(f.err);
      expect(f.total).toBeGreaterThanOrEqual(f.req);
      expect(await page.locator('section[data-service="empty"] .rate').getAttribute('class')).toContain('err');
    } finally {
      stop = true;
      await load;
    }
    // the sparkline's red line is the same 5xx answers
    await expect.poll(async () => sum((await chartData(page, 'spark:empty'))?.[2]), { timeout: 15_000 }).toBe(sent);
    expect(sum((await chartData(page, 'spark:empty'))?.[1])).toBe(sent);
    expect(errors).toEqual([]);
    await page.close();
  });
});

describe('workers: 2: the primary sums what every worker counted', () => {
  let x: TestBackend;
  let g: TestBackend;
  let p: DroverProcess;
  let base: string;
  /** answers `g` holds until `open()` */
  const held: (() => void)[] = [];
  let gateOpen = false;
  const open = (): void => {
    gateOpen = true;
    for (const f of held.splice(0)) f();
  };

  beforeAll(async () => {
    [x, g] = await Promise.all([startBackend('x'), startBackend('g')]);
    x.behave((req, res) => {
      const fail = (req.url ?? '').startsWith('/fail');
      res.writeHead(fail ? 502 : 200, { 'content-type': 'text/plain' });
      res.end('x');
    });
    g.behave((_req, res) => {
      const answer = (): void => void res.end('g');
      if (gateOpen) answer();
      else held.push(answer);
    });
    p = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
workers: 2
services:
  s: {backends: [{url: ${x.url}, id: x}]}
  gated:
    max_conns: 1
    queue: {size: 20, timeout: 20s}
    backends: [{url: ${g.url}, id: g}]
routes:
  - match: {path: /fail}
    service: s
  - match: {path_prefix: /gated}
    service: gated
  - match: {path_prefix: /}
    service: s
`);
    base = `http://127.0.0.1:${p.adminPort}`;
  });

  afterAll(async () => {
    open();
    await p?.stop();
    await Promise.all([x?.close(), g?.close()]);
  });

  it('series and route hits', async () => {
    // fresh connections: node:cluster spreads them over both workers
    for (let i = 0; i < 20; i++) expect((await request(p.port, { path: `/ok/${i}` })).status).toBe(200);
    for (let i = 0; i < 4; i++) expect((await request(p.port, { path: '/fail' })).status).toBe(502);
    const series = async (): Promise<{ req: Record<string, number[]>; err: Record<string, number[]>; p99_ms: (number | null)[] } | undefined> => {
      const r = await fetch(`${base}/api/series?service=s&backend=x`);
      if (r.status !== 200) return undefined;
      return ((await r.json()) as { series: { req: Record<string, number[]>; err: Record<string, number[]>; p99_ms: (number | null)[] }[] }).series[0];
    };
    await expect.poll(async () => sum((await series())?.req['2xx']), { timeout: 15_000 }).toBe(20);
    const s = (await series())!;
    expect(sum(s.req['5xx'])).toBe(4);
    expect(sum(s.err['status'])).toBe(4);
    expect(s.p99_ms.some((v) => v !== null && v > 0)).toBe(true);
    const routes = (await (await fetch(`${base}/api/routes`)).json()) as { routes: { index: number; hits: number }[] };
    expect(routes.routes.map((r) => r.hits)).toEqual([4, 0, 20]);
  });

  it('requests in flight in both workers at once: queue_depth (and the QUEUE flag) is their sum; the charts count every one', async () => {
    const gated = async (): Promise<{ queue: number; inflight: number }> => {
      const j = (await (await fetch(`${base}/api/services`)).json()) as { services: { name: string; queue_depth?: number; backends: { inflight: number }[] }[] };
      const svc = j.services.find((v) => v.name === 'gated');
      return { queue: svc?.queue_depth ?? -1, inflight: svc?.backends[0]?.inflight ?? -1 };
    };
    // six at once on fresh connections: each worker sends one (max_conns 1 per process) and queues the rest
    const answers = Array.from({ length: 6 }, (_v, i) => request(p.port, { path: `/gated/${i}` }));
    // 2 in flight with max_conns 1: both workers hold one; the other 4 wait in their queues
    await expect.poll(gated, { timeout: 15_000 }).toEqual({ queue: 4, inflight: 2 });
    let page: Page | undefined;
    let browser: Browser | undefined;
    if (browserTests) {
      browser = await launch();
      page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      await page.goto(`${base}/#/`);
      await expect.poll(() => page!.locator('section[data-service="gated"] .queue').textContent()).toBe('QUEUE 4');
      expect(await page.locator('section[data-service="gated"] .queue').isVisible()).toBe(true);
    }
    open();
    for (const a of answers) expect((await a).status).toBe(200);
    await expect.poll(gated, { timeout: 15_000 }).toEqual({ queue: 0, inflight: 0 });
    if (page !== undefined) {
      await expect.poll(() => page!.locator('section[data-service="gated"] .queue').isVisible()).toBe(false);
      // the service view's chart: all six, counted in two processes
      await page.goto(`${base}/#/service/gated`);
      await expect.poll(async () => sum((await chartData(page!, 'req'))?.[1]), { timeout: 15_000 }).toBe(6);
      await page.screenshot({ path: `${ARTIFACTS}workers-service.png` });
    }
    await browser?.close();
    const routes = (await (await fetch(`${base}/api/routes`)).json()) as { routes: { hits: number }[] };
    expect(routes.routes[1]?.hits).toBe(6);
  });
});
