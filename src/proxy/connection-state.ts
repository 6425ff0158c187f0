/**
 * What node:http does not track for a pipelining client: that a connection is finished.
 *
 * node:http parses every request of a read and emits each at once, queueing their responses in
 * order. When one of them is refused with `Connection: close` (drover's own checks, a body left
 * unread), the requests parsed after it are dead: their responses can never be written, and
 * node:http never tells a queued response that its socket closed. Forwarding one of them used
 * to leak an upstream connection and an in-flight slot per attack (issue 20, item 1): its
 * exchange waited forever for a body the destroyed request would never deliver. So a connection
 * is marked closing at the refusal, and nothing after the mark is routed (NGINX and HAProxy
 * forward nothing after a refused request either).
 *
 * A parse error (llhttp refusing a later request) behind requests still being answered waits
 * for their responses, in order, before the 400 goes out: the good requests before a bad one
 * get their answers, as from NGINX.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

const CLOSING = Symbol('drover.closing');
const DEFERRED = Symbol('drover.deferredError');
const LAST = Symbol('drover.lastRequest');

type MarkedSocket = Socket & {
  [CLOSING]?: true;
  [DEFERRED]?: () => void;
  [LAST]?: IncomingMessage;
  /** node:http's response currently written on this socket (null between responses) */
  _httpMessage?: ServerResponse | null;
};

/** Marks `socket` as answering its last request: requests parsed after this are dropped. */
export function markClosing(socket: Socket | null | undefined): void {
  if (socket !== null && socket !== undefined) (socket as MarkedSocket)[CLOSING] = true;
}

/** True once `socket` was marked closing, or is ending or gone. */
export function isClosing(socket: Socket | null | undefined): boolean {
  if (socket === null || socket === undefined) return true;
  return (socket as MarkedSocket)[CLOSING] === true || socket.destroyed || socket.writableEnded;
}

/** Notes the newest request node:http parsed on its socket (see `midRequest`). */
export function noteRequest(req: IncomingMessage): void {
  (req.socket as MarkedSocket)[LAST] = req;
}

/**
 * True when node:http is still reading the body of the newest request on `socket`: a parse
 * error now is in that body (its response cannot end well), not in a later request.
 */
export function midRequest(socket: Socket): boolean {
  const last = (socket as MarkedSocket)[LAST];
  return last !== undefined && !last.complete;
}

/**
 * Runs `write` (a raw error answer that ends the connection) once every response node:http
 * queued on `socket` is written; at once when there is none. Marks the socket closing and stops
 * reading from it meanwhile. A second call while one waits does nothing.
 * @returns false when it was already waiting
 */
export function afterResponses(socket: Socket, write: () => void): boolean {
  const s = socket as MarkedSocket;
  if (s[DEFERRED] !== undefined) return false;
  markClosing(socket);
  const current = s._httpMessage;
  if (current === null || current === undefined) {
    write();
    return true;
  }
  socket.pause();
  s[DEFERRED] = write;
  waitFor(s, current);
  return true;
}

function waitFor(s: MarkedSocket, res: ServerResponse): void {
  // node:http's own 'finish' listener (added before the request was emitted) runs first and
  // assigns the next queued response to the socket, so `_httpMessage` is then the next one
  const next = (): void => {
    res.off('finish', next);
    res.off('close', next);
    if (s.destroyed) return;
    const following = s._httpMessage;
    if (following !== null && following !== undefined && following !== res) {
      waitFor(s, following);
      return;
    }
    const write = s[DEFERRED];
    if (write !== undefined) write();
  };
  res.on('finish', next);
  res.on('close', next);
}
