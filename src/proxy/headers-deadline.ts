/**
 * `response_headers` on time for backends undici serves (https://, host names, streamed bodies).
 * undici times response headers with its coarse clock (`setFastTimeout`, ticks of about half a
 * second), so a 300 ms `response_headers` ended after about 1 s (measured: 1.00-1.02 s). This
 * wrapper adds a native timer from the moment undici writes the request to a connection
 * (`onRequestStart`) and aborts with undici's own `HeadersTimeoutError`, so the Exchange
 * classifies it exactly as before (504, `timeout`). undici's timer stays as a backstop.
 *
 * Only requests whose body is already whole (none, or a Buffer) are timed here: undici does not
 * count while a streamed body is still being written (a slow upload is not a slow backend), and
 * its handler API says nothing when the body is done, so those keep undici's timer alone.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { errors, type Dispatcher } from 'undici';
import type { UpstreamDispatcher, UpstreamDispatchOptions } from './upstream-types.js';

/** An undici dispatcher whose `headersTimeout` is kept to the millisecond. */
export class HeadersDeadline implements UpstreamDispatcher {
  constructor(private readonly inner: UpstreamDispatcher) {}

  dispatch(opts: UpstreamDispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const ms = opts.headersTimeout;
    const body = opts.body;
    const whole = body === null || body === undefined || Buffer.isBuffer(body) || typeof body === 'string';
    if (ms === undefined || ms === null || ms <= 0 || !whole) return this.inner.dispatch(opts, handler);
    return this.inner.dispatch(opts, new TimedHandler(handler, ms));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}

function expire(h: TimedHandler): void {
  h.timer = undefined;
  h.controller?.abort(new errors.HeadersTimeoutError(`Headers Timeout Error (${h.ms} ms)`));
}

/** Passes every event on; starts the timer when the request goes out, stops it at the final head. */
class TimedHandler implements Dispatcher.DispatchHandler {
  timer: NodeJS.Timeout | undefined;
  controller: Dispatcher.DispatchController | undefined;

  constructor(
    private readonly handler: Dispatcher.DispatchHandler,
    readonly ms: number,
  ) {}

  private stop(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.controller = controller;
    this.timer = setTimeout(expire, this.ms, this);
    this.handler.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.stop();
    this.handler.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    // a 1xx is not the answer: undici keeps timing the headers after one too
    if (statusCode >= 200) this.stop();
    this.handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.handler.onResponseData?.(controller, chunk);
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.stop();
    this.handler.onResponseEnd?.(controller, trailers);
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    this.stop();
    this.handler.onResponseError?.(controller, err);
  }
}
