/**
 * The entry of the data path: one plain request in, a route, a service, an `Exchange`.
 * Everything per request is synchronous up to the dispatch.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { rewritePath } from '../../routing/route-table.js';
import { Exchange } from './exchange.js';
import { hostHeaderCount, upstreamRequestHeaders } from './headers.js';
import { sendError } from './respond.js';
import type { ProxyState } from './types.js';

/** Longest request target accepted, in bytes; longer ones get 414 (NGINX's large buffer is 8 KiB). */
export const MAX_URL_LENGTH = 8192;

/** The client's address with an IPv4-mapped IPv6 prefix removed (`::ffff:1.2.3.4` -> `1.2.3.4`). */
export function peerAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/** `host:port` or `[v6]:port` -> lower-cased host without the port. */
export function hostWithoutPort(host: string | undefined): string {
  if (host === undefined) return '';
  let h = host;
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    h = end === -1 ? h : h.slice(0, end + 1);
  } else {
    const colon = h.indexOf(':');
    if (colon !== -1) h = h.slice(0, colon);
  }
  return h.toLowerCase();
}

/** What the handler needs to know about its listener. */
export interface ListenerInfo {
  /** `http` or `https` */
  readonly proto: string;
}

/**
 * Validates and routes one request, then starts its exchange. Malformed requests that Node's
 * strict parser let through (duplicate Host, a target that is not origin-form) get 400 here,
 * before any backend is involved.
 */
export function handleRequest(state: ProxyState, listener: ListenerInfo, req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '';
  if (url.length > MAX_URL_LENGTH) {
    sendError(res, 414, undefined, true);
    return;
  }
  if (url.charCodeAt(0) !== 47 /* '/' */ || hostHeaderCount(req.rawHeaders) > 1 || (req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && req.headers.host === undefined)) {
    sendError(res, 400, undefined, true);
    return;
  }
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const host = hostWithoutPort(req.headers.host);
  const method = req.method ?? 'GET';
  const route = state.routes.match(method, host, path, req.headers);
  if (route === undefined) {
    sendError(res, 404, undefined);
    return;
  }
  const svc = state.services.get(route.service);
  if (svc === undefined) {
    sendError(res, 503, route.service);
    return;
  }
  const peer = peerAddress(req);
  const trusted = state.trusted.check(peer, peer.includes(':') ? 'ipv6' : 'ipv4');
  const edits = state.edits[route.index];
  const { headers, requestId } = upstreamRequestHeaders(req.rawHeaders, { peer, trusted, proto: listener.proto }, edits ?? { set: [], remove: new Set() });
  const upstreamPath = route.stripPrefix === undefined ? url : rewritePath(route, url);
  const exchange = new Exchange(
    req,
    res,
    state,
    svc,
    { clientIp: peer, path, headers: req.headers },
    { method: method as Dispatcher.HttpMethod, path: upstreamPath, headers },
    route.index,
    requestId,
  );
  exchange.start();
}
