/**
 * What the data path needs from the rest of drover, bundled into one immutable snapshot that a
 * config reload swaps in a single assignment: requests already in flight keep the snapshot they
 * started with, new ones see the new one.
 */
import type { BlockList } from 'node:net';
import type { Backend } from '../../routing/backend.js';
import type { ServicePool } from '../../routing/pool.js';
import type { RouteTable } from '../../routing/route-table.js';
import type { ServiceConfig } from '../config/types.js';
import type { AcmeStorage } from '../acme/storage.js';
import type { HeaderEdits } from './headers.js';
import type { Waiter } from './queue.js';
import type { AccessLogEntry } from '../observability/access-log.js';

/** The access log's entry is the observability layer's; re-exported for the data path. */
export type { AccessLogEntry };

/**
 * Where one attempt goes: a backend (its slot already taken), or why there is none: `queued`
 * (the waiter will be admitted or timed out later), `saturated` (every candidate is at
 * `max_conns` and the queue is off or full), `none` (no candidate at all).
 */
export type Admission = Backend | 'queued' | 'saturated' | 'none';

/** Why an attempt to a backend failed, as counted in `drover_upstream_errors_total{kind}`. */
export type FailureKind = 'connect' | 'timeout' | 'reset' | 'status';

/** The result of one attempt to one backend, reported to passive health checks. */
export type AttemptOutcome = { readonly ok: true; readonly status: number } | { readonly ok: false; readonly kind: FailureKind; readonly status?: number; readonly detail: string };

/** Hot-path counters of one service (pre-bound metric children). */
export interface ServiceCounters {
  observeDuration(seconds: number): void;
  retry(): void;
  /**
   * a request answered without any backend (503, or 502/504 after every backend failed);
   * `seconds`: its total time (feeds the dashboard's series)
   */
  request(code: number, seconds?: number): void;
}

/** Hot-path counters of one backend (pre-bound metric children). */
export interface BackendCounters {
  /** one finished request answered by this backend; `seconds`: its total time (omit: no latency sample) */
  request(code: number, seconds?: number): void;
  upstreamError(kind: FailureKind): void;
}

/** One service as the data path sees it. */
export interface ServiceRuntime {
  readonly name: string;
  readonly config: ServiceConfig;
  readonly pool: ServicePool;
  readonly counters: ServiceCounters;
  /** per-backend counters, cached by the runtime */
  backendCounters(backend: Backend): BackendCounters;
  /** passive health: called once per attempt */
  report(backend: Backend, outcome: AttemptOutcome): void;
  /** retry budget: true if one more retry may be spent now (and spends it) */
  takeRetry(): boolean;
  /** retry budget: one request arrived (earns a fraction of a retry) */
  earnRetry(): void;
  /**
   * Picks a backend for `w` within `max_conns` and takes its slot, or queues `w` (see
   * `Admission`). A queued waiter is later admitted through `w.admitted(backend)`, slot taken.
   */
  admit(w: Waiter): Admission;
  /** Takes a slot on `backend` (in-flight + 1) outside `admit` (upgrades). */
  acquire(backend: Backend): void;
  /** Gives a slot back (in-flight - 1) and offers it to the queue. */
  release(backend: Backend): void;
  /** The waiter's client went away: out of the queue at once (true if it was waiting). */
  leaveQueue(w: Waiter): boolean;
  /** An attempt was sent to `backend`: it waits for response headers (the EWMA's stall signal). */
  attemptSent(backend: Backend): void;
  /**
   * An attempt sent to `backend` got its response headers (`ok`), failed (`failed`: connect
   * error, reset, timeout, 5xx; a penalty sample) or ended without telling anything about the
   * backend (`none`: the client left, a stale connection); `ms` since it was sent.
   */
  attemptSettled(backend: Backend, ms: number, outcome: 'ok' | 'failed' | 'none'): void;
}


/** The immutable snapshot the data path reads. */
export interface ProxyState {
  readonly routes: RouteTable;
  /** `request_headers` edits, by route index */
  readonly edits: readonly HeaderEdits[];
  readonly services: ReadonlyMap<string, ServiceRuntime>;
  /** `trusted_proxies` */
  readonly trusted: BlockList;
  /** false when `trusted_proxies` is empty: the per-request address check is skipped */
  readonly anyTrusted: boolean;
  /** `merge_slashes` */
  readonly mergeSlashes: boolean;
  /** undefined when `access_log: off` */
  readonly accessLog: ((entry: AccessLogEntry) => void) | undefined;
  /**
   * Requests matched per route, by route index (the dashboard's routes view). Carried into the
   * next snapshot for every route that is unchanged at the same position.
   */
  readonly routeHits: Float64Array;
  /** one key per route (its config as JSON), to tell which routes a rebuild kept */
  readonly routeKeys: readonly string[];
  /** `acme.storage`, whose pending http-01 challenges plain listeners answer; undefined without `acme:` */
  readonly acmeChallenges?: AcmeStorage | undefined;
}
