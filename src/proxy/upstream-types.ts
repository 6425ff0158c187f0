/**
 * What the Exchange and every upstream kind (undici's `Pool`, `H1Upstream`, `H2Upstream`, the
 * `HeadersDeadline` wrapper) agree on: undici's dispatch API and what drover's own upstreams add
 * to it. Apart from upstream.ts so that the upstreams can name it without importing the module
 * that builds them.
 */
import type { Dispatcher } from 'undici';

/** undici's dispatch options, and what drover's own upstreams read besides. */
export interface UpstreamDispatchOptions extends Dispatcher.DispatchOptions {
  /** every header name and value is known good: an upstream need not check them again */
  readonly headersChecked?: boolean;
}

/** undici's controller, and what drover's own upstreams tell besides. */
export interface UpstreamController extends Dispatcher.DispatchController {
  /**
   * the response's fields came through a strict HTTP/1.1 parser (tokens for names, no control
   * characters in values): the client side need not check them again
   */
  readonly strictHeaders?: boolean;
}

/** What the Exchange needs of a backend's connections: undici's `Pool`, `H1Upstream` and `H2Upstream` fit. */
export interface UpstreamDispatcher {
  dispatch(opts: UpstreamDispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
  close(): Promise<void>;
  destroy(): Promise<void>;
}
