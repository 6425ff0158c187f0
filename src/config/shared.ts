/**
 * Shared config in etcd (README "Shared config in etcd"): the keys under `registry.etcd.config_prefix` ->
 * validated routes and services (`parseSharedConfig`), and the merge of those after the local
 * file's own (`mergeSharedConfig`). Pure functions: the etcd follower feeds snapshots in, the
 * start command applies the merged config through the same reload path as a file change.
 *
 * Layout under the prefix:
 *   <prefix>routes           the YAML (or JSON) list a file holds at `routes:`
 *   <prefix>services/<name>  one service's YAML/JSON, as a file's `services.<name>`
 */
import { ErrorCodes, type ConfigIssue } from '../core/errors.js';
import { fail, ok, type Result } from '../core/result.js';
import { parseConfigFragments, type ConfigFragment, type ServiceFragment } from './load.js';
import type { ConfigOrigin, DroverConfig, RouteConfig, ServiceConfig } from './types.js';

/** Key (after the prefix) of the routes list. */
export const ROUTES_KEY = 'routes';
/** Key prefix (after the prefix) of one service's settings. */
export const SERVICES_DIR = 'services/';
/** Default `config_prefix` of the `drover config` commands. */
export const DEFAULT_CONFIG_PREFIX = '/drover/config/';

/** Every key and value under the config prefix at one etcd revision. */
export interface SharedSnapshot {
  /** ends with `/` */
  readonly prefix: string;
  /** the etcd revision this state was read at (decimal) */
  readonly revision: string;
  /** full key -> value */
  readonly values: ReadonlyMap<string, string>;
}

/** A valid shared config: what a snapshot yields once it passed the schema. */
export interface SharedConfig {
  readonly prefix: string;
  readonly revision: string;
  readonly routes: readonly RouteConfig[];
  readonly services: readonly ServiceConfig[];
}

/** Outcome of `parseSharedConfig`: a config, or every issue of the snapshot. */
export type SharedParse = Result<SharedConfig, readonly ConfigIssue[]>;

/**
 * Validates one snapshot as a whole: every key under the prefix must be `routes` or
 * `services/<name>`, and every value must pass the file's schema. One bad value refuses the
 * snapshot (a change applies whole or not at all). Never throws.
 */
export function parseSharedConfig(snapshot: SharedSnapshot): SharedParse {
  const issues: ConfigIssue[] = [];
  let routes: ConfigFragment | undefined;
  const services: ServiceFragment[] = [];
  const keys = [...snapshot.values.keys()].sort();
  for (const key of keys) {
    const text = snapshot.values.get(key) ?? '';
    const rel = key.startsWith(snapshot.prefix) ? key.slice(snapshot.prefix.length) : key;
    if (rel === ROUTES_KEY) {
      routes = { key, text };
    } else if (rel.startsWith(SERVICES_DIR) && rel.length > SERVICES_DIR.length && !rel.slice(SERVICES_DIR.length).includes('/')) {
      services.push({ key, text, name: rel.slice(SERVICES_DIR.length) });
    } else {
      issues.push({
        file: key,
        key,
        line: 0,
        col: 0,
        path: '',
        code: ErrorCodes.CONFIG_INVALID,
        message: `unknown key under ${snapshot.prefix}: expected ${snapshot.prefix}${ROUTES_KEY} or ${snapshot.prefix}${SERVICES_DIR}<name>`,
      });
    }
  }
  const parsed = parseConfigFragments(routes, services);
  issues.push(...parsed.issues);
  if (issues.length > 0) return fail(issues);
  return ok(Object.freeze({ prefix: snapshot.prefix, revision: snapshot.revision, routes: parsed.routes, services: parsed.services }));
}

/** A merged config, and the services defined both locally and in etcd (the file's won). */
export interface MergeResult {
  readonly config: DroverConfig;
  readonly shadowed: readonly string[];
}

/**
 * The local config with the shared one merged after it: the file's routes first, then etcd's
 * (re-indexed after them, so the first match still wins in that order); the file's services,
 * then etcd's that the file does not define (a service in both: the file wins). `config.origin`
 * records where each route and service came from. `shared` undefined: the local config with an
 * origin saying so.
 */
export function mergeSharedConfig(local: DroverConfig, shared: SharedConfig | undefined): MergeResult {
  const localNames = new Set(local.services.map((s) => s.name));
  const extraRoutes = shared?.routes ?? [];
  const extraServices = (shared?.services ?? []).filter((s) => !localNames.has(s.name));
  const shadowed = (shared?.services ?? []).filter((s) => localNames.has(s.name)).map((s) => s.name);
  const origin: ConfigOrigin = {
    routes: [...local.routes.map(() => 'file' as const), ...extraRoutes.map(() => 'etcd' as const)],
    services: Object.fromEntries([...local.services.map((s) => [s.name, 'file'] as const), ...extraServices.map((s) => [s.name, 'etcd'] as const)]),
    ...(shared === undefined ? {} : { etcd: { prefix: shared.prefix, revision: shared.revision } }),
  };
  const config: DroverConfig = {
    ...local,
    routes: [...local.routes, ...extraRoutes.map((r, i) => ({ ...r, index: local.routes.length + i }))],
    services: [...local.services, ...extraServices],
    origin,
  };
  return { config: deepFreeze(config), shadowed };
}

/**
 * The config as `GET /api/config` shows it (before redaction): each route and service carries
 * `source` (`file` or `etcd`), and `sources` says which file and which etcd revision are in force.
 */
export function describeConfig(config: DroverConfig): Record<string, unknown> {
  const { origin, ...rest } = config;
  return {
    ...rest,
    sources: { file: config.file, etcd: origin?.etcd ?? null },
    routes: config.routes.map((r, i) => ({ ...r, source: origin?.routes[i] ?? 'file' })),
    services: config.services.map((s) => ({ ...s, source: origin?.services[s.name] ?? 'file' })),
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
