/**
 * Types of the health subsystem. `health/` imports neither `src/` nor `routing/`, so the config
 * shapes below are declared structurally identical to `src/config/types.ts`: the wiring code
 * passes `ServiceConfig['health']` straight in.
 */

/** A backend's health as users see it (admin API `state`, `drover_health_transitions_total{to}`). */
export type HealthState = 'unknown' | 'healthy' | 'unhealthy' | 'ejected' | 'draining';

/** Every state, in a stable order (for metric label pre-registration and docs). */
export const HEALTH_STATES: readonly HealthState[] = ['unknown', 'healthy', 'unhealthy', 'ejected', 'draining'];

/** Active checks of one service (the config loader builds these: `ServiceConfig['health']` is this type). */
export interface ActiveCheckConfig {
  /** HTTP path to GET (e.g. `/healthz`); absent when `tcp` is true */
  readonly path?: string | undefined;
  /** true: a TCP connect is the whole check */
  readonly tcp: boolean;
  /** ms between probe starts of one backend, default 2000; jittered by ±10% */
  readonly interval: number;
  /** ms a probe may take (connect + response headers), default 1000 */
  readonly timeout: number;
  /** consecutive passes to become healthy, default 2 */
  readonly rise: number;
  /** consecutive failures to become unhealthy, default 3 */
  readonly fall: number;
  /** inclusive range of statuses that pass, default 200-399 */
  readonly expectStatus: { readonly min: number; readonly max: number };
  /** TLS client options for `https://` backends (the service's `tls`); absent: Node's defaults */
  readonly tls?: ProbeTls | undefined;
}

/** TLS client options of a probe: a subset of node:tls `ConnectionOptions`, passed in by the wiring. */
export interface ProbeTls {
  /** PEM CA certificates to trust instead of Node's bundled ones */
  readonly ca?: readonly string[] | undefined;
  /** SNI and the name checked in the certificate (default: the URL host) */
  readonly servername?: string | undefined;
  /** false accepts any certificate; default true */
  readonly rejectUnauthorized?: boolean | undefined;
}

/** Passive (outlier) ejection of one service. */
export interface PassiveCheckConfig {
  /** consecutive failed requests that eject a backend, default 5; 0 turns ejection off */
  readonly consecutiveFailures: number;
  /** ms, base ejection time, default 30000; doubles with each repeated ejection (see `ejectionDuration`) */
  readonly ejection: number;
  /** percent 0-100 of a service's backends that may be ejected at once, default 50 */
  readonly maxEjectedPercent: number;
}

/** The health section of one service: `ServiceConfig['health']` in `src/config/types.ts`. */
export interface ServiceHealthConfig {
  /** absent: no active checks (backends are available until passive ejection says otherwise) */
  readonly active?: ActiveCheckConfig | undefined;
  readonly passive: PassiveCheckConfig;
}

/**
 * The outcome of one proxied request, as passive ejection sees it. `status` carries the
 * backend's answer: 5xx counts as a failure, anything below 500 (4xx included) as a success.
 */
export type PassiveOutcome =
  | { readonly kind: 'success' }
  | { readonly kind: 'connect' | 'reset' | 'timeout' }
  | { readonly kind: 'status'; readonly status: number };

/** One real change of a backend's shown state. Never emitted with `from === to`. */
export interface HealthTransition {
  readonly service: string;
  readonly id: string;
  readonly from: HealthState;
  readonly to: HealthState;
  /** human reason, e.g. `3 failed checks: connect ECONNREFUSED` */
  readonly reason: string;
  /** ms timestamp (the `now` given to the input that caused it) */
  readonly at: number;
  /** whether the backend may receive new requests after the change */
  readonly available: boolean;
}

/** Point-in-time view of one backend, for the admin API and `drover status`. */
export interface HealthSnapshot {
  readonly state: HealthState;
  readonly reason: string;
  /** ms timestamp of the last change of `state` (or of when the backend was added) */
  readonly since: number;
  readonly available: boolean;
  /** ejections counted towards the next ejection's length (after decay) */
  readonly ejections: number;
  /** ms timestamp when the current ejection ends; undefined when not ejected */
  readonly ejectedUntil: number | undefined;
}

/**
 * The one method the data path needs from health (like Traefik's `StatusUpdater`): whether a
 * backend may receive new requests. The wiring forwards it to `ServicePool.setAvailable`.
 * Called only when the answer changes, and once when a backend is added (with its initial value).
 */
export interface AvailabilityListener {
  setAvailable(service: string, id: string, available: boolean): void;
}

/** Receives every real state transition: for logs, `drover_health_transitions_total` and the dashboard. */
export interface TransitionListener {
  onTransition(transition: HealthTransition): void;
}

/** A clock in milliseconds (epoch ms in production, so `since` can be shown as a date). */
export type Clock = () => number;

/** A source of randomness in [0, 1); injected so tests are deterministic. */
export type RandomSource = () => number;
