/**
 * Issue 6, operations (bad config at start and on reload, the admin API's guard rails) and large
 * bodies with slow readers on the other side, against the real `bin/drover`.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { BIN, startDrover, tempDir, type DroverProcess } from './helpers/drover.js';
import { adminBackends } from './helpers/raw-backend.js';
import { waitFor } from './helpers/wait.js';

let a: TestBackend;
let b: TestBackend;

beforeAll(async () => {
  a = await startBackend('a');
  b = await startBackend('b');
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

async function reloads(adminPort: number, result: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`drover_config_reloads_total{result="${result}"}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('invalid config', () => {
  it('at start: exit 1, every error on stderr as FILE:LINE:COL: path: message', () => {
    const dir = tempDir();
    const file = path.join(dir, 'drover.yaml');
    fs.writeFileSync(file, ['listen: [{address: 127.0.0.1:0}]', 'limits: {max_headers: 0, headers_timeout: soon}', 'services:', '  web:', '    balancer: fastest', 'routes:', '  - {match: {path_prefix: /}, service: nowhere}', ''].join('\n'));
    const r = spawnSync(process.execPath, [BIN, 'start', '-c', file], { encoding: 'utf8', timeout: 20_000 });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(4);
    for (const l of lines) expect(l).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:[1-9]\\d*:[1-9]\\d*: \\S+: .+`));
    expect(lines.map((l) => l.split(': ')[1])).toEqual(['limits.max_headers', 'limits.headers_timeout', 'services.web.balancer', 'routes.0.service']);
    expect(r.stdout).not.toContain('"msg":"ready"');
  });

  it('on reload (invalid, then half-written): the old config keeps serving; logged and counted; a valid one then applies', async () => {
    const good = (body: string): string => `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  a: {backends: [{url: ${a.url}}]}
  b: {backends: [{url: ${b.url}}]}
routes: [{match: {path_prefix: /}, service: ${body}}]
`;
    const d = await startDrover(good('a'));
    try {
      expect((await request(d.port)).body).toBe('a');
      // a schema error
      d.writeConfig(good('a').replace('service: a', 'service: a\n    strip_prefix: nope'));
      await d.waitForLog((l) => l['msg'] === 'config reload refused: the old config keeps serving');
      expect(await reloads(d.adminPort, 'failure')).toBe(1);
      expect((await request(d.port)).body).toBe('a');
      // a half-written file, written in place (no rename), as an editor or a copy in progress would
      const full = good('b');
      fs.writeFileSync(d.configFile, full.slice(0, full.indexOf('  b: {backends') + 12));
      await waitFor(async () => (await reloads(d.adminPort, 'failure')) === 2);
      const refused = d.logs.filter((l) => l['msg'] === 'config reload refused: the old config keeps serving');
      expect(refused.length).toBeGreaterThanOrEqual(2);
      expect(String((refused.at(-1)?.['issues'] as string[])[0])).toMatch(new RegExp(`^${d.configFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `));
      for (let i = 0; i < 4; i++) expect((await request(d.port)).body).toBe('a');
      // the rest of the file arrives
      fs.writeFileSync(d.configFile, full);
      await waitFor(async () => (await request(d.port)).body === 'b');
      expect(await reloads(d.adminPort, 'success')).toBeGreaterThanOrEqual(1);
      expect(d.child.exitCode).toBeNull();
    } finally {
      await d.stop();
    }
  });
});

describe('admin API guard rails', () => {
  let d: DroverProcess;
  beforeAll(async () => {
    d = await startDrover(
      `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web: {backends: [{url: ${a.url}, id: a}, {url: ${b.url}, id: b}]}
routes:
  - match: {path_prefix: /}
    service: web
    request_headers: {set: {Authorization: Bearer topsecret-value, X-Api-Key: also-secret}}
`,
      { env: { DROVER_ADMIN_TOKEN: 'tok-123456' } },
    );
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('listens on loopback by default', () => {
    const c = parseConfig('', '');
    expect(c.admin.host).toBe('127.0.0.1');
    expect(c.admin.address).toBe('127.0.0.1:9901');
  });

  it('no request without the token changes routing; with it, drain works', async () => {
    const paths = ['/api/services/web/backends/a/drain', '/api/services/web/backends/a/undrain', '/api/services/web/backends/a', '/api/services/web', '/api/services', '/api/config', '/api/events', '/'];
    const methods = ['POST', 'PUT', 'PATCH', 'DELETE'];
    const auths = [undefined, 'Bearer wrong', 'tok-123456', 'Basic dG9rLTEyMzQ1Ng==', 'Bearer tok-12345', 'Bearer tok-1234567'];
    for (const p of paths) {
      for (const m of methods) {
        for (const auth of auths) {
          const r = await fetch(`http://127.0.0.1:${d.adminPort}${p}`, { method: m, headers: auth === undefined ? {} : { authorization: auth } });
          await r.arrayBuffer();
          expect(r.status, `${m} ${p} ${auth ?? ''}`).toBeGreaterThanOrEqual(400);
        }
      }
    }
    expect((await adminBackends(d.adminPort)).map((x) => x.state)).not.toContain('draining');
    const bodies: string[] = [];
    for (let i = 0; i < 4; i++) bodies.push((await request(d.port)).body);
    expect(bodies.sort()).toEqual(['a', 'a', 'b', 'b']);
    const ok = await fetch(`http://127.0.0.1:${d.adminPort}/api/services/web/backends/a/drain`, { method: 'POST', headers: { authorization: 'Bearer tok-123456' } });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { state: string }).state).toBe('draining');
    for (let i = 0; i < 4; i++) expect((await request(d.port)).body).toBe('b');
    const undo = await fetch(`http://127.0.0.1:${d.adminPort}/api/services/web/backends/a/undrain`, { method: 'POST', headers: { authorization: 'Bearer tok-123456' } });
    expect(undo.status).toBe(200);
  });

  it('/api/config, /api/services and /metrics never show the token or secret header values', async () => {
    for (const p of ['/api/config', '/api/services', '/metrics', '/api/events']) {
      const text = await (await fetch(`http://127.0.0.1:${d.adminPort}${p}`)).text();
      expect(text).not.toContain('tok-123456');
      expect(text).not.toContain('topsecret-value');
      expect(text).not.toContain('also-secret');
    }
    const cfg = (await (await fetch(`http://127.0.0.1:${d.adminPort}/api/config`)).json()) as { config: { admin: { tokenEnv: string } } };
    expect(cfg.config.admin.tokenEnv).toBe('DROVER_ADMIN_TOKEN'); // the variable's name is not a secret
  });
});

describe('large bodies with a slow reader on the other side', () => {
  const SIZE = 256 * 1024 * 1024;
  const CHUNK = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < CHUNK.length; i++) CHUNK[i] = (i * 31 + 7) & 0xff;
  /**
   * Most bytes allowed between the writer and the slow reader. Loopback socket buffers on both
   * hops and the streams' high-water marks hold a few MiB; a proxy that buffered what the slow
   * side could not take would let the gap grow towards the whole body (the reader takes 1 MiB
   * per 8 ms, a quarter of what the writer offers). drover's memory over such a run is measured
   * in `bench/memory.ts`, not here (no memory ceilings in tests).
   */
  const MAX_GAP = 48 * 1024 * 1024;
  /** ms the slow reader pauses after each MiB */
  const PAUSE_MS = 8;

  it('256 MiB up (slow backend reader) and 256 MiB down (slow client reader): streamed, byte-exact, backpressure holds (writer never more than 48 MiB ahead)', async () => {
    let upload: { bytes: number; sha: string } | undefined;
    /** bytes the backend has read of the upload so far */
    let uploadRead = 0;
    /** bytes the backend has handed to its response stream so far */
    let downloadWritten = 0;
    const backend = await startBackend('big', {
      stream: (req, res) => {
        if (req.method === 'POST') {
          // a slow reader: takes 1 MiB, then pauses
          const h = createHash('sha256');
          let sinceBreak = 0;
          req.on('data', (c: Buffer) => {
            h.update(c);
            uploadRead += c.length;
            sinceBreak += c.length;
            if (sinceBreak >= CHUNK.length) {
              sinceBreak = 0;
              req.pause();
              setTimeout(() => req.resume(), PAUSE_MS);
            }
          });
          req.on('end', () => {
            upload = { bytes: uploadRead, sha: h.digest('hex') };
            res.end('stored');
          });
          return;
        }
        // a fast writer, honouring backpressure
        res.writeHead(200, { 'content-length': SIZE });
        const pump = (): void => {
          while (downloadWritten < SIZE) {
            downloadWritten += CHUNK.length;
            if (!res.write(CHUNK)) {
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        pump();
      },
    });
    const port = backend.port;
    const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  big: {backends: [{url: http://127.0.0.1:${port}}]}
routes: [{match: {path_prefix: /}, service: big}]
`);
    try {
      const expected = createHash('sha256');
      for (let i = 0; i < SIZE / CHUNK.length; i++) expected.update(CHUNK);
      const want = expected.digest('hex');
      // up: a fast chunked writer; the gap is what it has written that the backend has not read
      let upGap = 0;
      const up = await new Promise<string>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: d.port, method: 'POST', path: '/up', agent: false }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve(body));
        });
        req.on('error', reject);
        let sent = 0;
        const pump = (): void => {
          while (sent < SIZE) {
            sent += CHUNK.length;
            upGap = Math.max(upGap, sent - uploadRead);
            if (!req.write(CHUNK)) {
              req.once('drain', pump);
              return;
            }
          }
          req.end();
        };
        pump();
      });
      expect(up).toBe('stored');
      expect(upload).toEqual({ bytes: SIZE, sha: want });
      // down: a slow client reader; the gap is what the backend has written that it has not read
      let downGap = 0;
      const down = await new Promise<{ bytes: number; sha: string }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: d.port, path: '/down', agent: false }, (res) => {
            const h = createHash('sha256');
            let bytes = 0;
            let sinceBreak = 0;
            const sample = setInterval(() => (downGap = Math.max(downGap, downloadWritten - bytes)), 5);
            res.on('data', (c: Buffer) => {
              h.update(c);
              bytes += c.length;
              sinceBreak += c.length;
              downGap = Math.max(downGap, downloadWritten - bytes);
              if (sinceBreak >= CHUNK.length) {
                sinceBreak = 0;
                res.pause();
                setTimeout(() => res.resume(), PAUSE_MS);
              }
            });
            res.on('end', () => {
              clearInterval(sample);
              resolve({ bytes, sha: h.digest('hex') });
            });
            res.on('error', reject);
          })
          .on('error', reject);
      });
      expect(down).toEqual({ bytes: SIZE, sha: want });
      // eslint-disable-next-line no-console
      console.log(`largest gap writer -> slow reader: up ${(upGap / 2 ** 20).toFixed(1)} MiB, down ${(downGap / 2 ** 20).toFixed(1)} MiB`);
      expect(upGap).toBeLessThan(MAX_GAP);
      expect(downGap).toBeLessThan(MAX_GAP);
    } finally {
      await d.stop();
      await backend.close();
    }
  }, 60_000);
});
