/**
 * The one small interface every balancing policy implements. A policy is rebuilt whenever its
 * pool's candidate set or a candidate's effective weight changes, so that `pick` stays
 * synchronous and cheap: no allocation, no sorting, no I/O per request.
 */
import type { Backend } from './backend.js';
import type { BalancerName, Clock, HashKeySpec, PickContext, RandomSource } from './types.js';

export interface Policy {
  /**
   * Precomputes whatever the policy needs from the current candidates (those that may receive
   * new requests, already filtered for health, draining and panic mode). The array is owned by
   * the pool and replaced, never mutated, on the next change.
   */
  rebuild(candidates: readonly Backend[]): void;
  /**
   * Chooses a backend for one request, or `undefined` when every candidate is excluded or there
   * are none. `exclude` holds the backends a retry must avoid.
   */
  pick(ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined;
}

export interface PolicyOptions {
  /** randomness in [0, 1): `Math.random` in production, seeded in tests */
  readonly random: RandomSource;
  /** only for `hash`: where the key comes from (default `ip`) */
  readonly hashKey?: HashKeySpec | undefined;
  /** ms clock for policies that decay over time (`ewma`); default `Date.now` */
  readonly clock?: Clock | undefined;
}

/** A named policy constructor; all of them are registered in `POLICIES` (routing/policies.ts). */
export interface PolicyDefinition {
  readonly name: BalancerName;
  /** one line for `--help`, docs and the schema */
  readonly description: string;
  create(options: PolicyOptions): Policy;
}
