/**
 * HTTP/2 to clients: each stream of a session becomes one request through the same
 * `proxyRequest` -> `Exchange` path as HTTP/1.1, answered through `H2Downstream`.
 *
 * Mapping to HTTP/1.1 upstream: pseudo-headers are dropped, `:authority` becomes `Host` (when
 * the client sent no Host), hop-by-hop fields plus `te` and `http2-settings` never travel (the
 * header rewriter removes them), `Expect: 100-continue` is answered here (an interim 100) before
 * dispatch since undici refuses `Expect`. Streams are independent: each has its own flow-control
 * window, and a stream whose client reads slowly pauses only its own upstream response
 * (`write` returns false -> the exchange pauses undici until 'drain'). A client RST_STREAM closes
 * the stream, which aborts its upstream request.
 *
 * Limits: concurrent streams per session and the header list size are advertised in SETTINGS
 * and enforced by nghttp2; beyond that, a session whose client resets more than
 * `RAPID_RESET_LIMIT` streams within `RAPID_RESET_WINDOW_MS` (CVE-2023-44487, "rapid reset")
 * is sent GOAWAY (ENHANCE_YOUR_CALM) and destroyed.
 */
import http2, { type Http2Session, type IncomingHttpHeaders as H2Headers, type ServerHttp2Stream } from 'node:http2';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { LazyBody } from './body.js';
import type { Downstream, ExchangeSink, RequestHead } from './downstream.js';
import { proxyRequest, type ListenerInfo, hostWithoutPort } from './handler.js';
import { errorBody } from './respond.js';
import type { ProxyState } from './types.js';
import { hostProblem } from './validate.js';

const { constants } = http2;

/** Streams one client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
export const H2_MAX_CONCURRENT_STREAMS = 100;
/** Client resets within one window that cut a session off (rapid reset, CVE-2023-44487). */
export const RAPID_RESET_LIMIT = 100;
/** ms: the window `RAPID_RESET_LIMIT` counts over. */
export const RAPID_RESET_WINDOW_MS = 1_000;

/** Fields that are about one HTTP/2 or HTTP/1.1 connection, never relayed into the other. */
const H2_ONLY: ReadonlySet<string> = new Set(['http2-settings', 'te', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** Response fields HTTP/2 allows only once (Node throws on a repeated one). */
const SINGLE_VALUE: ReadonlySet<string> = new Set([
  'content-type',
  'content-length',
  'location',
  'etag',
  'last-modified',
  'age',
  'authorization',
  'content-md5',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'max-forwards',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'user-agent',
  'server',
  'date',
  'expires',
  'content-encoding',
  'content-language',
  'content-location',
  'content-range',
]);

/** The options of the HTTP/2 server behind a TLS listener. */
export function h2ServerOptions(maxHeaderBytes: number, maxHeaders: number): http2.ServerOptions {
  return {
    settings: { maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS, maxHeaderListSize: maxHeaderBytes, enablePush: false },
    // pseudo-headers count as pairs too
    maxHeaderListPairs: maxHeaders + 5,
    // Node's own guards against floods of invalid frames and refused streams stay on
    maxSessionInvalidFrames: 1000,
    maxSessionRejectedStreams: 100,
  };
}

/** Flat `[name, value, ...]` -> an HTTP/2 header object (repeated fields folded as HTTP allows). */
export function h2ResponseHeaders(status: number, flat: readonly string[], extra: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': status };
  const add = (list: readonly string[]): void => {
    for (let i = 0; i < list.length; i += 2) {
      const name = (list[i] as string).toLowerCase();
      const value = list[i + 1] as string;
      if (H2_ONLY.has(name)) continue;
      const prev = out[name];
      if (prev === undefined) out[name] = name === 'set-cookie' ? [value] : value;
      else if (Array.isArray(prev)) prev.push(value);
      else if (!SINGLE_VALUE.has(name)) out[name] = name === 'cookie' ? `${String(prev)}; ${value}` : `${String(prev)}, ${value}`;
    }
  };
  add(flat);
  add(extra);
  return out;
}

/** What a stream's request looks like to routing and the forwarding headers. */
class H2Head implements RequestHead {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly socket: { readonly remoteAddress?: string | undefined };
  readonly httpVersion = '2.0';

  constructor(h: H2Headers, remoteAddress: string | undefined) {
    this.method = String(h[':method'] ?? '');
    this.url = String(h[':path'] ?? '');
    this.socket = { remoteAddress };
    const headers: IncomingHttpHeaders = {};
    const raw: string[] = [];
    const authority = h[':authority'];
    if (typeof authority === 'string' && h['host'] === undefined) {
      headers.host = authority;
      raw.push('host', authority);
    }
    for (const [name, value] of Object.entries(h)) {
      // `te` stays: the header rewriter drops it but learns from it that the client takes trailers
      if (name.startsWith(':') || value === undefined || (H2_ONLY.has(name) && name !== 'te')) continue;
      if (Array.isArray(value)) {
        // only set-cookie stays a list in Node's object; the rest is already folded
        for (const v of value) raw.push(name, v);
        headers[name] = value;
      } else {
        raw.push(name, String(value));
        headers[name] = String(value);
      }
    }
    this.headers = headers;
    this.rawHeaders = raw;
  }
}

/** The response side of one HTTP/2 stream. */
export class H2Downstream implements Downstream {
  private readonly stream: ServerHttp2Stream;
  readonly hasBody: boolean;
  readonly wholeBody = undefined;
  readonly host: string | undefined;
  readonly url: string;
  readonly protocol = 'HTTP/2.0';
  private readonly extra: readonly string[];
  /** trailers may follow: the stream is answered with waitForTrailers (gRPC) */
  private readonly withTrailers: boolean;
  private trailers: OutgoingHttpHeaders | undefined;
  private sink: ExchangeSink | undefined;
  private ended = false;

  /**
   * @param extra response fields this listener adds to every answer (HSTS)
   */
  constructor(stream: ServerHttp2Stream, head: H2Head, raw: H2Headers, extra: readonly string[]) {
    this.stream = stream;
    this.host = head.headers.host;
    this.url = head.url;
    this.extra = extra;
    this.hasBody = !stream.endAfterHeaders && head.headers['content-length'] !== '0';
    this.withTrailers = wantsTrailers(raw);
  }

  get headersSent(): boolean {
    return this.stream.headersSent;
  }

  get finished(): boolean {
    return this.ended && this.stream.writableFinished;
  }

  attach(sink: ExchangeSink): void {
    this.sink = sink;
    this.stream.on('close', () => this.sink?.clientClosed());
  }

  openBody(): LazyBody | undefined {
    return this.hasBody ? new LazyBody(this.stream) : undefined;
  }

  writeHead(status: number, _message: string | undefined, headers: string[]): void {
    if (this.stream.destroyed || this.stream.closed) throw new Error('stream closed');
    const out = h2ResponseHeaders(status, headers, this.extra);
    if (this.withTrailers && out['grpc-status'] !== undefined) {
      // gRPC "trailers-only": the status is in the head and the stream ends with it (END_STREAM
      // on this HEADERS frame is how clients tell it apart from a head followed by a body)
      this.stream.respond(out, { endStream: true });
      this.ended = true;
      return;
    }
    this.stream.respond(out, this.withTrailers ? { waitForTrailers: true } : {});
    if (this.withTrailers) this.stream.once('wantTrailers', () => this.flushTrailers());
  }

  /**
   * Always false: the HEADERS frame goes out at `writeHead` (HTTP/2 has no buffered head to take
   * back), so a failure before the first body byte ends the stream with RST_STREAM, which h2
   * clients report as a failed request rather than a short answer.
   */
  retractHead(): boolean {
    return false;
  }

  write(chunk: Buffer): boolean {
    if (this.stream.destroyed || this.ended) return true;
    return this.stream.write(chunk);
  }

  waitDrain(): void {
    this.stream.once('drain', () => this.sink?.resumeUpstream());
  }

  sendTrailers(trailers: Record<string, string | string[]>): void {
    const out: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(trailers)) {
      const lower = name.toLowerCase();
      if (H2_ONLY.has(lower) || lower.startsWith(':')) continue;
      out[lower] = Array.isArray(value) ? value.join(', ') : value;
    }
    this.trailers = out;
  }

  private flushTrailers(): void {
    try {
      this.stream.sendTrailers(this.trailers ?? {});
    } catch {
      // the stream went away meanwhile
    }
  }

  end(): void {
    const already = this.ended;
    this.ended = true;
    if (!already && !this.stream.destroyed) this.stream.end();
  }

  destroy(): void {
    // RST_STREAM: the only honest signal that a started response is truncated
    resetStream(this.stream);
  }

  sendError(status: number, service: string | undefined): void {
    answer(this.stream, status, errorBody(status, service), 'application/json', this.extra);
    this.ended = true;
  }
}

/** True for a request that announced it takes trailers (`te: trailers`) or speaks gRPC. */
function wantsTrailers(raw: H2Headers): boolean {
  const ct = raw['content-type'];
  return raw['te'] === 'trailers' || (typeof ct === 'string' && ct.startsWith('application/grpc'));
}

/** A whole small answer on a stream (errors, redirects, ACME tokens). */
export function answer(stream: ServerHttp2Stream, status: number, body: string, type: string, extra: readonly string[], more: readonly string[] = []): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    resetStream(stream);
    return;
  }
  try {
    stream.respond(h2ResponseHeaders(status, ['content-type', type, 'content-length', String(Buffer.byteLength(body)), ...more], extra));
    stream.end(body);
  } catch {
    resetStream(stream);
  }
}

/** What the HTTP/2 front end needs from its listener. */
export interface H2Context {
  readonly info: ListenerInfo;
  readonly getState: () => ProxyState;
  /** response fields added to every answer (HSTS) */
  readonly extra: readonly string[];
  readonly maxHeaderBytes: number;
  /** a session was cut off for resetting too many streams (rapid reset), with its peer address */
  readonly onCutOff?: ((peer: string | undefined) => void) | undefined;
  /** answers a request before routing (ACME challenges); true when it did */
  readonly before?: ((head: RequestHead, respond: (status: number, body: string, type: string) => void) => boolean) | undefined;
}

/** Per-session rapid-reset accounting. */
interface ResetWindow {
  start: number;
  count: number;
}

/** Set on a stream drover itself reset: not counted as the client's reset. */
const OWN_RESET = Symbol('drover.ownReset');
type MarkedStream = ServerHttp2Stream & { [OWN_RESET]?: true };

/** Resets `stream` from drover's side (a truncated answer). */
function resetStream(stream: ServerHttp2Stream, code: number = constants.NGHTTP2_INTERNAL_ERROR): void {
  (stream as MarkedStream)[OWN_RESET] = true;
  if (!stream.destroyed) stream.close(code);
}

const RESETS = Symbol('drover.resets');
/** The session's TLS socket, set by the listener: a cut-off session's socket is destroyed outright. */
export const RAW_SOCKET = Symbol('drover.rawSocket');
type CountedSession = Http2Session & { [RESETS]?: ResetWindow; [RAW_SOCKET]?: Duplex };

/**
 * GOAWAY (ENHANCE_YOUR_CALM) and the connection closed at once. `session.destroy()` alone only
 * ends the socket's writable side and waits for it to flush, which a flooding client need not
 * let happen.
 */
function cutOff(session: CountedSession): void {
  try {
    session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
  } catch {
    // already closing
  }
  session.destroy();
  // let the GOAWAY frame go out first
  const raw = session[RAW_SOCKET];
  if (raw !== undefined) setImmediate(() => raw.destroy());
}

/** Counts one client reset on `session`; true when the session went over the limit. */
export function countReset(session: CountedSession, now: number): boolean {
  let w = session[RESETS];
  if (w === undefined || now - w.start >= RAPID_RESET_WINDOW_MS) {
    w = { start: now, count: 0 };
    session[RESETS] = w;
  }
  w.count++;
  return w.count > RAPID_RESET_LIMIT;
}

/** Handles one new stream of a client session. */
export function handleStream(ctx: H2Context, stream: ServerHttp2Stream, headers: H2Headers): void {
  stream.on('error', () => undefined); // errors end in 'close'; never the process
  const session = stream.session as CountedSession | undefined;
  stream.on('close', () => {
    // a stream the client reset (drover did not): count it against the session
      if (session !== undefined && stream.rstCode !== constants.NGHTTP2_NO_ERROR && (stream as MarkedStream)[OWN_RESET] !== true && !session.destroyed) {
      if (countReset(session, Date.now())) {
        ctx.onCutOff?.(head.socket.remoteAddress);
        cutOff(session);
      }
    }
  });
  const head = new H2Head(headers, session?.socket?.remoteAddress);
  const extra = ctx.extra;
  const problem = streamProblem(head, headers, ctx);
  if (problem !== 0) {
    answer(stream, problem, errorBody(problem, undefined), 'application/json', extra);
    return;
  }
  if (ctx.before?.(head, (status, body, type) => answer(stream, status, body, type, extra)) === true) return;
  const expect = headers['expect'];
  if (expect !== undefined) {
    if (String(expect).toLowerCase() !== '100-continue') {
      answer(stream, 417, '{"error":"expectation_failed"}', 'application/json', extra);
      return;
    }
    // undici refuses Expect: answer the interim 100 here, then stream the body as usual
    try {
      stream.additionalHeaders({ ':status': 100 });
    } catch {
      return;
    }
  }
  proxyRequest(ctx.getState(), ctx.info, head, new H2Downstream(stream, head, headers, extra));
}

/** 400/414/431 for a stream head drover does not forward, 0 when it is fine. */
function streamProblem(head: H2Head, raw: H2Headers, ctx: H2Context): 0 | 400 | 414 | 431 {
  if (head.rawHeaders.length / 2 > ctx.info.maxHeaders) return 431;
  let bytes = 0;
  for (let i = 0; i < head.rawHeaders.length; i++) bytes += (head.rawHeaders[i] as string).length;
  if (bytes > ctx.maxHeaderBytes) return 431;
  if (head.url.length > ctx.info.maxUrlBytes) return 414;
  // CONNECT (no :path) and anything but origin-form are not proxied
  if (raw[':method'] === 'CONNECT' || head.url.charCodeAt(0) !== 47 || head.url.includes('#')) return 400;
  const host = head.headers.host;
  if (host === undefined || hostWithoutPort(host) === '') return 400;
  return hostProblem(1, host, 1);
}
