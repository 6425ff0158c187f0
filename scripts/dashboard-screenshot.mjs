// Makes docs/dashboard.png, the README's screenshot: a real drover (bin/drover, after
// `npm run build`) over a few local backends with different latencies and error rates, some
// traffic for SECONDS seconds, then chromium (/usr/bin/chromium) on the service view.
// Usage: node scripts/dashboard-screenshot.mjs [SECONDS=60]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const seconds = Number(process.argv[2] ?? 60);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function backend(name, baseMs, jitterMs, failRate) {
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') return res.end('ok');
    const delay = baseMs + Math.random() * jitterMs * (Math.random() < 0.05 ? 6 : 1);
    setTimeout(() => {
      const fail = Math.random() < failRate;
      res.writeHead(fail ? 503 : 200, { 'content-type': 'text/plain' });
      res.end(name);
    }, delay);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` })));
}

const b = await Promise.all([backend('web-1', 4, 6, 0.002), backend('web-2', 6, 10, 0.01), backend('web-3', 25, 40, 0.05), backend('api-1', 2, 3, 0), backend('api-2', 2, 4, 0)]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-shot-'));
fs.writeFileSync(path.join(dir, 'drover.yaml'), `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    balancer: p2c
    slow_start: 30s
    health: {active: {path: /healthz, interval: 2s}}
    backends: [{url: ${b[0].url}, id: web-1}, {url: ${b[1].url}, id: web-2}, {url: ${b[2].url}, id: web-3, weight: 2}]
  api:
    health: {active: {path: /healthz, interval: 2s}}
    backends: [{url: ${b[3].url}, id: api-1}, {url: ${b[4].url}, id: api-2}]
  legacy:
    backends: [{url: http://127.0.0.1:2, id: legacy-1}]
routes:
  - match: {path_prefix: /api}
    service: api
  - match: {path_prefix: /legacy}
    service: legacy
  - match: {path_prefix: /}
    service: web
`);
const child = spawn(process.execPath, [path.join(root, 'bin', 'drover'), 'start', '-c', path.join(dir, 'drover.yaml')], { stdio: ['ignore', 'pipe', 'inherit'] });
const ready = await new Promise((resolve) => {
  createInterface({ input: child.stdout }).on('line', (l) => {
    try {
      const j = JSON.parse(l);
      if (j.msg === 'ready') resolve(j);
    } catch {}
  });
});
const port = ready.listen[0].port;
const admin = `http://127.0.0.1:${ready.admin.port}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const get = (p) => new Promise((resolve) => http.get({ host: '127.0.0.1', port, path: p, agent }, (res) => { res.resume(); res.on('end', resolve); }).on('error', resolve));
const until = Date.now() + seconds * 1000;
let stop = false;
const load = (async () => {
  let t = 0;
  while (!stop) {
    t++;
    // a rate that swells and eases, so the charts have a shape
    const rate = 40 + 30 * Math.sin(t / 40);
    const batch = [];
    for (let i = 0; i < rate / 10; i++) batch.push(get(`/page/${i}`));
    if (t % 3 === 0) batch.push(get('/api/items'));
    if (t % 50 === 0) batch.push(get('/legacy/x'));
    await Promise.all(batch);
    await new Promise((r) => setTimeout(r, 100));
  }
})();
await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now())));
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
await page.goto(`${admin}/#/service/web`);
await page.waitForTimeout(3000);
await page.screenshot({ path: path.join(root, 'docs', 'dashboard.png') });
await page.goto(`${admin}/#/`);
await page.waitForTimeout(3000);
await page.screenshot({ path: path.join(root, 'test', 'artifacts', 'overview-demo.png') });
await browser.close();
stop = true;
await load;
child.kill('SIGTERM');
agent.destroy();
for (const x of b) x.server.close();
fs.rmSync(dir, { recursive: true, force: true });
