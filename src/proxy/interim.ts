/**
 * Unsolicited `100 Continue` from HTTP/1.1 backends, swallowed before undici sees them.
 *
 * RFC 9110 15.2: a client MUST be able to parse 1xx responses it did not expect, and a proxy
 * need not forward a 100 it asked for. drover never sends `Expect: 100-continue` upstream (it
 * answers the client's itself), so a backend's 100 is always unsolicited, and drover drops it as
 * it drops every other 1xx. But undici 7 (`client-h1.js`, `onHeadersComplete`) destroys the
 * connection on a 100 before any handler hook runs: the client got 502 and the backend a
 * failure, so a backend that always sends one was ejected.
 *
 * So the bytes of such an interim response are taken out of the socket's stream, in front of
 * undici's parser, and only there: at the start of a response. Where a response starts is known
 * without parsing any framing: upstream pools run one request per connection at a time
 * (`pipelining: 1`), so the next response begins with the first byte read after undici wrote a
 * request head, which it announces on the `undici:client:sendHeaders` diagnostics channel. From
 * then until the final status line starts, reads are checked (a few bytes compared; a 1xx head
 * is scanned for its blank line); every other read (the final head, bodies) passes through
 * untouched, at the cost of one property test.
 */
import diagnostics from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { buildConnector } from 'undici';

/** Longest interim head skipped (undici's default `maxHeaderSize`); beyond it the connection fails. */
export const MAX_INTERIM_HEAD = 16 * 1024;

const EMPTY = Buffer.alloc(0);
/** `HTTP/1.1 1`: an interim status line starts so (`HTTP/1.0` too); its code and one more byte decide. */
const PREFIX = Buffer.from('HTTP/1.1 1', 'latin1');
/** bytes from a status line's start through the byte after its code */
const DECIDE = PREFIX.length + 3;
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const ZERO = 0x30;
const ONE = 0x31;

/** What the next bytes of a response start with. */
type Start = '100' | 'other 1xx' | 'final' | 'undecided';

/**
 * The byte-level state of one connection's incoming stream (pure: no I/O, tested on its own).
 * `responseExpected()` marks the start of a response; `filter` takes each read and returns what
 * the HTTP parser should see: everything but the heads of 100 responses that precede the final
 * one. Other 1xx heads (undici skips them itself) pass, and the check resumes after each.
 */
export class InterimFilter {
  /** off: passing through; start: a status line starts at the next byte; drop/pass: inside a 1xx head */
  private mode: 'off' | 'start' | 'drop' | 'pass' = 'off';
  /** the start of a status line too short to decide yet */
  private held: Buffer | undefined;
  /** bytes of the current 1xx head seen so far */
  private seen = 0;
  /** where the search for the head's blank line stands: 0 none, 1 after LF, 2 after LF CR */
  private blank = 0;

  /** True while reads are being checked (a response start is pending or a 1xx head is being read). */
  get active(): boolean {
    return this.mode !== 'off';
  }

  /** A request head was just written: the next byte read begins its response. */
  responseExpected(): void {
    this.mode = 'start';
    this.held = undefined;
  }

  /**
   * Returns the part of `chunk` the HTTP parser should see (possibly empty: everything was a
   * 100, or too little came to decide). Throws when a 1xx head outgrows `MAX_INTERIM_HEAD`.
   */
  filter(chunk: Buffer): Buffer {
    if (this.mode === 'off') return chunk;
    let buf = chunk;
    if (this.held !== undefined) {
      buf = Buffer.concat([this.held, chunk]);
      this.held = undefined;
    }
    const out: Buffer[] = [];
    let pos = 0;
    for (;;) {
      if (this.mode === 'drop' || this.mode === 'pass') {
        const end = this.blankLineEnd(buf, pos);
        const stop = end < 0 ? buf.length : end;
        if (this.mode === 'pass' && stop > pos) out.push(buf.subarray(pos, stop));
        this.seen += stop - pos;
        if (this.seen > MAX_INTERIM_HEAD) throw new Error(`interim 1xx response head over ${MAX_INTERIM_HEAD} bytes`);
        if (end < 0) return joined(out);
        this.mode = 'start'; // the final response, or another 1xx, follows
        pos = end;
      }
      if (pos === buf.length) return joined(out);
      const start = responseStart(buf, pos);
      if (start === 'final') {
        this.mode = 'off';
        out.push(pos === 0 ? buf : buf.subarray(pos));
        return joined(out);
      }
      if (start === 'undecided') {
        this.held = Buffer.from(buf.subarray(pos));
        return joined(out);
      }
      this.mode = start === '100' ? 'drop' : 'pass';
      this.seen = 0;
      this.blank = 0;
    }
  }

  /**
   * Index just past the blank line ending a head, searching `buf` from `from`, or -1; the search
   * state carries over between reads. A blank line is CRLF CRLF, or LF alone for either.
   */
  private blankLineEnd(buf: Buffer, from: number): number {
    for (let i = from; i < buf.length; i++) {
      const c = buf[i];
      if (c === LF) {
        if (this.blank !== 0) {
          this.blank = 0;
          return i + 1;
        }
        this.blank = 1;
      } else if (c === CR && this.blank === 1) {
        this.blank = 2;
      } else if (c !== CR) {
        this.blank = 0;
      }
    }
    return -1;
  }
}

function joined(parts: Buffer[]): Buffer {
  if (parts.length === 1) return parts[0] as Buffer;
  return parts.length === 0 ? EMPTY : Buffer.concat(parts);
}

/**
 * What starts at `pos`: `HTTP/1.0|1 100` or another `1xx` (not 101: an upgrade ends HTTP on the
 * connection) followed by SP, CR or LF, anything else ('final': left to the parser), or too
 * few bytes to say.
 */
function responseStart(buf: Buffer, pos: number): Start {
  const n = Math.min(buf.length - pos, DECIDE);
  for (let i = 0; i < n && i < PREFIX.length; i++) {
    const c = buf[pos + i] as number;
    // HTTP/1.0 as well as HTTP/1.1
    if (i === 7 ? c !== ZERO && c !== ONE : c !== PREFIX[i]) return 'final';
  }
  if (n < DECIDE) return 'undecided';
  const tens = buf[pos + PREFIX.length] as number;
  const ones = buf[pos + PREFIX.length + 1] as number;
  const after = buf[pos + PREFIX.length + 2] as number;
  const digit = (c: number): boolean => c >= ZERO && c <= ZERO + 9;
  if (!digit(tens) || !digit(ones) || (after !== SP && after !== CR && after !== LF)) return 'final';
  if (tens === ZERO && ones === ZERO) return '100';
  return tens === ZERO && ones === ONE ? 'final' : 'other 1xx';
}

const FILTER = Symbol('drover.interimFilter');
type FilteredSocket = Socket & { [FILTER]?: InterimFilter };

let subscribed = false;

function onSendHeaders(message: unknown): void {
  const socket = (message as { socket?: FilteredSocket }).socket;
  socket?.[FILTER]?.responseExpected();
}

/**
 * Puts an `InterimFilter` in front of undici's parser on `socket` (it reads with `socket.read()`
 * on 'readable'). Only whole reads (`read()` without a size) are filtered; a 1xx head that
 * grows too large destroys the socket, which undici reports as a connection error.
 */
export function swallowInterim100(socket: Socket): void {
  if (!subscribed) {
    diagnostics.subscribe('undici:client:sendHeaders', onSendHeaders);
    subscribed = true;
  }
  const filter = new InterimFilter();
  (socket as FilteredSocket)[FILTER] = filter;
  const read = socket.read;
  socket.read = function filteredRead(this: Socket, size?: number): unknown {
    const chunk: unknown = read.call(this, size);
    if (!filter.active || size !== undefined || !Buffer.isBuffer(chunk)) return chunk;
    try {
      return filter.filter(chunk);
    } catch (err) {
      this.destroy(err as Error);
      return null;
    }
  };
}

/** undici's connect option: its own connector, with `swallowInterim100` on every socket it opens. */
export function interimSwallowingConnector(options: buildConnector.BuildOptions): buildConnector.connector {
  const connect = buildConnector(options);
  return (opts, callback) =>
    connect(opts, (err, socket) => {
      // on failure undici passes the error alone (socket undefined, not null)
      if (err === null && socket != null) swallowInterim100(socket as Socket);
      (callback as (e: Error | null, s: unknown) => void)(err, socket);
    });
}
