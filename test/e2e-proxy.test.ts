/**
 * End-to-end: the real `bin/drover` in front of real backends on 127.0.0.1, driven over real
 * sockets. Each backend names itself in its body, so every assertion is about who answered.
 */
import net from 'node:net';
import http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REFUSING_PORT, request, startBackend, type TestBackend } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { adminBackends } from './helpers/raw-backend.js';
import { waitFor } from './helpers/wait.js';

let a: TestBackend;
let b: TestBackend;
let slow: TestBackend;
let dead: number;
let drover: DroverProcess;

function config(): string {
  return `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
trusted_proxies: [10.9.0.0/16]
services:
  pair:
    backends: [{url: ${a.url}, id: a}, {url: ${b.url}, id: b}]
  weighted:
    backends: [{url: ${a.url}, id: a, weight: 3}, {url: ${b.url}, id: b}]
  slow:
    timeouts: {response_headers: 300ms}
    retries: 0
    backends: [{url: ${slow.url}, id: slow}]
  down:
    retries: 0
    backends: [{url: http://127.0.0.1:${dead}, id: dead}]
  halfdead:
    retries: 2
    backends: [{url: http://127.0.0.1:${dead}, id: dead}, {url: ${a.url}, id: a}]
  empty: {}
routes:
  - match: {host: api.example.com, path_prefix: /v1}
    service: pair
    strip_prefix: /v1
    request_headers: {set: {X-Env: prod}, remove: [X-Debug]}
  - match: {host: '*.weighted.test'}
    service: weighted
  - match: {path_prefix: /slow}
    service: slow
  - match: {path_prefix: /down}
    service: down
  - match: {path_prefix: /halfdead}
    service: halfdead
  - match: {path_prefix: /empty}
    service: empty
  - match: {path: /exact, method: POST, headers: {X-Tenant: blue}}
    service: weighted
  - match: {path_prefix: /pair}
    service: pair
`;
}

beforeAll(async () => {
  a = await startBackend('alpha');
  b = await startBackend('beta');
  slow = await startBackend('slow');
  slow.behave((_req, res) => {
    setTimeout(() => {
      res.writeHead(200);
      res.end('slow');
    }, 2000);
  });
  dead = REFUSING_PORT;
  drover = await startDrover(config());
});

afterAll(async () => {
  await drover?.stop();
  await Promise.all([a?.close(), b?.close(), slow?.close()]);
});

afterEach(() => {
  a.seen.length = 0;
  b.seen.length = 0;
  a.behave(undefined);
  b.behave(undefined);
});

/** Sends raw bytes and returns everything the server sent back before closing. */
function raw(port: number, text: string, waitMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('error', () => resolve(out));
    s.on('close', () => resolve(out));
    s.write(text);
    setTimeout(() => s.destroy(), waitMs);
  });
}

describe('routing and balancing', () => {
  it('alternates between two backends in order (round_robin)', async () => {
    const names: string[] = [];
    for (let i = 0; i < 6; i++) names.push((await request(drover.port, { path: '/pair/x' })).body);
    expect(names).toEqual(['alpha', 'beta', 'alpha', 'beta', 'alpha', 'beta']);
  });

  it('follows weights 3:1 in the smooth sequence of NGINX', async () => {
    const names: string[] = [];
    for (let i = 0; i < 8; i++) names.push((await request(drover.port, { path: '/', headers: { host: 'x.weighted.test' } })).body);
    expect(names).toEqual(['alpha', 'alpha', 'beta', 'alpha', 'alpha', 'alpha', 'beta', 'alpha']);
  });

  it('matches host + path_prefix, strips the prefix and edits headers', async () => {
    const r = await request(drover.port, { path: '/v1/users?id=7', headers: { host: 'api.example.com', 'x-debug': '1', 'x-env': 'dev' } });
    expect(r.status).toBe(200);
    const seen = [...a.seen, ...b.seen][0];
    expect(seen?.url).toBe('/users?id=7');
    expect(seen?.headers['x-env']).toBe('prod');
    expect(seen?.headers['x-debug']).toBeUndefined();
    expect(seen?.headers.host).toBe('api.example.com');
  });

  it('matches method, exact path and headers', async () => {
    expect((await request(drover.port, { method: 'POST', path: '/exact', headers: { 'x-tenant': 'blue' }, body: 'x' })).status).toBe(200);
    const miss = await request(drover.port, { method: 'GET', path: '/exact', headers: { 'x-tenant': 'blue' } });
    expect(miss.status).toBe(404);
    expect(JSON.parse(miss.body)).toEqual({ error: 'no_route' });
  });
});

describe('answers of contract section 6', () => {
  it('503 when the service has no backend', async () => {
    const r = await request(drover.port, { path: '/empty' });
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toEqual({ error: 'no_available_backend', service: 'empty' });
  });

  it('502 when the backend refuses the connection', async () => {
    const r = await request(drover.port, { path: '/down' });
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body)).toEqual({ error: 'bad_gateway', service: 'down' });
  });

  it('504 when the backend is slower than response_headers', async () => {
    const t0 = Date.now();
    const r = await request(drover.port, { path: '/slow' });
    expect(r.status).toBe(504);
    expect(JSON.parse(r.body)).toEqual({ error: 'gateway_timeout', service: 'slow' });
    expect(Date.now() - t0).toBeLessThan(1900);
  });

  it('retries a refused connection on another backend', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await request(drover.port, { path: '/halfdead' });
      expect(r.status).toBe(200);
      expect(r.body).toBe('alpha');
    }
  });

  it('400 for a request with both Content-Length and Transfer-Encoding; no backend sees it', async () => {
    const out = await raw(drover.port, 'POST /pair HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
    expect(out.startsWith('HTTP/1.1 400')).toBe(true);
    expect(a.seen.length + b.seen.length).toBe(0);
  });

  it('400 for duplicate Host; 431 for oversized headers', async () => {
    const dup = await raw(drover.port, 'GET /pair HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    expect(dup.startsWith('HTTP/1.1 400')).toBe(true);
    const big = await raw(drover.port, `GET /pair HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(20_000)}\r\n\r\n`);
    expect(big.startsWith('HTTP/1.1 431')).toBe(true);
    expect(a.seen.length + b.seen.length).toBe(0);
  });
});

describe('forwarding headers', () => {
  it('replaces a spoofed X-Forwarded-For from an untrusted peer and sets the others', async () => {
    await request(drover.port, { path: '/pair', headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', host: 'shop.test:8080' } });
    const seen = [...a.seen, ...b.seen][0];
    expect(seen?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen?.headers['x-forwarded-proto']).toBe('http');
    expect(seen?.headers['x-forwarded-host']).toBe('shop.test:8080');
    expect(seen?.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('keeps a client X-Request-Id', async () => {
    await request(drover.port, { path: '/pair', headers: { 'x-request-id': 'abc-123' } });
    expect([...a.seen, ...b.seen][0]?.headers['x-request-id']).toBe('abc-123');
  });

  it('strips hop-by-hop and Connection-named headers in both directions', async () => {
    a.behave((_req, res) => {
      res.writeHead(200, { connection: 'x-secret', 'x-secret': 'leak', 'keep-alive': 'timeout=5', 'x-kept': 'yes' });
      res.end('alpha');
    });
    b.behave((_req, res) => {
      res.writeHead(200, { connection: 'x-secret', 'x-secret': 'leak', 'x-kept': 'yes' });
      res.end('beta');
    });
    const r = await request(drover.port, { path: '/pair', headers: { connection: 'x-private', 'x-private': 'p', te: 'trailers', 'proxy-authorization': 'Basic eA==' } });
    expect(r.headers['x-secret']).toBeUndefined();
    expect(r.headers['keep-alive']).not.toBe('timeout=5'); // drover's own keep-alive header may be there, never the backend's
    expect(r.headers['x-kept']).toBe('yes');
    const seen = [...a.seen, ...b.seen][0];
    expect(seen?.headers['x-private']).toBeUndefined();
    expect(seen?.headers['te']).toBeUndefined();
    expect(seen?.headers['proxy-authorization']).toBeUndefined();
  });
});

describe('streaming', () => {
  it('streams a 32 MiB upload and a 32 MiB download byte for byte', async () => {
    const size = 32 * 1024 * 1024;
    a.behave((_req, res, body) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      // echo the body length, then send `size` bytes in chunks, respecting backpressure
      let sent = 0;
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = (): void => {
        while (sent < size) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end(`|${body.length}`);
      };
      pump();
    });
    b.behave(a.seen ? (_req, res, body) => res.end(`beta|${body.length}`) : undefined);
    const result = await new Promise<{ bytes: number; tail: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: drover.port, method: 'POST', path: '/pair/up', agent: false }, (res) => {
        let bytes = 0;
        let tail = '';
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          tail = (tail + c.toString('latin1')).slice(-40);
        });
        res.on('end', () => resolve({ bytes, tail }));
        res.on('error', reject);
      });
      req.on('error', reject);
      const piece = Buffer.alloc(1024 * 1024, 0x62);
      let n = 0;
      const write = (): void => {
        while (n < 32) {
          n++;
          if (!req.write(piece)) {
            req.once('drain', write);
            return;
          }
        }
        req.end();
      };
      write();
    });
    if (result.tail.startsWith('beta')) {
      expect(result.tail).toBe(`beta|${size}`);
    } else {
      expect(result.bytes).toBe(size + `|${size}`.length);
      expect(result.tail.endsWith(`|${size}`)).toBe(true);
    }
  });
});

describe('WebSocket upgrade', () => {
  it('tunnels bytes both ways after the backend answers 101; each upgrade request gets one access log line', async () => {
    const wsBackend = await startBackend('ws-echo', {
      upgrade: (req, socket) => {
        if (req.url === '/refused') {
          socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno');
          return;
        }
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Backend: ws-echo\r\n\r\n`);
        socket.on('data', (d: Buffer) => socket.write(`echo:${d.toString()}|${req.headers['x-forwarded-for'] ?? ''}`));
        socket.on('error', () => undefined);
      },
    });
    const port = wsBackend.port;
    const ws = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: stdout
services:
  ws: {backends: [{url: http://127.0.0.1:${port}, id: w1}]}
routes: [{match: {path_prefix: /, headers: {X-Ok: yes}}, service: ws}]
`);
    const upgradeHead = (p: string, ok = true): string =>
      `GET ${p} HTTP/1.1\r\nHost: x\r\n${ok ? 'X-Ok: yes\r\n' : ''}X-Request-Id: rid-${p.slice(1)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    /** Sends an upgrade that the backend refuses or no route matches; resolves with what came back. */
    const refused = (p: string, ok: boolean): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = net.connect(ws.port, '127.0.0.1', () => s.write(upgradeHead(p, ok)));
        let got = '';
        s.setEncoding('utf8');
        s.on('data', (d: string) => (got += d));
        s.on('error', reject);
        s.on('close', () => resolve(got));
      });
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const s = net.connect(ws.port, '127.0.0.1');
        let got = '';
        let upgraded = false;
        s.setEncoding('utf8');
        s.on('error', reject);
        s.on('data', (d: string) => {
          got += d;
          if (!upgraded && got.includes('\r\n\r\n')) {
            upgraded = true;
            expect(got.startsWith('HTTP/1.1 101')).toBe(true);
            expect(got).toContain('X-Backend: ws-echo');
            got = got.slice(got.indexOf('\r\n\r\n') + 4);
            s.write('hello');
          }
          if (got.includes('echo:hello')) {
            s.destroy();
            resolve(got);
          }
        });
        s.write(upgradeHead('/chat'));
      });
      expect(reply).toBe('echo:hello|127.0.0.1');
      expect((await refused('/refused', true)).startsWith('HTTP/1.1 403')).toBe(true);
      expect((await refused('/nowhere', false)).startsWith('HTTP/1.1 404')).toBe(true);
      const access = (): Record<string, unknown>[] => ws.logs.filter((l) => 'request_id' in l);
      await waitFor(() => access().length >= 3, { what: 'three access log lines', timeoutMs: 5000 });
      const pick = (l: Record<string, unknown>) => [l['request_id'], l['method'], l['path'], l['route'], l['service'], l['backend'], l['status'], l['bytes_in'], l['bytes_out']];
      // one line each, whatever order they ended in (the tunnel's ends when its socket closes)
      expect(access().map(pick).sort((x, y) => String(x[0]).localeCompare(String(y[0])))).toEqual([
        ['rid-chat', 'GET', '/chat', 0, 'ws', 'w1', 101, 5, 'echo:hello|127.0.0.1'.length],
        ['rid-nowhere', 'GET', '/nowhere', null, null, null, 404, 0, 0],
        ['rid-refused', 'GET', '/refused', 0, 'ws', 'w1', 403, 0, 2],
      ]);
    } finally {
      await ws.stop();
      await wsBackend.close();
    }
  });
});

describe('faults never kill the process', () => {
  it('survives clients and backends resetting sockets mid-request', async () => {
    a.behave((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    b.behave((req) => req.socket.destroy());
    const attempts: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      attempts.push(request(drover.port, { path: '/pair' }).catch(() => 'reset'));
      // client side: connect, send half a request, reset
      const s = net.connect(drover.port, '127.0.0.1', () => {
        s.write('GET /pair HTTP/1.1\r\nHost: x\r\n\r\n');
        setTimeout(() => s.resetAndDestroy(), 5);
      });
      s.on('error', () => undefined);
    }
    await Promise.all(attempts);
    a.behave(undefined);
    b.behave(undefined);
    const ok = await request(drover.port, { path: '/pair' });
    expect(ok.status).toBe(200);
    expect(drover.child.exitCode).toBeNull();
  });

  it('aborting clients release every in-flight slot', async () => {
    const pairInflight = async (): Promise<number> => (await adminBackends(drover.adminPort)).filter((x) => x.service === 'pair').reduce((n, x) => n + x.inflight, 0);
    a.behave(() => undefined); // never answers
    b.behave(() => undefined);
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 10; i++) {
      const s = net.connect(drover.port, '127.0.0.1', () => s.write('GET /pair HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.on('error', () => undefined);
      sockets.push(s);
    }
    // every request reached a backend (which never answers) before any client goes away
    await waitFor(() => a.seen.length + b.seen.length === 10);
    expect(await pairInflight()).toBe(10);
    for (const s of sockets) s.destroy();
    await waitFor(async () => (await pairInflight()) === 0);
  });
});
