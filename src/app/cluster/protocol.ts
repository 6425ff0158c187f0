/**
 * Messages between the cluster primary and its serving workers (over the cluster IPC channel,
 * `serialization: 'advanced'`, so plain objects, arrays and Maps travel as they are).
 *
 * Primary -> worker: `init` (config and the first snapshot), `snapshot` (pools changed),
 * `config` (a reload), `reopen` (SIGUSR1), `metrics` (a /metrics scrape), `stop` (graceful shutdown).
 * Worker -> primary: `hello` (ready for `init`), `listening`, `stats` (per-backend counter deltas
 * and in-flight counts, queue depths, passive-health outcomes in order, the dashboard's series and
 * route hits), `metrics` (the answer).
 */
import type { DroverConfig } from '../../config/types.js';
import type { Availability, MemberSpec } from '../../../routing/types.js';
import type { PassiveOutcome } from '../../../health/types.js';
import type { SeriesDelta } from '../../observability/series/deltas.js';

/** One service's pool as the primary sees it: members and health's verdict on each. */
export interface ServiceSnapshot {
  readonly name: string;
  /** current members */
  readonly members: readonly MemberSpec[];
  /** health's verdict on each member, drain included, in `members` order */
  readonly availability: readonly Availability[];
}

/** Every pool, pushed whole on each (coalesced) change: a few services of a few backends each. */
export interface PoolsSnapshot {
  /** increases with every snapshot; a worker ignores an older one */
  readonly seq: number;
  readonly services: readonly ServiceSnapshot[];
}

export type PrimaryMessage =
  | { readonly drover: 'init'; readonly config: DroverConfig; readonly snapshot: PoolsSnapshot }
  | { readonly drover: 'snapshot'; readonly snapshot: PoolsSnapshot }
  | { readonly drover: 'config'; readonly config: DroverConfig; readonly snapshot: PoolsSnapshot }
  | { readonly drover: 'reopen' }
  | { readonly drover: 'metrics'; readonly id: number }
  | { readonly drover: 'stop'; readonly graceMs: number };

/** Per-backend counter changes since the worker's previous `stats` message. */
export interface BackendStats {
  readonly service: string;
  readonly id: string;
  /** requests sent since the last message */
  readonly requests: number;
  /** failures since the last message */
  readonly failures: number;
  /** requests in flight now (absolute) */
  readonly inflight: number;
}

/** A service's queue (below `max_conns`) in one worker. */
export interface QueueStats {
  readonly service: string;
  /** requests waiting now */
  readonly depth: number;
}

/** One passive-health outcome, run-length encoded: consecutive successes collapse into one. */
export interface PassiveReport {
  readonly service: string;
  readonly id: string;
  readonly outcome: PassiveOutcome;
}

export type WorkerMessage =
  | { readonly drover: 'hello' }
  | { readonly drover: 'listening'; readonly listen: readonly { host: string; port: number }[] }
  | {
      readonly drover: 'stats';
      readonly backends: readonly BackendStats[];
      readonly passive: readonly PassiveReport[];
      /** the dashboard's series: what was counted since the last message */
      readonly series?: readonly SeriesDelta[];
      /** route hits since the last message, by route index ([] when none) */
      readonly routes?: readonly number[];
      /** requests waiting in each service's queue now (absolute), for services whose depth changed */
      readonly queues?: readonly QueueStats[];
    }
  /** answer to `metrics`: the worker registry's `getMetricsAsJSON()` */
  | { readonly drover: 'metrics'; readonly id: number; readonly metrics: readonly object[] };

/** True for a drover cluster message (node:cluster's own messages share the channel). */
export function isDroverMessage(m: unknown): m is { drover: string } {
  return typeof m === 'object' && m !== null && typeof (m as { drover?: unknown }).drover === 'string';
}
