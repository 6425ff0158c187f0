/**
 * The runtime's edge hooks, in process with real sockets: `redirect_https` and `hsts` on a
 * plain listener, the ACME http-01 challenge responder (consulted before routing and before
 * the redirect, on the fast path's listeners too), and certificates set programmatically (what
 * the ACME module feeds) served by SNI next to the files' ones.
 */
import http2 from 'node:http2';
import { rmSync } from 'node:fs';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { silentLogger } from '../src/observability/log.js';
import { Metrics } from '../src/observability/metrics.js';
import { Runtime } from '../src/app/runtime.js';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { describeWith, testCa, type TestCa } from './helpers/certs.js';
import { tempDir } from './helpers/drover.js';

describeWith(['openssl'], 'edge listeners', () => {
  let dir: string;
  let ca: TestCa;
  let a: TestBackend;
  let rt: Runtime;
  let redirectPort: number;
  let plainPort: number;
  let tlsPort: number;

  beforeAll(async () => {
    dir = tempDir('drover-edge-');
    ca = testCa(dir);
    const site = ca.leaf('site', ['site.test']);
    a = await startBackend('a');
    const config = parseConfig(
      `
listen:
  - address: 127.0.0.1:0
    redirect_https: true
    hsts: 1d
  - address: 127.0.0.1:0
  - address: 127.0.0.1:0
    tls: {cert: ${site.cert}, key: ${site.key}}
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    backends: [{url: ${a.url}, id: a}]
routes:
  - match: {path_prefix: /}
    service: web
`,
      `${dir}/drover.yaml`,
    );
    rt = await Runtime.start(config, { logger: silentLogger(), metrics: new Metrics({ defaultMetrics: false }) });
    const ports = rt.listenAddresses().map((l) => l.port);
    [redirectPort, plainPort, tlsPort] = ports as [number, number, number];
  });

  afterAll(async () => {
    await rt?.shutdown(0);
    await a?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('redirect_https answers 308 to https://host/path (port dropped, query kept) with HSTS, proxying nothing', async () => {
    const before = a.seen.length;
    const cases: [string, string][] = [
      ['/a/b?c=1', 'https://example.com/a/b?c=1'],
      ['/', 'https://example.com/'],
    ];
    for (const [p, location] of cases) {
      const r = await request(redirectPort, { path: p, headers: { host: 'Example.com:80' } });
      expect([r.status, r.headers['location'], r.headers['strict-transport-security']]).toEqual([308, location, 'max-age=86400']);
    }
    const post = await request(redirectPort, { method: 'POST', path: '/form', headers: { host: 'example.com' }, body: 'x=1' });
    expect([post.status, post.headers['location']]).toEqual([308, 'https://example.com/form']);
    expect(a.seen.length).toBe(before);
  });

  it('the ACME challenge responder answers before routing and before the redirect', async () => {
    const tokens = new Map([['tok-1', 'tok-1.thumbprint']]);
    rt.setChallengeResponder((t) => tokens.get(t));
    try {
      for (const port of [redirectPort, plainPort]) {
        const r = await request(port, { path: '/.well-known/acme-challenge/tok-1', headers: { host: 'example.com' } });
        expect([port, r.status, r.body]).toEqual([port, 200, 'tok-1.thumbprint']);
        const missing = await request(port, { path: '/.well-known/acme-challenge/nope', headers: { host: 'example.com' } });
        expect([port, missing.status]).toEqual([port, 404]);
      }
      expect(a.seen.some((s) => s.url.includes('acme-challenge'))).toBe(false);
    } finally {
      rt.setChallengeResponder(undefined);
    }
    // without a responder the path is an ordinary request: proxied on the plain listener
    const r = await request(plainPort, { path: '/.well-known/acme-challenge/tok-1', headers: { host: 'example.com' } });
    expect([r.status, r.body]).toEqual([200, 'a']);
  });

  it('a certificate set programmatically is chosen by SNI; a broken one is refused and changes nothing', async () => {
    const acme = ca.leaf('acme', ['acme.test']);
    expect(rt.setCertificate('acme:acme.test', acme.certPem, acme.keyPem)).toBe(1);
    const cn = async (servername: string): Promise<string> => {
      const socket = tls.connect({ host: '127.0.0.1', port: tlsPort, servername, ca: ca.caPem });
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', () => resolve());
        socket.once('error', reject);
      });
      const name = String(socket.getPeerCertificate().subject?.CN ?? '');
      socket.destroy();
      return name;
    };
    expect([await cn('acme.test'), await cn('site.test')]).toEqual(['acme.test', 'site.test']);
    const other = ca.leaf('other', ['acme.test']);
    expect(() => rt.setCertificate('acme:acme.test', other.certPem, acme.keyPem)).toThrow(/does not match/);
    expect(await cn('acme.test')).toBe('acme.test');
    // and HTTP/2 works with it
    const s = http2.connect(`https://127.0.0.1:${tlsPort}`, { ca: ca.caPem, servername: 'acme.test' });
    const body = await new Promise<string>((resolve, reject) => {
      const req = s.request({ ':path': '/x' });
      let b = '';
      req.on('data', (c: Buffer) => (b += c.toString()));
      req.on('end', () => resolve(b));
      req.on('error', reject);
    });
    s.close();
    expect(body).toBe('a');
  });
});
