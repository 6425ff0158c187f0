/**
 * A page loaded over HTTPS and HTTP/2 in headless chromium: the real `bin/drover` on a TLS
 * listener (certificate from a test CA), an HTTP/1.1 backend serving an HTML page, a script and
 * an image. Chromium trusts the certificate only by its SPKI hash (no blanket "ignore errors"),
 * reaches `site.test` through a host mapping (so it sends SNI), and the test reads back what the
 * browser itself recorded: the navigation and both subresources came over `h2`, the script ran,
 * the image decoded; drover's access log has `protocol: HTTP/2.0` for the three requests.
 * Screenshot in test/artifacts/.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { startBackend, type TestBackend } from './helpers/backends.js';
import { ARTIFACTS, browserTests, launch, noteSkipped, watchErrors } from './helpers/browser.js';
import { describeWith, testCa } from './helpers/certs.js';
import { startDrover, tempDir, type DroverProcess } from './helpers/drover.js';
import { waitFor } from './helpers/wait.js';

noteSkipped('e2e-h2-browser.test.ts');

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>drover h2</title>
<link rel="icon" href="data:,"></head>
<body><h1>served by drover over h2</h1><p id="script">script not run</p>
<img id="pixel" src="/static/pixel.png" width="64" height="64" alt="pixel">
<script src="/static/app.js"></script></body></html>`;
const SCRIPT = `document.getElementById('script').textContent = 'script ran';`;
/** a 1x1 red PNG */
const PIXEL = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==', 'base64');
const PATHS = ['/index.html', '/static/app.js', '/static/pixel.png'];

/** base64 SHA-256 of a certificate's SubjectPublicKeyInfo: what --ignore-certificate-errors-spki-list takes */
function spkiHash(pem: string): string {
  const der = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

interface Entry {
  readonly name: string;
  readonly protocol: string;
}

describeWith(['openssl'], 'a page over HTTPS and HTTP/2 in chromium', () => {
  let dir: string;
  let backend: TestBackend;
  let drover: DroverProcess;
  let browser: Browser | undefined;
  let leafPem: string;

  beforeAll(async () => {
    dir = tempDir('drover-h2-browser-');
    const ca = testCa(dir);
    const site = ca.leaf('site', ['site.test']);
    leafPem = site.certPem;
    backend = await startBackend('page');
    backend.behave((req, res) => {
      const url = req.url ?? '';
      if (url === '/index.html') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      else if (url === '/static/app.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(SCRIPT);
      else if (url === '/static/pixel.png') res.writeHead(200, { 'content-type': 'image/png' }).end(PIXEL);
      else res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
    });
    drover = await startDrover(`
listen:
  - address: 127.0.0.1:0
    tls: {cert: ${site.cert}, key: ${site.key}}
admin: {address: 127.0.0.1:0}
access_log: stdout
services:
  web:
    backends: [{url: ${backend.url}, id: page}]
routes:
  - match: {path_prefix: /}
    service: web
`);
  });

  afterAll(async () => {
    await browser?.close();
    await drover?.stop();
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!browserTests)('loads the page, its script and its image over h2; the access log says HTTP/2.0', async () => {
    browser = await launch([`--ignore-certificate-errors-spki-list=${spkiHash(leafPem)}`, '--host-resolver-rules=MAP site.test 127.0.0.1']);
    const page = await browser.newPage();
    const errors = watchErrors(page);
    const response = await page.goto(`https://site.test:${drover.port}/index.html`, { waitUntil: 'load' });
    expect(response?.status()).toBe(200);
    // what the browser did, read in the page (strings: this file is compiled without the DOM types)
    expect(await page.evaluate(`document.getElementById('script').textContent`)).toBe('script ran');
    expect(await page.evaluate(`document.getElementById('pixel').naturalWidth`)).toBe(1);
    const entries = (await page.evaluate(
      `[...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')].map((e) => ({ name: new URL(e.name).pathname, protocol: e.nextHopProtocol }))`,
    )) as Entry[];
    const byName = (a: Entry, b: Entry): number => a.name.localeCompare(b.name);
    expect([...entries].sort(byName)).toEqual(PATHS.map((name) => ({ name, protocol: 'h2' })).sort(byName));
    await page.screenshot({ path: path.join(ARTIFACTS, 'h2-page.png') });
    expect(errors).toEqual([]);

    // drover's side: the three requests, each logged as HTTP/2.0 with the backend's status
    await waitFor(() => PATHS.every((p) => drover.logs.some((l) => l['path'] === p)));
    const logged = PATHS.map((p) => drover.logs.find((l) => l['path'] === p)).map((l) => [l?.['path'], l?.['protocol'], l?.['status']]);
    expect(logged).toEqual(PATHS.map((p) => [p, 'HTTP/2.0', 200]));
    // each once, and nothing else (the page names a data: icon, so no /favicon.ico)
    expect(backend.seen.map((s) => s.url).sort()).toEqual([...PATHS].sort());
  });
});
