/**
 * One proxied request: picks a backend, dispatches through undici's handler API (streaming both
 * ways with backpressure, nothing buffered), retries on another backend when that is safe, and
 * answers the client with README "Answers to clients"'s statuses when it is not.
 *
 * One object per request holds all state, so the handler callbacks are methods, not closures.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Backend } from '../../routing/backend.js';
import type { PickContext } from '../../routing/types.js';
import type { LazyBody } from './body.js';
import type { Downstream, ExchangeSink } from './downstream.js';
import { downstreamResponseHeaders, responseCoding, responseTrailers } from './headers.js';
import type { Waiter } from './queue.js';
import type { AccessLogEntry, FailureKind, ProxyState, ServiceRuntime } from './types.js';
import { upstreamOf } from './upstream.js';
import type { UpstreamController, UpstreamDispatchOptions } from './upstream-types.js';
import { firstVerdictWithin } from '../../health/active.js';

/** Most replays of one request after stale keep-alive connections (see `isStaleSocket`). */
const MAX_STALE_REPLAYS = 4;

const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** How an upstream error is classified. */
interface Classified {
  readonly kind: FailureKind;
  /** false: the request certainly never reached the backend (safe to retry anything) */
  readonly reached: boolean;
  /** status to answer if no retry happens */
  readonly status: 502 | 504;
}

/** Maps undici and socket errors to a failure kind and the answer owed to the client. */
export function classifyUpstreamError(err: Error): Classified {
  const code = (err as { code?: string }).code ?? '';
  switch (code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'UND_ERR_DESTROYED':
    case 'UND_ERR_CLOSED':
      return { kind: 'connect', reached: false, status: 502 };
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { kind: 'timeout', reached: false, status: 504 };
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return { kind: 'timeout', reached: true, status: 504 };
    default:
      // TLS to an https:// backend failed (certificate not trusted, wrong name, expired, no
      // common protocol): the request was never sent, so it is as safe to retry as a refusal
      if (TLS_FAILURE.test(code)) return { kind: 'connect', reached: false, status: 502 };
      return { kind: 'reset', reached: true, status: 502 };
  }
}

/** OpenSSL's verification codes and Node's TLS error codes. */
const TLS_FAILURE = /CERT|^UNABLE_TO_|^ERR_TLS_|^ERR_SSL_|^EPROTO$/;

/** Dispatch options shared by every attempt of one request. */
interface DispatchBase {
  readonly method: Dispatcher.HttpMethod;
  readonly path: string;
  readonly headers: string[];
  /** the client sent `TE: trailers`: HTTP/2 upstreams are sent `te: trailers` */
  readonly teTrailers?: boolean | undefined;
  /** every header name and value is known good (see `Downstream.strictHeaders`) */
  readonly headersChecked?: boolean | undefined;
}

/** `base.headers` plus `te: trailers`, for HTTP/2 upstreams of clients that accept trailers. */
function withTeTrailers(headers: string[]): string[] {
  return [...headers, 'te', 'trailers'];
}

export class Exchange implements Dispatcher.DispatchHandler, ExchangeSink, Waiter {
  private readonly down: Downstream;
  private readonly state: ProxyState;
  private readonly svc: ServiceRuntime;
  readonly ctx: PickContext;
  private readonly base: DispatchBase;
  private readonly startedAt: number;
  private readonly routeIndex: number;
  private readonly requestId: string;
  private readonly clientIp: string;
  /** the client's Host header and request target, for the access log */
  private readonly host: string;
  private readonly url: string;
  private readonly withBody: boolean;
  private backend: Backend | undefined;
  private body: LazyBody | undefined;
  private controller: Dispatcher.DispatchController | undefined;
  /** backends a retry must avoid (read by the wait queue too) */
  tried: Set<Backend> | undefined;
  /** true while waiting in the service's queue for a slot below `max_conns` */
  private queued = false;
  /** performance.now() when the current attempt was dispatched; NaN once its latency is recorded */
  private attemptAt = NaN;
  private retries = 0;
  /** replays after stale keep-alive connections so far (at most MAX_STALE_REPLAYS) */
  private staleReplays = 0;
  private responseStarted = false;
  /** set while waiting for a first verdict (see `attempt`); calling it cancels the wait */
  private cancelWait: (() => void) | undefined;
  private waited = false;
  private finished = false;
  private clientGone = false;
  private bytesOut = 0;
  private bytesIn = 0;
  private status = 0;
  private error: string | undefined;

  constructor(
    down: Downstream,
    state: ProxyState,
    svc: ServiceRuntime,
    ctx: PickContext,
    base: DispatchBase,
    routeIndex: number,
    requestId: string,
  ) {
    this.down = down;
    this.state = state;
    this.svc = svc;
    this.ctx = ctx;
    this.base = base;
    this.routeIndex = routeIndex;
    this.requestId = requestId;
    this.clientIp = ctx.clientIp;
    this.host = down.host ?? '';
    this.url = down.url;
    this.startedAt = performance.now();
    this.withBody = down.hasBody;
    down.attach(this);
    svc.earnRetry();
  }

  /**
   * Starts the first attempt. With `request_buffering` this comes once the body was read, so
   * a client that left meanwhile (`clientClosed`: logged, finished) starts nothing.
   */
  start(): void {
    if (this.finished) return;
    // counted now: a downstream may let go of its whole body once the response is written
    this.bytesIn = this.down.wholeBody?.length ?? 0;
    this.attempt();
  }

  /**
   * One attempt: to `same` (a replay that keeps its slot), or to whatever the service admits
   * (a backend with its slot taken, or a place in the queue, or a refusal).
   */
  private attempt(same?: Backend): void {
    if (same !== undefined) {
      this.dispatchTo(same);
      return;
    }
    this.backend = undefined;
    this.controller = undefined;
    const admission = this.svc.admit(this);
    if (typeof admission === 'object') {
      this.dispatchTo(admission);
    } else if (admission === 'queued') {
      // admitted() may already have run (a slot was free behind other waiters)
      if (this.backend === undefined && !this.finished) this.queued = true;
    } else if (this.tried !== undefined) {
      // a retry that cannot happen: answer with the last failure's status
      this.fail(this.status === 504 ? 504 : 502, undefined, this.error ?? 'bad_gateway');
    } else if (admission === 'saturated') {
      this.fail(503, undefined, 'backend_saturated', 'backend_saturated');
    } else if (!this.waitForVerdict()) {
      this.fail(503, undefined, 'no_available_backend');
    }
  }

  /**
   * Nothing available, but some backends wait for their first check (drover just started, or
   * they just joined): wait for that verdict (bounded by the first probe's jitter and timeout),
   * then attempt again, instead of failing the request or sending it to a backend nobody
   * checked. Once per request; false when there is nothing to wait for.
   */
  private waitForVerdict(): boolean {
    const active = this.svc.config.health.active;
    if (this.waited || active === undefined || this.svc.pool.awaitingVerdict === 0) return false;
    this.waited = true;
    this.cancelWait = this.svc.pool.whenDecided(firstVerdictWithin(active), () => {
      this.cancelWait = undefined;
      if (!this.finished) this.attempt();
    });
    return true;
  }

  /** The queue found a slot (already taken) on `backend`. */
  admitted(backend: Backend): void {
    this.queued = false;
    this.dispatchTo(backend);
  }

  /** Waited `queue.timeout` for a slot. */
  timedOut(): void {
    this.queued = false;
    if (this.tried !== undefined) this.fail(this.status === 504 ? 504 : 502, undefined, this.error ?? 'bad_gateway');
    else this.fail(503, undefined, 'queue_timeout', 'queue_timeout');
  }

  /** Sends the request to `backend`, whose slot this exchange holds. */
  private dispatchTo(backend: Backend): void {
    this.backend = backend;
    backend.requests++;
    this.attemptAt = performance.now();
    this.svc.attemptSent(backend);
    const up = upstreamOf(backend, this.svc.config.timeouts, this.svc.config.tls);
    let body: LazyBody | Buffer | null = null;
    if (this.withBody) {
      const whole = this.down.wholeBody;
      if (whole !== undefined) {
        body = whole;
      } else {
        this.body = this.down.openBody();
        body = this.body ?? null;
      }
    }
    try {
      const opts: UpstreamDispatchOptions = {
        method: this.base.method,
        path: this.base.path,
        headers: up.h2 && this.base.teTrailers === true ? withTeTrailers(this.base.headers) : this.base.headers,
        body,
        headersTimeout: this.svc.config.timeouts.responseHeaders,
        bodyTimeout: this.svc.config.timeouts.idle,
        headersChecked: this.base.headersChecked === true,
      };
      up.pool.dispatch(opts, this);
    } catch (err) {
      // undici validates synchronously (e.g. a header value it refuses): the request is bad
      this.settleAttempt('none');
      this.backend = undefined;
      this.svc.release(backend);
      this.fail(400, undefined, `rejected: ${(err as Error).message}`);
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, _headers: unknown, statusMessage?: string): void {
    // 1xx informational (RFC 9110 15.2): swallowed, the final answer follows; Node answers a
    // client's 100-continue itself, and an unsolicited 100 is no failure
    if (statusCode < 200) return;
    const raw = (controller.rawHeaders ?? []) as (Buffer | string)[];
    const coding = responseCoding(raw);
    if (coding !== undefined) {
      // a coding drover cannot pass on intact (its chunked framing is dropped): 502, as NGINX
      this.error = `unsupported transfer-coding: ${coding}`;
      controller.abort(Object.assign(new Error(this.error), { code: 'DROVER_BAD_CODING' }));
      return;
    }
    const headers = downstreamResponseHeaders(raw);
    if (this.clientGone) {
      controller.abort(new Error('client closed the connection'));
      return;
    }
    try {
      this.down.writeHead(statusCode, statusMessage, headers, (controller as UpstreamController).strictHeaders === true);
    } catch (err) {
      // a header Node refuses to write (invalid characters from the backend): nothing was
      // written, so the client still gets a clean 502
      this.error = `invalid response header: ${(err as Error).message}`;
      controller.abort(err as Error);
      return;
    }
    this.responseStarted = true;
    this.settleAttempt(statusCode < 500 ? 'ok' : 'failed');
    this.status = statusCode;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytesOut += chunk.length;
    if (!this.down.write(chunk)) {
      controller.pause();
      this.down.waitDrain();
    }
  }

  /** The client's socket drained: let undici read from the backend again. */
  resumeUpstream(): void {
    this.controller?.resume();
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders | undefined): void {
    if (!this.responseStarted) {
      // an upstream that ends without a final head has a bug: the client must still get an
      // answer (a 502, or a retry), never a response that never starts
      this.onResponseError(controller, Object.assign(new Error('response ended without a head'), { code: 'DROVER_NO_HEAD' }));
      return;
    }
    // gRPC's status travels in trailers; a downstream that cannot carry them drops them
    if (trailers !== undefined && this.down.sendTrailers !== undefined) {
      const t = responseTrailers(trailers);
      if (t !== undefined) this.down.sendTrailers(t);
    }
    this.down.end();
    const backend = this.backend;
    if (backend !== undefined) {
      const failed = this.status >= 500;
      if (failed) {
        backend.failures++;
        this.svc.backendCounters(backend).upstreamError('status');
        this.svc.report(backend, { ok: false, kind: 'status', status: this.status, detail: `status ${this.status}` });
      } else {
        this.svc.report(backend, { ok: true, status: this.status });
      }
    }
    this.done();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const backend = this.backend;
    if (this.clientGone || this.body?.clientFailed === true) {
      // the client left first (or sent a body the parser refused): not the backend's fault
      this.clientGone = true;
      this.done();
      return;
    }
    if (backend !== undefined && this.isStaleSocket(err)) {
      // A kept-alive connection the backend closed just as this request went out on it: not
      // the backend's fault and nothing was answered. Replayed to the same backend, uncounted.
      this.staleReplays++;
      this.settleAttempt('none'); // not a sample: the backend never saw this request
      this.body = undefined;
      this.svc.counters.retry();
      this.attempt(backend);
      return;
    }
    const c = classifyUpstreamError(err);
    const detail = `${c.kind} ${(err as { code?: string }).code ?? err.message}`;
    this.error = detail;
    // failed before the first body byte while the head is still buffered: take the head back,
    // so the client gets a 502 (and the log says so) instead of an empty close
    if (this.responseStarted && this.bytesOut === 0 && this.down.retractHead()) this.responseStarted = false;
    if (backend !== undefined) {
      backend.failures++;
      this.svc.backendCounters(backend).upstreamError(c.kind);
      this.svc.report(backend, { ok: false, kind: c.kind, detail });
      this.settleAttempt('failed');
    }
    if (this.responseStarted) {
      // Headers are out: the only honest signal left is a truncated response.
      this.down.destroy(err);
      this.done();
      return;
    }
    if (this.mayRetry(c) && backend !== undefined) {
      this.backend = undefined;
      this.svc.release(backend);
      this.body?.detach();
      this.bytesIn += this.body?.bytes ?? 0;
      this.body = undefined;
      (this.tried ??= new Set()).add(backend);
      this.retries++;
      this.svc.counters.retry();
      this.status = c.status;
      this.attempt();
      return;
    }
    this.fail(c.status, backend, detail);
  }

  /**
   * True for an idempotent, body-less request whose reused upstream connection was closed by
   * the backend before any answer (undici's "other side closed" on a socket that had already
   * read earlier responses): the classic keep-alive race, safe to replay. Each replay may land on
   * another idle connection the backend also closed (they tend to expire together), and each
   * such failure removes one from the pool, so replays are few; a small cap bounds them anyway.
   */
  private isStaleSocket(err: Error): boolean {
    if (this.staleReplays >= MAX_STALE_REPLAYS || this.responseStarted || this.withBody || !IDEMPOTENT.has(this.base.method)) return false;
    const e = err as Error & { code?: string; socket?: { bytesRead?: number } };
    return e.code === 'UND_ERR_SOCKET' && (e.message === 'other side closed' || e.message === 'closed') && (e.socket?.bytesRead ?? 0) > 0;
  }

  /**
   * Contract: a request that never reached the backend (connect refused, pool closed) is always
   * retried, up to `retries`; it costs no retry budget, since the failed backend never saw it and
   * the retry adds no load anywhere (the budget exists to keep retries from multiplying an
   * overload). Resets and timeouts are retried only for idempotent, body-less requests, and only
   * within the budget. A body that was sent is never replayed.
   */
  private mayRetry(c: Classified): boolean {
    if (this.retries >= this.svc.config.retries) return false;
    if (!c.reached) return this.body === undefined || !this.body.started;
    if (this.withBody || !IDEMPOTENT.has(this.base.method)) return false;
    return this.svc.takeRetry();
  }

  /** Ends the current attempt's wait for headers, once, telling its backend's latency estimate. */
  private settleAttempt(outcome: 'ok' | 'failed' | 'none'): void {
    const backend = this.backend;
    if (backend === undefined || Number.isNaN(this.attemptAt)) return;
    this.svc.attemptSettled(backend, performance.now() - this.attemptAt, outcome);
    this.attemptAt = NaN;
  }

  /** The client's response closed (finished, or the client went away). */
  clientClosed(): void {
    if (this.finished) return;
    if (!this.down.finished) {
      this.clientGone = true;
      if (this.queued) {
        // out of the queue at once: it never reaches a backend
        this.queued = false;
        this.svc.leaveQueue(this);
      }
      this.cancelWait?.();
      this.cancelWait = undefined;
      this.controller?.abort(new Error('client closed the connection'));
      if (this.controller === undefined && this.backend === undefined) this.done();
    }
  }

  /**
   * Answers the client with an error (README "Answers to clients") and finishes.
   * @param name the body's `error` when it is not the status's usual one (503 `queue_timeout`)
   */
  private fail(status: number, backend: Backend | undefined, error: string, name?: string): void {
    this.status = status;
    this.error = error;
    if (backend === undefined) this.backend = undefined;
    if (!this.clientGone) this.down.sendError(status, this.svc.name, this.withBody, name);
    this.done();
  }

  private done(): void {
    if (this.finished) return;
    this.finished = true;
    const backend = this.backend;
    this.settleAttempt('none'); // still waiting for headers: the client left first
    this.body?.detach();
    this.bytesIn += this.body?.bytes ?? 0;
    const status = this.clientGone && !this.responseStarted ? 499 : this.status;
    const seconds = (performance.now() - this.startedAt) / 1000;
    this.svc.counters.observeDuration(seconds);
    if (backend !== undefined) this.svc.backendCounters(backend).request(status, seconds);
    else this.svc.counters.request(status, seconds);
    const log = this.state.accessLog;
    if (log !== undefined) log(this.entry(status, seconds, backend));
    // last: giving the slot back may start a queued exchange right here
    if (backend !== undefined) this.svc.release(backend);
  }

  private entry(status: number, seconds: number, backend: Backend | undefined): AccessLogEntry {
    return {
      requestId: this.requestId,
      client: this.clientIp,
      method: this.base.method,
      host: this.host,
      path: this.url,
      route: this.routeIndex,
      service: this.svc.name,
      backend: backend?.id ?? null,
      status,
      duration: Math.round(seconds * 1e6) / 1e3,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      retries: this.retries,
      protocol: this.down.protocol,
      error: this.error,
    };
  }
}
