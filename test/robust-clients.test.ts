/**
 * Issue 6, clients: malformed requests, limits, slow clients, connection cap, mass aborts and
 * forwarding-header spoofing, against the real `bin/drover` over raw sockets. Every "no backend
 * saw a byte" is measured at the TCP level on a raw backend.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { adminBackends, fdCount, rawExchange, startRawBackend, type RawBackend } from './helpers/raw-backend.js';
import { waitFor } from './helpers/wait.js';
import { abortingClients, type AbortingClients } from '../bench/lib/aborts.js';

let raw: RawBackend;
let web: TestBackend;
let drover: DroverProcess;
/** listener ports: [default limits, tight limits, max_connections 5] */
let ports: number[];

beforeAll(async () => {
  raw = await startRawBackend('raw');
  web = await startBackend('web');
  drover = await startDrover(`
listen:
  - address: 127.0.0.1:0
  - address: 127.0.0.1:0
    limits: {max_header_bytes: 4096, max_headers: 20, max_url_bytes: 1024, headers_timeout: 1s, request_timeout: 2s, send_timeout: 1s}
  - address: 127.0.0.1:0
    limits: {max_connections: 5}
admin: {address: 127.0.0.1:0}
access_log: off
services:
  raw: {retries: 0, backends: [{url: ${raw.url}}]}
  web: {retries: 0, backends: [{url: ${web.url}}]}
routes:
  - match: {path_prefix: /web}
    service: web
  - match: {path_prefix: /}
    service: raw
`);
  const ready = drover.logs.find((l) => l['msg'] === 'ready') as { listen: { port: number }[] };
  ports = ready.listen.map((l) => l.port);
});

afterAll(async () => {
  await drover?.stop();
  await Promise.all([raw?.close(), web?.close()]);
});

beforeEach(() => {
  raw.reset();
  web.seen.length = 0;
  web.behave(undefined);
});

const H = 'Host: x\r\n';

describe('malformed requests: 400, connection closed, no backend sees a byte', () => {
  it('a well-formed request does reach the raw backend (the measurement works)', async () => {
    const r = await rawExchange(ports[0] ?? 0, `GET /ok HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 [^\r]*\r\n[\s\S]*\r\n\r\nraw$/);
    expect(raw.bytes).toBeGreaterThan(0);
    expect(raw.heads[0]?.startsWith('GET /ok HTTP/1.1\r\n')).toBe(true);
  });

  it('a valid chunked upload still passes (the first-chunk wait lets good bodies through)', async () => {
    const r = await rawExchange(ports[0] ?? 0, `POST /ok HTTP/1.1\r\n${H}Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`);
    expect(r.text.startsWith('HTTP/1.1 200')).toBe(true);
    expect(raw.heads[0]?.startsWith('POST /ok HTTP/1.1\r\n')).toBe(true);
  });

  const cases: [string, string][] = [
    ['no space after the method', `GET/ HTTP/1.1\r\n${H}\r\n`],
    ['junk after the version', `GET / HTTP/1.1 x\r\n${H}\r\n`],
    ['unknown version', `GET / HTTP/9.9\r\n${H}\r\n`],
    ['HTTP/0.9 request line', `GET /\r\n\r\n`],
    ['lower-case method', `get / HTTP/1.1\r\n${H}\r\n`],
    ['space in the target', `GET /a b HTTP/1.1\r\n${H}\r\n`],
    ['bare LF after the request line', `GET / HTTP/1.1\n${H}\r\n`],
    ['bare LF after a header', `GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n`],
    ['bare LF ending the head', `GET / HTTP/1.1\r\n${H}\n`],
    ['bare CR in a value', `GET / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`],
    ['NUL in a header value', `GET / HTTP/1.1\r\n${H}X-A: a\0b\r\n\r\n`],
    ['NUL in the target', `GET /a\0b HTTP/1.1\r\n${H}\r\n`],
    ['control character in a value', `GET / HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`],
    ['obs-fold (space)', `GET / HTTP/1.1\r\n${H}X-A: a\r\n  b\r\n\r\n`],
    ['obs-fold (tab)', `GET / HTTP/1.1\r\n${H}X-A: a\r\n\tb\r\n\r\n`],
    ['space before the colon', `GET / HTTP/1.1\r\n${H}X-A : a\r\n\r\n`],
    ['whitespace before the first header', `GET / HTTP/1.1\r\n ${H}\r\n`],
    ['empty header name', `GET / HTTP/1.1\r\n${H}: v\r\n\r\n`],
    ['duplicate Host', `GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`],
    ['no Host on HTTP/1.1', `GET / HTTP/1.1\r\n\r\n`],
    ['Host that is not an authority', `GET / HTTP/1.1\r\nHost: a b\r\n\r\n`],
    ['Host with userinfo', `GET / HTTP/1.1\r\nHost: u@evil\r\n\r\n`],
    ['absolute-form target', `GET http://evil/ HTTP/1.1\r\n${H}\r\n`],
    ['asterisk-form target', `OPTIONS * HTTP/1.1\r\n${H}\r\n`],
    ['fragment in the target', `GET /a#b HTTP/1.1\r\n${H}\r\n`],
    ['Content-Length + Transfer-Encoding', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['Transfer-Encoding: chunked, identity', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`],
    ['Transfer-Encoding: identity', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\nabcd`],
    ['Transfer-Encoding: gzip (not chunked last)', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nabcd`],
    ['Transfer-Encoding twice', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['Transfer-Encoding: xchunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`],
    ['two Content-Lengths that differ', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde`],
    ['two equal Content-Lengths', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd`],
    ['Content-Length list', `POST / HTTP/1.1\r\n${H}Content-Length: 4, 4\r\n\r\nabcd`],
    ['Content-Length with a sign', `POST / HTTP/1.1\r\n${H}Content-Length: +4\r\n\r\nabcd`],
    ['chunk size not hex', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`],
    ['negative chunk size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n`],
    ['chunk size overflow', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n`],
    ['control character in a chunk extension', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3;\x01\r\nabc\r\n0\r\n\r\n`],
    ['chunk data without its CRLF', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n`],
  ];

  it.each(cases)('%s', async (_name, text) => {
    const r = await rawExchange(ports[0] ?? 0, text);
    expect(r.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(r.text.toLowerCase()).toContain('connection: close');
    expect(r.closedByServer).toBe(true);
    // Give a forwarded request time to arrive before asserting it did not.
    await new Promise((res) => setTimeout(res, 50));
    expect(raw.bytes).toBe(0);
    expect(raw.connections).toBe(0);
  });
});

describe('limits: 431 and 414, per listener', () => {
  it('default listener: 16 KiB of headers pass the limit -> 431; 100 headers -> 431; 8 KiB target -> 414', async () => {
    const big = await rawExchange(ports[0] ?? 0, `GET / HTTP/1.1\r\n${H}X-Big: ${'x'.repeat(17_000)}\r\n\r\n`);
    expect(big.text).toMatch(/^HTTP\/1\.1 431 /);
    const many = Array.from({ length: 101 }, (_, i) => `X-H${i}: v\r\n`).join('');
    const manyR = await rawExchange(ports[0] ?? 0, `GET / HTTP/1.1\r\n${H}${many}\r\n`);
    expect(manyR.text).toMatch(/^HTTP\/1\.1 431 /);
    const longUrl = await rawExchange(ports[0] ?? 0, `GET /${'a'.repeat(8200)} HTTP/1.1\r\n${H}\r\n`);
    expect(longUrl.text).toMatch(/^HTTP\/1\.1 414 /);
    expect(raw.bytes).toBe(0);
    // just under each limit passes
    const fine = await rawExchange(ports[0] ?? 0, `GET /${'a'.repeat(7000)} HTTP/1.1\r\n${H}Connection: close\r\n${Array.from({ length: 98 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`);
    expect(fine.text).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('tight listener (max_header_bytes 4096, max_headers 20, max_url_bytes 1024): each limit holds exactly', async () => {
    const p = ports[1] ?? 0;
    const cases: [string, RegExp][] = [
      [`GET / HTTP/1.1\r\n${H}X-Big: ${'x'.repeat(5000)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
      [`GET / HTTP/1.1\r\n${H}${Array.from({ length: 20 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`, /^HTTP\/1\.1 431 /],
      [`GET /${'a'.repeat(1100)} HTTP/1.1\r\n${H}\r\n`, /^HTTP\/1\.1 414 /],
    ];
    for (const [text, want] of cases) {
      const r = await rawExchange(p, text);
      expect(r.text).toMatch(want);
      expect(r.closedByServer).toBe(true);
    }
    expect(raw.bytes).toBe(0);
    const fine = await rawExchange(p, `GET /${'a'.repeat(1000)} HTTP/1.1\r\n${H}Connection: close\r\n${Array.from({ length: 16 }, (_, i) => `X-H${i}: v\r\n`).join('')}X-Big: ${'x'.repeat(2500)}\r\n\r\n`);
    expect(fine.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(raw.heads).toHaveLength(1);
  });
});

/** Opens a connection and sends `head` one byte at a time every `everyMs` (never finishing). */
function trickle(port: number, head: string, everyMs: number): { socket: net.Socket; closed: Promise<{ at: number; text: string }> } {
  const socket = net.connect(port, '127.0.0.1');
  let i = 0;
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (text += d));
  socket.on('error', () => undefined);
  const timer = setInterval(() => {
    if (socket.writable) socket.write(head[i++ % head.length] ?? 'x');
  }, everyMs);
  const closed = new Promise<{ at: number; text: string }>((resolve) =>
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ at: Date.now(), text });
    }),
  );
  return { socket, closed };
}

describe('slow clients', () => {
  it('slowloris: a head that never completes gets 408 and is closed after headers_timeout (1s)', async () => {
    const t0 = Date.now();
    const t = trickle(ports[1] ?? 0, `GET / HTTP/1.1\r\n${H}X-Slow: ${'y'.repeat(100)}`, 100);
    const { at, text } = await t.closed;
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(at - t0).toBeGreaterThanOrEqual(900);
    expect(at - t0).toBeLessThan(5000);
    expect(raw.bytes).toBe(0);
  });

  it('slow body: a body that trickles is cut after request_timeout (2s) with 408; the upstream request is aborted', async () => {
    web.behave((_req, res) => res.end('never'));
    const s = net.connect(ports[1] ?? 0, '127.0.0.1');
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text += d));
    s.on('error', () => undefined);
    const t0 = Date.now();
    s.write(`POST /web HTTP/1.1\r\n${H}Content-Length: 100000\r\n\r\n`);
    const timer = setInterval(() => s.writable && s.write('z'), 100);
    const at = await new Promise<number>((resolve) => s.on('close', () => resolve(Date.now())));
    clearInterval(timer);
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(at - t0).toBeGreaterThanOrEqual(1900);
    expect(at - t0).toBeLessThan(6000);
    await waitFor(async () => (await adminBackends(drover.adminPort)).every((b) => b.inflight === 0));
    expect(web.seen).toHaveLength(0); // the backend never got a complete request
  });

  it('slow reader: a client that stops reading a large response is dropped after send_timeout (1s); the upstream is released', async () => {
    let upstreamClosedEarly = false;
    web.behave((_req, res) => {
      res.on('close', () => (upstreamClosedEarly = !res.writableFinished));
      res.writeHead(200, { 'content-length': 64 * 1024 * 1024 });
      const chunk = Buffer.alloc(64 * 1024, 1);
      let sent = 0;
      const pump = (): void => {
        while (sent < 1024 && res.write(chunk)) sent++;
        if (sent < 1024) res.once('drain', pump);
        else res.end();
      };
      pump();
    });
    const s = net.connect(ports[1] ?? 0, '127.0.0.1');
    s.on('error', () => undefined);
    s.write(`GET /web HTTP/1.1\r\n${H}\r\n`);
    s.pause(); // never read
    await waitFor(() => upstreamClosedEarly, 8000);
    await waitFor(async () => (await adminBackends(drover.adminPort)).every((b) => b.inflight === 0));
    s.destroy();
  });

  it('max_connections (5): the 6th connection is closed at once; a slot freed is usable again', async () => {
    const p = ports[2] ?? 0;
    const held = await Promise.all(
      Array.from({ length: 5 }, () => new Promise<net.Socket>((resolve) => {
        const s = net.connect(p, '127.0.0.1', () => resolve(s));
        s.on('error', () => undefined);
        s.write('GET / HTTP/1.1\r\n'); // an unfinished head holds the slot
      })),
    );
    await new Promise((r) => setTimeout(r, 100));
    const sixth = await rawExchange(p, `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 2000);
    expect(sixth.text).toBe('');
    expect(sixth.closedByServer).toBe(true);
    held[0]?.destroy();
    // the slot is free once drover has seen that client go: a new connection is then served
    await waitFor(async () => /^HTTP\/1\.1 200 /.test((await rawExchange(p, `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`)).text));
    for (const s of held) s.destroy();
  });

  it('300 trickling connections do not starve normal clients', async () => {
    const p = ports[0] ?? 0;
    const timeOne = async (): Promise<number> => {
      const t0 = performance.now();
      const r = await rawExchange(p, `GET /web HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
      return performance.now() - t0;
    };
    const baseline: number[] = [];
    for (let i = 0; i < 20; i++) baseline.push(await timeOne());
    const trickles = Array.from({ length: 300 }, () => trickle(p, `GET /web HTTP/1.1\r\n${H}X-Slow: ${'y'.repeat(1000)}`, 200));
    await new Promise((r) => setTimeout(r, 500));
    const loaded: number[] = [];
    for (let i = 0; i < 50; i++) loaded.push(await timeOne());
    const open = trickles.filter((t) => !t.socket.destroyed).length;
    for (const t of trickles) t.socket.destroy();
    await Promise.all(trickles.map((t) => t.closed));
    const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;
    // eslint-disable-next-line no-console
    console.log(`latency median: baseline ${median(baseline).toFixed(2)} ms, with 300 trickling connections ${median(loaded).toFixed(2)} ms; max ${Math.max(...loaded).toFixed(1)} ms`);
    expect(open).toBe(300); // they were all still open while the normal clients ran
    expect(Math.max(...loaded)).toBeLessThan(1000);
  });
});

describe('10 000 client aborts mid-request', () => {
  it('aborts every upstream request, brings in-flight back to 0 and leaves no descriptor behind', async () => {
    let clients: AbortingClients | undefined;
    let aborted = 0;
    const holder = await startBackend('holder', {
      stream: (req, res) => {
        res.on('close', () => {
          if (!res.writableFinished) aborted++;
        });
        clients?.arrived(req.url);
      },
    });
    const addr = { port: holder.port };
    const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  hold: {retries: 0, timeouts: {response_headers: 60s}, backends: [{url: http://127.0.0.1:${addr.port}}]}
routes: [{match: {path_prefix: /}, service: hold}]
`);
    try {
      const aborting = abortingClients(d.port);
      clients = aborting;
      const run = (count: number): Promise<void> => aborting.run(count);
      const settle = async (want: number): Promise<void> => {
        await waitFor(() => aborted === want, 20_000);
        await waitFor(async () => (await adminBackends(d.adminPort)).every((b) => b.inflight === 0));
      };
      await run(2000); // warm-up: JIT, pools, buffers
      await settle(2000);
      const pid = d.child.pid ?? 0;
      const fdsBefore = fdCount(pid);
      await run(8000);
      await settle(10_000);
      expect(aborted).toBe(10_000);
      // every aborted exchange lets go of its client and upstream sockets: a leak of the
      // per-request state would keep one or the other open (RSS is measured in bench/memory.ts)
      await waitFor(() => fdCount(pid) <= fdsBefore, 5000);
      const metrics = await (await fetch(`http://127.0.0.1:${d.adminPort}/metrics`)).text();
      expect(metrics).toMatch(/drover_backend_inflight\{[^}]*\} 0/);
    } finally {
      await d.stop();
      await holder.close();
    }
  }, 60_000);
});

describe('X-Forwarded-* and Forwarded spoofing', () => {
  const cfg = (a: TestBackend, b: TestBackend, trusted: string): string => `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: stdout
trusted_proxies: ${trusted}
services:
  sticky: {balancer: hash, hash_key: ip, backends: [{url: ${a.url}, id: a}, {url: ${b.url}, id: b}]}
routes: [{match: {path_prefix: /}, service: sticky}]
`;

  it('untrusted peer: its claims are replaced, hash: ip and the access log use the real address', async () => {
    const a = await startBackend('a');
    const b = await startBackend('b');
    const d = await startDrover(cfg(a, b, '[]'));
    try {
      for (let i = 0; i < 20; i++) {
        const r = await new Promise<number>((resolve, reject) => {
          const req = http.request(
            { port: d.port, host: '127.0.0.1', path: `/p${i}`, agent: false, headers: { 'x-forwarded-for': `198.51.100.${i}`, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.test', forwarded: `for=198.51.100.${i};proto=https` } },
            (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
            },
          );
          req.on('error', reject);
          req.end();
        });
        expect(r).toBe(200);
      }
      const seen = [...a.seen, ...b.seen];
      expect(seen).toHaveLength(20);
      // all 20 different claimed addresses hashed to the one real peer
      expect(a.seen.length === 20 || b.seen.length === 20).toBe(true);
      for (const s of seen) {
        expect(s.headers['x-forwarded-for']).toBe('127.0.0.1');
        expect(s.headers['x-forwarded-proto']).toBe('http');
        expect(s.headers['x-forwarded-host']).toBe(`127.0.0.1:${d.port}`);
        expect(s.headers['forwarded']).toBeUndefined();
      }
      await waitFor(() => d.logs.filter((l) => l['status'] === 200).length === 20);
      expect(new Set(d.logs.filter((l) => l['status'] === 200).map((l) => l['client']))).toEqual(new Set(['127.0.0.1']));
    } finally {
      await d.stop();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('trusted peer: X-Forwarded-For is appended to; hash: ip and the log use the nearest untrusted address', async () => {
    const a = await startBackend('a');
    const b = await startBackend('b');
    const d = await startDrover(cfg(a, b, '[127.0.0.1/32, 10.0.0.0/8]'));
    try {
      const clients: string[] = [];
      for (let i = 0; i < 20; i++) {
        const client = `203.0.113.${i}`;
        clients.push(client);
        // a spoofed entry on the left, a trusted internal hop on the right
        const res = await fetch(`http://127.0.0.1:${d.port}/t${i}`, { headers: { 'x-forwarded-for': `6.6.6.6, ${client}, 10.1.2.3` } });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }
      const seen = [...a.seen, ...b.seen];
      expect(seen.map((s) => s.headers['x-forwarded-for']).sort()).toEqual(clients.map((c) => `6.6.6.6, ${c}, 10.1.2.3, 127.0.0.1`).sort());
      expect(a.seen.length).toBeGreaterThan(0); // 20 distinct clients spread over both
      expect(b.seen.length).toBeGreaterThan(0);
      await waitFor(() => d.logs.filter((l) => l['status'] === 200).length === 20);
      expect(d.logs.filter((l) => l['status'] === 200).map((l) => l['client']).sort()).toEqual([...clients].sort());
      // the same client always lands on the same backend
      const again = await fetch(`http://127.0.0.1:${d.port}/again`, { headers: { 'x-forwarded-for': clients[3] ?? '' } });
      const first = seen.find((s) => s.url === '/t3');
      expect(await again.text()).toBe(a.seen.includes(first as never) ? 'a' : 'b');
    } finally {
      await d.stop();
      await Promise.all([a.close(), b.close()]);
    }
  });
});
