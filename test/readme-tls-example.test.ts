/**
 * The README's "TLS and HTTP/2" example, taken from README.md as a user would copy it: only the
 * paths and addresses it tells the user to adjust are replaced (certificate directory, listen
 * addresses on port 0, the two backends' addresses). `drover check` accepts it, then the real
 * `bin/drover` serves it: curl over HTTP/2 with `--resolve` (SNI) gets the exact certificate for
 * example.com and the wildcard for another name, HSTS as configured, the gRPC route reaches the
 * h2c backend, and the plain listener redirects to https.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startBackend, type TestBackend } from './helpers/backends.js';
import { describeWith, testCa, type TestCa } from './helpers/certs.js';
import { BIN, ROOT, startDrover, tempDir, type DroverProcess } from './helpers/drover.js';

const run = promisify(execFile);

/** The first ```yaml block of the README section `heading`. */
function readmeYaml(heading: string): string {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n## ${heading}\n`);
  if (at === -1) throw new Error(`README has no section "${heading}"`);
  const m = /```yaml\n([\s\S]*?)```/.exec(readme.slice(at));
  if (m === null) throw new Error(`README section "${heading}" has no yaml example`);
  return m[1] as string;
}

/** Replaces `from` in `text`, failing when the example no longer contains it (the test would silently test less). */
function adjust(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`the README example no longer contains ${from}`);
  return text.split(from).join(to);
}

describeWith(['openssl', 'curl'], 'README "TLS and HTTP/2" example', () => {
  let dir: string;
  let ca: TestCa;
  let web: TestBackend;
  let grpc: http2.Http2Server;
  let drover: DroverProcess;
  let tlsPort: number;
  let plainPort: number;

  beforeAll(async () => {
    dir = tempDir('drover-readme-tls-');
    ca = testCa(dir);
    const certs = path.join(dir, 'certs');
    mkdirSync(certs);
    // the files the example names, for the names it serves
    for (const [base, names] of [
      ['example.com', ['example.com', 'www.example.com']],
      ['wildcard.example.com', ['*.example.com']],
    ] as const) {
      // valid long enough that `drover check` has nothing to warn about
      const leaf = ca.leaf(base, names, { dir: certs, days: 90 });
      renameSync(leaf.cert, path.join(certs, `${base}.pem`));
      renameSync(leaf.key, path.join(certs, `${base}.key`));
    }
    web = await startBackend('web');
    web.behave((req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`web ${req.method ?? ''} ${req.url ?? ''} proto=${String(req.headers['x-forwarded-proto'])}`));
    grpc = http2.createServer();
    grpc.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`h2c ${String(headers[':path'])}`);
    });
    await new Promise<void>((resolve) => grpc.listen(0, '127.0.0.1', resolve));
    const grpcAddr = grpc.address();
    const grpcPort = typeof grpcAddr === 'object' && grpcAddr !== null ? grpcAddr.port : 0;
    let yaml = readmeYaml('TLS and HTTP/2');
    yaml = adjust(yaml, 'certs/', `${certs}/`);
    yaml = adjust(yaml, '0.0.0.0:443', '127.0.0.1:0');
    yaml = adjust(yaml, '0.0.0.0:80', '127.0.0.1:0');
    yaml = adjust(yaml, 'http://127.0.0.1:9001', web.url);
    yaml = adjust(yaml, 'h2c://127.0.0.1:50051', `h2c://127.0.0.1:${grpcPort}`);
    const file = path.join(dir, 'drover.yaml');
    writeFileSync(file, `${yaml}admin: {address: 127.0.0.1:0}\naccess_log: off\n`);
    const check = await run(process.execPath, [BIN, 'check', '-c', file]);
    expect(check.stderr).toBe('');
    drover = await startDrover(readFileSync(file, 'utf8'));
    const ready = await drover.waitForLog((l) => l['msg'] === 'ready');
    [tlsPort, plainPort] = (ready['listen'] as { port: number }[]).map((l) => l.port) as [number, number];
  });

  afterAll(async () => {
    await drover?.stop();
    await web?.close();
    await new Promise<void>((resolve) => (grpc === undefined ? resolve() : grpc.close(() => resolve())));
    rmSync(dir, { recursive: true, force: true });
  });

  /** curl over HTTP/2 to `name` (resolved to loopback, so curl sends it as SNI); status line, headers, body and the certificate's subject. */
  async function curl(name: string, p: string): Promise<{ head: string; body: string; subject: string }> {
    const r = await run('curl', ['-sS', '-v', '--http2', '--cacert', ca.ca, '--resolve', `${name}:${tlsPort}:127.0.0.1`, '-D', '-', `https://${name}:${tlsPort}${p}`]);
    const split = r.stdout.indexOf('\r\n\r\n');
    return { head: r.stdout.slice(0, split), body: r.stdout.slice(split + 4), subject: /subject: (.*)/.exec(r.stderr)?.[1]?.trim() ?? '' };
  }

  it('serves example.com over HTTP/2 with its certificate and HSTS; another name gets the wildcard', async () => {
    const site = await curl('example.com', '/hello');
    expect(site.head).toMatch(/^HTTP\/2 200/);
    expect(site.head).toMatch(/strict-transport-security: max-age=31536000/i);
    expect(site.subject).toBe('CN=example.com');
    expect(site.body).toBe('web GET /hello proto=https');
    const other = await curl('api.example.com', '/');
    expect([other.head.split('\r\n')[0], other.subject]).toEqual(['HTTP/2 200 ', 'CN=*.example.com']);
  });

  it('routes the gRPC prefix to the h2c backend', async () => {
    const g = await curl('www.example.com', '/my.package.Service/Call');
    expect([g.head.split('\r\n')[0], g.body, g.subject]).toEqual(['HTTP/2 200 ', 'h2c /my.package.Service/Call', 'CN=example.com']);
  });

  it('the plain listener redirects to https', async () => {
    const r = await run('curl', ['-sS', '-D', '-', '-o', '/dev/null', '-H', 'Host: example.com', `http://127.0.0.1:${plainPort}/a?b=1`]);
    expect(r.stdout).toMatch(/^HTTP\/1.1 308/);
    expect(r.stdout).toMatch(/location: https:\/\/example.com\/a\?b=1/i);
  });
});
