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
import type { HeaderEdits } from './headers.js';

/** Why an attempt to a backend failed, as counted in `drover_upstream_errors_total{kind}`. */
export type FailureKind = 'connect' | 'timeout' | 'reset' | 'status';

/** The result of one attempt to one backend, reported to passive health checks. */
export type AttemptOutcome = { readonly ok: true; readonly status: number } | { readonly ok: false; readonly kind: FailureKind; readonly status?: number; readonly detail: string };

/** Hot-path counters of one service (pre-bound metric children). */
export interface ServiceCounters {
  observeDuration(seconds: number): void;
  retry(): void;
  /** a request answered without any backend (503, or 502/504 after every backend failed) */
  request(code: number): void;
}

/** Hot-path counters of one backend (pre-bound metric children). */
export interface BackendCounters {
  request(code: number): void;
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
}

/** One entry of the access log; built only when the access log is on. */
export interface AccessLogEntry {
  readonly requestId: string;
  readonly client: string;
  readonly method: string;
  readonly host: string;
  readonly path: string;
  readonly route: number | null;
  readonly service: string | null;
  readonly backend: string | null;
  readonly status: number;
  /** ms */
  readonly duration: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly retries: number;
  /** `HTTP/1.1` (default when absent) or `HTTP/2.0` */
  readonly protocol?: string | undefined;
  readonly error?: string | undefined;
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
  /** undefined when `access_log: off` */
  readonly accessLog: ((entry: AccessLogEntry) => void) | undefined;
}
