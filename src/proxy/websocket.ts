/**
 * WebSocket (and any HTTP/1.1 Upgrade) pass-through. The backend is chosen by the same route
 * and pick as a plain request; after the backend's `101` the two sockets are piped together and
 * drover only watches for either side closing or failing. A backend that refuses the upgrade
 * has its answer relayed as is. The open tunnel counts as one in-flight request on its backend,
 * so drain and shutdown wait for it. Every upgrade request gets one access log line when it is
 * over: status 101 with the bytes relayed each way once the tunnel closes, or the answer given
 * instead (the backend's refusal, 4xx/5xx from drover, 499 when the client left first).
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { Backend } from '../../routing/backend.js';
import { NO_EDITS, upstreamRequestHeaders } from './headers.js';
import { upstreamTlsOptions } from './upstream-tls.js';
import { requestProblem } from './validate.js';
import { isClosing } from './connection-state.js';
import { clientOf, routeRequest, type ListenerInfo } from './handler.js';
import { errorBody, writeRawError } from './respond.js';
import type { AccessLogEntry, ProxyState, ServiceRuntime } from './types.js';

const REASONS: Readonly<Record<number, string>> = { 400: 'Bad Request', 414: 'URI Too Long', 431: 'Request Header Fields Too Large', 501: 'Not Implemented', 404: 'Not Found', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

/**
 * One listener's open tunnels. Their sockets left node:http at the upgrade, so closing the server
 * does not wait for them: shutdown waits here (`whenEmpty`) and destroys what is left after the
 * grace period (`destroyAll`).
 */
export class Tunnels {
  private readonly open = new Set<Duplex>();
  private waiters: (() => void)[] = [];

  add(client: Duplex): void {
    this.open.add(client);
  }

  delete(client: Duplex): void {
    if (!this.open.delete(client) || this.open.size > 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once no tunnel is open (at once when none is). */
  whenEmpty(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Destroys every open tunnel's client side (which closes its backend side too). */
  destroyAll(): void {
    for (const t of this.open) t.destroy();
  }
}

function refuse(socket: Duplex, status: number, service?: string, name?: string): void {
  writeRawError(socket as import('node:net').Socket, status, REASONS[status] ?? 'Error', errorBody(status, service, name));
}

/** What the access log line of one upgrade request needs, filled in as it goes. */
class UpgradeRecord {
  private readonly startedAt = performance.now();
  private written = false;
  requestId = '';
  route: number | null = null;
  service: string | null = null;
  backend: string | null = null;
  /** tunnel bytes from the client to the backend */
  bytesIn = 0;
  /** bytes to the client after the response head */
  bytesOut = 0;

  constructor(
    private readonly state: ProxyState,
    private readonly req: IncomingMessage,
    private readonly clientIp: string,
  ) {
    const id = req.headers['x-request-id'];
    if (typeof id === 'string') this.requestId = id;
  }

  /** Writes the line once; later calls do nothing. */
  finish(status: number, error?: string): void {
    if (this.written) return;
    this.written = true;
    const log = this.state.accessLog;
    if (log === undefined) return;
    const entry: AccessLogEntry = {
      requestId: this.requestId,
      client: this.clientIp,
      method: this.req.method ?? '',
      host: this.req.headers.host ?? '',
      path: this.req.url ?? '',
      route: this.route,
      service: this.service,
      backend: this.backend,
      status,
      duration: Math.round((performance.now() - this.startedAt) * 1e3) / 1e3,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      retries: 0,
      error,
    };
    log(entry);
  }
}

/** Upgrade protocols tunnelled on a route that lists none (h2c and others are smuggling vectors). */
const DEFAULT_UPGRADES: readonly string[] = ['websocket'];

/** A Sec-WebSocket-Key: base64 of 16 bytes (RFC 6455 section 4.1). */
const WS_KEY = /^[A-Za-z0-9+/]{22}==$/;

/**
 * The protocol to tunnel (lower-cased), or 400: the `Upgrade` value must be one protocol from
 * the route's `upgrades` list, and a WebSocket handshake must carry a valid
 * `Sec-WebSocket-Key` and `Sec-WebSocket-Version: 13`. A tunnel bypasses routing and header
 * rules for everything after it, so only what the route allows is opened (h2c smuggling).
 */
function upgradeProblem(req: IncomingMessage, allowed: readonly string[]): string | 400 {
  const protocol = (req.headers.upgrade ?? '').trim().toLowerCase();
  if (protocol === '' || protocol.includes(',') || !allowed.includes(protocol)) return 400;
  if (protocol === 'websocket') {
    const key = req.headers['sec-websocket-key'];
    const version = req.headers['sec-websocket-version'];
    if (typeof key !== 'string' || !WS_KEY.test(key.trim()) || version?.trim() !== '13') return 400;
  }
  return protocol;
}

/** Handles the server's `upgrade` event. */
export function handleUpgrade(state: ProxyState, listener: ListenerInfo, req: IncomingMessage, socket: Duplex, head: Buffer, tunnels: Tunnels): void {
  socket.on('error', () => socket.destroy());
  // pipelined after a refusal on this connection: the refusal's end closes it, nothing is sent on
  if (isClosing(socket as import('node:net').Socket)) return;
  // The listener's send timeout is for HTTP exchanges; a tunnel may be quiet for hours.
  (socket as import('node:net').Socket).setTimeout(0);
  const { peer, trusted, clientIp } = clientOf(state, req);
  const record = new UpgradeRecord(state, req, clientIp);
  const problem = requestProblem(req, listener);
  if (problem !== 0) {
    refuse(socket, problem);
    record.finish(problem);
    return;
  }
  const method = req.method ?? 'GET';
  const routed = routeRequest(state, req);
  if (typeof routed === 'number') {
    refuse(socket, routed);
    record.finish(routed);
    return;
  }
  const { route, path, upstreamPath } = routed;
  state.routeHits[route.index] = (state.routeHits[route.index] ?? 0) + 1;
  const protocol = upgradeProblem(req, route.upgrades ?? DEFAULT_UPGRADES);
  if (typeof protocol === 'number') {
    refuse(socket, protocol);
    record.route = route.index;
    record.service = route.service;
    record.finish(protocol, 'upgrade refused');
    return;
  }
  record.route = route.index;
  record.service = route.service;
  const svc = state.services.get(route.service);
  const backend = svc?.pool.pick({ clientIp, path, headers: req.headers });
  if (svc === undefined || backend === undefined) {
    // upgrades do not queue: with every backend at max_conns they are refused at once
    const name = svc?.pool.saturated() === true ? 'backend_saturated' : undefined;
    refuse(socket, 503, route.service, name);
    record.finish(503, svc === undefined ? undefined : (name ?? 'no_available_backend'));
    return;
  }
  record.backend = backend.id;
  const { headers, requestId } = upstreamRequestHeaders(req.rawHeaders, { peer, trusted, proto: listener.proto }, state.edits[route.index] ?? NO_EDITS);
  record.requestId = requestId;
  // Connection and Upgrade are hop-by-hop, but for an upgrade they are the point: put them back.
  headers.push('connection', 'upgrade', 'upgrade', protocol);
  const target = new URL(backend.url);
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    // h2c: an HTTP/1.1 Upgrade cannot be sent to an HTTP/2-only backend (RFC 8441 is not spoken upstream)
    refuse(socket, 502, route.service);
    record.finish(502, 'upgrade to an h2c backend');
    return;
  }
  const secure = target.protocol === 'https:';
  tunnel(svc, backend, socket, head, record, secure, tunnels, {
    ...(secure ? upstreamTlsOptions(svc.config.tls) : {}),
    host: target.hostname.startsWith('[') ? target.hostname.slice(1, -1) : target.hostname,
    port: Number(target.port || (target.protocol === 'https:' ? 443 : 80)),
    method,
    path: upstreamPath,
    headers,
    timeout: svc.config.timeouts.connect,
  });
}

function tunnel(
  svc: ServiceRuntime,
  backend: Backend,
  client: Duplex,
  head: Buffer,
  record: UpgradeRecord,
  secure: boolean,
  tunnels: Tunnels,
  options: https.RequestOptions & { headers: string[] },
): void {
  svc.acquire(backend);
  backend.requests++;
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    svc.release(backend);
  };
  const upstream = (secure ? https : http).request({ ...options, agent: false, setHost: false });
  upstream.setTimeout(svc.config.timeouts.responseHeaders);
  upstream.on('timeout', () => upstream.destroy(Object.assign(new Error('upgrade timed out'), { code: 'ETIMEDOUT' })));
  upstream.on('error', (err: Error & { code?: string }) => {
    answered = true;
    release();
    const kind = err.code === 'ECONNREFUSED' ? 'connect' : err.code === 'ETIMEDOUT' ? 'timeout' : 'reset';
    svc.backendCounters(backend).upstreamError(kind);
    svc.report(backend, { ok: false, kind, detail: `${kind} ${err.code ?? err.message}` });
    if (client.destroyed) {
      record.finish(499);
      return;
    }
    const status = kind === 'timeout' ? 504 : 502;
    refuse(client, status, svc.name);
    record.finish(status, `${kind} ${err.code ?? err.message}`);
  });
  // set once the backend answered (101 or a refusal) or failed: from then on that path logs
  let answered = false;
  client.on('close', () => {
    if (!released) upstream.destroy();
    if (!answered) record.finish(499); // the client left before any answer
  });
  upstream.on('response', (res: IncomingMessage) => {
    // The backend refused the upgrade: relay its answer and close.
    answered = true;
    release();
    svc.backendCounters(backend).request(res.statusCode ?? 502);
    let headText = `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n`;
    for (let i = 0; i < res.rawHeaders.length; i += 2) {
      const name = res.rawHeaders[i] as string;
      const lower = name.toLowerCase();
      if (lower === 'connection' || lower === 'keep-alive' || lower === 'transfer-encoding') continue;
      headText += `${name}: ${res.rawHeaders[i + 1] as string}\r\n`;
    }
    client.write(`${headText}Connection: close\r\n\r\n`);
    const status = res.statusCode ?? 502;
    res.on('data', (d: Buffer) => (record.bytesOut += d.length));
    res.on('end', () => record.finish(status));
    res.on('error', () => {
      record.finish(status, 'reset while relaying the refusal');
      client.destroy();
    });
    client.on('close', () => record.finish(status)); // the client may not wait for the end
    res.pipe(client);
  });
  upstream.on('upgrade', (res: IncomingMessage, upSocket: Duplex, upHead: Buffer) => {
    answered = true;
    upstream.setTimeout(0);
    svc.backendCounters(backend).request(101);
    svc.report(backend, { ok: true, status: 101 });
    let headText = `HTTP/1.1 ${res.statusCode ?? 101} ${res.statusMessage ?? 'Switching Protocols'}\r\n`;
    for (let i = 0; i < res.rawHeaders.length; i += 2) headText += `${res.rawHeaders[i] as string}: ${res.rawHeaders[i + 1] as string}\r\n`;
    if (client.destroyed) {
      upSocket.destroy();
      release();
      record.finish(499);
      return;
    }
    client.write(`${headText}\r\n`);
    if (upHead.length > 0) client.write(upHead);
    if (head.length > 0) upSocket.write(head);
    record.bytesOut += upHead.length;
    record.bytesIn += head.length;
    tunnels.add(client);
    const close = (): void => {
      tunnels.delete(client);
      release();
      upSocket.destroy();
      client.destroy();
      record.finish(101);
    };
    // counted beside the pipes: an extra 'data' listener does not change the flow
    upSocket.on('data', (d: Buffer) => (record.bytesOut += d.length));
    client.on('data', (d: Buffer) => (record.bytesIn += d.length));
    // The client side is half-open capable (Node's HTTP server allows it): when either side
    // ends, end both, or a tunnel whose peer closed would linger until shutdown.
    const finish = (): void => {
      upSocket.end();
      (client as import('node:net').Socket).end();
    };
    upSocket.on('end', finish);
    client.on('end', finish);
    upSocket.on('error', close);
    client.on('error', close);
    upSocket.on('close', close);
    client.on('close', close);
    upSocket.pipe(client);
    client.pipe(upSocket);
  });
  upstream.end();
}
