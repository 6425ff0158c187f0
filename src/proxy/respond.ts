/**
 * drover's own answers to clients (README "Answers to clients"). Bodies are precomputed per status where
 * they do not name a service, so an error storm does not allocate much.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { markClosing } from './connection-state.js';

const ERROR_NAMES: Readonly<Record<number, string>> = {
  400: 'bad_request',
  404: 'no_route',
  414: 'uri_too_long',
  431: 'request_header_fields_too_large',
  499: 'client_closed_request',
  501: 'not_implemented',
  502: 'bad_gateway',
  503: 'no_available_backend',
  504: 'gateway_timeout',
};

/**
 * The JSON body drover sends for `status` (with `service` when one was chosen); `name` overrides
 * the status's usual `error` (503 is also `queue_timeout` and `backend_saturated`).
 */
export function errorBody(status: number, service: string | undefined, name?: string): string {
  const error = name ?? ERROR_NAMES[status] ?? 'error';
  return service === undefined || status === 404 || status === 400 ? JSON.stringify({ error }) : JSON.stringify({ error, service });
}

/**
 * Writes an error answer. `close` asks the client to close the connection (used when the request
 * body was not read, so the connection cannot be reused safely).
 */
export function sendError(res: ServerResponse, status: number, service: string | undefined, close = false, name?: string): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = errorBody(status, service, name);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  if (close) {
    headers['connection'] = 'close';
    // requests pipelined after this one are dropped, not forwarded (see connection-state.ts)
    markClosing(res.req.socket);
  }
  res.writeHead(status, headers);
  res.end(body);
  if (close) res.once('finish', () => res.socket?.destroySoon());
}

/** A whole raw error answer (head and body) that closes its connection. */
export function rawErrorText(status: number, reason: string, body = ''): string {
  return `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** Raw answer on a socket that has no ServerResponse (client errors, failed upgrades). */
export function writeRawError(socket: Socket, status: number, reason: string, body = ''): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(rawErrorText(status, reason, body));
  socket.destroySoon();
}
