/**
 * HTTP/1.1 to one plain-HTTP backend on bare TCP handles: keep-alive connections held as libuv
 * handles (`raw-stream.ts`), the request head written straight into the connection, the
 * response parsed by Node's own llhttp binding (strict, as for client requests). The lean
 * counterpart of undici's `Pool` for the common case (no request body, or one read whole):
 * measured on the bench against two NGINX backends, undici's request object, writer, WASM
 * parser glue and its net.Socket streams were a third of drover's user CPU per request.
 *
 * It keeps what drover relies on from undici, with undici's error codes where the meaning is the
 * same (so `classifyUpstreamError` needs no second table): the request head undici writes (Host
 * first, `connection: keep-alive`, `content-length` as undici decides it, HEAD closes the
 * connection afterwards); connect, response-headers and body-idle timeouts
 * (`UND_ERR_CONNECT_TIMEOUT`, `UND_ERR_HEADERS_TIMEOUT`, `UND_ERR_BODY_TIMEOUT`); a reused
 * connection the backend closed before answering fails with `UND_ERR_SOCKET` "other side closed"
 * and the bytes it read before (the Exchange's stale keep-alive replay rule); idle connections
 * closed after 4 s or the backend's `Keep-Alive: timeout` hint less 1 s; a reused idle
 * connection is written to only in the check phase after a poll, so bytes or a FIN the backend
 * sent meanwhile are seen first (undici's GHSA-35p6-xmwp-9g52 fix); bytes no request asked for
 * close the connection; `close()` lets requests in flight and queued finish; body backpressure
 * through `pause`/`resume` (reading stops).
 *
 * Two differences, both deliberate: a request aborted while in flight closes its connection and
 * nothing reconnects until a request needs it (undici reconnects at once, one connection per
 * abort, measured as the "upstream connections opened" when a load generator stops); and
 * requests with a streamed body go to an undici `Pool` made on first need (`fallback`).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isIPv6 } from 'node:net';
import { FIELD_VALUE_UNSAFE, HTTP_TOKEN } from '../config/values.js';
import type { Dispatcher } from 'undici';
import type { UpstreamController, UpstreamDispatcher, UpstreamDispatchOptions } from './upstream-types.js';
import { internals, newParser, uvErrorName, type ConnectReq, type HttpParser, type Internals, type TcpHandle } from './internals.js';
import { cork, RawStream, uncork } from './raw-stream.js';

/** How to talk to one backend. */
export interface H1UpstreamOptions {
  /** ms to establish a TCP connection */
  readonly connectTimeout: number;
  /** ms an idle connection is kept when the backend gives no `Keep-Alive: timeout` hint */
  readonly keepAliveMs: number;
  /** ms taken off the backend's hint, so drover closes first */
  readonly keepAliveThresholdMs: number;
  /** ms the longest hinted keep-alive is honoured (undici's default: 10 min) */
  readonly keepAliveMaxMs?: number;
  /** ms for response headers when a dispatch names none */
  readonly headersTimeout: number;
  /** ms of silence in a response body when a dispatch names none */
  readonly bodyTimeout: number;
  /** the dispatcher for requests with a streamed body, made on first need */
  readonly fallback: () => UpstreamDispatcher;
}

/** bytes of a response head (undici's default, Node's `http.maxHeaderSize`) */
const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;

/** An error with undici's `code` for the same condition (see `classifyUpstreamError`). */
export class UpstreamError extends Error {
  readonly code: string;
  /** bytes the connection had read when it failed (undici's socket info; stale detection) */
  readonly socket: { readonly bytesRead: number } | undefined;
  constructor(code: string, message: string, bytesRead?: number) {
    super(message);
    this.code = code;
    this.socket = bytesRead === undefined ? undefined : { bytesRead };
  }
}

/** Methods undici sends `content-length: 0` for when they carry no body. */
const EXPECTS_PAYLOAD: ReadonlySet<string> = new Set(['PUT', 'POST', 'PATCH', 'QUERY', 'PROPFIND', 'PROPPATCH']);
/** What undici refuses in a request target. */
const PATH_UNSAFE = /[^\u0021-\u00ff]/;
const NO_HEADERS: IncomingHttpHeaders = Object.freeze({}) as IncomingHttpHeaders;

// ---- one clock and one sweep for every pool: timeouts without a timer per request ----

/** pools with a connection open or a request waiting */
const live = new Set<H1Upstream>();
let sweeper: NodeJS.Timeout | undefined;
/** ms between sweeps: a tenth of a second, finer when a shorter timeout is in use */
let sweepMs = 100;
/** performance.now() at the last sweep (idle connections are timed with it) */
let sweptAt = 0;

function goLive(pool: H1Upstream): void {
  live.add(pool);
  if (sweeper === undefined) {
    sweptAt = performance.now();
    sweeper = setInterval(sweep, sweepMs);
    sweeper.unref();
  }
}

/** A timeout of `ms` is in use: sweeps come often enough to end it within a quarter of it late. */
function timeoutInUse(ms: number): void {
  const want = Math.max(10, Math.min(100, Math.floor(ms / 4)));
  if (want >= sweepMs) return;
  sweepMs = want;
  if (sweeper !== undefined) {
    clearInterval(sweeper);
    sweeper = setInterval(sweep, sweepMs);
    sweeper.unref();
  }
}

function sweep(): void {
  const now = performance.now();
  sweptAt = now;
  for (const pool of live) pool.sweep(now);
  if (live.size === 0 && sweeper !== undefined) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

// ---- writes to reused connections wait for the check phase (see the module comment) ----

const toWrite: H1Connection[] = [];
let writesScheduled = false;

function scheduleWrite(conn: H1Connection): void {
  toWrite.push(conn);
  if (!writesScheduled) {
    writesScheduled = true;
    setImmediate(flushWrites);
  }
}

function flushWrites(): void {
  writesScheduled = false;
  // (a write can fail and retry onto another connection, which schedules again: a new batch)
  const batch = toWrite.splice(0);
  for (const conn of batch) conn.writeRequest();
}

/** One request to one backend; also its controller (pause, resume, abort). */
class H1Request implements UpstreamController {
  /** llhttp parses responses with no lenient flags (see `UpstreamController`) */
  readonly strictHeaders = true;
  readonly pool: H1Upstream;
  readonly handler: Dispatcher.DispatchHandler;
  readonly method: string;
  /** the head to write, built at dispatch */
  head = '';
  readonly body: Buffer | null;
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  /** the connection it is on (undefined while it waits for one) */
  conn: H1Connection | undefined = undefined;
  /** performance.now() when it was written */
  sentAt = 0;
  /** the response head arrived */
  responded = false;
  /** it ended: answered, failed or aborted (no callback follows) */
  done = false;
  /** the connection may not be reused after this request */
  closeAfter = false;
  rawHeaders: string[] | null = null;
  private pausedFlag = false;
  private abortReason: Error | null = null;

  constructor(pool: H1Upstream, handler: Dispatcher.DispatchHandler, method: string, body: Buffer | null, headersTimeout: number, bodyTimeout: number) {
    this.pool = pool;
    this.handler = handler;
    this.method = method;
    this.body = body;
    this.headersTimeout = headersTimeout;
    this.bodyTimeout = bodyTimeout;
  }

  get aborted(): boolean {
    return this.abortReason !== null;
  }

  get paused(): boolean {
    return this.pausedFlag;
  }

  get reason(): Error | null {
    return this.abortReason;
  }

  pause(): void {
    if (this.done || this.pausedFlag) return;
    this.pausedFlag = true;
    this.conn?.pauseReading();
  }

  resume(): void {
    if (!this.pausedFlag) return;
    this.pausedFlag = false;
    const conn = this.conn;
    if (this.done || conn === undefined) return;
    conn.idleFrom(sweptAt);
    conn.resumeReading();
  }

  /** Gives up on the request: its connection (if it has one) is closed, as HTTP/1.1 cannot cancel. */
  abort(reason: Error): void {
    if (this.done) return;
    this.abortReason = reason;
    const conn = this.conn;
    if (conn === undefined) this.pool.unqueue(this);
    else conn.drop(this);
    this.fail(reason);
  }

  /** Ends the request with `err` (once). */
  fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.conn = undefined;
    this.handler.onResponseError?.(this, err);
  }
}

type ConnParser = HttpParser & { owner: H1Connection };

function onMessageBegin(this: ConnParser): void {
  this.owner.messageBegin();
}

function onHeaders(this: ConnParser, fields: string[]): void {
  this.owner.fields(fields);
}

function onHeadersComplete(
  this: ConnParser,
  _major: number,
  _minor: number,
  headers: string[] | undefined,
  _method: unknown,
  _url: unknown,
  status: number,
  message: string,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  return this.owner.headersComplete(headers, status, message, upgrade, keepAlive);
}

function onBody(this: ConnParser, chunk: Buffer): void {
  this.owner.body(chunk);
}

function onMessageComplete(this: ConnParser): void {
  this.owner.messageComplete();
}

/** One keep-alive connection to the backend. */
class H1Connection extends RawStream {
  private readonly pool: H1Upstream;
  private readonly parser: ConnParser;
  /** the request in flight (undefined: idle) */
  req: H1Request | undefined = undefined;
  /** its index in the pool's busy list, or -1 */
  busyAt = -1;
  /** performance.now() (at a sweep) when it went idle, or when its body last moved */
  private since = 0;
  /** bytes read at the last sweep (a body that moves is not idle) */
  private seenBytes = 0;
  /** ms it may stay idle (4 s, or the backend's hint less the threshold) */
  keepAliveMs: number;
  /** bytes read over the connection's life */
  private bytesIn = 0;
  // ---- the response being parsed ----
  private keepAlive = false;
  private completed = false;
  /** a 1xx response is being skipped */
  private informational = false;
  /** a message began after the one answering the request (bytes nobody asked for) */
  private extra = false;
  /** the final response's Content-Length (-1: none, or a HEAD request), and its body bytes so far */
  private expectedLength = -1;
  private bodyBytes = 0;
  /** the body ended short of (or past) its Content-Length: fails as undici does */
  private lengthMismatch = false;
  /** fields llhttp flushed early (a long head), then the trailers */
  private flushed: string[] | undefined;

  constructor(pool: H1Upstream, handle: TcpHandle, k: Internals) {
    super(handle);
    this.pool = pool;
    this.keepAliveMs = pool.options.keepAliveMs;
    const parser = newParser<ConnParser>(k, this, { messageBegin: onMessageBegin, headers: onHeaders, headersComplete: onHeadersComplete, body: onBody, messageComplete: onMessageComplete });
    parser.initialize(k.HTTPParser.RESPONSE, {}, MAX_RESPONSE_HEAD_BYTES, k.HTTPParser.kLenientNone);
    this.parser = parser;
    // llhttp copies what it hands over (strings, body chunks): nothing keeps a read's bytes
    this.readIntoShared();
  }

  /** Times the idle (or body) silence from `now`. */
  idleFrom(now: number): void {
    this.since = now;
  }

  /** Takes `req`; `reused`: the connection served before, so the write waits for the check phase. */
  assign(req: H1Request, reused: boolean): void {
    this.req = req;
    req.conn = this;
    // the last response's state goes now, not at the write: the backend may close the
    // connection before the check phase, and that close must not find the last response complete
    this.completed = false;
    this.extra = false;
    this.expectedLength = -1;
    this.bodyBytes = 0;
    this.lengthMismatch = false;
    this.keepAlive = false;
    this.pool.busyAdd(this);
    if (reused) scheduleWrite(this);
    else this.writeRequest();
  }

  /** Writes the request (head and body) of `req`. */
  writeRequest(): void {
    const req = this.req;
    if (req === undefined || req.done || this.destroyed) return;
    req.sentAt = performance.now();
    this.since = req.sentAt;
    const body = req.body;
    if (body === null || body.length === 0) this.sendNow(req.head);
    else {
      this.send(req.head);
      this.sendNow(body);
    }
    if (req.paused) this.pauseReading();
  }

  /** Sweep: ends a request whose response is late or whose body stalled. */
  checkTimeouts(now: number): void {
    const req = this.req;
    if (req === undefined || req.done || req.sentAt === 0) return;
    if (!req.responded) {
      if (now - req.sentAt >= req.headersTimeout) this.timeOut(new UpstreamError('UND_ERR_HEADERS_TIMEOUT', `Headers Timeout Error (${req.headersTimeout} ms)`));
      return;
    }
    if (req.paused) return;
    const bytes = this.bytesIn;
    if (bytes !== this.seenBytes) {
      this.seenBytes = bytes;
      this.since = now;
    } else if (now - this.since >= req.bodyTimeout) {
      this.timeOut(new UpstreamError('UND_ERR_BODY_TIMEOUT', `Body Timeout Error (${req.bodyTimeout} ms)`));
    }
  }

  /** True when it sat idle past its keep-alive. */
  expired(now: number): boolean {
    return now - this.since >= this.keepAliveMs;
  }

  private timeOut(err: UpstreamError): void {
    const req = this.req as H1Request;
    this.drop(req);
    req.fail(err);
  }

  /** Lets go of `req` (aborted or timed out): the connection closes. */
  drop(req: H1Request): void {
    if (this.req !== req) return;
    this.req = undefined;
    this.pool.busyRemove(this);
    this.destroy();
  }

  // ---- reading ----

  protected onData(chunk: Buffer): void {
    const req = this.req;
    this.bytesIn += chunk.length;
    if (req === undefined || req.sentAt === 0) {
      // bytes nobody asked for (or before the request went out): the connection is unusable
      this.pool.idleRemove(this);
      this.destroy();
      return;
    }
    // what the handler writes to its client while this read is handled leaves in one write
    cork();
    try {
      const parsed = this.parser.execute(chunk);
      // the request may have ended during the callbacks (aborted by the handler)
      if (this.req !== req) return;
      // a complete response stands even if what followed it does not parse: those bytes only
      // make the connection unusable
      if (this.lengthMismatch) this.failRequest(new UpstreamError('UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'Response body length does not match content-length header', this.bytesIn));
      else if (this.completed) this.finish(parsed === chunk.length && !this.extra);
      else if (typeof parsed !== 'number') this.failRequest(new UpstreamError((parsed as Error & { code?: string }).code ?? 'HPE_ERROR', `Parse Error: ${parsed.message}`, this.bytesIn));
    } finally {
      uncork();
    }
  }

  messageBegin(): void {
    if (this.completed) this.extra = true;
  }

  fields(fields: string[]): void {
    this.flushed = this.flushed === undefined ? fields : this.flushed.concat(fields);
  }

  headersComplete(headers: string[] | undefined, status: number, message: string, upgrade: boolean, keepAlive: boolean): number {
    const req = this.req;
    if (req === undefined || req.done || this.completed) return 1;
    let raw = headers;
    if (raw === undefined) {
      raw = this.flushed ?? [];
      this.flushed = undefined;
    }
    if (status === 101 || upgrade) {
      this.failRequest(new UpstreamError('UND_ERR_SOCKET', 'bad upgrade', this.bytesIn));
      return 1;
    }
    if (status < 200) {
      // 1xx informational (RFC 9110 section 15.2): skipped, the final answer follows
      this.informational = true;
      return 1;
    }
    req.responded = true;
    this.keepAlive = keepAlive;
    this.seenBytes = this.bytesIn;
    this.since = sweptAt;
    const head = req.method === 'HEAD';
    // each response says its keep-alive afresh: without a hint, the default again (as undici)
    this.keepAliveMs = this.pool.options.keepAliveMs;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      if (name.length === 10 && name.toLowerCase() === 'keep-alive') this.keepAliveHint(raw[i + 1] as string);
      // llhttp skips the body of a 204 or 304 whatever its Content-Length says; undici then
      // fails the response (it read 0 of the bytes announced), and so does this
      else if (!head && name.length === 14 && name.toLowerCase() === 'content-length') this.expectedLength = Number(raw[i + 1]);
    }
    req.rawHeaders = raw;
    req.handler.onResponseStart?.(req, status, NO_HEADERS, message);
    return head ? 1 : 0;
  }

  /** `Keep-Alive: timeout=N` from the backend, as undici reads it. */
  private keepAliveHint(value: string): void {
    const m = /timeout=(\d+)/.exec(value);
    if (m === null) return;
    const opts = this.pool.options;
    const ms = Math.min(Number(m[1]) * 1000 - opts.keepAliveThresholdMs, opts.keepAliveMaxMs ?? 600_000);
    if (ms <= 0) this.keepAlive = false;
    else {
      this.keepAliveMs = ms;
      this.pool.hinted = true;
    }
  }

  body(chunk: Buffer): void {
    const req = this.req;
    if (req === undefined || req.done || this.completed) return;
    this.bodyBytes += chunk.length;
    req.handler.onResponseData?.(req, chunk);
  }

  messageComplete(): void {
    if (this.informational) {
      this.informational = false;
      return;
    }
    this.completed = true;
    if (this.expectedLength >= 0 && this.bodyBytes !== this.expectedLength) this.lengthMismatch = true;
  }

  /** The response is complete: the connection goes back to the pool (or closes), then the handler hears. */
  private finish(clean: boolean): void {
    const req = this.req as H1Request;
    this.req = undefined;
    req.conn = undefined;
    req.done = true;
    this.pool.busyRemove(this);
    const trailers = this.trailers();
    if (clean && this.keepAlive && !req.closeAfter) {
      // the last body bytes may have come while the handler held the response back
      if (req.paused) this.resumeReading();
      this.pool.release(this);
    }
    else this.destroy();
    req.handler.onResponseEnd?.(req, trailers as IncomingHttpHeaders);
  }

  /** Trailer fields of the response just parsed, as undici hands them over; undefined: none. */
  private trailers(): Record<string, string | string[]> | undefined {
    const f = this.flushed;
    if (f === undefined) return undefined;
    this.flushed = undefined;
    const out: Record<string, string | string[]> = {};
    for (let i = 0; i < f.length; i += 2) {
      const name = (f[i] as string).toLowerCase();
      const value = f[i + 1] as string;
      const prev = out[name];
      out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
    return out;
  }

  /** The request in flight fails with `err`; the connection closes. */
  private failRequest(err: Error): void {
    const req = this.req;
    if (req === undefined) return;
    this.req = undefined;
    this.pool.busyRemove(this);
    this.destroy();
    req.fail(err);
  }

  protected onEnd(): void {
    const req = this.req;
    if (req === undefined) {
      // the backend closed an idle connection
      this.pool.idleRemove(this);
      this.destroy();
      return;
    }
    // a body without framing ends with the connection
    if (req.responded && !this.completed) this.parser.finish();
    if (this.req === req && req.responded && this.completed) {
      this.finish(false);
      return;
    }
    this.failRequest(new UpstreamError('UND_ERR_SOCKET', 'other side closed', this.bytesIn));
  }

  protected onClose(): void {
    this.pool.idleRemove(this);
    const req = this.req;
    if (req !== undefined) {
      this.req = undefined;
      this.pool.busyRemove(this);
      const f = this.failure;
      req.fail(f !== 0 ? new UpstreamError(uvErrorName(f), `${uvErrorName(f)} on the upstream connection`, this.bytesIn) : new UpstreamError('UND_ERR_SOCKET', 'closed', this.bytesIn));
    }
    this.parser.close();
    this.pool.closed(this);
  }

  protected onDrain(): void {
    // a request body larger than the socket buffers went out: nothing waits for it
  }
}

/** A connection attempt, with its timer. */
class Connecting {
  readonly pool: H1Upstream;
  readonly handle: TcpHandle;
  timer: NodeJS.Timeout | undefined;
  over = false;
  constructor(pool: H1Upstream, handle: TcpHandle) {
    this.pool = pool;
    this.handle = handle;
  }
}

function onConnected(this: ConnectReq, status: number): void {
  const attempt = this.owner as Connecting;
  if (attempt.over) return;
  attempt.over = true;
  clearTimeout(attempt.timer);
  attempt.pool.connectDone(attempt, status);
}

function onConnectTimeout(attempt: Connecting): void {
  if (attempt.over) return;
  attempt.over = true;
  attempt.pool.connectTimedOut(attempt);
}

/** The HTTP/1.1 keep-alive pool of one plain-HTTP backend (an IP address and port). */
export class H1Upstream {
  readonly options: H1UpstreamOptions;
  private readonly k: Internals;
  private readonly address: string;
  private readonly port: number;
  private readonly v6: boolean;
  /** `host: ...\r\n` when a request has no Host (undici's default: the URL's host) */
  private readonly hostLine: string;
  private readonly idle: H1Connection[] = [];
  private readonly busy: H1Connection[] = [];
  private readonly pending: H1Request[] = [];
  private connecting = 0;
  /** connections open (idle, busy or closing) */
  private open = 0;
  /** some connection has a keep-alive hint of its own: idle sweeps look at every one */
  hinted = false;
  private closing = false;
  private destroyed = false;
  private whenClosed: (() => void) | undefined;
  private fallbackPool: UpstreamDispatcher | undefined;

  /**
   * @param address the backend's IP address (v4 or v6)
   * @param host the URL's host (`10.0.0.5:8080`), the Host sent when a request has none
   */
  constructor(address: string, port: number, host: string, options: H1UpstreamOptions) {
    if (internals === undefined) throw new Error('H1Upstream needs Node internals this Node lacks');
    this.k = internals;
    this.address = address;
    this.port = port;
    this.v6 = isIPv6(address);
    this.hostLine = `host: ${host}\r\n`;
    this.options = options;
    timeoutInUse(options.headersTimeout);
    timeoutInUse(options.bodyTimeout);
  }

  /** Connections open, waiting in the pool, requests queued (for tests and the admin view). */
  get stats(): { readonly open: number; readonly idle: number; readonly busy: number; readonly pending: number; readonly connecting: number } {
    return { open: this.open, idle: this.idle.length, busy: this.busy.length, pending: this.pending.length, connecting: this.connecting };
  }

  dispatch(opts: UpstreamDispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const body = opts.body;
    // (a closing pool makes no fallback: the request fails below, as any other would)
    const streamed = body !== null && body !== undefined && !Buffer.isBuffer(body);
    if (streamed && !this.closing) return (this.fallbackPool ??= this.options.fallback()).dispatch(opts, handler);
    const headersTimeout = opts.headersTimeout ?? this.options.headersTimeout;
    const bodyTimeout = opts.bodyTimeout ?? this.options.bodyTimeout;
    const req = new H1Request(this, handler, opts.method, Buffer.isBuffer(body) ? body : null, headersTimeout, bodyTimeout);
    handler.onRequestStart?.(req, undefined);
    if (req.done) return true; // aborted at once (the client had left)
    if (this.closing) {
      req.fail(new UpstreamError(this.destroyed ? 'UND_ERR_DESTROYED' : 'UND_ERR_CLOSED', this.destroyed ? 'The client is destroyed' : 'The client is closed'));
      return false;
    }
    try {
      req.head = this.requestHead(req, opts.path, opts.headers as string[] | null | undefined, opts.headersChecked === true);
    } catch (err) {
      req.fail(err as Error);
      return false;
    }
    if (headersTimeout < sweepMs * 4) timeoutInUse(headersTimeout);
    if (bodyTimeout < sweepMs * 4) timeoutInUse(bodyTimeout);
    const conn = this.idle.pop();
    if (conn !== undefined) conn.assign(req, true);
    else {
      goLive(this);
      this.pending.push(req);
      if (this.connecting < this.pending.length) this.connect();
    }
    return true;
  }

  /**
   * The request head undici would write for the same dispatch.
   * @param checked the names and values are known good (undici's checks are skipped)
   */
  private requestHead(req: H1Request, path: string, headers: readonly string[] | null | undefined, checked: boolean): string {
    const method = req.method;
    if (PATH_UNSAFE.test(path)) throw new UpstreamError('UND_ERR_INVALID_ARG', 'invalid request path');
    let host: string | undefined;
    let declared: string | undefined;
    let fields = '';
    if (headers !== null && headers !== undefined) {
      for (let i = 0; i < headers.length; i += 2) {
        const name = headers[i] as string;
        const value = headers[i + 1] as string;
        if (!checked && (!HTTP_TOKEN.test(name) || FIELD_VALUE_UNSAFE.test(value))) throw new UpstreamError('UND_ERR_INVALID_ARG', `invalid ${name} header`);
        // undici writes these two itself: Host first, Content-Length as the body says
        if (name.length === 4 && name.toLowerCase() === 'host') {
          if (host !== undefined) throw new UpstreamError('UND_ERR_INVALID_ARG', 'duplicate host header');
          host = value;
        } else if (name.length === 14 && name.toLowerCase() === 'content-length') {
          declared = value;
        } else fields += `${name}: ${value}\r\n`;
      }
    }
    const body = req.body;
    const length = body === null ? 0 : body.length;
    if (declared !== undefined && length > 0 && Number(declared) !== length) throw new UpstreamError('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'Request body length does not match content-length header');
    // undici closes after a HEAD (servers that send a body anyway) and after a body on a method
    // that expects none
    const payload = EXPECTS_PAYLOAD.has(method);
    if (method === 'HEAD' || (length > 0 && !payload)) req.closeAfter = true;
    const lengthLine = length > 0 || payload ? `content-length: ${length}\r\n` : '';
    const hostLine = host === undefined ? this.hostLine : `host: ${host}\r\n`;
    return `${method} ${path} HTTP/1.1\r\n${hostLine}${method === 'HEAD' ? 'connection: close\r\n' : 'connection: keep-alive\r\n'}${fields}${lengthLine}\r\n`;
  }

  // ---- connections ----

  private connect(): void {
    this.connecting++;
    const handle = this.k.newTcpHandle();
    const attempt = new Connecting(this, handle);
    const req = new this.k.TCPConnectWrap();
    req.oncomplete = onConnected;
    req.owner = attempt;
    req.address = this.address;
    req.port = this.port;
    const err = this.v6 ? handle.connect6(req, this.address, this.port) : handle.connect(req, this.address, this.port);
    if (err !== 0) {
      attempt.over = true;
      // reported after this dispatch returns, as a refused connection would be
      setImmediate(() => this.connectDone(attempt, err));
      return;
    }
    attempt.timer = setTimeout(onConnectTimeout, this.options.connectTimeout, attempt);
  }

  /** A connection attempt ended (`status` 0: connected). */
  connectDone(attempt: Connecting, status: number): void {
    this.connecting--;
    if (status !== 0) {
      attempt.handle.close();
      this.connectFailed(new UpstreamError(uvErrorName(status), `connect ${uvErrorName(status)} ${this.address}:${this.port}`));
      return;
    }
    attempt.handle.setNoDelay(true);
    this.open++;
    const conn = new H1Connection(this, attempt.handle, this.k);
    const next = this.pending.shift();
    if (next !== undefined) conn.assign(next, false);
    else if (this.closing) conn.destroy();
    else this.park(conn);
  }

  connectTimedOut(attempt: Connecting): void {
    this.connecting--;
    attempt.handle.close();
    this.connectFailed(new UpstreamError('UND_ERR_CONNECT_TIMEOUT', `Connect Timeout Error (${this.address}:${this.port}, timeout: ${this.options.connectTimeout}ms)`));
  }

  /** One waiting request fails with the connect error (each attempt was made for one). */
  private connectFailed(err: Error): void {
    const req = this.pending.shift();
    this.settle();
    req?.fail(err);
  }

  /** A request waiting for a connection gave up. */
  unqueue(req: H1Request): void {
    const i = this.pending.indexOf(req);
    if (i !== -1) this.pending.splice(i, 1);
    this.settle();
  }

  /** A connection finished a response and may be reused. */
  release(conn: H1Connection): void {
    const next = this.pending.shift();
    if (next !== undefined) conn.assign(next, true);
    else if (this.closing) conn.destroy();
    else this.park(conn);
  }

  private park(conn: H1Connection): void {
    conn.idleFrom(sweptAt);
    this.idle.push(conn);
  }

  busyAdd(conn: H1Connection): void {
    conn.busyAt = this.busy.push(conn) - 1;
  }

  busyRemove(conn: H1Connection): void {
    const i = conn.busyAt;
    if (i === -1) return;
    conn.busyAt = -1;
    const last = this.busy.pop() as H1Connection;
    if (last !== conn) {
      this.busy[i] = last;
      last.busyAt = i;
    }
  }

  idleRemove(conn: H1Connection): void {
    const i = this.idle.lastIndexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
  }

  /** A connection's handle closed. */
  closed(_conn: H1Connection): void {
    this.open--;
    this.settle();
  }

  /** Leaves the sweep when nothing is left; resolves a close once everything is done. */
  private settle(): void {
    if (this.open > 0 || this.connecting > 0 || this.pending.length > 0) return;
    live.delete(this);
    const done = this.whenClosed;
    if (this.closing && done !== undefined) {
      this.whenClosed = undefined;
      done();
    }
  }

  /** Sweep: timeouts of requests in flight, idle connections past their keep-alive. */
  sweep(now: number): void {
    for (let i = this.busy.length - 1; i >= 0; i--) this.busy[i]?.checkTimeouts(now);
    const idle = this.idle;
    if (this.hinted) {
      for (let i = idle.length - 1; i >= 0; i--) {
        const c = idle[i] as H1Connection;
        if (c.expired(now)) {
          idle.splice(i, 1);
          c.destroy();
        }
      }
      return;
    }
    // the longest idle are at the bottom of the stack
    while (idle.length > 0 && (idle[0] as H1Connection).expired(now)) (idle.shift() as H1Connection).destroy();
  }

  /** Closes gracefully: nothing new is taken; requests in flight and queued finish first. */
  close(): Promise<void> {
    // after destroy() the fallback is destroyed already (undici refuses to close it then)
    const fallback = this.destroyed ? undefined : this.fallbackPool?.close();
    if (!this.closing) {
      this.closing = true;
      for (const c of this.idle.splice(0)) c.destroy();
    }
    const own = new Promise<void>((resolve) => {
      const before = this.whenClosed;
      this.whenClosed = () => {
        before?.();
        resolve();
      };
      this.settle();
    });
    return Promise.all([own, fallback]).then(() => undefined);
  }

  /** Closes at once: requests in flight and queued fail (`UND_ERR_DESTROYED`). */
  destroy(): Promise<void> {
    const fallback = this.fallbackPool?.destroy();
    this.destroyed = true;
    const done = this.close();
    const err = new UpstreamError('UND_ERR_DESTROYED', 'The client is destroyed');
    for (const req of this.pending.splice(0)) req.fail(err);
    for (const c of this.busy.slice()) {
      const req = c.req;
      if (req !== undefined) {
        c.drop(req);
        req.fail(err);
      }
    }
    this.settle();
    return Promise.all([done, fallback]).then(() => undefined);
  }
}
