/**
 * The dashboard of a real drover (bin/drover as a child process) whose routes and services come
 * from both its file and the shared config in a real etcd (`config_prefix`, issue 15), and whose
 * members come from the file and from etcd: in chromium, the header names the file and the etcd
 * revision in force, the routes view gives each route's source (file, or etcd @revision), the
 * service view where the service's settings came from, and the backends table each member's
 * source. A new push is followed live.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { describeEtcd, useSharedEtcd } from './helpers/etcd.js';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { browserTests, launch, noteSkipped, watchErrors } from './helpers/browser.js';
import { waitFor } from './helpers/wait.js';

noteSkipped('dashboard-sources.test.ts');

const BASE = `/dashsrc${process.pid}`;
const CONFIG = `${BASE}/config/`;
const MEMBERS = `${BASE}/services/`;

describe.skipIf(!browserTests)('dashboard: where each route, service and member came from', () => {
  describeEtcd('with a shared config in etcd', () => {
    const shared = useSharedEtcd();
    let browser: Browser;
    let local: TestBackend;
    let api: TestBackend;
    let drover: DroverProcess;
    let base: string;

    /** The revision the drover reports in force. */
    const revision = async (): Promise<string> => {
      const r = await fetch(`${base}/api/config`);
      return ((await r.json()) as { config: { sources: { etcd: { revision: string } | null } } }).config.sources.etcd?.revision ?? '';
    };

    beforeAll(async () => {
      [local, api] = await Promise.all([startBackend('local'), startBackend('api')]);
      await shared.kv.put(`${CONFIG}services/api`).value('balancer: least_conn\n');
      await shared.kv.put(`${CONFIG}routes`).value('- {match: {path_prefix: /api}, service: api}\n');
      await shared.kv.put(`${MEMBERS}api/a1`).value(api.url);
      drover = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  etcd: {endpoints: [${shared.etcd.endpoints[0]}], prefix: ${MEMBERS}, config_prefix: ${CONFIG}}
services:
  home:
    backends: [{url: ${local.url}, id: h1}]
routes:
  - match: {path_prefix: /local}
    service: home
`);
      base = `http://127.0.0.1:${drover.adminPort}`;
      await waitFor(async () => (await request(drover.port, { path: '/api/x' })).body === 'api');
      browser = await launch();
    });

    afterAll(async () => {
      await browser?.close();
      await drover?.stop();
      await Promise.all([local?.close(), api?.close()]);
    });

    it('header, routes view, service view and backends name file or etcd, with the revision in force; a push is followed', async () => {
      const page = await browser.newPage();
      const errors = watchErrors(page);
      const rev = await revision();
      expect(rev).toMatch(/^\d+$/);

      await page.goto(`${base}/#/routes`);
      await expect.poll(() => page.locator('#config').textContent()).toBe(`config: file (1 routes) + etcd ${CONFIG} @ revision ${rev} (1 routes)`);
      const rows = page.locator('#routes tbody tr');
      await expect.poll(() => rows.count()).toBe(2);
      // the file's route first, then the shared ones
      expect(await rows.nth(0).locator('td').nth(2).textContent()).toBe('/local*');
      expect(await rows.nth(0).locator('td').nth(5).textContent()).toBe('home');
      expect(await rows.nth(0).locator('td[data-col="source"]').textContent()).toBe('file');
      expect(await rows.nth(1).locator('td').nth(5).textContent()).toBe('api');
      expect(await rows.nth(1).locator('td[data-col="source"]').textContent()).toBe(`etcd @${rev}`);

      await page.goto(`${base}/#/service/api`);
      await expect.poll(() => page.locator('#svc-balancer').textContent()).toBe(`least_conn \u00B7 settings: etcd @${rev}`);
      await expect.poll(() => page.locator('#svc-backends tr[data-backend="a1"] td[data-col="source"]').textContent()).toBe('etcd');
      await page.goto(`${base}/#/service/home`);
      await expect.poll(() => page.locator('#svc-balancer').textContent()).toBe('round_robin \u00B7 settings: file');
      await expect.poll(() => page.locator('#svc-backends tr[data-backend="h1"] td[data-col="source"]').textContent()).toBe('static');

      // a new revision: the open page follows it
      await shared.kv.put(`${CONFIG}routes`).value('- {match: {path_prefix: /api}, service: api}\n- {match: {path_prefix: /v2}, service: api}\n');
      await waitFor(async () => (await revision()) !== rev);
      const next = await revision();
      await page.goto(`${base}/#/routes`);
      await expect.poll(() => page.locator('#config').textContent()).toBe(`config: file (1 routes) + etcd ${CONFIG} @ revision ${next} (2 routes)`);
      await expect.poll(() => rows.count()).toBe(3);
      expect(await rows.nth(2).locator('td[data-col="source"]').textContent()).toBe(`etcd @${next}`);
      expect(errors).toEqual([]);
      await page.close();
    });
  });
});
