/**
 * The fast path: plain requests read straight off the client connection and answered by writing
 * the response to it, without node:http's per-request IncomingMessage and ServerResponse streams
 * (about a sixth of a bare proxy's CPU, measured with the bench target `raw-undici`), and without
 * a net.Socket per connection: a connection is Node's bare TCP handle (`raw-stream.ts`) until it
 * is handed over.
 *
 * The parser is llhttp through Node's own binding (`_http_common`'s HTTPParser), the one
 * node:http runs, with the same strict flags, so what it accepts node:http accepts too. Only the
 * common case stays here: an HTTP/1.1 keep-alive request, without a body or with a Content-Length
 * body of at most 64 KiB, whose whole head (and body) came in one read, that passes every check
 * `requestProblem` makes. Anything else (a parse error, a chunked or larger or later body,
 * `Expect`, an upgrade, HTTP/1.0, `Connection: close`, a repeated header, more than 31 header
 * fields, a head split across reads, pipelined requests) is handed to node:http with the
 * bytes read so far, before anything was answered or sent upstream, and node:http owns the
 * connection from then on. So every refusal (400, 414, 431, 408) and every rare feature keeps
 * node:http's behaviour exactly; the fast path only makes the common case cheaper.
 *
 * Responses carry what node:http would add: `Date`, `Connection: keep-alive` with
 * `Keep-Alive: timeout=N`, and chunked framing when the backend sent no Content-Length.
 */
import { STATUS_CODES, validateHeaderName, validateHeaderValue, type IncomingHttpHeaders, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { LazyBody } from './body.js';
import type { Downstream, ExchangeSink, RequestHead } from './downstream.js';
import { ACME_CHALLENGE_PREFIX } from './edge-hooks.js';
import { proxyRequest, type ListenerInfo } from './handler.js';
import { RawStream, rawStreamsAvailable, type TcpHandle } from './raw-stream.js';
import { errorBody, rawErrorText } from './respond.js';
import type { ProxyState } from './types.js';
import { fastPathStats, type HandoverReason } from './fast-path-stats.js';
import { hostProblem, targetProblem } from './validate.js';

/** The slice of llhttp's binding the fast path uses. */
interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  front: FastFrontEnd;
  [callback: number]: unknown;
}

interface ParserBinding {
  readonly HTTPParser: {
    new (): Parser;
    readonly REQUEST: number;
    readonly kOnMessageBegin: number;
    readonly kOnHeaders: number;
    readonly kOnHeadersComplete: number;
    readonly kOnBody: number;
    readonly kOnMessageComplete: number;
    readonly kLenientNone: number;
  };
  readonly methods: readonly string[];
}

/**
 * Node's parser binding, or undefined when this Node does not offer it in the expected shape
 * (then every connection goes to node:http, as before the fast path existed).
 */
function loadBinding(): ParserBinding | undefined {
  try {
    const mod = createRequire(import.meta.url)('_http_common') as Partial<ParserBinding>;
    const P = mod.HTTPParser;
    if (typeof P !== 'function' || !Array.isArray(mod.methods)) return undefined;
    for (const k of ['REQUEST', 'kOnMessageBegin', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete', 'kLenientNone'] as const) {
      if (typeof P[k] !== 'number') return undefined;
    }
    return mod as ParserBinding;
  } catch {
    return undefined;
  }
}

const binding = loadBinding();

/** True when this Node offers the parser and handle bindings the fast path needs. */
export const fastPathAvailable = binding !== undefined && rawStreamsAvailable && process.env['DROVER_FAST_PATH'] !== 'off';

/** Whether plain HTTP listeners use the fast path, and if not why (for the `ready` log line). */
export const fastPathStatus: string = fastPathAvailable
  ? 'on'
  : process.env['DROVER_FAST_PATH'] === 'off'
    ? 'off: DROVER_FAST_PATH=off'
    : 'off: this Node lacks the parser or handle bindings';

/**
 * bytes: a request body up to this size that arrives with its head, in the same read, is read
 * whole and served on the fast path; a larger or later one goes to node:http (streamed).
 */
const MAX_WHOLE_BODY_BYTES = 64 * 1024;

/** A Content-Length value the fast path takes as is (node:http handles every other form). */
const PLAIN_LENGTH = /^[0-9]{1,9}$/;

/** A read larger than this while a response is in flight pauses reading (pipelined floods). */
const MAX_PENDING_BYTES = 64 * 1024;

/** Node adds this much to the advertised keep-alive timeout before closing (fewer resets). */
const KEEP_ALIVE_SLACK_MS = 1_000;

const STATUS_LINE_UNSAFE = /[^\t\x20-\x7e\x80-\xff]/;

let dateSecond = -1;
let dateText = '';
/** The `Date` header value, formatted once per second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** ms a closing connection may take to flush its last response when `send_timeout` is off. */
const LINGER_MS = 30_000;

const NO_HEADERS: IncomingHttpHeaders = Object.freeze({});
const NO_RAW_HEADERS: string[] = [];

// llhttp's callbacks, called during `execute` with the parser as `this`.

function onParserMessageBegin(this: Parser): void {
  this.front.begins++;
}

function onParserHeaders(this: Parser): void {
  // llhttp flushes fields early only for long heads or heads split across reads: node:http's job
  this.front.notPlain('head');
}

function onParserHeadersComplete(
  this: Parser,
  major: number,
  minor: number,
  raw: string[] | undefined,
  method: number,
  url: string | undefined,
  _status: unknown,
  _message: unknown,
  upgrade: boolean,
  keepAlive: boolean,
): void {
  this.front.headComplete(major, minor, raw, method, url, upgrade, keepAlive);
}

function onParserBody(this: Parser, chunk: Buffer): void {
  this.front.bodyChunk(chunk);
}

function onParserMessageComplete(this: Parser): void {
  this.front.completes++;
}

/** net.Server's own bookkeeping of the connections it accepted (closing waits for them). */
type NetServerInternals = Server & { _handle?: { onconnection?: unknown } | null; _connections: number };
type ServedSocket = Socket & { server?: Server; _server?: Server };

/** The listener limits the fast path applies itself (ms and bytes, as resolved for node:http). */
export interface FastLimits {
  /** ms a new connection may take to send its first complete head (then 408) */
  readonly headersTimeout: number;
  /** ms an idle keep-alive connection is kept (plus node:http's 1 s slack); 0: no limit */
  readonly keepAliveTimeout: number;
  /** ms without a byte either way before `send_timeout` applies; 0: off */
  readonly sendTimeout: number;
  /** bytes of a request head */
  readonly maxHeaderBytes: number;
}

/** One listener's fast path: accepts its connections and hands the unusual ones to node:http. */
export class FastFrontEnd {
  private readonly server: Server;
  /** open connections node:http has (the listener's count; `max_connections` covers both) */
  private readonly nodeOpen: () => number;
  readonly info: ListenerInfo;
  readonly getState: () => ProxyState;
  readonly limits: FastLimits;
  /** `Connection` and `Keep-Alive` lines of a keep-alive response, as node:http writes them */
  readonly keepAliveLines: string;
  /** connections not handed over whose handle is open (closing ones included) */
  readonly connections = new Set<FastConnection>();
  /** called when the last connection is gone (a closing listener waits for it) */
  private onEmpty: (() => void) | undefined;
  private readonly sweeper: NodeJS.Timeout;
  private readonly sweepMs: number;
  /** sweeps so far: the coarse clock idle connections are timed with */
  tick = 0;
  /** the listener is closing: connections end after their current response */
  stopping = false;

  // ---- parsing: one llhttp parser for all of this listener's connections ----
  // Parsing is synchronous and the fast path only ever leaves the parser between two messages
  // (anything else is handed over, and the parser re-initialized), so one parser serves every
  // connection: no parser per connection, idle or not.
  private readonly parser: Parser | undefined;
  /** the connection whose bytes are being parsed */
  private current: FastConnection | undefined;
  begins = 0;
  completes = 0;
  /** why the bytes being parsed are not for the fast path (undefined: they are) */
  private why: HandoverReason | undefined;
  /** body bytes of the request being parsed (llhttp hands over copies) */
  private bodyParts: Buffer[] = [];

  /**
   * Takes over `server`'s accepted connections once it listens: each arrives as a bare handle
   * (no net.Socket) and becomes a net.Socket, emitted as the server's 'connection' for
   * node:http, only when it is handed over.
   */
  constructor(server: Server, info: ListenerInfo, getState: () => ProxyState, limits: FastLimits, nodeOpen: () => number) {
    this.server = server;
    this.nodeOpen = nodeOpen;
    this.info = info;
    this.getState = getState;
    this.limits = limits;
    const ka = Math.floor(limits.keepAliveTimeout / 1000);
    this.keepAliveLines = limits.keepAliveTimeout > 0 ? `Connection: keep-alive\r\nKeep-Alive: timeout=${ka}\r\n` : 'Connection: keep-alive\r\n';
    if (binding !== undefined) {
      const P = binding.HTTPParser;
      const parser = new P();
      parser.front = this;
      parser[P.kOnMessageBegin] = onParserMessageBegin;
      parser[P.kOnHeaders] = onParserHeaders;
      parser[P.kOnHeadersComplete] = onParserHeadersComplete;
      parser[P.kOnBody] = onParserBody;
      parser[P.kOnMessageComplete] = onParserMessageComplete;
      this.parser = parser;
      this.resetParser();
    }
    // 'listening' comes (on the next tick) before the first connection can be accepted
    server.once('listening', () => this.intercept());
    this.sweepMs = Math.max(50, Math.min(1_000, Math.floor(Math.min(limits.headersTimeout, limits.keepAliveTimeout || Infinity, limits.sendTimeout || Infinity) / 4)));
    this.sweeper = setInterval(() => this.sweep(), this.sweepMs);
    this.sweeper.unref();
  }

  /**
   * Puts the fast path between the listening handle and net.Server: net's accept callback
   * (`onconnection`) is replaced, and kept for errors. Without a handle in the expected shape
   * every connection stays with node:http.
   */
  private intercept(): void {
    const handle = (this.server as NetServerInternals)._handle;
    const original = handle?.onconnection;
    if (this.parser === undefined || handle === undefined || handle === null || typeof original !== 'function') return;
    handle.onconnection = (err: number, client: TcpHandle | undefined): void => {
      if (err !== 0 || client === undefined) {
        (original as (e: number, c: unknown) => void).call(handle, err, client);
        return;
      }
      this.accept(client);
    };
  }

  private accept(client: TcpHandle): void {
    // as net.Server does it: beyond the cap a new connection is closed before a byte is read
    const max = this.server.maxConnections;
    if (max > 0 && this.connections.size + this.nodeOpen() >= max) {
      client.close();
      return;
    }
    client.setNoDelay(true);
    this.connections.add(new FastConnection(this, client));
  }

  private resetParser(): void {
    const P = (binding as ParserBinding).HTTPParser;
    this.parser?.initialize(P.REQUEST, {}, this.limits.maxHeaderBytes, P.kLenientNone);
  }

  /**
   * Parses `bytes` (starting at a message boundary) for `conn`, filling in its request.
   * @returns undefined when they are exactly one request the fast path serves; else why not
   */
  parse(conn: FastConnection, bytes: Buffer): HandoverReason | undefined {
    const parser = this.parser as Parser;
    this.current = conn;
    this.begins = 0;
    this.completes = 0;
    this.why = undefined;
    const parsed = parser.execute(bytes);
    this.current = undefined;
    const parts = this.bodyParts;
    if (parts.length > 0) {
      this.bodyParts = [];
      conn.wholeBody = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    }
    // set by the callbacks during `execute` (the cast undoes the narrowing from the reset above)
    let why = this.why as HandoverReason | undefined;
    if (typeof parsed !== 'number') why = 'parse_error';
    else if (this.begins > 1 || this.completes > 1) why = 'pipelined';
    else if (why === undefined && (parsed !== bytes.length || this.completes !== 1)) why = 'incomplete';
    // the parser is mid-message or saw a connection-level change: start it afresh
    if (why !== undefined) this.resetParser();
    return why;
  }

  /** llhttp read body bytes of the request being parsed. */
  bodyChunk(chunk: Buffer): void {
    if (this.why === undefined) this.bodyParts.push(chunk);
  }

  /** Marks the bytes being parsed as ones for node:http (the first reason found is kept). */
  notPlain(why: HandoverReason): void {
    this.why ??= why;
  }

  /** llhttp parsed a complete head: is it one the fast path serves? */
  headComplete(major: number, minor: number, raw: string[] | undefined, method: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): void {
    const conn = this.current;
    if (conn === undefined || this.why !== undefined) return;
    if (major !== 1 || minor !== 1 || upgrade || !keepAlive) {
      this.notPlain('connection');
      return;
    }
    // a head node:http's side would refuse is left to it, so the refusal is its own
    if (raw === undefined || url === undefined || targetProblem(url, raw.length / 2, major, minor, this.info) !== 0) {
      this.notPlain('head');
      return;
    }
    // an ACME challenge is answered by node:http's side, before routing
    if (this.info.hooks?.challenge !== undefined && url.startsWith(ACME_CHALLENGE_PREFIX)) {
      this.notPlain('head');
      return;
    }
    const headers: Record<string, string> = Object.create(null) as Record<string, string>;
    for (let i = 0; i < raw.length; i += 2) {
      const lower = (raw[i] as string).toLowerCase();
      // Repeated fields (node:http folds or drops them by name), streamed bodies and anything
      // about the connection's future go to node:http.
      if (lower === 'transfer-encoding' || lower === 'expect') {
        this.notPlain('body');
        return;
      }
      // A client that accepts trailers (gRPC over HTTP/1.1) is served by node:http, which
      // writes them; the fast path has no trailer support.
      if (lower === 'te') {
        this.notPlain('head');
        return;
      }
      if (headers[lower] !== undefined || lower === 'upgrade') {
        this.notPlain('head');
        return;
      }
      headers[lower] = raw[i + 1] as string;
    }
    const length = headers['content-length'];
    if (length !== undefined && (!PLAIN_LENGTH.test(length) || Number(length) > MAX_WHOLE_BODY_BYTES)) {
      this.notPlain('body');
      return;
    }
    const host = headers['host'];
    const name = (binding as ParserBinding).methods[method];
    // repeated fields were handed over above: there is at most one Host here
    if (host === undefined || hostProblem(1, host, minor) !== 0 || name === undefined || name === 'CONNECT') {
      this.notPlain('head');
      return;
    }
    conn.request(name, url, raw, headers, host);
  }

  /** Gives `conn` to node:http as a net.Socket, with `bytes` (already read) to parse first. */
  handOver(conn: FastConnection, bytes: Buffer): void {
    this.forget(conn);
    // created paused, so that the bytes stay buffered until node:http listens for them
    const socket = conn.toSocket(bytes) as ServedSocket;
    const server = this.server as NetServerInternals;
    socket.server = server;
    socket._server = server;
    // net.Socket counts itself off when it closes; server.close() waits for the count to drop
    server._connections++;
    server.emit('connection', socket);
    socket.resume();
  }

  /** `conn` left the fast path (closed or handed over). */
  forget(conn: FastConnection): void {
    this.connections.delete(conn);
    if (this.connections.size === 0 && this.onEmpty !== undefined) {
      const done = this.onEmpty;
      this.onEmpty = undefined;
      done();
    }
  }

  /** Resolves once no connection is left on the fast path (after `closeIdle`, for shutdown). */
  whenEmpty(): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const before = this.onEmpty;
      this.onEmpty = () => {
        before?.();
        resolve();
      };
    });
  }

  /** Closes idle fast connections now; busy ones close after their response. */
  closeIdle(): void {
    this.stopping = true;
    for (const c of this.connections) if (!c.busy && !c.closing) c.close();
  }

  /** Destroys every connection still on the fast path (the end of a shutdown's grace). */
  destroyAll(): void {
    for (const c of this.connections) c.destroy();
  }

  /** Stops the sweeper (the listener is gone). */
  stop(): void {
    clearInterval(this.sweeper);
  }

  /**
   * Times out connections that wait too long for a first request or between requests, and
   * applies `send_timeout` to connections on which no byte moved either way for that long.
   * One timer for all connections instead of a socket timer each: no timer object per
   * connection, and no timer refresh on every read and write.
   */
  private sweep(): void {
    const tick = ++this.tick;
    const firstLimit = Math.ceil(this.limits.headersTimeout / this.sweepMs);
    const idleLimit = this.limits.keepAliveTimeout > 0 ? Math.ceil((this.limits.keepAliveTimeout + KEEP_ALIVE_SLACK_MS) / this.sweepMs) : Infinity;
    const stillLimit = this.limits.sendTimeout > 0 ? Math.ceil(this.limits.sendTimeout / this.sweepMs) : Infinity;
    // a closing connection whose client never reads its last response is not kept forever
    const closingLimit = Math.ceil((this.limits.sendTimeout > 0 ? this.limits.sendTimeout : LINGER_MS) / this.sweepMs);
    for (const c of this.connections) {
      const moved = c.bytesMoved;
      if (moved !== c.bytesSeen) {
        c.bytesSeen = moved;
        c.movedAt = tick;
      } else if (tick - c.movedAt > (c.closing ? closingLimit : stillLimit)) {
        c.timedOut();
        continue;
      }
      // closing ones get only the send timeout above
      if (c.busy || c.closing) continue;
      const waited = tick - c.idleSince;
      if (c.served === 0) {
        // node:http answers a connection that sends no complete head in time with 408
        if (waited > firstLimit) c.timeOutFirstRequest();
      } else if (waited > idleLimit) c.close();
    }
  }
}

/** One client connection on the fast path: its current request and response. */
class FastConnection extends RawStream implements RequestHead, Downstream {
  private readonly front: FastFrontEnd;

  // ---- the current request (RequestHead) ----
  method = '';
  url = '';
  headers: IncomingHttpHeaders = NO_HEADERS;
  rawHeaders: string[] = NO_RAW_HEADERS;
  host: string | undefined;
  /** the request's body, read whole with its head (small Content-Length bodies only) */
  wholeBody: Buffer | undefined;
  private isHead = false;

  // ---- connection state ----
  /** a request is being answered */
  busy = false;
  /** requests answered on this connection */
  served = 0;
  /** `front.tick` when the connection last went idle */
  idleSince: number;
  /** bytes read plus written at the last sweep, and the tick they last changed at */
  bytesSeen = 0;
  movedAt: number;
  /** bytes that arrived while busy (the next requests), parsed when the response is done */
  private pending: Buffer | undefined;
  private sink: ExchangeSink | undefined;

  // ---- the current response (Downstream) ----
  headersSent = false;
  finished = false;
  private head = '';
  private chunked = false;
  private bodyless = false;
  private last = false;

  constructor(front: FastFrontEnd, handle: TcpHandle) {
    super(handle);
    this.front = front;
    this.idleSince = front.tick;
    this.movedAt = front.tick;
  }

  /** RequestHead's socket: the connection itself (the client's address). */
  get socket(): { readonly remoteAddress?: string | undefined } {
    return this;
  }

  get hasBody(): boolean {
    return this.wholeBody !== undefined;
  }

  // ---- reading ----

  protected onData(chunk: Buffer): void {
    if (this.closing) return;
    // Bytes queued earlier go first: they are parsed once the response in flight is done.
    if (this.busy || this.pending !== undefined) {
      this.pending = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
      if (this.pending.length > MAX_PENDING_BYTES) this.pauseReading();
      return;
    }
    this.consume(chunk);
  }

  /** Serves `bytes` (starting at a message boundary) or hands them over. */
  private consume(bytes: Buffer): void {
    this.wholeBody = undefined;
    const why = this.front.parse(this, bytes);
    if (why !== undefined) {
      this.handOver(bytes, why);
      return;
    }
    fastPathStats.requests++;
    this.serve();
  }

  /** The parser found a request the fast path serves. */
  request(method: string, url: string, raw: string[], headers: IncomingHttpHeaders, host: string): void {
    this.method = method;
    this.url = url;
    this.rawHeaders = raw;
    this.headers = headers;
    this.host = host;
    this.isHead = method === 'HEAD';
  }

  private handOver(bytes: Buffer, why: HandoverReason): void {
    fastPathStats.handovers.set(why, (fastPathStats.handovers.get(why) ?? 0) + 1);
    this.front.handOver(this, bytes);
  }

  private serve(): void {
    this.busy = true;
    this.headersSent = false;
    this.finished = false;
    this.head = '';
    this.chunked = false;
    this.bodyless = this.isHead;
    this.last = this.front.stopping;
    this.sink = undefined;
    try {
      proxyRequest(this.front.getState(), this.front.info, this, this);
    } catch {
      // a bug must cost one request, never the process
      if (!this.headersSent) {
        this.last = true;
        this.sendError(500, undefined, true);
      } else super.destroy();
    }
  }

  // ---- Downstream ----

  attach(sink: ExchangeSink): void {
    this.sink = sink;
  }

  openBody(): LazyBody | undefined {
    return undefined;
  }

  writeHead(status: number, message: string | undefined, headers: string[]): void {
    const reason = message !== undefined && message !== '' ? message : (STATUS_CODES[status] ?? 'unknown');
    if (STATUS_LINE_UNSAFE.test(reason)) throw new Error('invalid character in status message');
    let head = `HTTP/1.1 ${status} ${reason}\r\n`;
    let length = false;
    let date = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      const value = headers[i + 1] as string;
      // the same checks node:http's writeHead makes (a backend header it refuses: 502)
      validateHeaderName(name);
      validateHeaderValue(name, value);
      if (name.length === 14 && name.toLowerCase() === 'content-length') length = true;
      else if (name.length === 4 && name.toLowerCase() === 'date') date = true;
      head += `${name}: ${value}\r\n`;
    }
    if (!date) head += `Date: ${httpDate()}\r\n`;
    head += this.last ? 'Connection: close\r\n' : this.front.keepAliveLines;
    if (status === 204 || status === 304 || status < 200) this.bodyless = true;
    if (!length && !this.bodyless) {
      head += 'Transfer-Encoding: chunked\r\n';
      this.chunked = true;
    }
    this.head = `${head}\r\n`;
    this.headersSent = true;
  }

  retractHead(): boolean {
    if (this.head === '') return false;
    this.head = '';
    this.headersSent = false;
    this.chunked = false;
    this.bodyless = this.isHead;
    return true;
  }

  /** The head goes out with the first body bytes (or the end): one write for both. */
  private flushHead(): void {
    if (this.head !== '') {
      this.send(this.head);
      this.head = '';
    }
  }

  write(chunk: Buffer): boolean {
    if (this.bodyless || chunk.length === 0) return true;
    this.flushHead();
    if (!this.chunked) return this.send(chunk);
    this.send(`${chunk.length.toString(16)}\r\n`);
    this.send(chunk);
    return this.send('\r\n');
  }

  waitDrain(): void {
    // RawStream calls onDrain after a send that returned false
  }

  protected onDrain(): void {
    this.sink?.resumeUpstream();
  }

  end(): void {
    if (this.finished) return;
    this.flushHead();
    if (this.chunked) this.send('0\r\n\r\n');
    this.finished = true;
    this.responseDone();
  }

  /** Aborts the response: the connection is closed at once. */
  override destroy(): void {
    this.finished = true;
    super.destroy();
  }

  sendError(status: number, service: string | undefined, closeAfter: boolean, name?: string): void {
    if (this.headersSent || this.destroyed) {
      super.destroy();
      return;
    }
    // `closeAfter` is for a body left unread: the fast path has always read it whole; but a
    // malformed request (400) ends its connection, as on node:http's side
    if (closeAfter && status === 400) this.last = true;
    const body = Buffer.from(errorBody(status, service, name));
    // the same head and framing as a relayed response (HEAD: no body), as node:http does it
    this.writeHead(status, undefined, ['content-type', 'application/json', 'content-length', String(body.length)]);
    this.write(body);
    this.end();
  }

  /** The response is written: wait for the next request, or close. */
  private responseDone(): void {
    this.busy = false;
    this.served++;
    this.sink = undefined;
    // an idle connection keeps nothing of its last request
    this.url = '';
    this.host = undefined;
    this.headers = NO_HEADERS;
    this.rawHeaders = NO_RAW_HEADERS;
    this.wholeBody = undefined;
    this.idleSince = this.front.tick;
    if (this.last || this.front.stopping) {
      this.close();
      return;
    }
    if (this.pending !== undefined) setImmediate(consumePending, this);
  }

  /** Parses what arrived while the last response was in flight. */
  consumePending(): void {
    const bytes = this.pending;
    this.pending = undefined;
    if (bytes === undefined || this.busy || this.closing) return;
    this.resumeReading();
    this.consume(bytes);
  }

  // ---- connection events ----

  /** Ends the connection gracefully (after what is already written); reads nothing more. */
  close(): void {
    this.endConnection();
  }

  /** No first request in time: 408 and close, as node:http's headers timeout does. */
  timeOutFirstRequest(): void {
    this.send(rawErrorText(408, 'Request Timeout', '{"error":"request_timeout"}'));
    this.endConnection();
  }

  /** The client half-closed: like node:http (no half-open HTTP), the connection ends. */
  protected onEnd(): void {
    // a response in flight can no longer be delivered to a client that is leaving: close now
    if (this.busy && !this.finished) super.destroy();
    else this.close();
  }

  protected onClose(): void {
    this.front.forget(this);
    const sink = this.sink;
    if (this.busy && !this.finished && sink !== undefined) sink.clientClosed();
  }

  /**
   * No byte either way for `send_timeout`: like the node:http side, close when response bytes
   * are stuck or no request is in flight; a request waiting on its backend is left alone.
   */
  timedOut(): void {
    if (this.pendingBytes > 0 || !this.busy) super.destroy();
  }
}

function consumePending(conn: FastConnection): void {
  conn.consumePending();
}
