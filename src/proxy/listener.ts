/**
 * The client-facing HTTP servers: one per `listen` entry. Node's strict parser stays on (never
 * the lenient one): a request it cannot parse is answered 400 (431 for oversized headers) and
 * its connection closed, before routing, so no backend ever sees a byte of it.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type net from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenConfig, ListenerLimits } from '../config/types.js';
import { hostPortText } from '../config/values.js';
import { afterResponses, markClosing, midRequest, noteRequest } from './connection-state.js';
import type { CertificateStore } from '../tls/store.js';
import { answerAtEdge, challengeToken, hstsValue, type ChallengeResponder, type EdgeHooks } from './edge-answers.js';
import { FastFrontEnd } from './fast-path.js';
import type { FastPathStats } from '../observability/fast-path-stats.js';
import { probeFastPath } from './internals.js';
import { createTlsFront, type TlsFront, type TlsObserver } from './tls-front.js';
import { handleRequest, type ListenerInfo } from './handler.js';
import { writeRawError } from './respond.js';
import type { ProxyState } from './types.js';
import { handleUpgrade, Tunnels } from './websocket.js';

/**
 * Connections the kernel may hold completed but not yet accepted, per listener. Node's default
 * (511) overflowed under a burst of new connections (SYN drops seen in the hot-spot bench, and a
 * dropped SYN costs the client a 1 s retransmit); Linux caps it at net.core.somaxconn (4096 here).
 */
const LISTEN_BACKLOG = 4096;

/** A bound listener. */
export interface Listener {
  /** the node:http server (on a TLS listener: the one HTTP/1.1 connections are handed to) */
  readonly server: http.Server;
  /** a TLS listener's certificates (ACME adds its own through `set`); undefined on plain ones */
  readonly certificates: CertificateStore | undefined;
  /** Registers (or with undefined removes) the answerer of ACME http-01 challenges. */
  setChallengeResponder(responder: ChallengeResponder | undefined): void;
  /** the bound address (port resolved when 0 was asked for) */
  readonly host: string;
  readonly port: number;
  /** stops accepting; resolves when every connection has closed (tunnels aside, see `whenDrained`); calls after the first share its promise */
  close(): Promise<void>;
  /** resolves once `close()` has finished and no WebSocket tunnel is open any more */
  whenDrained(): Promise<void>;
  /** idle keep-alive connections are closed now; busy ones after their response */
  closeIdle(): void;
  /** destroys every connection (end of the grace period) */
  destroyAll(): void;
}

function onClientError(err: Error & { code?: string }, socket: Duplex): void {
  const s = socket as Socket & { _httpMessage?: { headersSent?: boolean } | null };
  if (err.code === 'ECONNRESET' || !s.writable) {
    s.destroy();
    return;
  }
  const answer = (): void => {
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      writeRawError(s, 431, 'Request Header Fields Too Large', '{"error":"request_header_fields_too_large"}');
    } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      writeRawError(s, 408, 'Request Timeout', '{"error":"request_timeout"}');
    } else {
      writeRawError(s, 400, 'Bad Request', '{"error":"bad_request"}');
    }
  };
  if (midRequest(s)) {
    // the error is in the body of the request being answered: its response cannot end well
    markClosing(s);
    // once a response has started on this connection, an error answer would corrupt it
    if (s._httpMessage?.headersSent === true) s.destroy();
    else answer();
    return;
  }
  // a later request is bad: the ones before it are answered first, in order, then the error
  afterResponses(s, answer);
}

/**
 * A client connection saw no byte either way for `send_timeout`. It is closed when response bytes
 * are waiting for it (a slow or stuck reader) or when no request is in flight; a connection whose
 * request is waiting on its backend is left alone (the upstream timeouts govern that wait).
 */
function onSocketTimeout(socket: Socket): void {
  const s = socket as Socket & { _httpMessage?: unknown };
  if (socket.writableLength > 0 || s._httpMessage === null || s._httpMessage === undefined) socket.destroy();
}

const OPEN_SET = Symbol('drover.openSockets');
type TrackedSocket = Socket & { [OPEN_SET]?: Set<Socket> };

// Shared by every connection (no closures per socket: an idle connection's memory counts).
function ignoreSocketError(): void {
  // errors end in 'close'; without a listener an 'error' would take the process down
}

function forgetSocket(this: TrackedSocket): void {
  this[OPEN_SET]?.delete(this);
}

/**
 * How often Node checks the header and request timeouts: its default (30 s) would let a
 * slowloris connection outlive a 10 s `headers_timeout` threefold.
 */
function checkingInterval(limits: ListenerLimits): number {
  return Math.min(5_000, Math.max(100, Math.floor(Math.min(limits.headersTimeout, limits.requestTimeout) / 4)));
}

/**
 * Starts one listener reading the current state through `getState` on every request. A TLS
 * listener terminates TLS itself and serves HTTP/1.1 and (by ALPN) HTTP/2 on its port.
 * @param fastPathStats where a plain listener's fast path counts (the metrics' `fastPath`)
 * @param observer handshake and certificate reload reports (TLS listeners only)
 */
export async function startListener(cfg: ListenConfig, getState: () => ProxyState, fastPathStats: FastPathStats, observer: TlsObserver = {}): Promise<Listener> {
  const limits = cfg.limits;
  const hooks: EdgeHooks = { challenge: undefined };
  const info: ListenerInfo = { proto: cfg.tls === undefined ? 'http' : 'https', maxUrlBytes: limits.maxUrlBytes, maxHeaders: limits.maxHeaders, hooks };
  const hsts = hstsValue(cfg.hsts);
  const extra: readonly string[] = hsts === undefined ? [] : ['strict-transport-security', hsts];
  // Node refuses a head timeout longer than the whole-request one; the fast path uses the same
  const headersTimeout = Math.min(limits.headersTimeout, limits.requestTimeout);
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    insecureHTTPParser: false,
    requestTimeout: limits.requestTimeout,
    headersTimeout,
    connectionsCheckingInterval: checkingInterval(limits),
    keepAliveTimeout: limits.keepAliveTimeout,
    joinDuplicateHeaders: false,
    noDelay: true,
  });
  // node:http's connections (the fast path keeps its own until it hands one over)
  const sockets = new Set<Socket>();
  // upgraded connections: node:http lets go of them, this listener still owns them
  const tunnels = new Tunnels();
  // The self-test of the internals runs before any listener serves, whatever its kind: the
  // plain-HTTP upstream connections (H1Upstream) lean on its verdict too, TLS listeners' included.
  const fastPath = await probeFastPath();
  // The fast path serves plain listeners that only proxy: redirects and added headers go
  // through node:http.
  const fast =
    cfg.tls === undefined && !cfg.redirectHttps && hsts === undefined && fastPath === 'on'
      ? new FastFrontEnd(
          server,
          info,
          getState,
          {
            headersTimeout,
            keepAliveTimeout: limits.keepAliveTimeout,
            sendTimeout: limits.sendTimeout,
            maxHeaderBytes: limits.maxHeaderBytes,
          },
          () => sockets.size,
          fastPathStats,
        )
      : undefined;
  // Node silently drops headers past maxHeadersCount; keeping one more lets the handler see
  // that the limit was passed and answer 431 instead of forwarding a truncated head.
  server.maxHeadersCount = limits.maxHeaders + 1;
  // Beyond the cap Node closes a new connection on accept (before reading a byte).
  server.maxConnections = limits.maxConnections;
  // Socket inactivity timer: what it means is decided in onSocketTimeout. Tunnels turn it off.
  server.timeout = limits.sendTimeout;
  server.on('timeout', onSocketTimeout);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    noteRequest(req);
    try {
      if (hsts !== undefined) res.setHeader('strict-transport-security', hsts);
      if (answerAtEdge(hooks, cfg.redirectHttps, req, res)) return;
      handleRequest(getState(), info, req, res);
    } catch (err) {
      // a bug must cost one request, never the process
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json', connection: 'close' });
        res.end('{"error":"internal"}');
      } else res.destroy(err as Error);
    }
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      handleUpgrade(getState(), info, req, socket, head, tunnels);
    } catch {
      socket.destroy();
    }
  });
  server.on('clientError', onClientError);
  // CONNECT (forward-proxy tunnels) is not served: node:http would close without an answer
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', ignoreSocketError);
    writeRawError(socket as Socket, 400, 'Bad Request', '{"error":"bad_request"}');
  });
  server.on('error', () => undefined);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    (s as TrackedSocket)[OPEN_SET] = sockets;
    s.on('error', ignoreSocketError);
    s.on('close', forgetSocket);
  });
  let tlsFront: TlsFront | undefined;
  if (cfg.tls !== undefined) {
    tlsFront = createTlsFront(cfg, cfg.tls, server, { info, getState, extra, maxHeaderBytes: limits.maxHeaderBytes, before: (head, respond) => challengeAnswer(hooks, head.url ?? '', respond) }, observer);
    // node:http tracks its connections (closeIdleConnections, timeouts) from 'listening' on;
    // this one never listens itself: its connections arrive from the TLS server
    server.emit('listening');
  }
  const bound: net.Server = tlsFront?.server ?? server;
  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      bound.once('error', onError);
      bound.listen({ host: cfg.host, port: cfg.port, backlog: LISTEN_BACKLOG }, () => {
        bound.off('error', onError);
        resolve();
      });
    });
  } catch (err) {
    // nothing will serve: the fast path's sweep timer and the TLS front's timers stop with it
    fast?.stop();
    tlsFront?.stop();
    throw err;
  }
  // never silently on: a server without the accept hook the self-test found is a bug
  if (fast !== undefined && !fast.attach()) {
    fast.stop();
    bound.close();
    throw new Error('the fast path found no accept hook on its listener');
  }
  const addr = bound.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : cfg.port;
  if (tlsFront !== undefined) tlsFront.label = hostPortText(cfg.host, port);
  // every front end: node:http's connections, the fast path's, HTTP/2 sessions
  const closeIdle = (): void => {
    server.closeIdleConnections();
    fast?.closeIdle();
    tlsFront?.closeSessions(false);
  };
  let closing: Promise<void> | undefined;
  return {
    server,
    certificates: tlsFront?.store,
    setChallengeResponder: (responder) => {
      hooks.challenge = responder;
    },
    host: cfg.host,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        if (tlsFront !== undefined) {
          // the TLS server owns the connections: it closes once every one has
          tlsFront.server.close(() => {
            tlsFront.stop();
            resolve();
          });
          server.close();
          tlsFront.closeSessions(true);
          closeIdle();
          return;
        }
        // node:http's connections and the fast path's both
        server.close(() => {
          void (fast?.whenEmpty() ?? Promise.resolve()).then(() => {
            fast?.stop();
            resolve();
          });
        });
        closeIdle();
      })),
    whenDrained: async () => {
      await closing;
      await tunnels.whenEmpty();
    },
    closeIdle,
    destroyAll: () => {
      for (const s of sockets) s.destroy();
      fast?.destroyAll();
      tlsFront?.destroySessions();
      tunnels.destroyAll();
    },
  };
}

/** An ACME challenge asked over HTTP/2 (a TLS listener): answered when a responder is set. */
function challengeAnswer(hooks: EdgeHooks, url: string, respond: (status: number, body: string, type: string) => void): boolean {
  const responder = hooks.challenge;
  const token = responder === undefined ? undefined : challengeToken(url);
  if (responder === undefined || token === undefined) return false;
  const auth = responder(token);
  if (auth === undefined) respond(404, '{"error":"no_such_challenge"}', 'application/json');
  else respond(200, auth, 'text/plain');
  return true;
}
