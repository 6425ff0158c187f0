/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core, against the real
 * admin server on 127.0.0.1:0 (over an in-memory model: tables, drain, token, hostile text, a
 * large fleet). The charts, routes and events views against a real drover are in
 * dashboard-e2e.test.ts. Skips (with a notice) when chromium is absent, except under CI=true,
 * where a missing browser fails the run instead of silently passing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { silentLogger } from '../src/observability/log.js';
import { Metrics } from '../src/observability/metrics.js';
import { startAdminServer, type AdminServer } from '../src/admin/server.js';
import type { AdminModel, BackendState, BackendView, EventView, ServiceView } from '../src/admin/model.js';
import { ARTIFACTS, browserTests, launch, noteSkipped, watchErrors } from './helpers/browser.js';

const TOKEN_ENV = `DROVER_TEST_DASH_TOKEN_${process.pid}`;
noteSkipped('dashboard.test.ts');

class MemoryModel implements AdminModel {
  readonly list: ServiceView[];
  readonly log: EventView[] = [];
  constructor(list: ServiceView[]) {
    this.list = list;
  }
  services(): ServiceView[] {
    return structuredClone(this.list);
  }
  find(service: string, id: string): BackendView | undefined {
    return this.list.find((s) => s.name === service)?.backends.find((b) => b.id === id);
  }
  setDraining(service: string, id: string, draining: boolean): BackendView | undefined {
    const b = this.find(service, id);
    if (b === undefined) return undefined;
    const from = b.state;
    b.state = draining ? 'draining' : 'healthy';
    b.last_change = new Date().toISOString();
    b.reason = draining ? 'admin drain' : 'admin undrain';
    this.log.push({ at: b.last_change, service, backend: id, from, to: b.state, reason: b.reason });
    return structuredClone(b);
  }
  ready(): boolean {
    return true;
  }
  effectiveConfig(): unknown {
    return {};
  }
  events(): EventView[] {
    return this.log.slice(-200);
  }
  checks(service: string): { id: string; checks: [] }[] | undefined {
    return this.list.find((s) => s.name === service)?.backends.map((b) => ({ id: b.id, checks: [] }));
  }
}

function backend(id: string, port: number, state: BackendState = 'healthy'): BackendView {
  return {
    id,
    url: `http://127.0.0.1:${port}`,
    weight: 1,
    source: 'static',
    state,
    inflight: 0,
    requests: 0,
    failures: 0,
    last_change: null,
    reason: '',
    latency_ewma_ms: null,
    max_conns: 0,
  };
}

const row = (page: Page, service: string, id: string) =>
  page.locator(`section[data-service="${service}"] tr[data-backend="${id}"]`);

describe.skipIf(!browserTests)('dashboard in chromium', () => {
  let browser: Browser;
  let server: AdminServer;
  let model: MemoryModel;
  let base: string;

  beforeAll(async () => {
    model = new MemoryModel([
      { name: 'web', balancer: 'round_robin', backends: [backend('127.0.0.1:9001', 9001), backend('127.0.0.1:9002', 9002)] },
      {
        name: 'api',
        balancer: 'least_conn',
        panic: true,
        backends: [backend('<img src=x onerror="window.pwned=1">', 9003, 'unhealthy')],
      },
    ]);
    server = await startAdminServer({
      host: '127.0.0.1',
      port: 0,
      model,
      metrics: new Metrics({ defaultMetrics: false }),
      tokenEnv: TOKEN_ENV,
      logger: silentLogger(),
      streamIntervalMs: 200,
    });
    base = `http://127.0.0.1:${server.address.port}`;
    browser = await launch();
  });

  afterAll(async () => {
    delete process.env[TOKEN_ENV];
    await browser?.close();
    await server?.close();
  });

  it('shows the backends, and drain turns one to draining without a reload', async () => {
    const page = await browser.newPage();
    const errors = watchErrors(page);
    await page.goto(base);
    await expect.poll(() => page.locator('#conn').textContent()).toBe('live');
    const r = row(page, 'web', '127.0.0.1:9002');
    await expect.poll(() => r.locator('td.st').textContent()).toBe('healthy');
    expect(await row(page, 'web', '127.0.0.1:9001').locator('td').nth(1).textContent()).toBe('http://127.0.0.1:9001');

    // Mark the document: a reload would lose it.
    await page.evaluate('window.marker = 42');
    await r.getByRole('button', { name: 'drain' }).click();
    await expect.poll(() => r.locator('td.st').textContent()).toBe('draining');
    expect(model.find('web', '127.0.0.1:9002')?.state).toBe('draining');
    expect(await page.evaluate('window.marker')).toBe(42);
    // The event shows in the recent events list.
    await expect.poll(() => page.locator('#events').textContent()).toContain('web/127.0.0.1:9002');

    // A drain made elsewhere (another operator, the API) shows up live too.
    model.setDraining('web', '127.0.0.1:9001', true);
    await expect.poll(() => row(page, 'web', '127.0.0.1:9001').locator('td.st').textContent()).toBe('draining');

    await r.getByRole('button', { name: 'undrain' }).click();
    await expect.poll(() => r.locator('td.st').textContent()).toBe('healthy');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('computes request and error rates from counter deltas', async () => {
    const page = await browser.newPage();
    await page.goto(base);
    const r = row(page, 'web', '127.0.0.1:9001');
    await expect.poll(() => r.locator('td.st').textContent()).not.toBe(null);
    const b = model.find('web', '127.0.0.1:9001')!;
    const timer = setInterval(() => {
      b.requests += 20;
      b.failures += 5;
    }, 100);
    try {
      await expect.poll(async () => Number(await r.locator('td').nth(6).textContent()), { timeout: 10_000 }).toBeGreaterThan(50);
      await expect.poll(async () => Number(await r.locator('td').nth(7).textContent()), { timeout: 10_000 }).toBeGreaterThan(10);
    } finally {
      clearInterval(timer);
    }
    await page.close();
  });

  it('renders hostile text as text', async () => {
    const page = await browser.newPage();
    await page.goto(base);
    const cell = page.locator('section[data-service="api"] tbody tr td').first();
    await expect.poll(() => cell.textContent()).toBe('<img src=x onerror="window.pwned=1">');
    expect(await page.locator('section[data-service="api"] img').count()).toBe(0);
    expect(await page.evaluate('window.pwned')).toBeUndefined();
    expect(await page.locator('section[data-service="api"] .panic').isVisible()).toBe(true);
    await page.close();
  });

  it('asks once for the token on 401 and keeps it for the session', async () => {
    process.env[TOKEN_ENV] = 'tok-123';
    const page = await browser.newPage();
    const prompts: string[] = [];
    page.on('dialog', (d) => {
      prompts.push(d.type());
      void d.accept('tok-123');
    });
    await page.goto(base);
    const r = row(page, 'web', '127.0.0.1:9002');
    await expect.poll(() => r.locator('td.st').textContent()).toBe('healthy');
    await r.getByRole('button', { name: 'drain' }).click();
    await expect.poll(() => r.locator('td.st').textContent()).toBe('draining');
    expect(prompts).toEqual(['prompt']);
    expect(await page.evaluate("sessionStorage.getItem('drover-admin-token')")).toBe('tok-123');
    // The second action uses the stored token: no second prompt.
    await r.getByRole('button', { name: 'undrain' }).click();
    await expect.poll(() => r.locator('td.st').textContent()).toBe('healthy');
    expect(prompts).toEqual(['prompt']);
    delete process.env[TOKEN_ENV];
    await page.close();
  });

  it('service view: slow-start ramp, EWMA latency and max_conns when present, PANIC; QUEUE flag on the overview', async () => {
    const ramping = backend('ramping', 9101);
    ramping.weight = 4;
    ramping.effective_weight = 1;
    const steady = { ...backend('steady', 9102), latency_ewma_ms: 12.345, max_conns: 8, inflight: 3 };
    const m = new MemoryModel([{ name: 'pay', balancer: 'ewma', panic: true, queue_depth: 5, backends: [ramping, steady] } as ServiceView]);
    const srv = await startAdminServer({ host: '127.0.0.1', port: 0, model: m, metrics: new Metrics({ defaultMetrics: false }), tokenEnv: TOKEN_ENV, logger: silentLogger(), streamIntervalMs: 200 });
    const page = await browser.newPage();
    const errors = watchErrors(page);
    try {
      const at = `http://127.0.0.1:${srv.address.port}`;
      await page.goto(`${at}/#/`);
      await expect.poll(() => page.locator('section[data-service="pay"] .queue').textContent()).toBe('QUEUE 5');
      expect(await page.locator('section[data-service="pay"] .queue').isVisible()).toBe(true);
      await page.goto(`${at}/#/service/pay`);
      const r = (id: string, col: string) => page.locator(`#svc-backends tr[data-backend="${id}"] td[data-col="${col}"]`);
      await expect.poll(() => r('ramping', 'weight').textContent()).toBe('4ramp 25%');
      expect(await r('steady', 'weight').textContent()).toBe('1');
      expect(await r('steady', 'ewma').textContent()).toBe('12.3');
      expect(await r('ramping', 'ewma').textContent()).toBe('-');
      expect(await r('steady', 'inflight').textContent()).toBe('3 / 8');
      expect(await page.locator('#svc-panic').isVisible()).toBe(true);
      // no series for this in-memory model: the charts say so instead of drawing nothing silently
      await expect.poll(() => page.locator('#svc-nodata').isVisible()).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await srv.close();
    }
  });

  it('stays readable at 50 services x 20 backends (screenshot test/artifacts/overview-1000.png)', async () => {
    const states: BackendState[] = ['healthy', 'healthy', 'healthy', 'healthy', 'unhealthy', 'healthy', 'ejected', 'draining', 'healthy', 'unknown'];
    const services: ServiceView[] = [];
    for (let s = 0; s < 50; s++) {
      const backends: BackendView[] = [];
      for (let i = 0; i < 20; i++) {
        const state = s % 7 === 0 ? states[(s + i) % states.length]! : i === 0 && s % 5 === 0 ? 'unhealthy' : 'healthy';
        const b = backend(`10.0.${s}.${i + 10}:8080`, 8080, state);
        b.url = `http://10.0.${s}.${i + 10}:8080`;
        b.requests = 1000 * i;
        b.inflight = i % 4;
        b.weight = 1 + (i % 3);
        b.source = i % 2 === 0 ? 'etcd' : 'file';
        if (state !== 'healthy') {
          b.last_change = new Date(Date.now() - 1000 * (30 + i * 7)).toISOString();
          b.reason = state === 'unhealthy' ? 'active check: 3 failures (connect ECONNREFUSED)' : state === 'ejected' ? 'passive: 5 consecutive failures' : state === 'draining' ? 'registry: draining' : 'awaiting first check';
        }
        backends.push(b);
      }
      services.push({ name: `svc-${String(s).padStart(2, '0')}`, balancer: ['round_robin', 'p2c', 'least_conn', 'hash'][s % 4]!, panic: s === 14, backends });
    }
    const big = new MemoryModel(services);
    for (let i = 0; i < 30; i++) {
      big.log.push({ at: new Date(Date.now() - (30 - i) * 5000).toISOString(), service: `svc-${String(i % 50).padStart(2, '0')}`, backend: `10.0.${i}.10:8080`, from: 'healthy', to: i % 2 ? 'unhealthy' : 'ejected', reason: 'active check: 3 failures' });
    }
    const bigServer = await startAdminServer({
      host: '127.0.0.1',
      port: 0,
      model: big,
      metrics: new Metrics({ defaultMetrics: false }),
      tokenEnv: TOKEN_ENV,
      logger: silentLogger(),
      streamIntervalMs: 300,
    });
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors = watchErrors(page);
    try {
      await page.goto(`http://127.0.0.1:${bigServer.address.port}`);
      await expect.poll(() => page.locator('section.svc').count()).toBe(50);
      // 1000 backends start collapsed: every service summary is one line.
      await expect.poll(() => page.locator('#totals').textContent()).toContain('1000 backends');
      expect(await page.locator('section.svc table:visible').count()).toBe(0);
      // Expanding one service shows its 20 rows.
      await page.locator('section[data-service="svc-07"] .caret').click();
      await expect.poll(() => page.locator('section[data-service="svc-07"] tbody tr:visible').count()).toBe(20);
      // The filter narrows to matching backends.
      await page.fill('#filter', '10.0.3.15');
      await expect.poll(() => page.locator('section.svc:visible').count()).toBe(1);
      await expect.poll(() => page.locator('section[data-service="svc-03"] tbody tr:visible').count()).toBe(1);
      // ...and is kept in the URL, which opens the same filtered view
      expect(await page.evaluate('location.hash')).toBe('#/?q=10.0.3.15');
      const shared = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      await shared.goto(`http://127.0.0.1:${bigServer.address.port}/#/?q=10.0.3.15`);
      await expect.poll(() => shared.locator('section.svc:visible').count()).toBe(1);
      expect(await shared.locator('#filter').inputValue()).toBe('10.0.3.15');
      await shared.close();
      await page.fill('#filter', '');
      expect(await page.evaluate('location.hash')).toBe('#/');
      await expect.poll(() => page.locator('section.svc:visible').count()).toBe(50);
      await page.waitForTimeout(700);
      await page.screenshot({ path: `${ARTIFACTS}overview-1000.png`, fullPage: false });
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await bigServer.close();
    }
  });
});
