/**
 * The client side of one exchange, behind one small interface so that the exchange does not care
 * which front end read the request: node:http (`NodeDownstream`, every request Node parsed) or
 * the fast path (`fast-path.ts`, plain requests with at most a small whole body, read straight
 * off the connection).
 */
import { validateHeaderName, validateHeaderValue, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { hasRequestBody, LazyBody } from './body.js';
import { buffersBody, readBody } from './buffering.js';
import { sendError } from './respond.js';
import { FIELD_VALUE_UNSAFE } from '../config/values.js';

/** The parts of a request head that routing and the forwarding headers read. */
export interface RequestHead {
  readonly method?: string | undefined;
  /** the request target as sent (origin-form) */
  readonly url?: string | undefined;
  /** lower-cased names; repeated fields as Node folds them */
  readonly headers: IncomingHttpHeaders;
  /** `[name, value, ...]` as sent */
  readonly rawHeaders: string[];
  readonly socket: { readonly remoteAddress?: string | undefined };
  /** `1.1`, `1.0` or `2.0` (node:http's `httpVersion`); absent: 1.1 */
  readonly httpVersion?: string | undefined;
}

/** What an exchange calls back into when it answers: status, headers, body, errors. */
export interface ExchangeSink {
  /** the client's socket drained: upstream reading may resume */
  resumeUpstream(): void;
  /** the client went away (or the response closed) */
  clientClosed(): void;
}

/** Where an exchange writes its answer. */
export interface Downstream {
  /** the request declares a body */
  readonly hasBody: boolean;
  /**
   * The whole request body when it was read before the exchange began (the fast path reads
   * small Content-Length bodies with the head): sent as is, and safe to send again on a retry.
   * Undefined when there is none or it is still to be streamed (`openBody`).
   */
  readonly wholeBody: Buffer | undefined;
  /** true once the status line is out (an error answer is no longer possible) */
  readonly headersSent: boolean;
  /** true once the whole response was handed to the socket */
  readonly finished: boolean;
  /** the client's Host header, as sent (until the response ends: an idle connection keeps nothing) */
  readonly host: string | undefined;
  /** the request target, as sent (until the response ends) */
  readonly url: string;
  /** `HTTP/1.1` or `HTTP/2.0`, for the access log; absent: HTTP/1.1 */
  readonly protocol?: string | undefined;
  /**
   * The request's header names and values came through a strict HTTP/1.1 parser (llhttp with no
   * lenient flags: tokens for names, no control characters but HTAB in values), so an upstream
   * writer need not check them again. Absent: not known (check).
   */
  readonly strictHeaders?: boolean;
  /** Routes `resumeUpstream` and `clientClosed` to `sink` for the life of this response. */
  attach(sink: ExchangeSink): void;
  /** A fresh lazily-read request body (undefined when there is none or `wholeBody` has it). */
  openBody(): LazyBody | undefined;
  /**
   * `request_buffering`: reads the request body before any backend is involved (see
   * `buffering.ts`) and calls `then` (asynchronously) once it is in `wholeBody`, or once it
   * outgrew `maxBytes` (`openBody` then sends what was read first). False, and nothing read,
   * when this body is not buffered (none, or a Content-Length above `maxBytes`). Optional: a
   * downstream without it streams every body.
   */
  bufferBody?(maxBytes: number, then: () => void): boolean;
  /**
   * Writes the response head. Throws (as node:http does) on a header it refuses to write.
   * @param checked the fields come from a strict HTTP/1.1 parser (tokens for names, no control
   *   characters in values): a downstream may skip node:http's checks, which would pass
   */
  writeHead(status: number, message: string | undefined, headers: string[], checked?: boolean): void;
  /**
   * Takes back a head `writeHead` buffered but did not send yet (no body byte written).
   * @returns true when it was taken back (an error answer is possible again)
   */
  retractHead(): boolean;
  /** Writes body bytes; false: wait for the sink's `resumeUpstream` before writing more. */
  write(chunk: Buffer): boolean;
  /** Arranges one `resumeUpstream` call on the sink when the socket drains. */
  waitDrain(): void;
  /**
   * Response trailers from the backend (gRPC's `grpc-status` travels here), called once, just
   * before `end`. Optional: a downstream without it drops trailers. Over HTTP/1.1 they can only
   * be written on a chunked response to a client that sent `TE: trailers`; otherwise dropped.
   */
  sendTrailers?(trailers: Record<string, string | string[]>): void;
  /** Finishes the response. */
  end(): void;
  /** Aborts the response (truncated: the only honest signal once headers are out). */
  destroy(err?: Error): void;
  /**
   * Answers with drover's JSON error body; `closeAfter` (a request body may be left unread)
   * closes the connection afterwards unless the body was in fact read whole; `name` overrides the
   * status's usual `error` value.
   */
  sendError(status: number, service: string | undefined, closeAfter: boolean, name?: string): void;
}

/** True when a `TE` request header lists `trailers`. */
function acceptsTrailers(te: string | string[] | undefined): boolean {
  return te !== undefined && /(?:^|,)\s*trailers\s*(?:;|,|$)/i.test(Array.isArray(te) ? te.join(',') : te);
}

const SINK = Symbol('drover.sink');
type TaggedResponse = ServerResponse & { [SINK]?: ExchangeSink };

function onResponseClose(this: TaggedResponse): void {
  this[SINK]?.clientClosed();
}

function onResponseDrain(this: TaggedResponse): void {
  this[SINK]?.resumeUpstream();
}

/** A request node:http parsed, answered through its ServerResponse. */
export class NodeDownstream implements Downstream {
  private readonly req: IncomingMessage;
  private readonly res: ServerResponse;
  readonly hasBody: boolean;
  /** node:http runs llhttp strict (the listeners never set `insecureHTTPParser`) */
  readonly strictHeaders = true;
  /** set by `bufferBody` once the whole body was read */
  wholeBody: Buffer | undefined = undefined;
  /** set by `bufferBody` when the body outgrew the limit: the bytes read so far */
  private bodyPrefix: readonly Buffer[] | undefined;
  /** a head checked by `writeHead`, written with the first body byte or the end */
  private head: { status: number; message: string | undefined; headers: string[] } | undefined;

  constructor(req: IncomingMessage, res: ServerResponse) {
    this.req = req;
    this.res = res;
    this.hasBody = hasRequestBody(req);
  }

  get headersSent(): boolean {
    return this.head !== undefined || this.res.headersSent;
  }

  get finished(): boolean {
    return this.res.writableFinished;
  }

  get host(): string | undefined {
    return this.req.headers.host;
  }

  get url(): string {
    return this.req.url ?? '';
  }

  get protocol(): string {
    return this.req.httpVersion === '1.1' ? 'HTTP/1.1' : `HTTP/${this.req.httpVersion}`;
  }

  attach(sink: ExchangeSink): void {
    // Shared listener functions find the sink through a symbol on the response: no
    // per-request closures or bound functions. 'close' fires once per response; `on` spares
    // the wrapper `once` allocates.
    (this.res as TaggedResponse)[SINK] = sink;
    this.res.on('close', onResponseClose);
    // A pipelined request's response waits in node:http's queue without a socket, and
    // node:http never closes a queued response when the connection dies: watch the
    // connection itself until the response gets it, or the exchange would wait forever.
    const socket = this.req.socket;
    if (this.res.socket === null && socket !== null) {
      const res = this.res;
      const gone = (): void => {
        socket.off('close', gone);
        res.off('finish', done);
        if (!res.writableFinished) sink.clientClosed();
      };
      const done = (): void => {
        socket.off('close', gone);
      };
      socket.on('close', gone);
      res.once('finish', done);
    }
  }

  openBody(): LazyBody | undefined {
    return this.hasBody ? new LazyBody(this.req, this.bodyPrefix) : undefined;
  }

  bufferBody(maxBytes: number, then: () => void): boolean {
    if (!this.hasBody || !buffersBody(this.req.headers, maxBytes)) return false;
    readBody(this.req, maxBytes, (b) => {
      if ('whole' in b) this.wholeBody = b.whole;
      else this.bodyPrefix = b.prefix;
      then();
    });
    return true;
  }

  writeHead(status: number, message: string | undefined, headers: string[]): void {
    // the checks node:http's writeHead makes, now, so that a refused header fails here
    if (message !== undefined && FIELD_VALUE_UNSAFE.test(message)) throw new Error('invalid character in status message');
    for (let i = 0; i < headers.length; i += 2) {
      validateHeaderName(headers[i] as string);
      validateHeaderValue(headers[i] as string, headers[i + 1] as string);
    }
    this.head = { status, message, headers };
  }

  retractHead(): boolean {
    if (this.head === undefined) return false;
    this.head = undefined;
    return true;
  }

  /** Hands the buffered head to node:http (which sends it with the first bytes). */
  private flushHead(): void {
    const head = this.head;
    if (head === undefined) return;
    this.head = undefined;
    if (head.message !== undefined && head.message !== '') this.res.writeHead(head.status, head.message, head.headers);
    else this.res.writeHead(head.status, head.headers);
  }

  write(chunk: Buffer): boolean {
    this.flushHead();
    return this.res.write(chunk);
  }

  waitDrain(): void {
    this.res.once('drain', onResponseDrain);
  }

  sendTrailers(trailers: Record<string, string | string[]>): void {
    const res = this.res as ServerResponse & { chunkedEncoding?: boolean };
    // Node writes trailers only after the last chunk; a Content-Length response has no place for them
    if (res.chunkedEncoding !== true || !acceptsTrailers(this.req.headers.te)) return;
    try {
      res.addTrailers(trailers);
    } catch {
      // a trailer value Node refuses (invalid characters from the backend): dropped, the body is intact
    }
  }

  end(): void {
    this.flushHead();
    this.res.end();
  }

  destroy(err?: Error): void {
    this.res.destroy(err);
  }

  sendError(status: number, service: string | undefined, closeAfter: boolean, name?: string): void {
    // a request body still unread makes the connection unusable for another request
    sendError(this.res, status, service, closeAfter && !this.req.readableEnded, name);
  }
}
