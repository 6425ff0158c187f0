/**
 * End-to-end TLS: the real `bin/drover` with a TLS listener in front of real backends, driven
 * by curl and Node's https, tls and http2 clients. Certificates are made by openssl in a temp
 * dir for each run (see helpers/certs.ts).
 */
import { execFile } from 'node:child_process';
import { renameSync, writeFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startBackend, type TestBackend } from './helpers/backends.js';
import { describeWith, testCa, type LeafFiles, type TestCa } from './helpers/certs.js';
import { startDrover, tempDir, type DroverProcess } from './helpers/drover.js';
import { scrapeSum } from './helpers/metrics.js';
import { waitFor } from './helpers/wait.js';

const run = promisify(execFile);

/** One TLS handshake to `port` naming `servername`: the leaf's subject CN, ALPN and version. */
function handshake(port: number, caPem: string, options: tls.ConnectionOptions = {}): Promise<{ cn: string; alpn: string | false | null; version: string | null; socket: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem, ...options }, () => {
      const cert = socket.getPeerCertificate();
      resolve({ cn: String(cert.subject?.CN ?? ''), alpn: socket.alpnProtocol, version: socket.getProtocol(), socket });
    });
    socket.once('error', reject);
  });
}

/** A GET over one HTTP/2 session; resolves with status, headers and body. */
function h2get(session: http2.ClientHttp2Session, p: string, headers: http2.OutgoingHttpHeaders = {}): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': p, ...headers });
    let status = 0;
    let h: http2.IncomingHttpHeaders = {};
    req.on('response', (r) => {
      status = Number(r[':status']);
      h = r;
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status, headers: h, body: Buffer.concat(chunks).toString('utf8') }));
    req.on('error', reject);
    req.end();
  });
}

function httpsGet(port: number, ca: string, servername: string, p = '/'): Promise<{ status: number; headers: Record<string, unknown>; body: string; cn: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: p, ca, servername, headers: { host: servername }, agent: false }, (res) => {
      const cn = String((res.socket as tls.TLSSocket).getPeerCertificate().subject?.CN ?? '');
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), cn }));
    });
    req.on('error', reject);
    req.end();
  });
}

describeWith(['openssl', 'curl'], 'TLS listener', () => {
  let dir: string;
  let ca: TestCa;
  let other: TestCa;
  let site: LeafFiles;
  let wild: LeafFiles;
  let clientCert: LeafFiles;
  let a: TestBackend;
  let drover: DroverProcess;
  let mtls: DroverProcess;

  beforeAll(async () => {
    dir = tempDir('drover-tls-');
    ca = testCa(dir);
    other = testCa(dir, 'other-ca');
    site = ca.leaf('site', ['site.test', 'www.site.test']);
    wild = ca.leaf('wild', ['*.wild.test']);
    clientCert = ca.leaf('client', ['client.test'], { usage: 'clientAuth' });
    a = await startBackend('a');
    a.behave((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-proto': String(req.headers['x-forwarded-proto']) });
      res.end(`a ${req.method} ${req.url} host=${req.headers.host} http=${req.httpVersion}`);
    });
    drover = await startDrover(`
listen:
  - address: 127.0.0.1:0
    tls:
      certificates:
        - {cert: ${site.cert}, key: ${site.key}}
        - {cert: ${wild.cert}, key: ${wild.key}}
    hsts: 1h
admin: {address: 127.0.0.1:0}
access_log: stdout
services:
  web:
    backends: [{url: ${a.url}, id: a}]
routes:
  - match: {path_prefix: /}
    service: web
`);
    mtls = await startDrover(`
listen:
  - address: 127.0.0.1:0
    tls: {cert: ${site.cert}, key: ${site.key}, client_ca: ${ca.ca}, min_version: TLSv1.3, alpn: [http/1.1]}
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    backends: [{url: ${a.url}, id: a}]
routes:
  - match: {path_prefix: /}
    service: web
`);
  });

  afterAll(async () => {
    await drover?.stop();
    await mtls?.stop();
    await a?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('picks the certificate by SNI: exact name, then wildcard, else the first', async () => {
    const cases: [string | undefined, string][] = [
      ['www.site.test', 'site.test'],
      ['api.wild.test', '*.wild.test'],
      ['deep.api.wild.test', 'site.test'], // a wildcard covers one label only
      ['unknown.test', 'site.test'],
      [undefined, 'site.test'],
    ];
    for (const [servername, cn] of cases) {
      const h = await handshake(drover.port, ca.caPem, servername === undefined ? { rejectUnauthorized: false } : { servername, rejectUnauthorized: false });
      h.socket.destroy();
      expect([servername, h.cn]).toEqual([servername, cn]);
    }
  });

  it('curl --http2 and --http1.1 on the same port, X-Forwarded-Proto https, HSTS, protocol in the access log', async () => {
    const url = `https://site.test:${drover.port}/hello?x=1`;
    const resolve = `site.test:${drover.port}:127.0.0.1`;
    const h2 = await run('curl', ['-sS', '--http2', '--cacert', ca.ca, '--resolve', resolve, '-D', '-', url]);
    expect(h2.stdout).toMatch(/^HTTP\/2 200/);
    expect(h2.stdout).toMatch(/strict-transport-security: max-age=3600/i);
    expect(h2.stdout).toMatch(/x-proto: https/i);
    expect(h2.stdout.trim().endsWith('a GET /hello?x=1 host=site.test:' + drover.port + ' http=1.1')).toBe(true);
    const h1 = await run('curl', ['-sS', '--http1.1', '--cacert', ca.ca, '--resolve', resolve, '-D', '-', url]);
    expect(h1.stdout).toMatch(/^HTTP\/1.1 200/);
    expect(h1.stdout).toMatch(/strict-transport-security: max-age=3600/i);
    expect(h1.stdout.trim().endsWith('a GET /hello?x=1 host=site.test:' + drover.port + ' http=1.1')).toBe(true);
    const lines = await waitFor(() => drover.logs.filter((l) => l['path'] === '/hello?x=1').length === 2).then(() => drover.logs.filter((l) => l['path'] === '/hello?x=1'));
    expect(lines.map((l) => l['protocol'])).toEqual(['HTTP/2.0', 'HTTP/1.1']);
  });

  it("Node's https and http2 clients; h2 maps :authority to Host and drops te", async () => {
    const r = await httpsGet(drover.port, ca.caPem, 'www.site.test', '/node');
    expect([r.status, r.body, r.cn]).toEqual([200, 'a GET /node host=www.site.test http=1.1', 'site.test']);
    const session = http2.connect(`https://127.0.0.1:${drover.port}`, { ca: ca.caPem, servername: 'x.wild.test' });
    try {
      const seenBefore = a.seen.length;
      const g = await h2get(session, '/h2', { ':authority': 'x.wild.test', te: 'trailers' });
      expect([g.status, g.body]).toEqual([200, 'a GET /h2 host=x.wild.test http=1.1']);
      const seen = a.seen[seenBefore];
      expect(seen?.headers['te']).toBeUndefined();
      expect(seen?.rawHeaders.some((n) => n.startsWith(':'))).toBe(false);
      expect(seen?.headers['x-forwarded-proto']).toBe('https');
    } finally {
      session.close();
    }
  });

  it('resumes sessions from tickets', async () => {
    const first = await handshake(drover.port, ca.caPem, { servername: 'site.test', maxVersion: 'TLSv1.2' });
    const ticket = first.socket.getSession();
    first.socket.destroy();
    expect(ticket).toBeDefined();
    const again = await handshake(drover.port, ca.caPem, { servername: 'site.test', maxVersion: 'TLSv1.2', session: ticket });
    expect(again.socket.isSessionReused()).toBe(true);
    again.socket.destroy();
  });

  it('counts handshakes by listener and result, exports certificate expiry', async () => {
    const label = `127.0.0.1:${drover.port}`;
    const before = await scrapeSum(drover.adminPort, 'drover_tls_handshakes_total', { listener: label, result: 'failure' });
    // a client that does not trust drover's CA aborts the handshake
    await expect(handshake(drover.port, other.caPem, { servername: 'site.test' })).rejects.toThrow();
    await waitFor(async () => (await scrapeSum(drover.adminPort, 'drover_tls_handshakes_total', { listener: label, result: 'failure' })) === before + 1);
    expect(await scrapeSum(drover.adminPort, 'drover_tls_handshakes_total', { listener: label, result: 'success' })).toBeGreaterThan(0);
    const expiry = await scrapeSum(drover.adminPort, 'drover_tls_certificate_expiry_seconds', { name: site.cert });
    // made valid for 2 days
    expect(expiry).toBeGreaterThan(86_400);
    expect(expiry).toBeLessThanOrEqual(2 * 86_400);
  });

  it('min_version TLSv1.3 refuses a TLS 1.2 client; alpn [http/1.1] turns h2 off', async () => {
    await expect(
      handshake(mtls.port, ca.caPem, { servername: 'site.test', maxVersion: 'TLSv1.2', cert: clientCert.certPem, key: clientCert.keyPem }),
    ).rejects.toThrow(/version|protocol/i);
    const h = await handshake(mtls.port, ca.caPem, { servername: 'site.test', ALPNProtocols: ['h2', 'http/1.1'], cert: clientCert.certPem, key: clientCert.keyPem });
    expect([h.version, h.alpn]).toEqual(['TLSv1.3', 'http/1.1']);
    h.socket.destroy();
  });

  it('mutual TLS: a client certificate signed by client_ca is accepted, none or another is refused', async () => {
    const resolve = `site.test:${mtls.port}:127.0.0.1`;
    const url = `https://site.test:${mtls.port}/m`;
    const ok = await run('curl', ['-sS', '--cacert', ca.ca, '--resolve', resolve, '--cert', clientCert.cert, '--key', clientCert.key, url]);
    expect(ok.stdout).toBe(`a GET /m host=site.test:${mtls.port} http=1.1`);
    await expect(run('curl', ['-sS', '--cacert', ca.ca, '--resolve', resolve, url])).rejects.toThrow();
    const stranger = other.leaf('stranger', ['stranger.test'], { usage: 'clientAuth' });
    await expect(run('curl', ['-sS', '--cacert', ca.ca, '--resolve', resolve, '--cert', stranger.cert, '--key', stranger.key, url])).rejects.toThrow();
  });

  it('a replaced certificate is served to new connections under load with no failed request; open ones keep theirs; a broken pair is refused', async () => {
    const d = tempDir('drover-rot-');
    const c1 = ca.leaf('rot', ['rot.test'], { dir: d });
    const p = await startDrover(`
listen:
  - address: 127.0.0.1:0
    tls: {cert: ${c1.cert}, key: ${c1.key}}
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    backends: [{url: ${a.url}, id: a}]
routes:
  - match: {path_prefix: /}
    service: web
`);
    try {
      const fingerprint = async (): Promise<string> => {
        const h = await handshake(p.port, ca.caPem, { servername: 'rot.test' });
        const fp = h.socket.getPeerCertificate().fingerprint256;
        h.socket.destroy();
        return fp;
      };
      const open = http2.connect(`https://127.0.0.1:${p.port}`, { ca: ca.caPem, servername: 'rot.test' });
      await h2get(open, '/before');
      const oldFp = (open.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
      expect(await fingerprint()).toBe(oldFp);
      // load while the certificate changes: four loops of requests on new connections, one on a
      // kept-alive connection that must stay the same socket (open connections are untouched)
      let stop = false;
      let ok = 0;
      const failures: string[] = [];
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca.caPem, servername: 'rot.test' });
      const keptSockets = new Set<tls.TLSSocket>();
      const one = (fresh: boolean): Promise<number> =>
        new Promise<number>((resolve) => {
          const req = https.request({ host: '127.0.0.1', port: p.port, path: '/load', ca: ca.caPem, servername: 'rot.test', headers: { host: 'rot.test' }, agent: fresh ? false : agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          if (!fresh) req.on('socket', (s) => keptSockets.add(s as tls.TLSSocket));
          req.on('error', (e) => {
            failures.push(e.message);
            resolve(0);
          });
          req.end();
        });
      const loop = async (fresh: boolean): Promise<void> => {
        while (!stop) {
          const r = await one(fresh);
          if (r === 200) ok++;
          else if (r !== 0) failures.push(`status ${r}`);
        }
      };
      const load = Promise.all([loop(true), loop(true), loop(true), loop(true), loop(false)]);
      await waitFor(() => ok > 20);
      // a new pair made elsewhere, moved over the old files (key first, then the certificate)
      const staged = tempDir('drover-stage-');
      const c2 = ca.leaf('rot', ['rot.test'], { dir: staged });
      renameSync(c2.key, c1.key);
      renameSync(c2.cert, c1.cert);
      await waitFor(async () => (await fingerprint()) !== oldFp, 10_000);
      const okAtSwap = ok;
      await waitFor(() => ok > okAtSwap + 40);
      stop = true;
      await load;
      expect(failures).toEqual([]);
      // the kept-alive connection: one socket from start to end, still on the old certificate
      expect(keptSockets.size).toBe(1);
      const kept = [...keptSockets][0] as tls.TLSSocket;
      expect([kept.destroyed, kept.getPeerCertificate().fingerprint256]).toEqual([false, oldFp]);
      agent.destroy();
      // the open session still works, on its old certificate
      const g = await h2get(open, '/after');
      expect(g.status).toBe(200);
      expect((open.socket as tls.TLSSocket).getPeerCertificate().fingerprint256).toBe(oldFp);
      open.close();
      const newFp = await fingerprint();
      // a broken pair: the key of another certificate
      const reloadFailures = await scrapeSum(p.adminPort, 'drover_config_reloads_total', { result: 'failure' });
      writeFileSync(path.join(staged, 'k'), site.keyPem);
      renameSync(path.join(staged, 'k'), c1.key);
      await waitFor(async () => (await scrapeSum(p.adminPort, 'drover_config_reloads_total', { result: 'failure' })) > reloadFailures, 10_000);
      expect(await fingerprint()).toBe(newFp);
      expect(p.logs.some((l) => l['msg'] === 'certificate refused: the previous one keeps serving')).toBe(true);
      rmSync(staged, { recursive: true, force: true });
    } finally {
      await p.stop();
      rmSync(d, { recursive: true, force: true });
    }
  });
});
