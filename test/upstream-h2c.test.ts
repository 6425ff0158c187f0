/**
 * `h2c://` backends: drover speaks HTTP/2 cleartext to them. The gRPC server is the real
 * @grpc/grpc-js; the plain h2c backend is node:http2. Until drover serves HTTP/2 to clients,
 * calls come in over HTTP/1.1 (chunked bodies both ways, trailers on the chunked response for
 * clients that send `TE: trailers`), which exercises the whole upstream half: request and
 * response bodies streamed independently (bidi), `te: trailers` forwarded, trailers relayed,
 * trailers-only answers passed through.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { GrpcFrames, grpcFrame, startGrpcServer, type TestGrpcServer } from './helpers/grpc.js';
import { adminBackends } from './helpers/raw-backend.js';
import { scrapeSum } from './helpers/metrics.js';
import { waitFor } from './helpers/wait.js';

interface H2cBackend {
  readonly port: number;
  /** every request's headers, in arrival order */
  readonly seen: http2.IncomingHttpHeaders[];
  /** GOAWAY (graceful) or destroy every open connection */
  dropSessions(graceful: boolean): void;
  close(): Promise<void>;
}

/**
 * A plain h2c server: `/echo` streams the request body back, prefixed `plain:`, and ends with a
 * trailer `x-sum: <bytes>`; anything else answers `plain <path>`.
 */
async function startH2c(): Promise<H2cBackend> {
  const seen: http2.IncomingHttpHeaders[] = [];
  const server = http2.createServer();
  const open = new Set<http2.ServerHttp2Session>();
  server.on('session', (sess) => {
    open.add(sess);
    sess.on('close', () => open.delete(sess));
    sess.on('error', () => undefined);
  });
  server.on('stream', (stream, headers) => {
    seen.push(headers);
    stream.on('error', () => undefined);
    if (headers[':path'] === '/echo') {
      let n = 0;
      stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
      stream.write('plain:');
      stream.on('data', (c: Buffer) => {
        n += c.length;
        stream.write(c);
      });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-sum': String(n) }));
      stream.on('end', () => stream.end());
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-backend': 'plain' });
    stream.end(`plain ${String(headers[':path'])}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    port,
    seen,
    dropSessions: (graceful) => {
      for (const sess of open) {
        if (graceful) sess.close();
        else sess.destroy();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}

/** A gRPC call made by hand over HTTP/1.1 through drover. */
interface H1Call {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly messages: string[];
  readonly trailers: NodeJS.Dict<string>;
  /** bytes of a truncated message at the end (0 when the body was whole) */
  readonly leftover: number;
}

/**
 * POSTs gRPC frames with a chunked body. `each(message, write, end)` runs for every response
 * message (bidi: the next request message is written only after the previous answer arrived).
 * `slowReadMs`: the client stops reading for that long once the first message arrived.
 */
function grpcOverH1(
  port: number,
  path: string,
  first: string[],
  options: { te?: boolean; end?: boolean; each?: (m: string, write: (s: string) => void, end: () => void) => void; slowReadMs?: number } = {},
): Promise<H1Call> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/grpc', 'transfer-encoding': 'chunked' };
    if (options.te !== false) headers['te'] = 'trailers';
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers, agent: false }, (res) => {
      const frames = new GrpcFrames();
      let paused = false;
      res.on('data', (c: Buffer) => {
        for (const m of frames.push(c)) options.each?.(m, (s) => req.write(grpcFrame(s)), () => req.end());
        if (options.slowReadMs !== undefined && !paused) {
          paused = true;
          res.pause();
          setTimeout(() => res.resume(), options.slowReadMs);
        }
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, messages: frames.messages, trailers: res.trailers, leftover: frames.leftover }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    for (const m of first) req.write(grpcFrame(m));
    if (options.end !== false) req.end();
  });
}

let grpcServer: TestGrpcServer;
let plain: H2cBackend;
let drover: DroverProcess;

beforeAll(async () => {
  grpcServer = await startGrpcServer('g1');
  plain = await startH2c();
  drover = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  grpc:
    backends: [{url: "h2c://127.0.0.1:${grpcServer.port}", id: g1}]
  plain:
    backends: [{url: "h2c://127.0.0.1:${plain.port}", id: plain}]
    health:
      active: {path: /healthz, interval: 200ms, rise: 1}
  nothing:
    retries: 0
    backends: [{url: "h2c://127.0.0.1:2", id: refused}]
routes:
  - match: {path_prefix: /t.T/}
    service: grpc
  - match: {path_prefix: /nothing}
    service: nothing
  - match: {path_prefix: /}
    service: plain
`);
});

afterAll(async () => {
  await drover?.stop();
  await grpcServer?.close();
  await plain?.close();
});

describe('gRPC server behind an h2c:// backend', () => {
  it('unary: the answer, then grpc-status 0 in the trailers', async () => {
    const r = await grpcOverH1(drover.port, '/t.T/Unary', ['hello']);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/grpc/);
    expect(r.messages).toEqual(['g1:hello']);
    expect(r.trailers['grpc-status']).toBe('0');
    expect(r.leftover).toBe(0);
    const call = grpcServer.calls.at(-1);
    expect(call?.path).toBe('/t.T/Unary');
    expect(call?.metadata['x-forwarded-for']).toEqual(['127.0.0.1']);
  });

  it('without TE: trailers from the client, no trailers are relayed to it', async () => {
    const r = await grpcOverH1(drover.port, '/t.T/Unary', ['x'], { te: false });
    expect(r.status).toBe(200);
    // the gRPC answer arrived, but an HTTP/1.1 client that did not ask for trailers gets none
    expect(r.trailers).toEqual({});
  });

  it('trailers-only answer (grpc-status 14 in the headers frame) passes through', async () => {
    // what grpc-js itself sends, seen directly: one HEADERS frame with END_STREAM
    const direct = await new Promise<{ headers: http2.IncomingHttpHeaders; trailers: boolean; body: number }>((resolve, reject) => {
      const s = http2.connect(`http://127.0.0.1:${grpcServer.port}`);
      s.on('error', reject);
      const st = s.request({ ':method': 'POST', ':path': '/t.T/Fail', 'content-type': 'application/grpc', te: 'trailers' });
      let headers: http2.IncomingHttpHeaders = {};
      let trailers = false;
      let body = 0;
      st.on('response', (h) => {
        headers = h;
      });
      st.on('trailers', () => {
        trailers = true;
      });
      st.on('data', (c: Buffer) => {
        body += c.length;
      });
      st.on('end', () => {
        s.close();
        resolve({ headers, trailers, body });
      });
      st.end(grpcFrame('x'));
    });
    expect(direct).toMatchObject({ headers: { 'grpc-status': '14', 'grpc-message': 'down' }, trailers: false, body: 0 });

    const r = await grpcOverH1(drover.port, '/t.T/Fail', ['x']);
    expect(r.status).toBe(200);
    expect(r.headers['grpc-status']).toBe('14');
    expect(r.headers['grpc-message']).toBe('down');
    expect(r.messages).toEqual([]);
  });

  it('server-streaming: every message, in order, then the trailers', async () => {
    const r = await grpcOverH1(drover.port, '/t.T/ServerStream', ['5']);
    expect(r.messages).toEqual(['g1:0', 'g1:1', 'g1:2', 'g1:3', 'g1:4']);
    expect(r.trailers['grpc-status']).toBe('0');
  });

  it('server-streaming to a client that stops reading: nothing lost before the trailers', async () => {
    // ~2.6 MB: far beyond the socket buffers and h2 windows, so the response is paused upstream
    // while the trailers frame is already on its way
    const n = 20_000;
    const r = await grpcOverH1(drover.port, '/t.T/ServerStream', [String(n)], { slowReadMs: 500 });
    expect(r.messages.length).toBe(n);
    expect(r.messages[n - 1]).toBe(`g1:${n - 1}`);
    expect(r.leftover).toBe(0);
    expect(r.trailers['grpc-status']).toBe('0');
  });

  it('a stalled stream does not hold the others on the shared connection', async () => {
    // a server stream (~5 MB) far larger than every window and socket buffer, read by nobody for now
    const stalled = new Promise<{ req: http.ClientRequest; res: http.IncomingMessage }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: drover.port, method: 'POST', path: '/t.T/ServerStream', headers: { 'content-type': 'application/grpc', te: 'trailers' }, agent: false },
        (res) => {
          res.pause();
          resolve({ req, res });
        },
      );
      req.on('error', reject);
      req.end(grpcFrame('400000'));
    });
    const { req, res } = await stalled;
    await new Promise((r) => setTimeout(r, 300));
    // meanwhile, on the same HTTP/2 connection to the backend, other calls go through
    const answers = await Promise.all([1, 2, 3].map((i) => grpcOverH1(drover.port, '/t.T/Unary', [`during${i}`])));
    expect(answers.map((a) => a.messages[0])).toEqual(['g1:during1', 'g1:during2', 'g1:during3']);
    req.destroy();
    res.destroy();
  });

  it('client-streaming: every message of the chunked request body reached the server', async () => {
    const r = await grpcOverH1(drover.port, '/t.T/ClientStream', ['a', 'b', 'c']);
    expect(r.messages).toEqual(['g1:a+b+c']);
    expect(r.trailers['grpc-status']).toBe('0');
  });

  it('bidi: each answer arrives before the next request message is written', async () => {
    const order: string[] = [];
    const r = await grpcOverH1(drover.port, '/t.T/Bidi', ['m0'], {
      end: false,
      each: (m, write, end) => {
        order.push(m);
        const i = order.length;
        if (i < 4) write(`m${i}`);
        else end();
      },
    });
    // the request body was still open while every answer came back: true interleaving
    expect(order).toEqual(['g1:m0', 'g1:m1', 'g1:m2', 'g1:m3']);
    expect(r.messages).toEqual(order);
    expect(r.trailers['grpc-status']).toBe('0');
  });

  it('many calls share one HTTP/2 connection to the backend', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => grpcOverH1(drover.port, '/t.T/Unary', [`c${i}`])));
    expect(answers.map((a) => a.messages[0])).toEqual(Array.from({ length: 20 }, (_, i) => `g1:c${i}`));
    expect(answers.every((a) => a.trailers['grpc-status'] === '0')).toBe(true);
  });
});

describe('plain HTTP/2 backend (h2c://)', () => {
  it('a GET is forwarded with :authority from Host and the forwarding headers; hop-by-hop fields never reach it', async () => {
    const body = await new Promise<{ status: number; text: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: drover.port, path: '/hello?q=1', headers: { host: 'api.example', 'x-custom': 'v', connection: 'keep-alive, x-custom' }, agent: false },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(body).toMatchObject({ status: 200, text: 'plain /hello?q=1', headers: { 'x-backend': 'plain' } });
    const seen = plain.seen.filter((h) => h[':path'] === '/hello?q=1').at(-1);
    expect(seen?.[':authority']).toBe('api.example');
    expect(seen?.[':scheme']).toBe('http');
    expect(seen?.['x-forwarded-host']).toBe('api.example');
    expect(seen?.['x-custom']).toBeUndefined();
    expect(seen?.['connection']).toBeUndefined();
    // the client did not send TE: trailers, so neither does drover
    expect(seen?.['te']).toBeUndefined();
  });

  it('a streamed POST body is echoed back as it is sent; the trailer reaches a client with TE: trailers', async () => {
    const r = await new Promise<{ text: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: drover.port, method: 'POST', path: '/echo', headers: { te: 'trailers', 'transfer-encoding': 'chunked' }, agent: false },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
            // the echo of the first part came back while the request is still open
            if (text === 'plain:one') req.end('two');
          });
          res.on('end', () => resolve({ text, trailers: res.trailers }));
        },
      );
      req.on('error', reject);
      req.write('one');
    });
    expect(r.text).toBe('plain:onetwo');
    expect(r.trailers).toEqual({ 'x-sum': '6' });
    expect(plain.seen.filter((h) => h[':path'] === '/echo').at(-1)?.['te']).toBe('trailers');
  });

  it('the same trailer is dropped for a client that did not send TE: trailers', async () => {
    const r = await new Promise<{ text: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: drover.port, method: 'POST', path: '/echo', agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ text, trailers: res.trailers }));
      });
      req.on('error', reject);
      req.end('abc');
    });
    expect(r).toEqual({ text: 'plain:abc', trailers: {} });
  });

  it('a backend that closes its connection (GOAWAY or reset): the next request opens a new one', async () => {
    const get = (): Promise<number> =>
      new Promise((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: drover.port, path: '/again', agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          })
          .on('error', reject);
      });
    expect(await get()).toBe(200);
    for (const graceful of [true, false]) {
      plain.dropSessions(graceful);
      // drover learns of the closed session asynchronously; until then a request may still be
      // sent on it and fail (502); once it is gone, requests go out on a new connection
      await waitFor(async () => (await get()) === 200);
      // and keep doing so: the dead session is not reused
      expect(await Promise.all([get(), get(), get()])).toEqual([200, 200, 200]);
    }
  });

  it('active health checks run over h2c and mark the backend healthy', async () => {
    await waitFor(async () => (await adminBackends(drover.adminPort)).some((b) => b.id === 'plain' && b.state === 'healthy'));
    expect(plain.seen.some((h) => h[':path'] === '/healthz' && h['user-agent'] === 'drover-health')).toBe(true);
  });

  it('a refused h2c backend is a 502 counted as a connect error', async () => {
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: drover.port, path: '/nothing', agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
    expect(r).toEqual({ status: 502, body: '{"error":"bad_gateway","service":"nothing"}' });
    expect(await scrapeSum(drover.adminPort, 'drover_upstream_errors_total', { service: 'nothing', kind: 'connect' })).toBeGreaterThanOrEqual(1);
  });
});
