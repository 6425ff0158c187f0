/**
 * `https://` backends: drover verifies them against `services.<name>.tls.ca` (relative to the
 * config file), sends `server_name` as SNI and checks the certificate against it, and refuses
 * (502) what it cannot verify unless `verify: false`. Active health checks use the same
 * settings. Certificates come from a CA the test makes with openssl.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { BIN, startDrover, tempDir, type DroverProcess } from './helpers/drover.js';
import { scrapeSum } from './helpers/metrics.js';
import { adminBackends } from './helpers/raw-backend.js';
import { issueCert, makeCa } from './helpers/tls.js';
import { waitFor } from './helpers/wait.js';

let server: TestBackend | undefined;
let port: number;
let drover: DroverProcess;
/** SNI of every TLS connection the backend accepted */
const sni: (string | false | null)[] = [];
let certDir: string;

beforeAll(async () => {
  certDir = tempDir('drover-upstream-tls-');
  const ca = makeCa(certDir);
  // only a DNS name: reaching it by IP address verifies only with server_name
  const leaf = issueCert(ca, 'api', ['DNS:api.internal']);
  server = await startBackend('tls-backend', { tls: { cert: fs.readFileSync(leaf.cert), key: fs.readFileSync(leaf.key) } });
  server.behave((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`tls-backend ${req.url ?? ''}`);
  });
  server.server.on('secureConnection', (s: TLSSocket) => sni.push(s.servername));
  port = server.port;
  const url = `https://127.0.0.1:${port}`;
  drover = await startDrover(
    `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  good:
    tls: {ca: backend-ca.pem, server_name: api.internal}
    health:
      active: {path: /healthz, interval: 200ms, rise: 1}
    backends: [{url: "${url}", id: good}]
  noname:
    retries: 0
    tls: {ca: backend-ca.pem}
    backends: [{url: "${url}", id: noname}]
  noca:
    retries: 0
    tls: {server_name: api.internal}
    health:
      active: {path: /healthz, interval: 200ms, fall: 1}
    backends: [{url: "${url}", id: noca}]
  insecure:
    tls: {verify: false}
    backends: [{url: "${url}", id: insecure}]
routes:
  - {match: {path_prefix: /good}, service: good}
  - {match: {path_prefix: /noname}, service: noname}
  - {match: {path_prefix: /noca}, service: noca}
  - {match: {path_prefix: /insecure}, service: insecure}
`,
    { files: { 'backend-ca.pem': fs.readFileSync(ca.cert, 'utf8') } },
  );
});

afterAll(async () => {
  await drover?.stop();
  await server?.close();
  if (certDir !== undefined) fs.rmSync(certDir, { recursive: true, force: true });
});

describe('https:// backends', () => {
  it('verified with the configured CA and server_name: 200 from the backend, SNI was the server_name', async () => {
    const r = await request(drover.port, { path: '/good/x' });
    expect(r).toMatchObject({ status: 200, body: 'tls-backend /good/x' });
    expect(sni).toContain('api.internal');
  });

  it('the same CA but the certificate does not name the IP address dialled: 502', async () => {
    const r = await request(drover.port, { path: '/noname' });
    expect(r).toMatchObject({ status: 502, body: '{"error":"bad_gateway","service":"noname"}' });
    expect(await scrapeSum(drover.adminPort, 'drover_upstream_errors_total', { service: 'noname', kind: 'connect' })).toBe(1);
  });

  it('without the CA the certificate is not trusted: 502, counted as a connect error (the request was never sent)', async () => {
    const r = await request(drover.port, { path: '/noca' });
    expect(r).toMatchObject({ status: 502, body: '{"error":"bad_gateway","service":"noca"}' });
    expect(await scrapeSum(drover.adminPort, 'drover_upstream_errors_total', { service: 'noca', kind: 'connect' })).toBeGreaterThanOrEqual(1);
    expect(await scrapeSum(drover.adminPort, 'drover_upstream_errors_total', { service: 'noca', kind: 'reset' })).toBe(0);
  });

  it('verify: false accepts the certificate anyway', async () => {
    const r = await request(drover.port, { path: '/insecure' });
    expect(r).toMatchObject({ status: 200, body: 'tls-backend /insecure' });
  });

  it('active health checks use the service TLS settings: healthy with the CA, unhealthy without it', async () => {
    await waitFor(async () => {
        const b = await adminBackends(drover.adminPort);
        return b.some((x) => x.id === 'good' && x.state === 'healthy') && b.some((x) => x.id === 'noca' && x.state === 'unhealthy');
      });
  });
});

describe('drover check and services.<name>.tls', () => {
  it('reports a missing CA file with its line', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'drover.yaml');
    fs.writeFileSync(file, ['services:', '  web:', '    tls: {ca: missing-ca.pem, verify: yes}', '    backends: [{url: "https://127.0.0.1:1"}]', ''].join('\n'));
    const out = await new Promise<{ code: number; stderr: string; stdout: string }>((resolve) => {
      execFile(process.execPath, [BIN, 'check', '-c', file], (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), stdout, stderr });
      });
    });
    expect(out.code).toBe(1);
    const text = out.stderr + out.stdout;
    expect(text).toMatch(/drover\.yaml:3:\d+: services\.web\.tls\.ca: file missing-ca\.pem does not exist/);
    expect(text).toMatch(/services\.web\.tls\.verify: /);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
