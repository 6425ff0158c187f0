/**
 * The client-facing HTTP servers: one per `listen` entry. Node's strict parser stays on (never
 * the lenient one): a request it cannot parse is answered 400 (431 for oversized headers) and
 * its connection closed, before routing, so no backend ever sees a byte of it.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenConfig } from '../config/types.js';
import { handleRequest, type ListenerInfo } from './handler.js';
import { writeRawError } from './respond.js';
import type { ProxyState } from './types.js';
import { handleUpgrade, openTunnels } from './websocket.js';

/** Limits on client connections; defaults are what an edge proxy should have (Node's are too lax). */
export interface ListenerLimits {
  /** bytes of request line + headers; default 16 KiB */
  readonly maxHeaderSize: number;
  /** ms to receive the complete request head; default 10 s (Node: 60 s) */
  readonly headersTimeout: number;
  /** ms to receive the complete request; default 5 min (Node: 5 min) */
  readonly requestTimeout: number;
  /** ms an idle keep-alive connection is kept; default 60 s */
  readonly keepAliveTimeout: number;
  /** most headers in one request; default 100 */
  readonly maxHeadersCount: number;
}

export const DEFAULT_LIMITS: ListenerLimits = {
  maxHeaderSize: 16 * 1024,
  headersTimeout: 10_000,
  requestTimeout: 300_000,
  keepAliveTimeout: 60_000,
  maxHeadersCount: 100,
};

/** A bound listener. */
export interface Listener {
  readonly server: http.Server;
  /** the bound address (port resolved when 0 was asked for) */
  readonly host: string;
  readonly port: number;
  /** stops accepting; resolves when every connection has closed */
  close(): Promise<void>;
  /** idle keep-alive connections are closed now; busy ones after their response */
  closeIdle(): void;
  /** destroys every connection (end of the grace period) */
  destroyAll(): void;
}

function onClientError(err: Error & { code?: string }, socket: Duplex): void {
  const s = socket as Socket;
  if (err.code === 'ECONNRESET' || !s.writable) {
    s.destroy();
    return;
  }
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    writeRawError(s, 431, 'Request Header Fields Too Large', '{"error":"request_header_fields_too_large"}');
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    writeRawError(s, 408, 'Request Timeout', '{"error":"request_timeout"}');
  } else {
    writeRawError(s, 400, 'Bad Request', '{"error":"bad_request"}');
  }
}

/** Starts one listener reading the current state through `getState` on every request. */
export async function startListener(cfg: ListenConfig, getState: () => ProxyState, limits: ListenerLimits = DEFAULT_LIMITS): Promise<Listener> {
  const info: ListenerInfo = { proto: cfg.tls === undefined ? 'http' : 'https' };
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderSize,
    insecureHTTPParser: false,
    requestTimeout: limits.requestTimeout,
    headersTimeout: limits.headersTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    joinDuplicateHeaders: false,
    noDelay: true,
  });
  server.maxHeadersCount = limits.maxHeadersCount;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    try {
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
      handleUpgrade(getState(), info, req, socket, head);
    } catch {
      socket.destroy();
    }
  });
  server.on('clientError', onClientError);
  server.on('error', () => undefined);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host: cfg.host, port: cfg.port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : cfg.port;
  return {
    server,
    host: cfg.host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
    closeIdle: () => server.closeIdleConnections(),
    destroyAll: () => {
      for (const s of sockets) s.destroy();
      for (const t of openTunnels) t.destroy();
    },
  };
}
