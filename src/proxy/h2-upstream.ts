/**
 * HTTP/2 to one backend (`h2c://`, HTTP/2 without TLS, e.g. gRPC servers) on node:http2's
 * client: one session per backend, opened on first use, shared by every request (HTTP/2
 * multiplexes), replaced when the backend closes it or sends GOAWAY.
 *
 * Why not undici's h2: in undici 7.30.2 `useH2c` on a `Pool` is ignored (nodejs/undici#4737),
 * and its h2 path completes a request as soon as the trailers frame arrives, dropping response
 * data still buffered in a paused stream: a slow client of a gRPC server-stream would lose its
 * last messages. Here the response ends on the stream's 'end' (after every byte was read),
 * trailers are handed over then, and both directions stream independently (bidi gRPC).
 *
 * `dispatch` speaks undici's handler API (`Dispatcher.DispatchHandler` and a controller with
 * pause/resume/abort), so the Exchange drives both kinds of upstream the same way. Errors carry
 * undici's codes where the meaning is the same, so `classifyUpstreamError` needs no second table.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type Http2Session, type IncomingHttpHeaders as H2Headers, type OutgoingHttpHeaders } from 'node:http2';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import type { Dispatcher } from 'undici';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_NO_ERROR } = http2.constants;

/** Request headers that are connection-specific in HTTP/2 (RFC 9113 section 8.2.2) or become pseudo-headers. */
const NOT_IN_H2: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'te', 'host']);

/**
 * An idle session (no open stream) is closed after this long, ms. Below common server idle
 * limits (gRPC servers default to unlimited, NGINX's http2 idle is 3 min), so drover usually
 * closes first and never writes onto a connection the backend is closing.
 */
const SESSION_IDLE_MS = 60_000;

/** Node's http2 errors that mean the request was never processed by the backend. */
const NOT_REACHED_CODES: ReadonlySet<string> = new Set(['ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_INVALID_SESSION', 'ERR_HTTP2_OUT_OF_STREAMS', 'ERR_HTTP2_STREAM_CANCEL']);

/** Header validation errors node:http2 throws synchronously: the request itself is bad (400). */
const BAD_REQUEST_CODES: ReadonlySet<string> = new Set([
  'ERR_HTTP2_INVALID_HEADER_VALUE',
  'ERR_INVALID_HTTP_TOKEN',
  'ERR_INVALID_CHAR',
  'ERR_HTTP2_INVALID_CONNECTION_HEADERS',
  'ERR_HTTP2_HEADER_SINGLE_VALUE',
  'ERR_HTTP2_INVALID_PSEUDOHEADER',
]);

/** An Error with a `code`, optionally wrapping the cause. */
function coded(code: string, message: string, cause?: unknown): Error & { code: string } {
  const err = new Error(message, cause === undefined ? undefined : { cause }) as Error & { code: string };
  err.code = code;
  return err;
}

/** How to reach one HTTP/2 backend. */
export interface H2UpstreamOptions {
  /** ms to establish the connection (TCP, plus the TLS handshake over TLS) */
  readonly connectTimeout: number;
  /** TLS options for h2 over TLS; undefined: cleartext (h2c) */
  readonly tls?: ConnectionOptions | undefined;
}

/** The flat `[name, value, ...]` request headers -> an HTTP/2 header object (pseudo-headers included). */
export function h2RequestHeaders(method: string, path: string, scheme: 'http' | 'https', fallbackAuthority: string, flat: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': method, ':path': path, ':scheme': scheme };
  let authority: string | undefined;
  for (let i = 0; i < flat.length; i += 2) {
    const name = (flat[i] as string).toLowerCase();
    const value = flat[i + 1] as string;
    if (name.startsWith(':')) continue;
    if (NOT_IN_H2.has(name)) {
      if (name === 'host') authority ??= value;
      else if (name === 'te' && value.trim().toLowerCase() === 'trailers') out['te'] = 'trailers';
      continue;
    }
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [String(prev), value];
  }
  out[':authority'] = authority ?? fallbackAuthority;
  return out;
}

/** An HTTP/2 response header object -> the flat `[name, value, ...]` form, pseudo-headers dropped. */
export function flatResponseHeaders(headers: H2Headers): string[] {
  const flat: string[] = [];
  for (const name of Object.keys(headers)) {
    if (name.startsWith(':')) continue;
    const v = headers[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const one of v) flat.push(name, one);
    else flat.push(name, String(v));
  }
  return flat;
}

/** The HTTP/2 counterpart of undici's `Pool` for one backend. */
export class H2Upstream {
  private readonly origin: string;
  private readonly scheme: 'http' | 'https';
  private readonly authority: string;
  private readonly options: H2UpstreamOptions;
  private session: ClientHttp2Session | undefined;
  /** every session not yet closed, the current one included (close/destroy reach them all) */
  private readonly sessions = new Set<ClientHttp2Session>();
  private closed = false;

  /** @param origin `h2c://host:port` (cleartext) or `https://host:port` (h2 over TLS) */
  constructor(origin: string, options: H2UpstreamOptions) {
    const u = new URL(origin.startsWith('h2c:') ? `http${origin.slice(3)}` : origin);
    this.scheme = u.protocol === 'https:' ? 'https' : 'http';
    this.origin = `${u.protocol}//${u.host}`;
    this.authority = u.host;
    this.options = options;
  }

  /** The current session, or a new one when there is none usable. */
  private current(): ClientHttp2Session {
    const s = this.session;
    if (s !== undefined && !s.closed && !s.destroyed) return s;
    const session = http2.connect(this.origin, {
      ...(this.options.tls ?? {}),
      settings: { enablePush: false },
    });
    this.session = session;
    this.sessions.add(session);
    const timer = setTimeout(() => {
      session.destroy(coded('UND_ERR_CONNECT_TIMEOUT', `HTTP/2 connect timeout after ${this.options.connectTimeout}ms`));
    }, this.options.connectTimeout);
    timer.unref();
    session.once('connect', () => clearTimeout(timer));
    // Session errors reach every stream on it; this listener only keeps the process alive.
    session.on('error', () => undefined);
    const forget = (): void => {
      clearTimeout(timer);
      if (this.session === session) this.session = undefined;
    };
    session.once('goaway', forget);
    session.once('close', () => {
      forget();
      this.sessions.delete(session);
    });
    session.setTimeout(SESSION_IDLE_MS, () => {
      // 'timeout' fires after SESSION_IDLE_MS without a frame; a long quiet stream may be open
      if (openStreams(session) === 0) {
        forget();
        session.close();
      }
    });
    // Idle sessions must not keep the process alive; the listeners do that.
    session.unref();
    return session;
  }

  /**
   * Starts one request; the handler sees `onRequestStart`, then `onResponseStart`,
   * `onResponseData`* and `onResponseEnd` (trailers included), or `onResponseError` once.
   * Throws only for a header node:http2 refuses (the request is malformed).
   */
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const call = new H2Call(handler, opts.headersTimeout ?? 30_000, opts.bodyTimeout ?? 60_000);
    handler.onRequestStart?.(call, {});
    if (call.aborted) return true;
    if (this.closed) {
      call.fail(coded('UND_ERR_CLOSED', 'upstream closed'));
      return true;
    }
    const headers = h2RequestHeaders(opts.method, opts.path, this.scheme, this.authority, (opts.headers ?? []) as string[]);
    const body = opts.body as Readable | Buffer | null | undefined;
    const hasBody = body !== null && body !== undefined;
    let stream: ClientHttp2Stream;
    try {
      stream = this.current().request(headers, { endStream: !hasBody });
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (BAD_REQUEST_CODES.has(code)) throw err;
      // a session that cannot take another stream (closing, out of stream ids): next one will
      this.session = undefined;
      call.fail(coded('UND_ERR_CLOSED', `HTTP/2 session unusable: ${code || (err as Error).message}`, err));
      return true;
    }
    call.begin(stream, hasBody ? body : null);
    return true;
  }

  /** Closes every session once its open streams have finished. */
  async close(): Promise<void> {
    this.closed = true;
    this.session = undefined;
    await Promise.all(
      [...this.sessions].map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.closed || s.destroyed) {
              resolve();
              return;
            }
            s.close(() => resolve());
          }),
      ),
    );
  }

  /** Destroys every session at once (open streams fail). */
  destroy(): Promise<void> {
    this.closed = true;
    this.session = undefined;
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
    return Promise.resolve();
  }
}

/** Streams open on a session (node:http2 does not expose the count, so drover keeps its own on the session). */
function openStreams(session: Http2Session): number {
  return (session as Http2Session & { [OPEN]?: number })[OPEN] ?? 0;
}

const OPEN = Symbol('drover.h2.open');

function countStream(session: Http2Session, delta: number): void {
  const s = session as Http2Session & { [OPEN]?: number };
  s[OPEN] = (s[OPEN] ?? 0) + delta;
}

/** One request on an HTTP/2 session, and the controller its handler holds. */
class H2Call implements Dispatcher.DispatchController {
  private readonly handler: Dispatcher.DispatchHandler;
  private readonly headersTimeout: number;
  private readonly bodyTimeout: number;
  private stream: ClientHttp2Stream | undefined;
  private body: Readable | null = null;
  private responded = false;
  private trailers: H2Headers | undefined;
  private settled = false;
  private isAborted = false;
  private isPaused = false;
  private abortReason: Error | null = null;
  rawHeaders: string[] | null = null;
  rawTrailers: string[] | null = null;

  constructor(handler: Dispatcher.DispatchHandler, headersTimeout: number, bodyTimeout: number) {
    this.handler = handler;
    this.headersTimeout = headersTimeout;
    this.bodyTimeout = bodyTimeout;
  }

  get aborted(): boolean {
    return this.isAborted;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  get reason(): Error | null {
    return this.abortReason;
  }

  /** Wires a new stream: request body out, response in. */
  begin(stream: ClientHttp2Stream, body: Readable | Buffer | null): void {
    this.stream = stream;
    const session = stream.session;
    if (session !== undefined) {
      countStream(session, 1);
      session.ref();
    }
    stream.once('close', () => {
      if (session !== undefined) {
        countStream(session, -1);
        if (openStreams(session) === 0) session.unref();
      }
      this.onClose(stream.rstCode);
    });
    stream.on('error', (err: Error & { code?: string }) => this.fail(mapStreamError(err, stream.rstCode, this.responded)));
    stream.setTimeout(this.headersTimeout, () => {
      this.fail(this.responded ? coded('UND_ERR_BODY_TIMEOUT', `HTTP/2 body timeout after ${this.bodyTimeout}ms`) : coded('UND_ERR_HEADERS_TIMEOUT', `HTTP/2 headers timeout after ${this.headersTimeout}ms`));
    });
    stream.on('response', (headers: H2Headers) => this.onResponse(headers));
    stream.on('data', (chunk: Buffer) => {
      if (!this.settled) this.handler.onResponseData?.(this, chunk);
    });
    stream.on('trailers', (trailers: H2Headers) => {
      this.trailers = trailers;
    });
    stream.on('end', () => this.onEnd());
    if (body === null) return;
    if (Buffer.isBuffer(body)) {
      stream.end(body);
      return;
    }
    this.body = body;
    body.on('error', (err) => this.abort(err));
    // pipe: the stream's flow control pauses the client body; a closed stream unpipes itself
    body.pipe(stream);
  }

  private onResponse(headers: H2Headers): void {
    if (this.settled) return;
    this.responded = true;
    this.stream?.setTimeout(this.bodyTimeout);
    const status = Number(headers[':status'] ?? 0);
    this.rawHeaders = flatResponseHeaders(headers);
    this.handler.onResponseStart?.(this, status, headers as IncomingHttpHeaders, '');
  }

  private onEnd(): void {
    if (this.settled) return;
    if (!this.responded) {
      this.fail(coded('UND_ERR_SOCKET', 'HTTP/2 stream ended without a response'));
      return;
    }
    this.settled = true;
    const trailers = this.trailers ?? {};
    this.rawTrailers = flatResponseHeaders(trailers);
    this.stopBody();
    // The backend answered in full while the request body may still be streaming (a gRPC server
    // may end a call early): nothing more is wanted from us, close our side too.
    const stream = this.stream;
    if (stream !== undefined && !stream.closed) stream.close(NGHTTP2_NO_ERROR);
    this.handler.onResponseEnd?.(this, trailers as IncomingHttpHeaders);
  }

  private onClose(rstCode: number | undefined): void {
    if (this.settled) return;
    if (rstCode === NGHTTP2_REFUSED_STREAM) {
      // RFC 9113 section 8.7: the backend did not process this stream; safe to retry anywhere
      this.fail(coded('UND_ERR_CLOSED', 'HTTP/2 stream refused by the backend'));
    } else if (rstCode === NGHTTP2_NO_ERROR && this.responded && this.trailers !== undefined) {
      // a complete response whose stream was reset (NO_ERROR) before 'end' was read out
      this.onEnd();
    } else {
      this.fail(coded('UND_ERR_SOCKET', `HTTP/2 stream closed before the response was complete (code ${rstCode ?? 'none'})`));
    }
  }

  private stopBody(): void {
    const body = this.body;
    const stream = this.stream;
    if (body !== null && stream !== undefined) body.unpipe(stream);
  }

  /** Settles with an error: reported once to the handler. */
  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.stopBody();
    const stream = this.stream;
    if (stream !== undefined && !stream.destroyed) stream.close(NGHTTP2_CANCEL);
    this.handler.onResponseError?.(this, err);
  }

  abort(reason: Error): void {
    if (this.settled) return;
    this.isAborted = true;
    this.abortReason = reason;
    this.fail(reason);
  }

  pause(): void {
    this.isPaused = true;
    this.stream?.pause();
  }

  resume(): void {
    this.isPaused = false;
    this.stream?.resume();
  }
}

/** Node's stream errors -> undici-coded errors the Exchange classifies. */
function mapStreamError(err: Error & { code?: string }, rstCode: number | undefined, responded: boolean): Error {
  const code = err.code ?? '';
  if (!responded && (NOT_REACHED_CODES.has(code) || rstCode === NGHTTP2_REFUSED_STREAM)) return coded('UND_ERR_CLOSED', `HTTP/2: ${code || err.message}`, err);
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'UND_ERR_CONNECT_TIMEOUT') return err;
  if (code === 'ERR_HTTP2_STREAM_ERROR' || code === 'ERR_HTTP2_SESSION_ERROR' || code === 'ECONNRESET') return coded('UND_ERR_SOCKET', `HTTP/2 reset: ${err.message}`, err);
  return err;
}
