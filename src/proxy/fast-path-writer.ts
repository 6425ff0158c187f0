/**
 * The fast path's HTTP/1.1 response writer: the head node:http would write for the same status
 * and fields (its `Date`, `Connection: keep-alive` with `Keep-Alive: timeout=N` or
 * `Connection: close`, and chunked framing when the backend sent no Content-Length), and the
 * body framed to match. One writer per connection, reset for each response; the head waits for
 * the first body bytes (or the end) so both leave in one write, and can be taken back until then.
 */
import { STATUS_CODES, validateHeaderName, validateHeaderValue } from 'node:http';
import { FIELD_VALUE_UNSAFE } from '../config/values.js';

/** Where the writer's bytes go: latin1 strings and buffers, in order. */
export interface ByteSink {
  /** false: wait for a drain before sending more */
  send(chunk: string | Buffer): boolean;
}

let dateSecond = -1;
let dateText = '';
/** The `Date` header value, formatted once per second. */
export function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** The `Connection` (and `Keep-Alive`) lines of a keep-alive response, as node:http writes them. */
export function keepAliveLines(keepAliveTimeoutMs: number): string {
  return keepAliveTimeoutMs > 0 ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveTimeoutMs / 1000)}\r\n` : 'Connection: keep-alive\r\n';
}

/** Writes one response at a time to a `ByteSink`. */
export class Http1ResponseWriter {
  private readonly sink: ByteSink;
  private readonly keepAlive: string;
  /** the head written by `writeHead` and not sent yet ('' when none) */
  private head = '';
  /** `writeHead` was called (and not retracted) */
  headersSent = false;
  private chunked = false;
  /** no body may be sent: the request was HEAD, or the status has none */
  private bodyless = false;
  /** the request was HEAD */
  private isHead = false;

  /** @param keepAlive the lines `keepAliveLines` gives for the listener */
  constructor(sink: ByteSink, keepAlive: string) {
    this.sink = sink;
    this.keepAlive = keepAlive;
  }

  /** Prepares for the response to a new request. */
  reset(isHead: boolean): void {
    this.head = '';
    this.headersSent = false;
    this.chunked = false;
    this.isHead = isHead;
    this.bodyless = isHead;
  }

  /**
   * Builds the head. Throws, writing nothing, on a status message or field node:http would
   * refuse (the caller answers 502 instead).
   * @param headers `[name, value, ...]`
   * @param last the connection closes after this response (`Connection: close`)
   * @param checked the fields come from a strict HTTP/1.1 parser (names are tokens, values hold
   *   no control characters): node:http's checks would pass, so they are skipped
   */
  writeHead(status: number, message: string | undefined, headers: readonly string[], last: boolean, checked = false): void {
    const reason = message !== undefined && message !== '' ? message : (STATUS_CODES[status] ?? 'unknown');
    if (!checked && FIELD_VALUE_UNSAFE.test(reason)) throw new Error('invalid character in status message');
    let head = `HTTP/1.1 ${status} ${reason}\r\n`;
    let length = false;
    let date = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      const value = headers[i + 1] as string;
      if (!checked) {
        // the same checks node:http's writeHead makes (a backend header it refuses: 502)
        validateHeaderName(name);
        validateHeaderValue(name, value);
      }
      if (name.length === 14) {
        if (name.toLowerCase() === 'content-length') length = true;
      } else if (name.length === 4 && name.toLowerCase() === 'date') date = true;
      head += `${name}: ${value}\r\n`;
    }
    if (!date) head += `Date: ${httpDate()}\r\n`;
    head += last ? 'Connection: close\r\n' : this.keepAlive;
    if (status === 204 || status === 304 || status < 200) this.bodyless = true;
    if (!length && !this.bodyless) {
      head += 'Transfer-Encoding: chunked\r\n';
      this.chunked = true;
    }
    this.head = `${head}\r\n`;
    this.headersSent = true;
  }

  /** Takes back a head not sent yet; true when there was one. */
  retractHead(): boolean {
    if (this.head === '') return false;
    this.reset(this.isHead);
    return true;
  }

  /** The head goes out with the first body bytes (or the end): one write for both. */
  private flushHead(): void {
    if (this.head !== '') {
      this.sink.send(this.head);
      this.head = '';
    }
  }

  /** Body bytes, framed; false: wait for a drain. */
  write(chunk: Buffer): boolean {
    if (this.bodyless || chunk.length === 0) return true;
    this.flushHead();
    if (!this.chunked) return this.sink.send(chunk);
    this.sink.send(`${chunk.length.toString(16)}\r\n`);
    this.sink.send(chunk);
    return this.sink.send('\r\n');
  }

  /** The end of the body (the head, if still held, goes now). */
  end(): void {
    this.flushHead();
    if (this.chunked) this.sink.send('0\r\n\r\n');
  }
}
