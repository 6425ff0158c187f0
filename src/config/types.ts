/**
 * The resolved configuration: what `loadConfig` returns after parse -> defaults -> validate ->
 * freeze. Every duration is in milliseconds, every default is filled in, every relative path is
 * already resolved against the config file's directory. The YAML names (snake_case) are in
 * `../shared/contract.md` section 2; this is their in-memory form (camelCase).
 */
import type { BalancerName, HashKeySpec, RouteConfig, HeaderMatch } from '../../routing/types.js';

export type { BalancerName, HashKeySpec, RouteConfig, HeaderMatch };

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string | undefined;
}

export interface ListenConfig {
  /** `host:port`; port 0 picks a free port. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly tls?: TlsFiles | undefined;
}

export interface ActiveHealthConfig {
  /** HTTP path to GET; absent when `tcp` is true. */
  readonly path?: string | undefined;
  readonly tcp: boolean;
  /** ms, default 2000 */
  readonly interval: number;
  /** ms, default 1000 */
  readonly timeout: number;
  /** default 2 */
  readonly rise: number;
  /** default 3 */
  readonly fall: number;
  /** inclusive status range, default 200-399 */
  readonly expectStatus: { readonly min: number; readonly max: number };
}

export interface PassiveHealthConfig {
  /** default 5 */
  readonly consecutiveFailures: number;
  /** ms, base ejection time, default 30000 */
  readonly ejection: number;
  /** percent 0-100, default 50 */
  readonly maxEjectedPercent: number;
}

export interface TimeoutsConfig {
  /** ms, default 2000 */
  readonly connect: number;
  /** ms, default 30000 */
  readonly responseHeaders: number;
  /** ms, default 60000: longest silence while streaming a body either way */
  readonly idle: number;
}

export interface StaticBackendConfig {
  /** default: `host:port` of the URL */
  readonly id: string;
  /** normalised origin, e.g. `http://127.0.0.1:9001` */
  readonly url: string;
  /** default 1 */
  readonly weight: number;
  readonly zone?: string | undefined;
  readonly draining: boolean;
}

export interface ServiceConfig {
  readonly name: string;
  /** default round_robin */
  readonly balancer: BalancerName;
  /** only when balancer is hash; default `{kind:'ip'}` for hash */
  readonly hashKey?: HashKeySpec | undefined;
  readonly health: {
    readonly active?: ActiveHealthConfig | undefined;
    /** always present: passive checks are on by default */
    readonly passive: PassiveHealthConfig;
  };
  /** ms, default 0 (off) */
  readonly slowStart: number;
  /** percent 0-100, default 50 */
  readonly panicThreshold: number;
  /** default 2 */
  readonly retries: number;
  readonly timeouts: TimeoutsConfig;
  readonly backends: readonly StaticBackendConfig[];
}

export interface EtcdRegistryConfig {
  readonly endpoints: readonly string[];
  /** default `/drover/services/`, always ends with `/` */
  readonly prefix: string;
  /** default drover */
  readonly layout: 'drover' | 'traefik';
  readonly usernameEnv?: string | undefined;
  readonly passwordEnv?: string | undefined;
  readonly tls?: { readonly ca?: string | undefined; readonly cert?: string | undefined; readonly key?: string | undefined } | undefined;
}

export interface DroverConfig {
  /** absolute path of the file this came from (empty for an in-memory config) */
  readonly file: string;
  readonly listen: readonly ListenConfig[];
  /** CIDRs (or single addresses) */
  readonly trustedProxies: readonly string[];
  /** 'off' | 'stdout' | absolute path */
  readonly accessLog: string;
  /** ms, default 30000 */
  readonly shutdownGrace: number;
  /** 1, N or 'auto' */
  readonly workers: number | 'auto';
  readonly admin: {
    /** default 127.0.0.1:9901 */
    readonly address: string;
    readonly host: string;
    readonly port: number;
    /** default DROVER_ADMIN_TOKEN */
    readonly tokenEnv: string;
  };
  readonly registry: {
    /** absolute path */
    readonly file?: string | undefined;
    readonly etcd?: EtcdRegistryConfig | undefined;
  };
  /** services in file order */
  readonly services: readonly ServiceConfig[];
  readonly routes: readonly RouteConfig[];
}
