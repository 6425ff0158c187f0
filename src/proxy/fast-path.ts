/**
 * The fast path: plain requests read straight off the client connection and answered by writing
 * the response to it, without node:http's per-request IncomingMessage and ServerResponse streams
 * (about a sixth of a bare proxy's CPU, measured with the bench target `raw-undici`), and without
 * a net.Socket per connection: a connection is Node's bare TCP handle (`raw-stream.ts`) until it
 * is handed over. This module is the connection lifecycle (accept, read, serve, idle and send
 * timeouts, close, handover); what a head must be to stay here is `fast-path-head.ts`, how the
 * response is written `fast-path-writer.ts`, and the Node internals it stands on `internals.ts`.
 *
 * The parser is llhttp through Node's own binding (`_http_common`'s HTTPParser), the one
 * node:http runs, with the same strict flags, so what it accepts node:http accepts too. Only the
 * common case stays here (see `classifyHead`), and only when the whole head (and body) came in
 * one read and no second request follows it in that read. Anything else (a parse error, a
 * chunked or larger or later body, a head split across reads, pipelined requests) is handed to
 * node:http with the bytes read so far, before anything was answered or sent upstream, and
 * node:http owns the connection from then on. So every refusal (400, 414, 431, 408) and every
 * rare feature keeps node:http's behaviour exactly; the fast path only makes the common case
 * cheaper.
 */
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { LazyBody } from './body.js';
import type { Downstream, ExchangeSink, RequestHead } from './downstream.js';
import { classifyHead, type HeadContext } from './fast-path-head.js';
import type { FastPathStats, HandoverReason } from '../observability/fast-path-stats.js';
import { Http1ResponseWriter, keepAliveLines } from './fast-path-writer.js';
import { proxyRequest, type ListenerInfo } from './handler.js';
import { adoptHandle, interceptAccept, internals, newParser, type HttpParser, type Internals } from './internals.js';
import { RawStream, type TcpHandle } from './raw-stream.js';
import { errorBody, rawErrorText } from './respond.js';
import type { ProxyState } from './types.js';

/** A read larger than this while a response is in flight pauses reading (pipelined floods). */
const MAX_PENDING_BYTES = 64 * 1024;

/** Node adds this much to the advertised keep-alive timeout before closing (fewer resets). */
const KEEP_ALIVE_SLACK_MS = 1_000;

/** ms a closing connection may take to flush its last response when `send_timeout` is off. */
const LINGER_MS = 30_000;

const NO_HEADERS: IncomingHttpHeaders = Object.freeze({});
const NO_RAW_HEADERS: string[] = [];

/** The front end a parser reports to (set as the parser's `owner`). */
type FrontParser = HttpParser & { owner: FastFrontEnd };

// llhttp's callbacks, called during `execute` with the parser as `this`.

function onParserMessageBegin(this: FrontParser): void {
  this.owner.begins++;
}

function onParserHeaders(this: FrontParser): void {
  // llhttp flushes fields early only for long heads or heads split across reads: node:http's job
  this.owner.notPlain('head');
}

function onParserHeadersComplete(
  this: FrontParser,
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
  this.owner.headComplete(major, minor, raw, method, url, upgrade, keepAlive);
}

function onParserBody(this: FrontParser, chunk: Buffer): void {
  this.owner.bodyChunk(chunk);
}

function onParserMessageComplete(this: FrontParser): void {
  this.owner.completes++;
}

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

/**
 * One listener's fast path: accepts its connections and hands the unusual ones to node:http.
 * Only made once `probeFastPath()` said on.
 */
export class FastFrontEnd {
  private readonly server: Server;
  private readonly k: Internals;
  /** open connections node:http has (the listener's count; `max_connections` covers both) */
  private readonly nodeOpen: () => number;
  readonly info: ListenerInfo;
  readonly getState: () => ProxyState;
  readonly limits: FastLimits;
  readonly stats: FastPathStats;
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
  private readonly parser: FrontParser;
  /** the connection whose bytes are being parsed */
  private current: FastConnection | undefined;
  begins = 0;
  completes = 0;
  /** why the bytes being parsed are not for the fast path (undefined: they are) */
  private why: HandoverReason | undefined;
  /** body bytes of the request being parsed (llhttp hands over copies) */
  private bodyParts: Buffer[] = [];
  /** what `classifyHead` needs of the listener */
  private readonly headContext: HeadContext;

  /**
   * A front end for `server`; `attach` puts it between the server and its accepted connections
   * once the server listens.
   * @param stats the counters the metrics read (shared by every listener)
   */
  constructor(server: Server, info: ListenerInfo, getState: () => ProxyState, limits: FastLimits, nodeOpen: () => number, stats: FastPathStats) {
    if (internals === undefined) throw new Error('the fast path needs Node internals this Node lacks');
    this.k = internals;
    this.server = server;
    this.nodeOpen = nodeOpen;
    this.info = info;
    this.getState = getState;
    this.limits = limits;
    this.stats = stats;
    this.keepAliveLines = keepAliveLines(limits.keepAliveTimeout);
    const hooks = info.hooks;
    this.headContext = {
      maxUrlBytes: info.maxUrlBytes,
      maxHeaders: info.maxHeaders,
      // read at each request: the responder is set after the listener started
      get challenges(): boolean {
        return hooks?.challenge !== undefined;
      },
    };
    this.parser = newParser<FrontParser>(this.k, this, {
      messageBegin: onParserMessageBegin,
      headers: onParserHeaders,
      headersComplete: onParserHeadersComplete,
      body: onParserBody,
      messageComplete: onParserMessageComplete,
    });
    this.resetParser();
    this.sweepMs = Math.max(50, Math.min(1_000, Math.floor(Math.min(limits.headersTimeout, limits.keepAliveTimeout || Infinity, limits.sendTimeout || Infinity) / 4)));
    this.sweeper = setInterval(() => this.sweep(), this.sweepMs);
    this.sweeper.unref();
  }

  /**
   * Takes over the listening server's accepted connections: each arrives as a bare handle (no
   * net.Socket) and becomes a net.Socket, emitted as the server's 'connection' for node:http,
   * only when it is handed over. Call once the server listens, before the loop turns.
   * @returns false when the server offers no accept hook (nothing changed)
   */
  attach(): boolean {
    return interceptAccept(this.server, (client) => this.accept(client));
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
    const P = this.k.HTTPParser;
    this.parser.initialize(P.REQUEST, {}, this.limits.maxHeaderBytes, P.kLenientNone);
  }

  /**
   * Parses `bytes` (starting at a message boundary) for `conn`, filling in its request.
   * @returns undefined when they are exactly one request the fast path serves; else why not
   */
  parse(conn: FastConnection, bytes: Buffer): HandoverReason | undefined {
    const parser = this.parser;
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
    const name = this.k.methods[method];
    const verdict = classifyHead(major, minor, raw, name, url, upgrade, keepAlive, this.headContext);
    if (typeof verdict === 'string') this.notPlain(verdict);
    // a head that passed has its fields, target and method (classifyHead checked them)
    else conn.request(name as string, url as string, raw as string[], verdict, verdict['host'] as string);
  }

  /** Gives `conn` to node:http as a net.Socket, with `bytes` (already read) to parse first. */
  handOver(conn: FastConnection, bytes: Buffer, why: HandoverReason): void {
    this.stats.handover(why);
    this.forget(conn);
    // created paused, so that the bytes stay buffered until node:http listens for them; they
    // may be a view of the shared read buffer: copied
    const { handle, sharedReads } = conn.release();
    const socket = adoptHandle(this.server, handle, Buffer.from(bytes), sharedReads);
    this.server.emit('connection', socket);
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
  /** llhttp parsed the head with no lenient flags */
  readonly strictHeaders = true;

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
  private readonly writer: Http1ResponseWriter;
  finished = false;
  /** the connection closes after this response */
  private last = false;

  constructor(front: FastFrontEnd, handle: TcpHandle) {
    super(handle);
    this.front = front;
    this.idleSince = front.tick;
    this.movedAt = front.tick;
    this.writer = new Http1ResponseWriter(this, front.keepAliveLines);
    // a request is parsed (strings and body copied) while its read is handled: one read buffer
    // serves every connection (what arrives early is copied, see onData)
    this.readIntoShared();
  }

  /** RequestHead's socket: the connection itself (the client's address). */
  get socket(): { readonly remoteAddress?: string | undefined } {
    return this;
  }

  get hasBody(): boolean {
    return this.wholeBody !== undefined;
  }

  get headersSent(): boolean {
    return this.writer.headersSent;
  }

  // ---- reading ----

  protected onData(chunk: Buffer): void {
    if (this.closing) return;
    // Bytes queued earlier go first: they are parsed once the response in flight is done.
    if (this.busy || this.pending !== undefined) {
      this.pending = this.pending === undefined ? Buffer.from(chunk) : Buffer.concat([this.pending, chunk]);
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
      this.front.handOver(this, bytes, why);
      return;
    }
    this.front.stats.requests++;
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

  private serve(): void {
    this.busy = true;
    this.finished = false;
    this.writer.reset(this.isHead);
    this.last = this.front.stopping;
    this.sink = undefined;
    try {
      proxyRequest(this.front.getState(), this.front.info, this, this);
    } catch {
      // a bug must cost one request, never the process
      if (!this.writer.headersSent) {
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

  writeHead(status: number, message: string | undefined, headers: string[], checked?: boolean): void {
    this.writer.writeHead(status, message, headers, this.last, checked);
  }

  retractHead(): boolean {
    return this.writer.retractHead();
  }

  write(chunk: Buffer): boolean {
    return this.writer.write(chunk);
  }

  waitDrain(): void {
    // RawStream calls onDrain after a send that returned false
  }

  protected onDrain(): void {
    this.sink?.resumeUpstream();
  }

  end(): void {
    if (this.finished) return;
    this.writer.end();
    this.finished = true;
    this.responseDone();
  }

  /** Aborts the response: the connection is closed at once. */
  override destroy(): void {
    this.finished = true;
    super.destroy();
  }

  sendError(status: number, service: string | undefined, closeAfter: boolean, name?: string): void {
    if (this.writer.headersSent || this.destroyed) {
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
