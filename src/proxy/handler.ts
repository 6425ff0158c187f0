/**
 * The entry of the data path: one plain request in, a route, a service, an `Exchange`.
 * Everything per request is synchronous up to the dispatch.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { rewritePath } from '../../routing/route-table.js';
import type { RouteConfig } from '../../routing/types.js';
import { CHALLENGE_PREFIX, challengeAnswer, type AcmeStorage } from '../acme/storage.js';
import type { EdgeHooks } from './edge-hooks.js';
import { NodeDownstream, type Downstream, type RequestHead } from './downstream.js';
import { isClosing } from './connection-state.js';
import { Exchange } from './exchange.js';
import { clientAddress, NO_EDITS, upstreamRequestHeaders } from './headers.js';
import { escapedSlashProblem, normalizePath, removeDotSegments } from './path.js';
import { sendError } from './respond.js';
import type { ProxyState } from './types.js';
import { requestProblem, type HeadLimits } from './validate.js';

/** The client's address with an IPv4-mapped IPv6 prefix removed (`::ffff:1.2.3.4` -> `1.2.3.4`). */
export function peerAddress(req: RequestHead): string {
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
export interface ListenerInfo extends HeadLimits {
  /** `http` or `https` */
  readonly proto: string;
  /** answers given before routing (ACME challenges); absent: none */
  readonly hooks?: EdgeHooks | undefined;
}

/**
 * Validates and routes one request node:http parsed, then starts its exchange. Malformed
 * requests that Node's strict parser let through (duplicate Host, a target that is not
 * origin-form) get 400 here, before any backend is involved.
 */
export function handleRequest(state: ProxyState, listener: ListenerInfo, req: IncomingMessage, res: ServerResponse): void {
  // parsed after a refusal on the same connection (pipelined): never answered, never forwarded
  if (isClosing(req.socket)) return;
  const problem = requestProblem(req, listener);
  if (problem !== 0) {
    sendError(res, problem, undefined, true);
    logUnproxied(state, req, problem, null, null);
    return;
  }
  const chunked = req.headers['transfer-encoding'] !== undefined && !req.readableEnded;
  proxyRequest(state, listener, req, new NodeDownstream(req, res), chunked ? req : undefined);
}

/**
 * Routes one valid request head and starts its exchange, answering 404/503 itself.
 * @param waitFor a request whose chunked body must show its first chunk before any backend is
 *   involved (see `afterFirstChunk`); undefined for everything else
 */
export function proxyRequest(state: ProxyState, listener: ListenerInfo, req: RequestHead, down: Downstream, waitFor?: IncomingMessage): void {
  const url = req.url ?? '';
  if (state.acmeChallenges !== undefined && listener.proto === 'http' && url.startsWith(CHALLENGE_PREFIX) && answerChallenge(state, state.acmeChallenges, req, down)) return;
  const method = req.method ?? 'GET';
  const routed = routeRequest(state, req);
  // Logged before answering: once the answer is written the fast path lets go of the head.
  if (typeof routed === 'number') {
    logUnproxied(state, req, routed, null, null);
    // a path refused as ambiguous (400): the connection is not kept, as for other 400s
    down.sendError(routed, undefined, routed === 400);
    return;
  }
  const { route, path, upstreamPath } = routed;
  state.routeHits[route.index] = (state.routeHits[route.index] ?? 0) + 1;
  const svc = state.services.get(route.service);
  if (svc === undefined) {
    logUnproxied(state, req, 503, route.index, route.service);
    down.sendError(503, route.service, false);
    return;
  }
  const { peer, trusted, clientIp } = clientOf(state, req);
  const edits = state.edits[route.index] ?? NO_EDITS;
  const { headers, requestId, teTrailers } = upstreamRequestHeaders(req.rawHeaders, { peer, trusted, proto: listener.proto }, edits);
  const ctx = { clientIp, path, headers: req.headers };
  // every field is known good when the client's came through a strict parser and the route's are checked
  const base = { method: method as Dispatcher.HttpMethod, path: upstreamPath, headers, teTrailers, headersChecked: down.strictHeaders === true && edits.checked };
  const buffering = svc.config.requestBuffering;
  if (buffering !== undefined && down.bufferBody !== undefined) {
    // The exchange exists while the body is read (a client leaving meanwhile is logged by it);
    // `then` always runs later, from a stream event, so `ex` is assigned by then.
    let ex: Exchange | undefined;
    if (down.bufferBody(buffering.maxBytes, () => ex?.start())) {
      ex = new Exchange(down, state, svc, ctx, base, route.index, requestId);
      return;
    }
  }
  if (waitFor !== undefined) {
    // the closure only on this rare path: most requests have no chunked body
    afterFirstChunk(waitFor, () => new Exchange(down, state, svc, ctx, base, route.index, requestId).start());
  } else {
    new Exchange(down, state, svc, ctx, base, route.index, requestId).start();
  }
}

/** A request's route, the path it was matched on, and the target sent upstream. */
export interface Routed {
  readonly route: RouteConfig;
  /** the normalised path (no query) */
  readonly path: string;
  /** normalised path, `strip_prefix` applied, query as sent */
  readonly upstreamPath: string;
}

/**
 * Normalises the request path (see `path.ts`) and finds its route.
 * @returns the route, or the status to answer: 400 (a path refused), 404 (no route)
 */
export function routeRequest(state: ProxyState, req: RequestHead): Routed | 400 | 404 {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  const raw = q === -1 ? url : url.slice(0, q);
  const norm = normalizePath(raw, state.mergeSlashes);
  if (norm === undefined) return 400;
  const path = norm.path;
  const route = state.routes.match(req.method ?? 'GET', hostWithoutPort(req.headers.host), path, req.headers);
  if (route === undefined) return 404;
  if (norm.escapedSlash && escapedSlashProblem(route)) return 400;
  const target = path === raw ? url : q === -1 ? path : path + url.slice(q);
  if (route.stripPrefix === undefined) return { route, path, upstreamPath: target };
  // stripping may expose a dot-segment (`/v1../x` minus `/v1`): normalised again, or refused
  const stripped = rewritePath(route, target);
  const sq = stripped.indexOf('?');
  const strippedPath = removeDotSegments(sq === -1 ? stripped : stripped.slice(0, sq));
  if (strippedPath === undefined) return 400;
  return { route, path, upstreamPath: sq === -1 ? strippedPath : strippedPath + stripped.slice(sq) };
}

/**
 * Answers a pending ACME http-01 challenge (`GET /.well-known/acme-challenge/<token>` on a plain
 * listener) with its key authorization, before routing. False when the token is not pending:
 * the request is then routed like any other (a backend may run its own ACME client).
 */
function answerChallenge(state: ProxyState, storage: AcmeStorage, req: RequestHead, down: Downstream): boolean {
  const answer = challengeAnswer(storage, req.url ?? '');
  if (answer === undefined) return false;
  const body = Buffer.from(answer);
  logUnproxied(state, req, 200, null, null);
  down.writeHead(200, undefined, ['content-type', 'text/plain', 'content-length', String(body.length)]);
  if (req.method !== 'HEAD') down.write(body);
  down.end();
  return true;
}

/** True when `addr` is in `trusted_proxies`. */
function isTrusted(state: ProxyState, addr: string): boolean {
  if (!state.anyTrusted) return false;
  return state.trusted.check(addr, addr.includes(':') ? 'ipv6' : 'ipv4');
}

/** Who sent a request, as plain requests and upgrades both need it. */
export interface ClientOf {
  /** the TCP peer */
  readonly peer: string;
  /** the peer is in `trusted_proxies` */
  readonly trusted: boolean;
  /**
   * The real client, used by `hash: ip` and the access log: the peer, or (behind a trusted
   * proxy) the nearest address in X-Forwarded-For that is not itself a trusted proxy.
   */
  readonly clientIp: string;
}

/** Works out the peer, whether it is trusted, and the real client address of `req`. */
export function clientOf(state: ProxyState, req: RequestHead): ClientOf {
  const peer = peerAddress(req);
  const trusted = isTrusted(state, peer);
  const clientIp = trusted ? clientAddress(peer, req.rawHeaders, (a) => isTrusted(state, a)) : peer;
  return { peer, trusted, clientIp };
}

/**
 * Runs `start` once the parser has accepted the first chunk of a chunked body (or its end).
 * Node hands over the request as soon as its head parses, but chunk framing is checked only as
 * the body arrives: waiting for the first chunk means a request whose body framing is broken
 * from the start (an invalid chunk size) is answered 400 with no byte sent to any backend. The
 * chunk stays buffered in `req` for the exchange to read; nothing is added to latency, since
 * the backend could not have been sent the body any earlier.
 */
function afterFirstChunk(req: IncomingMessage, start: () => void): void {
  const ready = (): void => {
    cleanup();
    // The parser may refuse the bytes right after that chunk, from the same read; Node reports
    // that (clientError: 400, connection ended) after 'readable', so look one turn later.
    setImmediate(() => {
      if (!req.socket.writableEnded && !req.socket.destroyed) start();
    });
  };
  const gone = (): void => cleanup();
  const cleanup = (): void => {
    req.off('readable', ready);
    req.off('error', gone);
    req.off('close', gone);
  };
  req.on('readable', ready);
  req.on('error', gone);
  req.on('close', gone);
}

/**
 * The access log line of a request drover answered itself before any backend was involved (no
 * route, malformed, unknown service): the access log has one line per request, these included.
 */
function logUnproxied(state: ProxyState, req: RequestHead, status: number, route: number | null, service: string | null): void {
  const log = state.accessLog;
  if (log === undefined) return;
  const id = req.headers['x-request-id'];
  log({
    requestId: typeof id === 'string' ? id : '',
    client: peerAddress(req),
    method: req.method ?? '',
    host: req.headers.host ?? '',
    path: req.url ?? '',
    route,
    service,
    backend: null,
    status,
    duration: 0,
    bytesIn: 0,
    bytesOut: 0,
    retries: 0,
    protocol: req.httpVersion === undefined ? undefined : `HTTP/${req.httpVersion}`,
  });
}
