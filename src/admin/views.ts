/**
 * Conversions from internal state to the admin API's JSON views that the runtime and the cluster
 * primary share: route table rows and active check results.
 */
import type { LastCheck } from '../../health/state.js';
import type { RouteConfig } from '../../routing/types.js';
import type { CheckView, RouteView } from './model.js';
import { redactHeader } from '../config/redact.js';


/** One active check result as JSON (`at` as ISO 8601). */
export function checkView(c: LastCheck): CheckView {
  return { at: new Date(c.at).toISOString(), ok: c.ok, detail: c.detail };
}

/** The route table in match order, with each route's hits (`hits[index]`, 0 when missing). */
export function routeViews(routes: readonly RouteConfig[], hits: ArrayLike<number>): RouteView[] {
  return [...routes]
    .sort((a, b) => a.index - b.index)
    .map((r) => {
      const match: RouteView['match'] = {};
      if (r.match.host !== undefined) match.host = r.match.host;
      if (r.match.pathPrefix !== undefined) match.path_prefix = r.match.pathPrefix;
      if (r.match.path !== undefined) match.path = r.match.path;
      if (r.match.method !== undefined) match.method = r.match.method;
      if (r.match.headers.length > 0) match.headers = Object.fromEntries(r.match.headers.map((h) => [h.name, redactHeader(h.name, h.value)]));
      const view: RouteView = { index: r.index, match, service: r.service, hits: hits[r.index] ?? 0 };
      if (r.stripPrefix !== undefined) view.strip_prefix = r.stripPrefix;
      return view;
    });
}
