/**
 * The admin server's dashboard routes: the page and its static files, and the read-only JSON the
 * page draws from besides `/api/services` and `/api/stream`:
 *
 * - `GET /api/series?service=S&backend=B&since=T`: per-second series (see `src/observability/series/`).
 *   No `service`: every service's own series. `service` alone: that service's. `backend=*`:
 *   each backend of the service. `backend=ID`: that backend. `since` (Unix seconds): only the
 *   seconds after it, so the page fetches the whole 15 minutes once and then only what is new.
 * - `GET /api/routes`: the route table in match order with hit counts.
 * - `GET /api/services/{service}/checks`: each backend's latest active checks.
 *
 * Answers are plain values for the server to write, so this module needs no socket.
 */
import type { SeriesStore, SeriesView } from '../observability/series/store.js';
import { ASSET_PREFIX, DASHBOARD_CSP, dashboardAsset, dashboardPage, type Asset } from './assets.js';
import type { AdminModel } from './model.js';

/** What to write back. */
export interface DashboardAnswer {
  readonly status: number;
  readonly headers: Record<string, string | number>;
  /** undefined for 304 and for HEAD */
  readonly body: string | Buffer | undefined;
}

/** The request as the server already parsed it. */
export interface DashboardRequest {
  readonly method: string;
  /** raw path, without the query */
  readonly path: string;
  /** the query string without `?` ('' when none) */
  readonly query: string;
  readonly ifNoneMatch: string | undefined;
}

const SECURITY_HEADERS = { 'x-content-type-options': 'nosniff' } as const;

/**
 * Answers a dashboard route, or returns undefined when `req` is not one (the server goes on with
 * its other routes). Throws only on a server bug or missing asset files (the server answers 500).
 */
export function dashboardRoute(req: DashboardRequest, model: AdminModel, series: SeriesStore): DashboardAnswer | undefined {
  const { path } = req;
  if (path === '/' || path === '/index.html') return onlyGet(req, () => page(req));
  if (path.startsWith(ASSET_PREFIX)) {
    return onlyGet(req, () => {
      const asset = dashboardAsset(path.slice(ASSET_PREFIX.length));
      return asset === undefined ? json(404, { error: 'not_found' }) : file(req, asset);
    });
  }
  if (path === '/api/series') return onlyGet(req, () => seriesAnswer(new URLSearchParams(req.query), model, series));
  if (path === '/api/routes') {
    return onlyGet(req, () => (model.routes === undefined ? json(404, { error: 'not_found' }) : json(200, { routes: model.routes() })));
  }
  const segments = path.split('/');
  if (segments.length === 5 && segments[1] === 'api' && segments[2] === 'services' && segments[4] === 'checks') {
    return onlyGet(req, () => {
      const service = decode(segments[3] ?? '');
      const checks = service === undefined ? undefined : model.checks?.(service);
      return checks === undefined ? json(404, { error: 'not_found' }) : json(200, { service, backends: checks });
    });
  }
  return undefined;
}

function onlyGet(req: DashboardRequest, serve: () => DashboardAnswer): DashboardAnswer {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return { status: 405, headers: { allow: 'GET, HEAD', 'content-type': 'application/json; charset=utf-8', ...SECURITY_HEADERS }, body: '{"error":"method_not_allowed"}' };
  }
  const answer = serve();
  return req.method === 'HEAD' ? { ...answer, body: undefined } : answer;
}

function json(status: number, value: unknown): DashboardAnswer {
  const body = JSON.stringify(value);
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...SECURITY_HEADERS },
    body,
  };
}

function page(req: DashboardRequest): DashboardAnswer {
  const p = dashboardPage();
  return {
    status: 200,
    headers: {
      'content-type': p.contentType,
      'content-length': p.body.length,
      'cache-control': 'no-store',
      'content-security-policy': DASHBOARD_CSP,
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      ...SECURITY_HEADERS,
    },
    body: req.method === 'HEAD' ? undefined : p.body,
  };
}

function file(req: DashboardRequest, asset: Asset): DashboardAnswer {
  // Revalidated on every load (a drover upgrade changes them), answered 304 when unchanged.
  const headers = { etag: asset.etag, 'cache-control': 'no-cache', 'content-type': asset.contentType, ...SECURITY_HEADERS };
  if (req.ifNoneMatch !== undefined && req.ifNoneMatch.split(',').some((t) => t.trim() === asset.etag)) {
    return { status: 304, headers, body: undefined };
  }
  return { status: 200, headers: { ...headers, 'content-length': asset.body.length }, body: asset.body };
}

function seriesAnswer(q: URLSearchParams, model: AdminModel, series: SeriesStore): DashboardAnswer {
  const sinceRaw = q.get('since');
  const since = sinceRaw === null || sinceRaw === '' ? undefined : Number(sinceRaw);
  if (since !== undefined && !Number.isFinite(since)) return json(400, { error: 'bad_request', detail: 'since: Unix seconds expected' });
  const service = q.get('service');
  const backend = q.get('backend');
  const now = Math.floor(Date.now() / 1000);
  const out: SeriesView[] = [];
  const push = (name: string, id: string | undefined): void => {
    const v = series.read(name, id, since);
    if (v !== undefined) out.push(v);
  };
  // Names are checked against the model: unknown ones get 404, known ones without a series yet
  // (no request so far, or beyond the cap) an empty list.
  const services = model.services();
  if (service === null || service === '') {
    if (backend !== null) return json(400, { error: 'bad_request', detail: 'backend needs service' });
    for (const s of services) push(s.name, undefined); // in /api/services order
  } else {
    const known = services.find((s) => s.name === service);
    if (known === undefined) return json(404, { error: 'not_found' });
    if (backend === null || backend === '') push(service, undefined);
    else if (backend === '*') for (const b of known.backends) push(service, b.id);
    else if (known.backends.some((b) => b.id === backend)) push(service, backend);
    else return json(404, { error: 'not_found' });
  }
  return json(200, { now, step: 1, series: out });
}

function decode(segment: string): string | undefined {
  try {
    const s = decodeURIComponent(segment);
    return s === '' ? undefined : s;
  } catch {
    return undefined;
  }
}
