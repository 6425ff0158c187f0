/**
 * A connection held as Node's bare libuv TCP handle (the `tcp_wrap` / `stream_wrap` bindings
 * net.Socket is built on, reached through `internals.ts`) instead of a net.Socket: the fast
 * path's client connections, and its plain-HTTP upstream connections. The fast path needs a handful of
 * operations (read, write with backpressure, end, destroy); a net.Socket brings two stream
 * states, an event emitter and their buffers along. Measured with 10 000 idle keep-alive
 * connections, a `net` server with a canned answer holds about 2.9 KiB of RSS per connection
 * and the same server on bare handles 0.6 KiB, as much as NGINX (`bench/idle-floor.ts`).
 *
 * A client connection the fast path hands to node:http gets its net.Socket then, on the same
 * handle (`release`, then `adoptHandle`), and is net's from there on.
 */
import { HANDLE_OWNER, internals, type Internals, type TcpHandle, type WriteReq } from './internals.js';

export type { TcpHandle } from './internals.js';

/**
 * bytes queued or not yet taken by the kernel above which `send` returns false (net.Socket's
 * default high-water mark).
 */
const HIGH_WATER_MARK = 16 * 1024;

/** The internals (RawStream is only ever made after the fast path's probe found them). */
function k(): Internals {
  return internals as Internals;
}

/**
 * bytes: the one buffer that streams reading with `readIntoShared` read into. Reads are handled
 * synchronously, one at a time, so one buffer serves them all: no 64 KiB allocation per read.
 */
const SHARED_READ_BYTES = 64 * 1024;
let sharedRead: Buffer | undefined;

function onHandleRead(this: TcpHandle, buffer: ArrayBuffer | undefined): void {
  const owner = this[HANDLE_OWNER] as RawStream | undefined;
  const i = internals;
  if (owner === undefined || i === undefined) return;
  const state = i.streamState;
  const nread = state[i.kReadBytesOrError] as number;
  if (nread > 0) {
    if (buffer !== undefined) owner.received(Buffer.from(buffer, state[i.kArrayBufferOffset] as number, nread));
    // read into the shared buffer: valid until this callback returns
    else if (sharedRead !== undefined) owner.received(sharedRead.subarray(0, nread));
  } else if (nread < 0) {
    owner.readFailed(nread === i.uvEof, nread);
  }
}

// ---- corking: writes made while corked go out when the outermost `uncork` runs ----

let corked = 0;
const dirty: RawStream[] = [];

/**
 * Holds back the writes of every stream until the matching `uncork` (instead of the end of the
 * tick): an upstream read that produces a whole response sends it in one write per client
 * connection, without a trip through the next-tick queue.
 */
export function cork(): void {
  corked++;
}

/** Ends a `cork`; the outermost sends what was held back. */
export function uncork(): void {
  if (--corked > 0) return;
  for (let i = 0; i < dirty.length; i++) (dirty[i] as RawStream).flush();
  dirty.length = 0;
}

function onWriteDone(this: WriteReq, status: number): void {
  const owner = this.owner as RawStream | undefined;
  this.chunks = undefined;
  if (owner === undefined) return;
  owner.writeDone(status);
}

function onShutdownDone(this: WriteReq): void {
  (this.owner as RawStream | undefined)?.shutdownDone();
}

function onHandleClosed(this: TcpHandle): void {
  const owner = this[HANDLE_OWNER] as RawStream | undefined;
  this[HANDLE_OWNER] = undefined;
  owner?.handleClosed();
}

/**
 * A write request for `handle`. A write the kernel takes at once leaves its request unused by
 * Node (only one that goes asynchronous is kept until `oncomplete`), so one spare serves every
 * synchronous write.
 */
let spareReq: WriteReq | undefined;
function writeReq(handle: TcpHandle): WriteReq {
  let req = spareReq;
  if (req === undefined) {
    req = new (k().WriteWrap)();
    req.oncomplete = onWriteDone;
    req.async = false;
    spareReq = req;
  }
  req.handle = handle;
  return req;
}

/**
 * bytes: what was queued in one tick up to this size goes out as one string (see `flush`); the
 * size Node writes from its stack.
 */
const ONE_STRING_BYTES = 16 * 1024;

/** The `[chunk, encoding, ...]` array of a writev, reused (emptied after each call). */
const writevParts: (string | Buffer)[] = [];

function flushQueued(stream: RawStream): void {
  stream.flush();
}

/**
 * One connection on a bare handle. Writes made in one tick go out together (one write or
 * writev at the end of the tick), as a corked net.Socket would send them. Subclasses get the
 * connection's events as method calls: no emitter, no closure per connection. The public
 * methods `flush`, `writeDone`, `received`, `readFailed`, `shutdownDone` and `handleClosed` are
 * the handle callbacks' way in: a subclass must not reuse those names.
 */
export abstract class RawStream {
  protected readonly handle: TcpHandle;
  /** the first chunk written this tick, and the others: sent at its end (latin1 strings and buffers) */
  private first: string | Buffer | undefined;
  private more: (string | Buffer)[] | undefined;
  private queuedBytes = 0;
  /** asynchronous writes not completed yet */
  private writesInFlight = 0;
  /** a drain was asked for (`write` returned false) */
  private drainWanted = false;
  /** `end` was called: shut down once every write is out */
  private ending = false;
  /** the handle is closed or closing, or was given away: nothing more is read or written */
  destroyed = false;
  /** reads were stopped by `pauseReading` (libuv refuses a second start) */
  private paused = false;
  /** the libuv status of the first failed read or write (negative); 0: none */
  protected failure = 0;
  /** reads go into the shared buffer (`readIntoShared`) */
  private readsShared = false;
  private peer: string | undefined;

  constructor(handle: TcpHandle) {
    this.handle = handle;
    handle[HANDLE_OWNER] = this;
    handle.onread = onHandleRead;
    if (handle.readStart() !== 0) this.closeHandle();
  }

  /** Bytes read from the connection. */
  protected abstract onData(chunk: Buffer): void;
  /** The client half-closed its side (the request in flight, if any, can no longer be answered). */
  protected abstract onEnd(): void;
  /** The handle is closed: the connection is over. */
  protected abstract onClose(): void;
  /** Everything sent has been taken by the kernel after a `send` that returned false. */
  protected abstract onDrain(): void;

  /**
   * Reads from now on go into one buffer shared by every such stream (see `SHARED_READ_BYTES`):
   * `onData` must be done with each chunk when it returns (copy what it keeps). A stream that
   * is later handed to a net.Socket passes `sharedReads` to `adoptHandle`.
   */
  protected readIntoShared(): void {
    sharedRead ??= Buffer.allocUnsafeSlow(SHARED_READ_BYTES);
    this.handle.useUserBuffer(sharedRead);
    this.readsShared = true;
  }

  /** The buffer this stream reads into, when `readIntoShared` was called (see `adoptHandle`). */
  protected get sharedReads(): Buffer | undefined {
    return this.readsShared ? sharedRead : undefined;
  }

  /** The client's address (read once per connection). */
  get remoteAddress(): string | undefined {
    if (this.peer === undefined && !this.destroyed) {
      const out: { address?: string } = {};
      if (this.handle.getpeername(out) === 0) this.peer = out.address;
    }
    return this.peer;
  }

  /** `endConnection` was called or the handle is closed (or given away): nothing more is served. */
  get closing(): boolean {
    return this.ending || this.destroyed;
  }

  /** Bytes read plus bytes written so far (the send timeout watches it move). */
  get bytesMoved(): number {
    return this.handle.bytesRead + this.handle.bytesWritten;
  }

  /** Bytes sent but not yet taken by the kernel. */
  get pendingBytes(): number {
    return this.queuedBytes + (this.destroyed ? 0 : this.handle.writeQueueSize);
  }

  /** Queues `chunk` (a latin1 string or bytes); false: wait for `onDrain` before sending more. */
  send(chunk: string | Buffer): boolean {
    if (this.destroyed || this.ending) return false;
    if (this.first === undefined) {
      this.first = chunk;
      if (corked > 0) dirty.push(this);
      else process.nextTick(flushQueued, this);
    } else if (this.more === undefined) this.more = [chunk];
    else this.more.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.pendingBytes < HIGH_WATER_MARK) return true;
    this.drainWanted = true;
    return false;
  }

  /** Sends what was queued this tick. */
  flush(): void {
    const first = this.first;
    if (first === undefined) return;
    const more = this.more;
    const bytes = this.queuedBytes;
    this.first = undefined;
    this.more = undefined;
    this.queuedBytes = 0;
    if (this.destroyed) return;
    const req = writeReq(this.handle);
    let err: number;
    if (more === undefined) {
      err = typeof first === 'string' ? this.handle.writeLatin1String(req, first) : this.handle.writeBuffer(req, first);
      this.afterWrite(req, err, first, undefined);
      return;
    }
    if (bytes <= ONE_STRING_BYTES) {
      // A small response (head and body) as one latin1 string: Node writes it from the stack,
      // where a writev of strings and buffers allocates storage and parses each encoding.
      let text = typeof first === 'string' ? first : first.toString('latin1');
      for (const c of more) text += typeof c === 'string' ? c : c.toString('latin1');
      err = this.handle.writeLatin1String(req, text);
      this.afterWrite(req, err, text, undefined);
      return;
    }
    // (the array only lives through the call: Node copies strings, and `afterWrite` keeps the
    // buffers of a write that went asynchronous)
    const parts = writevParts;
    parts.push(first, typeof first === 'string' ? 'latin1' : 'buffer');
    for (const c of more) parts.push(c, typeof c === 'string' ? 'latin1' : 'buffer');
    err = this.handle.writev(req, parts, false);
    parts.length = 0;
    this.afterWrite(req, err, first, more);
  }

  /**
   * Writes `chunk` now, without waiting for the end of the tick (what was queued goes first).
   * @returns false: wait for `onDrain` before sending more
   */
  sendNow(chunk: string | Buffer): boolean {
    if (this.first !== undefined) {
      const more = this.send(chunk);
      this.flush();
      return more;
    }
    if (this.destroyed || this.ending) return false;
    const req = writeReq(this.handle);
    const err = typeof chunk === 'string' ? this.handle.writeLatin1String(req, chunk) : this.handle.writeBuffer(req, chunk);
    this.afterWrite(req, err, chunk, undefined);
    if (this.pendingBytes < HIGH_WATER_MARK) return true;
    this.drainWanted = true;
    return false;
  }

  private afterWrite(req: WriteReq, err: number, first: string | Buffer, more: (string | Buffer)[] | undefined): void {
    if (err !== 0) {
      this.failure ||= err;
      this.closeHandle();
      return;
    }
    if (k().streamState[k().kLastWriteWasAsync] !== 0) {
      // Node keeps this request until `oncomplete`: the next write takes a new one
      spareReq = undefined;
      req.owner = this;
      req.chunks = more === undefined ? [first] : [first, ...more];
      this.writesInFlight++;
      return;
    }
    this.written();
  }

  /** An asynchronous write completed. */
  writeDone(status: number): void {
    this.writesInFlight--;
    if (status < 0) {
      this.failure ||= status;
      this.closeHandle();
    }
    else this.written();
  }

  private written(): void {
    if (this.destroyed || this.writesInFlight > 0 || this.first !== undefined) return;
    if (this.drainWanted) {
      this.drainWanted = false;
      this.onDrain();
    }
    if (this.ending) this.shutdown();
  }

  /** Ends the connection after what was sent (FIN, then close). */
  endConnection(): void {
    if (this.destroyed || this.ending) return;
    this.ending = true;
    this.handle.readStop();
    if (this.first === undefined && this.writesInFlight === 0) this.shutdown();
  }

  private shutdown(): void {
    const req = new (k().ShutdownWrap)();
    req.handle = this.handle;
    req.oncomplete = onShutdownDone;
    req.owner = this;
    if (this.handle.shutdown(req) !== 0) this.closeHandle();
  }

  /** Closes the connection now (unsent bytes are dropped). */
  destroy(): void {
    this.closeHandle();
  }

  /** What `destroy` does; called directly on failures, which subclasses learn of by `onClose`. */
  private closeHandle(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.first = undefined;
    this.more = undefined;
    this.queuedBytes = 0;
    this.handle.readStop();
    this.handle.close(onHandleClosed);
  }

  /** Stops reading (backpressure on a client that sends faster than it is answered). */
  pauseReading(): void {
    if (this.destroyed || this.paused) return;
    this.paused = true;
    this.handle.readStop();
  }

  /** Reads again after `pauseReading`. */
  resumeReading(): void {
    if (this.destroyed || this.ending || !this.paused) return;
    this.paused = false;
    if (this.handle.readStart() !== 0) this.closeHandle();
  }

  /** Bytes arrived (called by the handle). */
  received(chunk: Buffer): void {
    if (this.destroyed) return;
    try {
      this.onData(chunk);
    } catch {
      // a bug must cost this connection, not leave it half-served or reach the process
      this.closeHandle();
    }
  }

  /** The read side ended: `eof` for a client's half-close, else an error. */
  readFailed(eof: boolean, status = 0): void {
    if (this.destroyed) return;
    this.handle.readStop();
    if (eof) this.onEnd();
    else {
      this.failure ||= status;
      this.closeHandle();
    }
  }

  /** The FIN went out (or could not): close. */
  shutdownDone(): void {
    this.closeHandle();
  }

  /** The handle finished closing. */
  handleClosed(): void {
    this.onClose();
  }

  /**
   * Lets go of the connection (for a net.Socket to take over its handle, see `adoptHandle`):
   * reads stop and this stream's events end. Only between responses: nothing may be queued or
   * in flight.
   */
  release(): { handle: TcpHandle; sharedReads: Buffer | undefined } {
    this.destroyed = true;
    const h = this.handle;
    h.readStop();
    h[HANDLE_OWNER] = undefined;
    // (onread stays: the handle only takes a function there; net.Socket sets its own)
    return { handle: h, sharedReads: this.sharedReads };
  }
}
