/**
 * Request -> route matching. Routes are tried in file order and the first whose every condition
 * holds wins (Traefik/NGINX users expect order to be explicit, not scored). Conditions:
 * - `host`: exact, or `*.suffix`, which matches any deeper name (`a.suffix`, `a.b.suffix`) but
 *   not `suffix` itself. Compared against the lower-cased Host without its port.
 * - `path_prefix`: a plain string prefix, as NGINX `location /v1` and Traefik `PathPrefix`
 *   do: `/v1` matches `/v1`, `/v1/x` and also `/v1beta`. Write `/v1/` to require a segment.
 * - `path`: exact equality. Both path conditions compare the raw (not percent-decoded) path
 *   without the query string.
 * - `method`: exact, upper-case.
 * - `headers`: every listed header must be present with exactly that value (names are
 *   case-insensitive, values case-sensitive); for a repeated header any one value may match.
 * All lower-/upper-casing happens once here, so a request costs string comparisons only.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMatch, RouteConfig } from './types.js';

interface CompiledRoute {
  readonly route: RouteConfig;
  readonly hostExact: string | undefined;
  /** `.suffix` (with the dot) for `*.suffix` */
  readonly hostSuffix: string | undefined;
  readonly pathPrefix: string | undefined;
  readonly path: string | undefined;
  readonly method: string | undefined;
  readonly headers: readonly HeaderMatch[];
}

/** The compiled `routes:` of one config; immutable, swapped whole on reload. */
export class RouteTable {
  private readonly compiled: readonly CompiledRoute[];

  /** @param routes in any order; matched by ascending `index` (file order) */
  constructor(routes: readonly RouteConfig[]) {
    this.compiled = [...routes].sort((a, b) => a.index - b.index).map(compile);
  }

  /** Number of routes. */
  get size(): number {
    return this.compiled.length;
  }

  /**
   * The first route that matches, or undefined (the proxy answers 404 `no_route`).
   * @param method request method, upper-case as Node gives it
   * @param host lower-case, port stripped
   * @param path raw path without the query string
   */
  match(method: string, host: string, path: string, headers: IncomingHttpHeaders): RouteConfig | undefined {
    const list = this.compiled;
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      if (r.hostExact !== undefined && r.hostExact !== host) continue;
      if (r.hostSuffix !== undefined && !(host.length > r.hostSuffix.length && host.endsWith(r.hostSuffix))) continue;
      if (r.path !== undefined && r.path !== path) continue;
      if (r.pathPrefix !== undefined && !path.startsWith(r.pathPrefix)) continue;
      if (r.method !== undefined && r.method !== method) continue;
      if (r.headers.length > 0 && !headersMatch(r.headers, headers)) continue;
      return r.route;
    }
    return undefined;
  }
}

function compile(route: RouteConfig): CompiledRoute {
  const m = route.match;
  const host = m.host?.toLowerCase();
  const wildcard = host !== undefined && host.startsWith('*.');
  return {
    route,
    hostExact: wildcard ? undefined : host,
    hostSuffix: wildcard ? host.slice(1) : undefined,
    pathPrefix: m.pathPrefix,
    path: m.path,
    method: m.method?.toUpperCase(),
    headers: m.headers.map((h) => ({ name: h.name.toLowerCase(), value: h.value })),
  };
}

function headersMatch(wanted: readonly HeaderMatch[], headers: IncomingHttpHeaders): boolean {
  for (let i = 0; i < wanted.length; i++) {
    const w = wanted[i]!;
    const got = headers[w.name];
    if (got === undefined) return false;
    if (typeof got === 'string') {
      if (got !== w.value) return false;
    } else if (!got.includes(w.value)) {
      return false;
    }
  }
  return true;
}

/**
 * The upstream request target for `rawUrl` (path + query, as received): `strip_prefix` removed
 * from the path when the path starts with it (a plain string prefix, like Traefik's
 * StripPrefix), the query kept untouched. The result always starts with `/`: stripping `/v1`
 * from `/v1` or `/v1?x=1` gives `/` or `/?x=1`, and from `/v1beta` gives `/beta`.
 */
export function rewritePath(route: RouteConfig, rawUrl: string): string {
  const prefix = route.stripPrefix;
  let url = rawUrl;
  if (prefix !== undefined && prefix !== '' && url.startsWith(prefix)) {
    const q = url.indexOf('?');
    // The prefix must lie within the path, not run into the query.
    if (q === -1 || q >= prefix.length) url = url.slice(prefix.length);
  }
  return url.charCodeAt(0) === 0x2f ? url : '/' + url;
}
