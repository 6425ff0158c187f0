/**
 * Request-body buffering (`services.<name>.request_buffering.max_bytes`), against slow-POST
 * amplification: a client trickling its body would otherwise hold an upstream connection (and a
 * backend's in-flight slot) for as long as it likes, up to `request_timeout`. NGINX buffers by
 * default (`proxy_request_buffering on`) for the same reason.
 *
 * A body declared with a Content-Length of at most `max_bytes`, or a chunked body, is read from
 * the client before any backend is picked. When it is complete it is sent upstream as one buffer
 * (and can then be retried like a body-less request on a connect failure). A chunked body that
 * grows past `max_bytes` stops being buffered: what was read is sent first and the rest streams,
 * as without buffering. A Content-Length above `max_bytes` streams from the start.
 *
 * The listener's limits are untouched: a body that does not complete within `request_timeout`
 * gets node:http's 408 (the connection closes, no backend was contacted); a client that leaves
 * while its body is read is logged as 499 and reaches no backend; a body whose framing breaks
 * gets the parser's 400.
 */
import type { BodySource } from './body.js';

/** What was read: the whole body, or the first bytes of one too large to buffer. */
export type Buffered = { readonly whole: Buffer } | { readonly prefix: readonly Buffer[] };

/**
 * True when a body with these headers is buffered under `maxBytes`: a Content-Length of at most
 * `maxBytes`, or any Transfer-Encoding (a chunked body: its size shows only while reading).
 */
export function buffersBody(headers: { readonly 'content-length'?: string | undefined; readonly 'transfer-encoding'?: string | undefined }, maxBytes: number): boolean {
  if (headers['transfer-encoding'] !== undefined) return true;
  const cl = headers['content-length'];
  return cl !== undefined && cl !== '0' && Number(cl) <= maxBytes;
}

/**
 * Reads `source` until it ends or more than `maxBytes` arrived, then calls `then` once, always
 * asynchronously (from a stream event). Never calls it when the client aborts first (the
 * response's own 'close' tells the exchange). After an overflow the source is left paused, with
 * no listener of this module: the caller's body stream takes over from there.
 */
export function readBody(source: BodySource, maxBytes: number, then: (b: Buffered) => void): void {
  const parts: Buffer[] = [];
  let bytes = 0;
  const finish = (b: Buffered | undefined): void => {
    source.off('data', onData);
    source.off('end', onEnd);
    source.off('error', onGone);
    source.off('aborted', onGone);
    source.off('close', onGone);
    if (b !== undefined) then(b);
  };
  const onData = (chunk: Buffer): void => {
    bytes += chunk.length;
    parts.push(chunk);
    if (bytes > maxBytes) {
      source.pause();
      finish({ prefix: parts });
    }
  };
  const onEnd = (): void => finish({ whole: parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, bytes) });
  const onGone = (): void => finish(undefined);
  source.on('data', onData);
  source.on('end', onEnd);
  source.on('error', onGone);
  source.on('aborted', onGone);
  source.on('close', onGone);
}
