/**
 * The fast path (src/proxy/fast-path.ts) against node:http: the same requests through one drover
 * with the fast path and one with `DROVER_FAST_PATH=off` must give byte-identical answers, and
 * every case the fast path does not serve must reach node:http on the same connection, counted
 * by reason in `drover_fast_path_handovers_total`.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { REFUSING_PORT, startBackend, type TestBackend } from './helpers/backends.js';
import { scrapeSum } from './helpers/metrics.js';
import { ok, startRawBackend, type RawBackend } from './helpers/raw-backend.js';
import { waitFor, eventually } from './helpers/wait.js';

/** What the scripted backend answers, by request path. */
const ANSWERS: Record<string, string> = {
  '/cl': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-B: 1\r\n\r\nhello',
  '/chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-B: 2\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
  '/empty': 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
  '/204': 'HTTP/1.1 204 No Content\r\nX-B: 3\r\n\r\n',
  '/304': 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n',
  '/reason': 'HTTP/1.1 299 Quite Custom\r\nContent-Length: 2\r\n\r\nok',
  '/noreason': 'HTTP/1.1 201 \r\nContent-Length: 2\r\n\r\nok',
  '/date': 'HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 1\r\n\r\nd',
  '/cookies': 'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nx-lower: v\r\nSet-Cookie: b=2\r\nContent-Length: 1\r\n\r\nc',
  '/hop': 'HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: leak\r\nKeep-Alive: timeout=99\r\nX-Kept: yes\r\nContent-Length: 1\r\n\r\nh',
  '/big': `HTTP/1.1 200 OK\r\nContent-Length: ${200_000}\r\n\r\n${'x'.repeat(200_000)}`,
  '/500': 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops',
};

let raw: RawBackend;
/** records method, target, headers and body of every request (for the body tests) */
let web: TestBackend;
let fast: DroverProcess;
let slow: DroverProcess;

const config = (backend: string, recorder: string): string => `
listen:
  - address: 127.0.0.1:0
    limits: {headers_timeout: 1s, keep_alive_timeout: 1s}
admin: {address: 127.0.0.1:0}
access_log: stdout
services:
  raw: {retries: 0, backends: [{url: ${backend}}]}
  empty: {backends: []}
  web: {retries: 0, backends: [{url: ${recorder}}]}
routes:
  - match: {path_prefix: /web}
    service: web
  - match: {path_prefix: /nobackend}
    service: empty
  - match: {host: example.test, path_prefix: /}
    service: raw
`;

beforeAll(async () => {
  raw = await startRawBackend('raw');
  raw.respond((s, head) => {
    // The raw backend splits on blank lines only, so a body shows up in front of the next head
    // and chunk framing as heads of its own: answer request lines only, wherever they start.
    const line = /([A-Z]+) (\S+) HTTP\/1\.[01]\r?$/.exec(head.split('\n')[0] ?? '');
    if (line === null) return;
    const path = line[2] ?? '';
    if (path === '/close') {
      s.end('HTTP/1.1 200 OK\r\nX-B: close\r\n\r\nuntil close');
      return;
    }
    if (path === '/hang') return;
    if (path === '/slow') {
      setTimeout(() => s.write(ok('slow')), 200);
      return;
    }
    const answer = ANSWERS[path] ?? ok(`raw ${path}`);
    // HEAD: the same head, no body (Content-Length stays, as a real server sends it)
    s.write(line[1] === 'HEAD' ? answer.slice(0, answer.indexOf('\r\n\r\n') + 4) : answer);
  });
  web = await startBackend('web');
  [fast, slow] = await Promise.all([startDrover(config(raw.url, web.url)), startDrover(config(raw.url, web.url), { env: { DROVER_FAST_PATH: 'off' } })]);
});

afterAll(async () => {
  await Promise.all([fast?.stop(), slow?.stop()]);
  await Promise.all([raw?.close(), web?.close()]);
});

/** One HTTP/1.1 response read off a raw socket, framing included. */
interface RawResponse {
  /** the head as sent, up to and including the blank line */
  head: string;
  status: number;
  /** the body bytes as sent on the wire (chunk framing included) */
  wire: string;
  /** the body with chunk framing removed */
  body: string;
}

/** A keep-alive client on one raw connection that reads whole responses. */
class RawClient {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed = false;
  private readonly socket: net.Socket;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    this.socket.on('error', () => undefined);
  }

  /** Everything received and not yet read as a response. */
  text(): string {
    return this.buf.toString('latin1');
  }

  send(data: string): void {
    this.socket.write(Buffer.from(data, 'latin1'));
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Half-closes: sends FIN, keeps reading. */
  halfClose(): void {
    this.socket.end();
  }

  /** Resolves when `have` is satisfied by the buffered bytes (or rejects after 5 s / on close). */
  private async until<T>(have: () => T | undefined): Promise<T> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const got = have();
      if (got !== undefined) return got;
      if (this.closed) throw new Error(`connection closed; buffered: ${JSON.stringify(this.buf.toString('latin1').slice(0, 200))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no complete response; buffered: ${JSON.stringify(this.buf.toString('latin1').slice(0, 200))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** Reads one response; `bodyless` for answers to HEAD. */
  async read(bodyless = false): Promise<RawResponse> {
    const headEnd = await this.until(() => {
      const i = this.buf.indexOf('\r\n\r\n');
      return i === -1 ? undefined : i + 4;
    });
    const head = this.buf.subarray(0, headEnd).toString('latin1');
    const status = Number(head.slice(9, 12));
    const header = (name: string): string | undefined => new RegExp(`^${name}: *([^\\r]*)\\r$`, 'im').exec(head)?.[1];
    let end: number;
    let body = '';
    if (bodyless || status === 204 || status === 304 || status < 200) {
      end = headEnd;
    } else if (header('transfer-encoding') === 'chunked') {
      end = await this.until(() => {
        let at = headEnd;
        let text = '';
        for (;;) {
          const lineEnd = this.buf.indexOf('\r\n', at);
          if (lineEnd === -1) return undefined;
          const size = parseInt(this.buf.subarray(at, lineEnd).toString('latin1'), 16);
          if (this.buf.length < lineEnd + 2 + size + 2) return undefined;
          text += this.buf.subarray(lineEnd + 2, lineEnd + 2 + size).toString('latin1');
          at = lineEnd + 2 + size + 2;
          if (size === 0) {
            body = text;
            return at;
          }
        }
      });
    } else {
      const length = Number(header('content-length') ?? NaN);
      if (Number.isNaN(length)) throw new Error(`no framing in ${head}`);
      end = await this.until(() => (this.buf.length >= headEnd + length ? headEnd + length : undefined));
      body = this.buf.subarray(headEnd, end).toString('latin1');
    }
    const wire = this.buf.subarray(headEnd, end).toString('latin1');
    this.buf = this.buf.subarray(end);
    return { head, status, wire, body };
  }

  /** Waits until the server closes the connection; true if it did within `ms`. */
  async waitClosed(ms: number): Promise<boolean> {
    return eventually(() => this.closed, ms);
  }
}

/**
 * drover's own Date values differ by the second they were written: blank them. Chunk boundaries
 * are transport framing an intermediary may change (RFC 9112 section 7.1), and node:http's differ by
 * version: Node 24 merges writes made in one tick into one chunk, Node 20 and 22 send one chunk per
 * write, while the fast path relays the backend's chunks as they come. So a chunked answer is
 * compared by its head (which says `Transfer-Encoding: chunked`) and its decoded body; every other
 * answer's body bytes are compared as sent.
 */
function normalized(r: RawResponse): RawResponse {
  const head = r.head.replace(/^Date: (?!Mon, 01 Jan 2024).*$/m, 'Date: <now>');
  const chunked = /^Transfer-Encoding: chunked\r$/im.test(head);
  return { ...r, head, wire: chunked ? `<chunked> ${r.body}` : r.wire };
}

const GET = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t\r\n${extra}\r\n`;

describe('fast path answers byte for byte like node:http', () => {
  const cases: [string, string, boolean][] = [
    ['content-length body', 'GET /cl', false],
    ['chunked from the backend', 'GET /chunked', false],
    ['empty body', 'GET /empty', false],
    ['204', 'GET /204', false],
    ['304', 'GET /304', false],
    ['custom reason phrase', 'GET /reason', false],
    ['empty reason phrase', 'GET /noreason', false],
    ["the backend's own Date", 'GET /date', false],
    ['repeated Set-Cookie, order and case kept', 'GET /cookies', false],
    ['hop-by-hop and Connection-named headers dropped', 'GET /hop', false],
    ['close-delimited body re-framed as chunked', 'GET /close', false],
    ['200 KB body (backpressure path)', 'GET /big', false],
    ['backend 500 passed through', 'GET /500', false],
    ['HEAD with Content-Length', 'HEAD /cl', true],
    ['HEAD of a chunked resource', 'HEAD /chunked', true],
    ['no route for this host: 404', 'GET /cl?x=1 other', false],
    ['no backend: 503 with the service named', 'GET /nobackend?x=1', false],
    ['DELETE without a body', 'DELETE /cl', false],
  ];

  it.each(cases)('%s', async (_name, line, head) => {
    const [method, path, host = 'example.test'] = line.split(' ') as [string, string, string?];
    const before = await scrapeSum(fast.adminPort, 'drover_fast_path_requests_total');
    const answers: RawResponse[] = [];
    for (const d of [fast, slow]) {
      const c = new RawClient(d.port);
      // twice on one connection: the second answer shows the connection was left clean
      c.send(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: t\r\n\r\n`);
      const first = await c.read(head);
      c.send(GET('/cl'));
      const second = await c.read();
      expect(second.body).toBe('hello');
      c.destroy();
      answers.push(normalized(first));
    }
    const [viaFast, viaNode] = answers as [RawResponse, RawResponse];
    expect(viaFast).toEqual(viaNode);
    expect(viaFast.status).toBeGreaterThan(0);
    // both requests were served by the fast path (the off switch works: the other drover's stays 0)
    expect(await scrapeSum(fast.adminPort, 'drover_fast_path_requests_total')).toBe(before + 2);
    expect(await scrapeSum(slow.adminPort, 'drover_fast_path_requests_total')).toBe(0);
  });

  it('the ready log line says whether the fast path is on, and why not', () => {
    const ready = (d: DroverProcess): unknown => d.logs.find((l) => l['msg'] === 'ready')?.['fastPath'];
    expect([ready(fast), ready(slow)]).toEqual(['on', 'off: DROVER_FAST_PATH=off']);
  });

  it('the error answers are drover’s own (the table above compared them with node:http’s)', async () => {
    const c = new RawClient(fast.port);
    c.send(GET('/nobackend/x'));
    const r = await c.read();
    expect([r.status, r.body]).toEqual([503, '{"error":"no_available_backend","service":"empty"}']);
    c.send('GET / HTTP/1.1\r\nHost: other.test\r\n\r\n');
    const n = await c.read();
    expect([n.status, n.body]).toEqual([404, '{"error":"no_route"}']);
    c.destroy();
  });
});

describe('the access log tells the same story on both front ends', () => {
  it('GET, POST with a body, HEAD, 503, 404 and a backend 500: identical lines but for time and duration', async () => {
    const requests = [
      GET('/cl', 'X-Request-Id: al-get\r\n'),
      'POST /web/form HTTP/1.1\r\nHost: example.test\r\nX-Request-Id: al-post\r\nContent-Length: 11\r\n\r\nhello world',
      'HEAD /cl HTTP/1.1\r\nHost: example.test\r\nX-Request-Id: al-head\r\n\r\n',
      GET('/nobackend/x', 'X-Request-Id: al-503\r\n'),
      'GET /x HTTP/1.1\r\nHost: other.test\r\nX-Request-Id: al-404\r\n\r\n',
      GET('/500', 'X-Request-Id: al-500\r\n'),
    ];
    const ids = ['al-get', 'al-post', 'al-head', 'al-503', 'al-404', 'al-500'];
    const lines: Record<string, unknown>[][] = [];
    for (const d of [fast, slow]) {
      const c = new RawClient(d.port);
      for (const r of requests) {
        c.send(r);
        await c.read(r.startsWith('HEAD'));
      }
      c.destroy();
      const mine = (): Record<string, unknown>[] => d.logs.filter((l) => ids.includes(String(l['request_id'])));
      if (!(await eventually(() => mine().length === ids.length, 5_000))) console.log(JSON.stringify(d.logs.slice(-10)));
      expect(mine().length).toBe(ids.length);
      lines.push(mine().map(({ time: _t, duration_ms: _d, ...rest }) => rest));
    }
    expect(lines[0]).toEqual(lines[1]);
    expect(lines[0]?.map((l) => [l['request_id'], l['method'], l['status'], l['bytes_in'], l['bytes_out']])).toEqual([
      ['al-get', 'GET', 200, 0, 5],
      ['al-post', 'POST', 200, 11, 3],
      ['al-head', 'HEAD', 200, 0, 0],
      ['al-503', 'GET', 503, 0, 0],
      ['al-404', 'GET', 404, 0, 0],
      ['al-500', 'GET', 500, 0, 4],
    ]);
  });
});

describe('everything else is handed to node:http on the same connection', () => {
  async function handovers(reason: string): Promise<number> {
    return scrapeSum(fast.adminPort, 'drover_fast_path_handovers_total', { reason });
  }

  it('pipelined requests: answered in order', async () => {
    const before = await handovers('pipelined');
    const c = new RawClient(fast.port);
    c.send(GET('/cl') + GET('/reason') + GET('/chunked'));
    expect((await c.read()).body).toBe('hello');
    expect((await c.read()).body).toBe('ok');
    expect((await c.read()).body).toBe('hello world');
    c.destroy();
    expect(await handovers('pipelined')).toBe(before + 1);
  });

  it('a head split across reads', async () => {
    const before = await handovers('incomplete');
    const c = new RawClient(fast.port);
    const req = GET('/cl');
    c.send(req.slice(0, 20));
    // handed over on the first read, before the rest is sent
    await waitFor(async () => (await handovers('incomplete')) === before + 1);
    c.send(req.slice(20));
    expect((await c.read()).body).toBe('hello');
    c.destroy();
    expect(await handovers('incomplete')).toBe(before + 1);
  });

  it('a chunked body after fast requests: streamed through node:http, later requests still work', async () => {
    const before = await handovers('body');
    const fastBefore = await scrapeSum(fast.adminPort, 'drover_fast_path_requests_total');
    raw.reset();
    const c = new RawClient(fast.port);
    c.send(GET('/cl'));
    expect((await c.read()).body).toBe('hello');
    c.send('POST /cl HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    expect((await c.read()).body).toBe('hello');
    c.send(GET('/reason'));
    expect((await c.read()).body).toBe('ok');
    c.destroy();
    // the raw backend splits on blank lines only: the chunked body shows up before the next head
    expect(raw.heads.map((h) => h.split('\r\n')[0])).toEqual(['GET /cl HTTP/1.1', 'POST /cl HTTP/1.1', '3', 'GET /reason HTTP/1.1']);
    expect(await handovers('body')).toBe(before + 1);
    expect(await scrapeSum(fast.adminPort, 'drover_fast_path_requests_total')).toBe(fastBefore + 1);
  });

  it.each([
    ['a body larger than 64 KiB', 70_000],
    ['a body that comes after its head', -1],
  ])('%s: handed over, the body reaches the backend whole', async (_name, size) => {
    const before = await handovers(size < 0 ? 'incomplete' : 'body');
    raw.reset();
    const c = new RawClient(fast.port);
    const body = 'b'.repeat(size < 0 ? 10 : size);
    const head = `POST /cl HTTP/1.1\r\nHost: example.test\r\nContent-Length: ${body.length}\r\n\r\n`;
    if (size < 0) {
      c.send(head);
      await waitFor(async () => (await handovers('incomplete')) === before + 1);
      c.send(body);
    } else c.send(head + body);
    expect((await c.read()).body).toBe('hello');
    c.destroy();
    // (a previous test's body may precede the head on a reused upstream connection)
    expect(raw.heads.some((h) => new RegExp(`POST /cl HTTP/1\\.1\\r\\n[\\s\\S]*content-length: ${body.length}`, 'i').test(h))).toBe(true);
    expect(raw.bytes).toBeGreaterThan(body.length);
    expect(await handovers(size < 0 ? 'incomplete' : 'body')).toBe(before + 1);
  });

  it('a malformed request after a fast one: 400 from node:http, connection closed', async () => {
    const before = await handovers('parse_error');
    const c = new RawClient(fast.port);
    c.send(GET('/cl'));
    expect((await c.read()).body).toBe('hello');
    c.send('GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n');
    const bad = await c.read();
    expect(bad.status).toBe(400);
    expect(await c.waitClosed(2_000)).toBe(true);
    expect(await handovers('parse_error')).toBe(before + 1);
  });

  it.each([
    ['HTTP/1.0', 'GET /cl HTTP/1.0\r\nHost: x\r\n\r\n', 'connection'],
    ['Connection: close', 'GET /cl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'connection'],
    ['two Host headers (400)', 'GET /cl HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n', 'head'],
    ['absolute-form target (400)', 'GET http://x/cl HTTP/1.1\r\nHost: x\r\n\r\n', 'head'],
    ['Expect: 100-continue', 'POST /cl HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi', 'body'],
  ])('%s', async (_name, request, reason) => {
    const before = await handovers(reason);
    const answers: string[] = [];
    for (const d of [fast, slow]) {
      const c = new RawClient(d.port);
      c.send(request);
      const r = await c.read();
      // Expect: node:http sends 100 Continue first
      answers.push(normalized(r.status === 100 ? await c.read() : r).head + (r.status === 100 ? '' : r.body));
      c.destroy();
    }
    expect(answers[0]).toBe(answers[1]);
    expect(await handovers(reason)).toBe(before + 1);
  });
});

describe('small bodies that arrive with their head stay on the fast path', () => {
  it.each([
    ['POST', 'hello=1&x=2'],
    ['PUT', '{"a":[1,2,3]}'],
    ['PATCH', 'p'],
    ['DELETE', 'why'],
    ['POST', ''],
  ])('%s with a %j body: the backend sees the same request both ways, then the connection carries on', async (method, body) => {
    const seen: unknown[] = [];
    for (const d of [fast, slow]) {
      const fastBefore = await scrapeSum(d.adminPort, 'drover_fast_path_requests_total');
      web.seen.length = 0;
      const c = new RawClient(d.port);
      c.send(`${method} /web/x?q=1 HTTP/1.1\r\nHost: example.test\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      expect((await c.read()).body).toBe('web');
      c.send(GET('/web/after'));
      expect((await c.read()).body).toBe('web');
      c.destroy();
      // the generated request id differs by nature; everything else must be identical
      seen.push(web.seen.map((r) => ({ method: r.method, url: r.url, body: r.body, rawHeaders: r.rawHeaders.map((h, i) => (r.rawHeaders[i - 1]?.toLowerCase() === 'x-request-id' ? '<id>' : h)) })));
      expect(await scrapeSum(d.adminPort, 'drover_fast_path_requests_total')).toBe(fastBefore + (d === fast ? 2 : 0));
    }
    expect(seen[0]).toEqual(seen[1]);
    expect(seen[0]).toMatchObject([{ method, url: '/web/x?q=1', body }, { method: 'GET', url: '/web/after', body: '' }]);
  });

  it('64 clients post at once while their upstream connections are still opening: every body reaches the backend intact (reads share one buffer)', async () => {
    // a fresh drover: every request waits for an upstream connection of its own, so each body
    // must outlive the reads of the other 63 clients into the shared read buffer
    const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web: {retries: 0, backends: [{url: ${web.url}}]}
routes:
  - {match: {path_prefix: /}, service: web}
`);
    try {
      web.seen.length = 0;
      const bodyOf = (i: number): string => `client-${i}-`.repeat(40 + i);
      const clients = Array.from({ length: 64 }, () => new RawClient(d.port));
      clients.forEach((c, i) => c.send(`POST /b${i} HTTP/1.1\r\nHost: x\r\nContent-Length: ${bodyOf(i).length}\r\n\r\n${bodyOf(i)}`));
      const answers = await Promise.all(clients.map((c) => c.read()));
      clients.forEach((c) => c.destroy());
      expect(answers.map((a) => a.body)).toEqual(clients.map(() => 'web'));
      const got = new Map(web.seen.map((r) => [r.url, r.body]));
      expect(got.size).toBe(64);
      for (let i = 0; i < 64; i++) expect(got.get(`/b${i}`), `/b${i}`).toBe(bodyOf(i));
      expect(await scrapeSum(d.adminPort, 'drover_fast_path_requests_total')).toBe(64);
    } finally {
      await d.stop();
    }
  });

  it('a POST whose backend refuses the connection is retried on another backend with its body (never reached the first)', async () => {
    const other = await startRawBackend('other');
    const deadUrl = `http://127.0.0.1:${REFUSING_PORT}`;
    const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  s: {retries: 2, balancer: round_robin, backends: [{url: ${deadUrl}}, {url: ${other.url}}]}
routes:
  - {match: {path_prefix: /}, service: s}
`);
    try {
      const c = new RawClient(d.port);
      for (let i = 0; i < 4; i++) {
        c.send(`POST /p${i} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody`);
        expect((await c.read()).body).toBe('other');
      }
      c.destroy();
      expect(await scrapeSum(d.adminPort, 'drover_fast_path_requests_total')).toBe(4);
      // every POST reached "other" exactly once, its body right behind its head
      expect(other.heads.map((h) => h.split('\r\n')[0]?.replace(/^body/, ''))).toEqual(['POST /p0 HTTP/1.1', 'POST /p1 HTTP/1.1', 'POST /p2 HTTP/1.1', 'POST /p3 HTTP/1.1']);
      expect(other.bytes).toBeGreaterThan(0);
    } finally {
      await d.stop();
      await other.close();
    }
  });
});

describe('requests that arrive while a response is in flight', () => {
  it('a second request sent before the first is answered: answered after it, in order', async () => {
    const fastBefore = await scrapeSum(fast.adminPort, 'drover_fast_path_requests_total');
    raw.reset();
    const c = new RawClient(fast.port);
    c.send(GET('/slow'));
    await waitFor(() => raw.heads.length === 1); // read (and forwarded) on its own
    c.send(GET('/cl'));
    expect((await c.read()).body).toBe('slow');
    expect((await c.read()).body).toBe('hello');
    c.send(GET('/reason'));
    expect((await c.read()).body).toBe('ok');
    c.destroy();
    // all three on the fast path: the early one waited its turn, then parsed on its own
    expect(await scrapeSum(fast.adminPort, 'drover_fast_path_requests_total')).toBe(fastBefore + 3);
  });

  it('a body-carrying request queued behind a slow one: handed over with its body, in order', async () => {
    raw.reset();
    const c = new RawClient(fast.port);
    c.send(GET('/slow'));
    await waitFor(() => raw.heads.length === 1);
    c.send('POST /cl HTTP/1.1\r\nHost: example.test\r\nContent-Length: 4\r\n\r\nbody');
    expect((await c.read()).body).toBe('slow');
    expect((await c.read()).body).toBe('hello');
    c.destroy();
    expect(raw.heads.map((h) => h.split('\r\n')[0])).toEqual(['GET /slow HTTP/1.1', 'POST /cl HTTP/1.1']);
  });

  it('a pipelined flood (over 64 KiB) behind a slow request: reading pauses, every request is answered in order', async () => {
    raw.reset();
    const c = new RawClient(fast.port);
    c.send(GET('/slow'));
    await waitFor(() => raw.heads.length === 1);
    const n = 1_500;
    let flood = '';
    for (let i = 0; i < n; i++) flood += GET(`/n${i}`);
    expect(flood.length).toBeGreaterThan(64 * 1024);
    c.send(flood);
    expect((await c.read()).body).toBe('slow');
    for (let i = 0; i < n; i++) expect((await c.read()).body).toBe(`raw /n${i}`);
    c.destroy();
  });
});

describe('fast path connection lifecycle', () => {
  it('an idle keep-alive connection is closed after keep_alive_timeout (1s) plus node:http’s 1s slack', async () => {
    const c = new RawClient(fast.port);
    c.send(GET('/cl'));
    expect((await c.read()).body).toBe('hello');
    const t0 = Date.now();
    expect(await c.waitClosed(6_000)).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_500);
  });

  it('a connection that never sends a request gets 408 after headers_timeout (1s), as on node:http', async () => {
    for (const d of [fast, slow]) {
      const c = new RawClient(d.port);
      expect(await c.waitClosed(5_000)).toBe(true);
      expect(c.text()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    }
  });

  it('a client that half-closes between requests: the connection is closed, as on node:http', async () => {
    for (const d of [fast, slow]) {
      const c = new RawClient(d.port);
      c.send(GET('/cl'));
      expect((await c.read()).body).toBe('hello');
      c.halfClose();
      // well before the keep-alive timeout (1s + 1s) would close it
      expect(await c.waitClosed(1_500)).toBe(true);
      expect(c.text()).toBe('');
    }
  });

  it('a client that half-closes while its request waits: the upstream request is aborted (499), as on node:http', async () => {
    for (const d of [fast, slow]) {
      raw.reset();
      const before = await scrapeSum(d.adminPort, 'drover_requests_total', { code: '499' });
      const c = new RawClient(d.port);
      c.send(GET('/hang'));
      await waitFor(() => raw.heads.length === 1, 3_000);
      c.halfClose();
      expect(await c.waitClosed(3_000)).toBe(true);
      await waitFor(async () => (await scrapeSum(d.adminPort, 'drover_requests_total', { code: '499' })) === before + 1, 3_000);
    }
  });

  it('a client that leaves while its request waits: the upstream request is aborted', async () => {
    raw.reset();
    const c = new RawClient(fast.port);
    c.send(GET('/hang'));
    await waitFor(() => raw.heads.length === 1, 3_000);
    c.destroy();
    // the backend's connection is closed by undici's abort
    await waitFor(async () => (await scrapeSum(fast.adminPort, 'drover_requests_total', { code: '499' })) >= 1, 3_000);
  });
});
