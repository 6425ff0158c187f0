/**
 * A request body handed to undici without giving undici the client's socket stream.
 *
 * Two reasons not to pass `req` itself: undici destroys a body stream when the upstream fails,
 * which would kill the client connection before we can answer 502; and a retry must know
 * whether any byte was consumed (a body that was sent is never replayed). `LazyBody` starts
 * pulling from the client only when undici first reads, and forwards backpressure both ways.
 */
import { Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';

/**
 * Where a request body is read from: node:http's IncomingMessage, or an HTTP/2 stream. Both
 * emit 'data', 'end', 'error' and 'aborted', and pause/resume.
 */
export type BodySource = Readable & { readonly readableEnded: boolean };

export class LazyBody extends Readable {
  private readonly source: BodySource;
  /** true once undici asked for data: from then on the body cannot be replayed */
  started = false;
  /** bytes pulled from the client so far */
  bytes = 0;
  /** true when the client side failed (aborted, or a body framing error from the parser) */
  clientFailed = false;
  private attached = false;
  /** bytes already read from the client (a buffered body that outgrew its limit), sent first */
  private prefix: readonly Buffer[] | undefined;

  constructor(source: BodySource, prefix?: readonly Buffer[]) {
    super();
    this.source = source;
    this.prefix = prefix;
    this.onData = this.onData.bind(this);
    this.onEnd = this.onEnd.bind(this);
    this.onAbort = this.onAbort.bind(this);
  }

  override _read(): void {
    this.started = true;
    if (!this.attached) {
      this.attached = true;
      const prefix = this.prefix;
      this.prefix = undefined;
      if (prefix !== undefined) for (const chunk of prefix) this.onData(chunk);
      this.source.on('data', this.onData);
      this.source.on('end', this.onEnd);
      this.source.on('error', this.onAbort);
      this.source.on('aborted', this.onAbort);
      if (this.source.readableEnded) {
        this.push(null);
        return;
      }
      // destroyed before undici first read (its connection died): no event will ever come
      if (this.source.destroyed) {
        this.onAbort();
        return;
      }
    }
    this.source.resume();
  }

  private onData(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (!this.push(chunk)) this.source.pause();
  }

  private onEnd(): void {
    this.push(null);
  }

  private onAbort(): void {
    this.clientFailed = true;
    this.destroy(new Error('client aborted the request body'));
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.detach();
    cb(err);
  }

  /** Stops listening to the client stream (after an upstream failure) without touching it. */
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.source.off('data', this.onData);
    this.source.off('end', this.onEnd);
    this.source.off('error', this.onAbort);
    this.source.off('aborted', this.onAbort);
    this.source.pause();
  }
}

/** True when the request declares a body (Content-Length > 0 or any Transfer-Encoding). */
export function hasRequestBody(req: IncomingMessage): boolean {
  const te = req.headers['transfer-encoding'];
  if (te !== undefined) return true;
  const cl = req.headers['content-length'];
  return cl !== undefined && cl !== '0';
}
