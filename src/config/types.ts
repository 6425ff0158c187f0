/**
 * The resolved configuration: what `loadConfig` returns after parse -> defaults -> validate ->
 * freeze. Every duration is in milliseconds, every default is filled in, every relative path is
 * already resolved against the config file's directory. The YAML names (snake_case) are in
 * README "Configuration"; this is their in-memory form (camelCase).
 */
import type { BalancerName, HashKeySpec, RouteConfig, HeaderMatch } from '../../routing/types.js';
import type { ServiceHealthConfig } from '../../health/types.js';
import type { CertificateFiles } from '../tls/cert-files.js';

export type { BalancerName, HashKeySpec, RouteConfig, HeaderMatch, CertificateFiles };

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string | undefined;
}


/** `listen[].tls`, resolved (the `{cert, key}` shorthand becomes a one-item `certificates`). */
export interface ListenerTlsConfig {
  /** in config order; the first is the default when no name matches the client's SNI */
  readonly certificates: readonly CertificateFiles[];
  /** default TLSv1.2 */
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** ALPN protocol ids offered, in order of preference; default [h2, http/1.1] */
  readonly alpn: readonly ('h2' | 'http/1.1')[];
  /** absolute path of the CA bundle client certificates must chain to (mutual TLS) */
  readonly clientCa?: string | undefined;
}

/**
 * Limits on one listener's client connections (`limits:` merged with `listen[].limits:`).
 * Node's own defaults (60 s for the head, 5 min for the request, no cap on connections, no idle
 * timeout) are too lax for an edge proxy.
 */
export interface ListenerLimits {
  /** bytes of request line + headers; larger: 431. Default 16384 */
  readonly maxHeaderBytes: number;
  /** header fields in one request; more: 431. Default 100 */
  readonly maxHeaders: number;
  /** bytes of the request target; longer: 414. Default 8192 */
  readonly maxUrlBytes: number;
  /** ms to receive the whole request head; slower: 408. Default 10000 */
  readonly headersTimeout: number;
  /** ms to receive the whole request, body included; slower: 408. Default 300000 */
  readonly requestTimeout: number;
  /** ms a client may take no byte of a pending response before it is disconnected (slow readers). Default 60000 */
  readonly sendTimeout: number;
  /** ms an idle keep-alive client connection is kept. Default 60000 */
  readonly keepAliveTimeout: number;
  /** concurrent client connections; more are closed on accept. Default 10000 */
  readonly maxConnections: number;
}

export interface ListenConfig {
  /** `host:port`; port 0 picks a free port. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly tls?: ListenerTlsConfig | undefined;
  /** every request answered 308 to https://<host><path>, nothing proxied; default false */
  readonly redirectHttps: boolean;
  /** ms; > 0 adds Strict-Transport-Security max-age (in seconds) to this listener's answers; default 0 */
  readonly hsts: number;
  /** top-level `limits` with this listener's overrides applied */
  readonly limits: ListenerLimits;
}

export interface TimeoutsConfig {
  /** ms, default 2000 */
  readonly connect: number;
  /** ms, default 30000 */
  readonly responseHeaders: number;
  /** ms, default 60000: longest silence while streaming a body either way */
  readonly idle: number;
}

/** `services.<name>.tls`: how drover checks `https://` backends. */
export interface UpstreamTlsConfig {
  /** absolute path of a PEM CA bundle; undefined: Node's bundled CAs */
  readonly ca?: string | undefined;
  /**
   * The CA bundle's contents, read when the config was loaded (a reload reads it again); empty
   * when it could not be read, which trusts nothing (fails closed). Undefined without `ca`.
   */
  readonly caPem?: readonly string[] | undefined;
  /** SNI and the name checked in the certificate; undefined: the backend URL's host */
  readonly serverName?: string | undefined;
  /** default true; false accepts any certificate */
  readonly verify: boolean;
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
  /** passive checks are always present (on by default); active ones only when configured */
  readonly health: ServiceHealthConfig;
  /** ms, default 0 (off) */
  readonly slowStart: number;
  /** percent 0-100, default 50 */
  readonly panicThreshold: number;
  /** default 2 */
  readonly retries: number;
  readonly timeouts: TimeoutsConfig;
  /** TLS to `https://` backends; undefined: verify against the system CAs, SNI = URL host */
  readonly tls?: UpstreamTlsConfig | undefined;
  /** most requests in flight per backend (per process); 0 = unlimited (default) */
  readonly maxConns: number;
  /** where requests wait while every candidate is at `maxConns` */
  readonly queue: {
    /** waiting requests at most; 0 = no queue (default) */
    readonly size: number;
    /** ms, default 1000 */
    readonly timeout: number;
  };
  /** prefer backends of the zone in `DROVER_ZONE` (default false) */
  readonly zoneAware: boolean;
  /**
   * `request_buffering`: request bodies of HTTP/1.1 clients up to `maxBytes` bytes are read whole
   * before a backend is picked (src/proxy/buffering.ts); undefined (default): bodies stream
   */
  readonly requestBuffering?: { readonly maxBytes: number } | undefined;
  readonly backends: readonly StaticBackendConfig[];
  /** members from DNS (`services.<name>.dns`), resolved by the DNS registry */
  readonly dns?: ServiceDnsConfig | undefined;
}

/** `services.<name>.dns`: an SRV name, or an A/AAAA name with the port every address serves on. */
export type ServiceDnsConfig = { readonly srv: string } | { readonly a: string; readonly port: number };

/** `registry.zookeeper`. */
export interface ZooKeeperRegistryConfig {
  /** `host:port,host:port` as node-zookeeper-client takes it */
  readonly servers: string;
  /** default `/drover/services`, never ends with `/` (except the root `/`) */
  readonly prefix: string;
  /** default drover */
  readonly layout: 'drover' | 'nerve';
  /** ms asked for as session timeout; default 10000 (the server clamps it to 2-20 ticks) */
  readonly sessionTimeout: number;
}

/** `registry.dns`. */
export interface DnsRegistryConfig {
  /** `IP:port` (IPv6 as `[v6]:port`); empty: the system's resolvers at start */
  readonly servers: readonly string[];
  /** ms, re-resolve at least this often; default 5000 */
  readonly refresh: number;
  /** ms, per-query timeout before a retry; default 1000 */
  readonly timeout: number;
}

export interface EtcdRegistryConfig {
  readonly endpoints: readonly string[];
  /** default `/drover/services/`, always ends with `/` */
  readonly prefix: string;
  /** default drover */
  readonly layout: 'drover' | 'traefik' | 'skydns';
  /** shared config (`routes`, `services/<name>`) under this prefix; always ends with `/`; unset: none */
  readonly configPrefix?: string | undefined;
  /**
   * share in [0, 1]: one revision (or re-list) removing more than this share of the members is
   * held back (src/registry/removal-guard.ts); unset: off
   */
  readonly minMembersRatio?: number | undefined;
  readonly usernameEnv?: string | undefined;
  readonly passwordEnv?: string | undefined;
  readonly tls?: { readonly ca?: string | undefined; readonly cert?: string | undefined; readonly key?: string | undefined } | undefined;
}

/** `acme:`: certificates obtained and renewed with ACME http-01. */
export interface AcmeConfig {
  /** the directory URL */
  readonly directory: string;
  readonly email?: string | undefined;
  /** names on the one certificate; the first names it (its storage subdirectory) */
  readonly domains: readonly string[];
  /** absolute path of the storage directory (account key, certificates, pending challenges) */
  readonly storage: string;
  /** absolute path of a PEM CA trusted for the directory; undefined: the system CAs */
  readonly ca?: string | undefined;
}

export interface DroverConfig {
  /** absolute path of the file this came from (empty for an in-memory config) */
  readonly file: string;
  readonly listen: readonly ListenConfig[];
  /** CIDRs (or single addresses) */
  readonly trustedProxies: readonly string[];
  /** runs of `/` in request paths are merged before routing; default true */
  readonly mergeSlashes: boolean;
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
    /** lower-cased Host values the admin API answers; undefined: loopback names and its address */
    readonly allowedHosts?: readonly string[] | undefined;
  };
  readonly registry: {
    /** absolute path */
    readonly file?: string | undefined;
    readonly etcd?: EtcdRegistryConfig | undefined;
    readonly zookeeper?: ZooKeeperRegistryConfig | undefined;
    /** set when `registry.dns` is written (a service's `dns:` without it uses the defaults) */
    readonly dns?: DnsRegistryConfig | undefined;
  };
  /** undefined: no ACME */
  readonly acme?: AcmeConfig | undefined;
  /** services in file order (then shared ones from etcd) */
  readonly services: readonly ServiceConfig[];
  readonly routes: readonly RouteConfig[];
  /** where routes and services came from; absent: all from the file (no shared config) */
  readonly origin?: ConfigOrigin | undefined;
}

/** Where the config in force came from (shared config in etcd, README "Shared config in etcd"). */
export interface ConfigOrigin {
  /** source of each route, by position in `routes` */
  readonly routes: readonly ('file' | 'etcd')[];
  /** source of each service, by name */
  readonly services: Readonly<Record<string, 'file' | 'etcd'>>;
  /** the shared config in force: its prefix and the etcd revision it was read at */
  readonly etcd?: { readonly prefix: string; readonly revision: string } | undefined;
}
