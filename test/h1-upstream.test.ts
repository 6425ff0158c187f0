/**
 * The plain-HTTP upstream on bare handles (src/proxy/h1-upstream.ts), against real loopback
 * backends: the request bytes are undici's for the same dispatch (both are sent to one recorder
 * and compared), keep-alive reuse, every response framing, the timeouts, the stale keep-alive
 * error the Exchange replays, aborts (the connection closes, nothing reconnects), bytes nobody
 * asked for, a graceful close and a destroy, streamed bodies handed to the fallback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { H1Upstream, type H1UpstreamOptions } from '../src/proxy/h1-upstream.js';
import { internals } from '../src/proxy/internals.js';
import { ok, startRawBackend, type RawBackend } from './helpers/raw-backend.js';
import { waitFor } from './helpers/wait.js';

interface Outcome {
  status?: number;
  message?: string | undefined;
  headers?: string[];
  body: string;
  trailers?: Record<string, unknown> | undefined;
  error?: Error & { code?: string; socket?: { bytesRead: number } };
  controller?: Dispatcher.DispatchController;
}

/** Dispatches and collects the response (or the error); `onData` may act on the controller. */
function call(d: { dispatch: H1Upstream['dispatch'] }, opts: Partial<Dispatcher.DispatchOptions> & { headersChecked?: boolean }, onData?: (c: Dispatcher.DispatchController, o: Outcome) => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const o: Outcome = { body: '' };
    d.dispatch({ method: 'GET', path: '/', headers: [], ...opts } as Dispatcher.DispatchOptions, {
      onRequestStart(c) {
        o.controller = c;
      },
      onResponseStart(c, status, _h, message) {
        o.status = status;
        o.message = message;
        o.headers = c.rawHeaders as string[];
      },
      onResponseData(c, chunk) {
        o.body += chunk.toString('latin1');
        onData?.(c, o);
      },
      onResponseEnd(_c, trailers) {
        o.trailers = trailers as Record<string, unknown> | undefined;
        resolve(o);
      },
      onResponseError(_c, err) {
        o.error = err as Outcome['error'];
        resolve(o);
      },
    });
  });
}

const pools: { close(): Promise<void>; destroy(): Promise<void> }[] = [];

function upstream(backend: RawBackend | { port: number }, options: Partial<H1UpstreamOptions> = {}): H1Upstream {
  const port = backend.port;
  const u = new H1Upstream('127.0.0.1', port, `127.0.0.1:${port}`, {
    connectTimeout: 1_000,
    headersTimeout: 5_000,
    bodyTimeout: 5_000,
    keepAliveMs: 4_000,
    keepAliveThresholdMs: 1_000,
    fallback: () => {
      const p = new Pool(`http://127.0.0.1:${port}`, { pipelining: 1 });
      pools.push(p);
      return p;
    },
    ...options,
  });
  pools.push(u);
  return u;
}

let raw: RawBackend;

beforeAll(async () => {
  raw = await startRawBackend('raw');
});

afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.destroy().catch(() => undefined)));
  raw.respond((s) => s.write(ok('raw')));
  raw.reset();
});

afterAll(async () => {
  await raw?.close();
});

describe.runIf(internals !== undefined)('H1Upstream', () => {
  describe('writes the request head undici writes', () => {
    it.each<[string, Partial<Dispatcher.DispatchOptions>]>([
      ['GET with a Host', { method: 'GET', path: '/a?b=1', headers: ['X-Up', '1', 'Host', 'api.test', 'accept', '*/*'] }],
      ['GET without a Host (the backend address)', { method: 'GET', path: '/', headers: ['x-a', 'b'] }],
      ['GET with content-length: 0 (dropped)', { method: 'GET', path: '/', headers: ['host', 'h', 'content-length', '0'] }],
      ['HEAD (connection: close)', { method: 'HEAD', path: '/h', headers: ['host', 'h'] }],
      ['POST with a body', { method: 'POST', path: '/p', headers: ['host', 'h', 'Content-Length', '5', 'content-type', 'text/plain'], body: Buffer.from('hello') }],
      ['POST without a body (content-length: 0)', { method: 'POST', path: '/p', headers: ['host', 'h'] }],
      ['DELETE with a body', { method: 'DELETE', path: '/d', headers: ['host', 'h'], body: Buffer.from('x') }],
      ['PUT with an empty body', { method: 'PUT', path: '/u', headers: ['host', 'h'], body: Buffer.alloc(0) }],
    ])('%s', async (_name, opts) => {
      const lean = await call(upstream(raw), opts);
      const viaUndici = new Pool(raw.url, { pipelining: 1 });
      pools.push(viaUndici);
      const other = await call(viaUndici, opts);
      expect(lean.status).toBe(200);
      expect(other.status).toBe(200);
      // each new connection's bytes (open ones from before count from empty): the same request twice
      const sent = raw.data.filter((d) => d !== '');
      expect(sent).toHaveLength(2);
      expect(sent[0]).toBe(sent[1]);
    });

    it('refuses a header value with a line break (UND_ERR_INVALID_ARG, as undici), before connecting', async () => {
      const r = await call(upstream(raw), { headers: ['x-a', 'a\r\nx-b: injected'] });
      expect(r.error?.code).toBe('UND_ERR_INVALID_ARG');
      expect(raw.connections).toBe(0);
    });
  });

  it('keeps the connection alive: sequential requests share one', async () => {
    const u = upstream(raw);
    for (let i = 0; i < 5; i++) expect((await call(u, {})).body).toBe('raw');
    expect(raw.connections).toBe(1);
    expect(u.stats).toMatchObject({ open: 1, idle: 1, busy: 0, pending: 0 });
  });

  it('concurrent requests open one connection each, then reuse them', async () => {
    const u = upstream(raw);
    await Promise.all(Array.from({ length: 4 }, () => call(u, {})));
    await Promise.all(Array.from({ length: 4 }, () => call(u, {})));
    expect(raw.connections).toBe(4);
  });

  describe('response framing', () => {
    it.each<[string, string, { body: string; headers?: string[]; trailers?: Record<string, unknown>; reused: boolean }]>([
      ['Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc', { body: 'abc', headers: ['Content-Length', '3', 'X-A', '1'], reused: true }],
      ['chunked, with trailers', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n', { body: 'abcde', trailers: { 'x-sum': '5' }, reused: true }],
      ['a 100 Continue before the answer', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', { body: 'ok', reused: true }],
      ['204', 'HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n', { body: '', reused: true }],
      ['Connection: close', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok', { body: 'ok', reused: false }],
      ['HTTP/1.0 without keep-alive', 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok', { body: 'ok', reused: false }],
    ])('%s', async (_name, answer, want) => {
      raw.respond((s, head) => {
        if (head.startsWith('GET')) s.write(answer);
      });
      const u = upstream(raw);
      const r = await call(u, {});
      expect(r.body).toBe(want.body);
      if (want.headers !== undefined) expect(r.headers).toEqual(want.headers);
      if (want.trailers !== undefined) expect(r.trailers).toEqual(want.trailers);
      raw.respond((s) => s.write(ok('next')));
      expect((await call(u, {})).body).toBe('next');
      expect(raw.connections).toBe(want.reused ? 1 : 2);
    });

    it('a body delimited by the close of the connection', async () => {
      raw.respond((s) => s.end('HTTP/1.1 200 OK\r\n\r\nuntil close'));
      const r = await call(upstream(raw), {});
      expect([r.status, r.body, r.error]).toEqual([200, 'until close', undefined]);
    });

    it('HEAD: no body is read, and the connection is not reused (as undici)', async () => {
      raw.respond((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n'));
      const u = upstream(raw);
      const r = await call(u, { method: 'HEAD' });
      expect([r.status, r.body]).toEqual([200, '']);
      raw.respond((s) => s.write(ok('after')));
      expect((await call(u, {})).body).toBe('after');
      expect(raw.connections).toBe(2);
    });

    it('bytes after a complete response in the same read: the answer stands, the connection is not reused', async () => {
      raw.respond((s) => s.write(`${ok('one')}HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad`));
      const u = upstream(raw);
      expect((await call(u, {})).body).toBe('one');
      raw.respond((s) => s.write(ok('two')));
      expect((await call(u, {})).body).toBe('two');
      expect(raw.connections).toBe(2);
    });

    it.each([
      ['204 announcing 5 bytes (llhttp reads none)', 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello'],
      ['304 announcing 2 bytes', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n'],
    ])('%s: UND_ERR_RES_CONTENT_LENGTH_MISMATCH after the head, as undici, and the connection is not reused', async (_name, answer) => {
      const results = [];
      for (const d of [upstream(raw), new Pool(raw.url, { pipelining: 1 })]) {
        if (d instanceof Pool) pools.push(d);
        raw.respond((s) => s.write(answer));
        const r = await call(d, {});
        results.push([r.error?.code, r.body]);
      }
      expect(results).toEqual([
        ['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', ''],
        ['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', ''],
      ]);
    });

    it('a head over 16 KiB: a parse error (HPE_HEADER_OVERFLOW)', async () => {
      raw.respond((s) => s.write(`HTTP/1.1 200 OK\r\nX-Big: ${'x'.repeat(20_000)}\r\nContent-Length: 0\r\n\r\n`));
      const r = await call(upstream(raw), {});
      expect(r.error?.code).toBe('HPE_HEADER_OVERFLOW');
    });

    it("a backend's Keep-Alive: timeout=2 hint: the idle connection is closed after 1 s (the hint less 1 s)", async () => {
      raw.respond((s) => s.write('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=2\r\nContent-Length: 2\r\n\r\nok'));
      const u = upstream(raw);
      await call(u, {});
      expect(u.stats.open).toBe(1);
      await waitFor(() => u.stats.open === 0, 3_000);
      expect(raw.open).toBe(0);
    });

    it('the default keep-alive (here 300 ms): an idle connection is closed by drover', async () => {
      const u = upstream(raw, { keepAliveMs: 300 });
      await call(u, {});
      await new Promise((r) => setTimeout(r, 150));
      expect(u.stats.open).toBe(1);
      await waitFor(() => u.stats.open === 0, 2_000);
    });
    it('a hint holds for the response that gave it: the next one without a hint brings the default (300 ms) back, as on undici', async () => {
      let n = 0;
      raw.respond((s) => s.write(n++ === 0 ? 'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=60\r\nContent-Length: 2\r\n\r\nok' : ok('plain')));
      const u = upstream(raw, { keepAliveMs: 300 });
      await call(u, {});
      expect((await call(u, {})).body).toBe('plain');
      expect(raw.connections).toBe(1);
      // with the 59 s hint kept, it would stay open
      await waitFor(() => u.stats.open === 0, 2_000);
    });
  });

  describe('backpressure', () => {
    it('a paused response resumes, and a connection whose last bytes came while paused is reused (reading again)', async () => {
      const big = 'b'.repeat(300_000);
      raw.respond((s) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n${big}`));
      const u = upstream(raw);
      let paused = 0;
      const r = await call(u, {}, (c) => {
        // hold every chunk back for a moment
        c.pause();
        paused++;
        setTimeout(() => c.resume(), 5);
      });
      expect(r.body.length).toBe(big.length);
      expect(paused).toBeGreaterThan(1);
      raw.respond((s) => s.write(ok('after')));
      expect((await call(u, {})).body).toBe('after');
      expect(raw.connections).toBe(1);
    });
  });

  describe('timeouts', () => {
    it('response headers: UND_ERR_HEADERS_TIMEOUT after the dispatch’s headersTimeout, connection closed', async () => {
      raw.respond(() => undefined);
      const u = upstream(raw);
      const t0 = Date.now();
      const r = await call(u, { headersTimeout: 300 });
      expect(r.error?.code).toBe('UND_ERR_HEADERS_TIMEOUT');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
      expect(Date.now() - t0).toBeLessThan(1_500);
      await waitFor(() => raw.open === 0, 2_000);
    });

    it('a stalled body: UND_ERR_BODY_TIMEOUT after bodyTimeout of silence; not while the handler holds it paused', async () => {
      raw.respond((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'));
      const u = upstream(raw);
      const r = await call(u, { bodyTimeout: 300 });
      expect([r.body, r.error?.code]).toEqual(['abc', 'UND_ERR_BODY_TIMEOUT']);
      // paused for longer than the body timeout: no timeout
      raw.respond((s) => {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc');
        setTimeout(() => s.write('def'), 700);
      });
      const held = await call(u, { bodyTimeout: 300 }, (c, o) => {
        if (o.body === 'abc') {
          c.pause();
          setTimeout(() => c.resume(), 900);
        }
      });
      expect([held.body, held.error]).toEqual(['abcdef', undefined]);
    });

    it('connect: UND_ERR_CONNECT_TIMEOUT when the backend never completes the handshake', async () => {
      // a listener in a stopped process with a full accept queue drops further SYNs
      const child: ChildProcess = spawn(process.execPath, ['-e', "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>{console.log(s.address().port)})"], { stdio: ['ignore', 'pipe', 'ignore'] });
      try {
        const port = await new Promise<number>((resolve) => child.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString()))));
        child.kill('SIGSTOP');
        const fillers = Array.from({ length: 8 }, () => net.connect(port, '127.0.0.1').on('error', () => undefined));
        await new Promise((r) => setTimeout(r, 300));
        const u = upstream({ port }, { connectTimeout: 300 });
        const r = await call(u, {});
        expect(r.error?.code).toBe('UND_ERR_CONNECT_TIMEOUT');
        for (const f of fillers) f.destroy();
      } finally {
        child.kill('SIGKILL');
      }
    });
  });

  describe('failures', () => {
    it('a refused connection: ECONNREFUSED', async () => {
      const closed = net.createServer();
      await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
      const port = (closed.address() as net.AddressInfo).port;
      await new Promise((r) => closed.close(r));
      const r = await call(upstream({ port }), {});
      expect(r.error?.code).toBe('ECONNREFUSED');
    });

    it('a reused connection the backend closes as the request arrives: UND_ERR_SOCKET "other side closed" with bytes read before (replayable)', async () => {
      raw.respond((s, _h, index) => {
        if (index === 0) s.write(ok('fresh'));
        else s.destroy();
      });
      const u = upstream(raw);
      expect((await call(u, {})).body).toBe('fresh');
      const r = await call(u, {});
      expect([r.error?.code, r.error?.message]).toEqual(['UND_ERR_SOCKET', expect.stringMatching(/^(other side closed|closed|ECONNRESET.*)$/)]);
      if (r.error?.code === 'UND_ERR_SOCKET') expect(r.error.socket?.bytesRead).toBeGreaterThan(0);
    });

    it('a reused connection the backend closes after a request took it but before its write (the check phase): "other side closed", replayable, never an end without a head', async () => {
      let first: net.Socket | undefined;
      raw.respond((s) => {
        first ??= s;
        s.write(ok('one'));
      });
      const u = upstream(raw);
      expect((await call(u, {})).body).toBe('one');
      // from a timer: the backend's close (its fd closed at once, so the FIN is on the wire)
      // and the dispatch that takes the idle connection happen in one tick; the poll phase then
      // reads the FIN before the check phase writes the request
      const second = await new Promise<Outcome>((resolve) =>
        setTimeout(() => {
          first?.destroy();
          void call(u, {}).then(resolve);
        }, 20),
      );
      expect(second.status).toBeUndefined();
      expect([second.error?.code, second.error?.message]).toEqual(['UND_ERR_SOCKET', 'other side closed']);
      expect(second.error?.socket?.bytesRead).toBeGreaterThan(0);
    });

    it('a new connection closed before any answer: bytes read 0 (not a stale keep-alive)', async () => {
      raw.respond((s) => s.end());
      const r = await call(upstream(raw), {});
      expect(r.error?.code).toBe('UND_ERR_SOCKET');
      expect(r.error?.socket?.bytesRead).toBe(0);
    });

    it('bytes nobody asked for on an idle connection close it; the next request gets a new one', async () => {
      let first: net.Socket | undefined;
      raw.respond((s) => {
        first ??= s;
        s.write(ok('one'));
      });
      const u = upstream(raw);
      expect((await call(u, {})).body).toBe('one');
      first?.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil');
      await waitFor(() => u.stats.open === 0, 2_000);
      expect((await call(u, {})).body).toBe('one');
      expect(raw.connections).toBe(2);
    });
  });

  describe('aborts', () => {
    it('an aborted request in flight closes its connection, and nothing reconnects (undici opens one per abort)', async () => {
      raw.respond(() => undefined);
      const u = upstream(raw);
      let controller: Dispatcher.DispatchController | undefined;
      const aborted = call(u, {}, undefined);
      void aborted.then(() => undefined);
      await waitFor(() => raw.heads.length === 1, 2_000);
      // the controller the handler was given at the start
      controller = (await Promise.race([aborted, Promise.resolve(undefined)]))?.controller;
      expect(controller).toBeUndefined();
      u.dispatch({ method: 'GET', path: '/', headers: [] }, {
        onRequestStart(c) {
          controller = c;
        },
        onResponseError() {
          // aborted below
        },
      });
      await waitFor(() => raw.heads.length === 2, 2_000);
      controller?.abort(new Error('client left'));
      expect(controller?.aborted).toBe(true);
      await waitFor(() => raw.open === 1, 2_000);
      await new Promise((r) => setTimeout(r, 200));
      // two connections were opened (one per request); the aborted one closed, none replaced it
      expect([raw.connections, raw.open, u.stats.open]).toEqual([2, 1, 1]);
    });

    it('a request aborted while it waits for a connection never opens one that is kept', async () => {
      raw.respond((s) => s.write(ok('raw')));
      const u = upstream(raw);
      const r = await new Promise<Outcome>((resolve) => {
        u.dispatch({ method: 'GET', path: '/', headers: [] }, {
          onRequestStart(c) {
            c.abort(new Error('gone'));
          },
          onResponseError(_c, err) {
            resolve({ body: '', error: err });
          },
        });
      });
      expect(r.error?.message).toBe('gone');
      await new Promise((res) => setTimeout(res, 100));
      expect(raw.heads).toHaveLength(0);
    });
  });

  describe('close and destroy', () => {
    it('close(): a request in flight finishes, then it resolves; later dispatches fail with UND_ERR_CLOSED', async () => {
      raw.respond((s) => setTimeout(() => s.write(ok('late')), 200));
      const u = upstream(raw);
      const inFlight = call(u, {});
      await waitFor(() => raw.heads.length === 1, 2_000);
      let closed = false;
      const closing = u.close().then(() => (closed = true));
      expect((await call(u, {})).error?.code).toBe('UND_ERR_CLOSED');
      expect(closed).toBe(false);
      expect((await inFlight).body).toBe('late');
      await closing;
      expect(u.stats.open).toBe(0);
      await waitFor(() => raw.open === 0, 2_000);
    });

    it('destroy(): a request in flight fails with UND_ERR_DESTROYED', async () => {
      raw.respond(() => undefined);
      const u = upstream(raw);
      const inFlight = call(u, {});
      await waitFor(() => raw.heads.length === 1, 2_000);
      await u.destroy();
      expect((await inFlight).error?.code).toBe('UND_ERR_DESTROYED');
    });
  });

  it('a streamed request body goes to the fallback dispatcher (undici)', async () => {
    raw.respond((s, head) => {
      if (head.startsWith('POST')) s.write(ok('streamed'));
    });
    const u = upstream(raw);
    const r = await call(u, { method: 'POST', headers: ['host', 'h'], body: Readable.from([Buffer.from('ab'), Buffer.from('cd')]) });
    expect(r.body).toBe('streamed');
    expect(u.stats.open).toBe(0);
    expect(raw.data.join('')).toMatch(/transfer-encoding: chunked/);
  });

  it('after close() a streamed body makes no fallback: UND_ERR_CLOSED; destroy() with a fallback made resolves', async () => {
    raw.respond((s) => s.write(ok('streamed')));
    const u = upstream(raw);
    const streamed = (): Partial<Dispatcher.DispatchOptions> => ({ method: 'POST', headers: ['host', 'h'], body: Readable.from([Buffer.from('ab')]) });
    expect((await call(u, streamed())).body).toBe('streamed');
    await expect(u.destroy()).resolves.toBeUndefined();
    const closed = upstream(raw);
    await closed.close();
    expect((await call(closed, streamed())).error?.code).toBe('UND_ERR_CLOSED');
    expect(pools.length).toBe(3); // the two upstreams and the first one's fallback: none for the closed one
  });
});
