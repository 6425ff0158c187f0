/**
 * Types shared by the route table, the pools and the balancing policies. `routing/` never imports
 * `src/` or `health/`: health reaches a pool only through `ServicePool.setAvailable` (which
 * carries drains too: health folds them in), called by whoever wires the two together.
 */
import type { IncomingHttpHeaders } from 'node:http';

/**
 * What health says a backend may receive (the same union as `Availability` in `health/types.ts`,
 * declared here because `routing/` does not import `health/`):
 * - `available`: a candidate;
 * - `failed`: unhealthy or ejected: a candidate only in panic mode, and counted by it;
 * - `pending`: waiting for its first active check: never a candidate, not counted by panic mode;
 * - `draining`: drained (registry or admin): never a candidate, not counted by panic mode.
 */
export type Availability = 'available' | 'failed' | 'pending' | 'draining';

/** Balancing policy names, as written in YAML (`balancer:`). */
export type BalancerName = 'round_robin' | 'least_conn' | 'p2c' | 'random' | 'hash' | 'ewma';

/** Where a consistent-hash key comes from (`hash_key: ip | header:NAME | cookie:NAME | path`). */
export type HashKeySpec =
  | { readonly kind: 'ip' }
  | { readonly kind: 'path' }
  | { readonly kind: 'header'; readonly name: string } // name lower-cased
  | { readonly kind: 'cookie'; readonly name: string };

/**
 * One member of a service as a registry (static config, file, etcd) describes it. Pools diff
 * lists of these: same `id` and same fields = untouched.
 */
export interface MemberSpec {
  /** unique within the service */
  readonly id: string;
  /** normalised origin, `http://host:port` (no path) */
  readonly url: string;
  /** > 0; default 1 */
  readonly weight: number;
  readonly zone?: string | undefined;
  /**
   * The registry's drain flag (true: keep in-flight requests, send no new ones). Health reads it
   * and folds it into its `Availability`; the pool never does.
   */
  readonly draining: boolean;
  /** `static` | `file` | `etcd` (or another registry's name) */
  readonly source: string;
  /**
   * Priority level, lower first (SRV priority); default 0. Only the lowest level with an
   * available member serves; higher levels are fallbacks (`ServicePool`).
   */
  readonly priority?: number | undefined;
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/** What a policy may look at to pick a backend for one request. */
export interface PickContext {
  /** the real client address (never a spoofed X-Forwarded-For) */
  readonly clientIp: string;
  /** request path without the query string */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
}

/** A source of randomness in [0, 1); injected so unit tests are deterministic. */
export type RandomSource = () => number;

/** A clock in milliseconds; injected so unit tests are deterministic. */
export type Clock = () => number;

/** One route of the config (`routes:`), resolved. Defined here so `routing/` needs nothing from `src/`. */
export interface HeaderMatch {
  /** lower-cased header name */
  readonly name: string;
  readonly value: string;
}

export interface RouteConfig {
  /** position in the file, 0-based: first match wins */
  readonly index: number;
  readonly match: {
    /** lower-cased; exact (`api.example.com`) or `*.suffix` */
    readonly host?: string | undefined;
    readonly pathPrefix?: string | undefined;
    readonly path?: string | undefined;
    /** upper-cased */
    readonly method?: string | undefined;
    readonly headers: readonly HeaderMatch[];
  };
  readonly service: string;
  readonly stripPrefix?: string | undefined;
  /** lower-cased `Upgrade` protocols tunnelled on this route; default `['websocket']` */
  readonly upgrades?: readonly string[] | undefined;
  readonly requestHeaders: {
    /** names as written; matched case-insensitively */
    readonly set: readonly { readonly name: string; readonly value: string }[];
    /** lower-cased */
    readonly remove: readonly string[];
  };
}

