/**
 * What the admin API reads and acts on. The runtime implements `AdminModel`; the admin server
 * (`./server.ts`) only serialises it, so the HTTP layer never reaches into pools or health state.
 * Field names are snake_case where they are JSON that README "Admin API" fixes.
 */

/** A backend's state as users see it (README "Admin API"). */
export type BackendState = 'unknown' | 'healthy' | 'unhealthy' | 'ejected' | 'draining';

/** Every `BackendState`, in the order the dashboard and `drover status` sort by severity. */
export const BACKEND_STATES: readonly BackendState[] = ['unhealthy', 'ejected', 'draining', 'unknown', 'healthy'];

/** One backend, as `GET /api/services` returns it. */
export interface BackendView {
  /** unique within its service */
  id: string;
  /** origin, `http://host:port` */
  url: string;
  /** configured weight (> 0) */
  weight: number;
  /** `static`, `file`, `etcd`, ... */
  source: string;
  state: BackendState;
  /** requests in flight now */
  inflight: number;
  /** requests sent since the backend joined (a counter: the dashboard derives rates from it) */
  requests: number;
  /** failed requests since the backend joined (a counter) */
  failures: number;
  /** ISO 8601 time of the last state change; null when it never changed */
  last_change: string | null;
  /** why the last change happened (`active check: 3 failures`, `admin drain`, ...); `` when none */
  reason: string;
  /**
   * The peak-EWMA latency to response headers (what `balancer: ewma` weighs), ms with 0.1 ms
   * precision, decayed to now; null before the first answer was observed.
   */
  latency_ewma_ms: number | null;
  /** the service's `max_conns` (per process); 0 = unlimited */
  max_conns: number;
  zone?: string;
  /** the weight the balancer uses now: below `weight` while slow start ramps it up */
  effective_weight?: number;
  /** the latest active check, when the service has active checks and one has run */
  last_check?: CheckView;
}

/** One active health check result. */
export interface CheckView {
  /** ISO 8601 */
  at: string;
  ok: boolean;
  /** e.g. `status 200`, `connect ECONNREFUSED`, `timeout after 1000ms` */
  detail: string;
}

/** One route of the route table, in match order (`GET /api/routes`). */
export interface RouteView {
  /** 0-based position: first match wins */
  index: number;
  match: { host?: string; path_prefix?: string; path?: string; method?: string; headers?: Record<string, string> };
  service: string;
  strip_prefix?: string;
  /** requests this route matched (in this process, kept across reloads while the route is unchanged) */
  hits: number;
  /** where it came from: the local `file` or the shared config in `etcd` */
  source?: 'file' | 'etcd';
}

/** One service and its pool. */
export interface ServiceView {
  name: string;
  /** balancing policy name, e.g. `round_robin` */
  balancer: string;
  /** true while fewer than `panic_threshold`% of backends are healthy and all non-draining ones are used */
  panic?: boolean;
  /** requests waiting for a slot below `max_conns` now; only for a service with `max_conns` */
  queue_depth?: number;
  /** where its settings came from: the local `file`, the shared config in `etcd`, or defaults for a `registry`-only service */
  config_source?: 'file' | 'etcd' | 'registry';
  backends: BackendView[];
}

/** Where the config in force came from, for the dashboard. */
export interface ConfigSourcesView {
  /** the local config file (absolute path) */
  file: string;
  /** the shared config in etcd in force, with the revision it was read at; null when none */
  etcd: { prefix: string; revision: string } | null;
  /** how many routes came from each */
  routes: { file: number; etcd: number };
}

/** One event of the events list: a backend state change, a registry change, or a config reload. */
export interface EventView {
  /** `health` (state change; also when absent), `registry` (a backend joined or left), `reload` */
  kind?: 'health' | 'registry' | 'reload';
  /** ISO 8601 */
  at: string;
  service: string;
  backend: string;
  /** previous state */
  from: string;
  /** new state */
  to: string;
  reason: string;
}

/** The runtime side of the admin API. Every method is synchronous and must not throw. */
export interface AdminModel {
  /** Every service, in config order, with its current backends. */
  services(): ServiceView[];
  /**
   * Drains (`true`) or undrains (`false`) one backend: it keeps its in-flight requests and gets
   * no new ones. Returns the backend's new view, or `undefined` when the service or id is
   * unknown (the server answers 404).
   */
  setDraining(service: string, id: string, draining: boolean): BackendView | undefined;
  /** `/readyz`: true once config is loaded and every registry has synced once. */
  ready(): boolean;
  /** Why `ready()` is false, one line each: the body of a 503 `/readyz` (optional; default `not ready`). */
  notReady?(): readonly string[];
  /** For `GET /api/config`: the effective config, secrets already removed (the server redacts again). */
  effectiveConfig(): unknown;
  /** Recent events, oldest first, newest last: at most 200 health transitions, plus (the runtime) 100 registry changes and 50 reloads. */
  events(): EventView[];
  /** For `GET /api/routes`: the route table in match order with hit counts (optional: 404 without it). */
  routes?(): RouteView[];
  /**
   * For `GET /api/services/{service}/checks`: each backend's latest active checks, oldest first
   * (at most 10 each); undefined for an unknown service (optional: 404 without it).
   */
  checks?(service: string): { id: string; checks: CheckView[] }[] | undefined;
  /** Where the config in force came from (optional: models without one show nothing). */
  configSources?(): ConfigSourcesView;
}
