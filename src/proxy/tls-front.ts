/**
 * The TLS side of an HTTPS listener: one `tls.Server` terminates TLS (certificate chosen by
 * SNI from the listener's `CertificateStore`, minimum version, optional client certificates,
 * session tickets whose key rotates), then hands each connection by its ALPN protocol to the
 * listener's node:http server (`http/1.1`, or no ALPN) or to its HTTP/2 server (`h2`). Both
 * speak on the same port; neither ever sees a byte of TLS.
 *
 * Certificates change under it without a restart: the store's lookup serves the next
 * handshake, and the default context (clients that send no SNI) is rebuilt on every change.
 * Open connections keep the certificate they were handed.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import http2, { type Http2Session, type ServerHttp2Stream, type IncomingHttpHeaders as H2Headers } from 'node:http2';
import tls, { type SecureContextOptions, type TLSSocket } from 'node:tls';
import type { ListenConfig, ListenerTlsConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { loadCertFiles, type CertFiles } from '../tls/cert-files.js';
import { CertificateStore } from '../tls/store.js';
import { h2ServerOptions, handleStream, RAW_SOCKET, type H2Context } from './h2.js';

/**
 * ms between session ticket key rotations. Node takes one ticket key at a time, so a ticket
 * issued before a rotation no longer resumes after it (clients then do a full handshake); the
 * ticket's own lifetime (Node's `sessionTimeout`, 300 s) ends most tickets long before.
 */
export const TICKET_KEY_ROTATION_MS = 12 * 60 * 60 * 1000;

/** What a TLS listener reports, all optional (workers run without them). */
export interface TlsObserver {
  /** one handshake finished (`success`) or failed (`failure`) on the listener `listener` (its bound address) */
  readonly handshake?: ((listener: string, result: 'success' | 'failure') => void) | undefined;
  /** a changed certificate pair was installed (`success`) or refused (`failure`) */
  readonly reload?: ((result: 'success' | 'failure') => void) | undefined;
  readonly logger?: Logger | undefined;
  /** ms between polls of the certificate files (default 1000) */
  readonly pollMs?: number | undefined;
  /** ms between ticket key rotations (default `TICKET_KEY_ROTATION_MS`; tests use less) */
  readonly ticketRotationMs?: number | undefined;
}

/** A running TLS front end. */
export interface TlsFront {
  readonly server: tls.Server;
  readonly store: CertificateStore;
  /** the bound address, for metric labels: set once listening */
  label: string;
  /** GOAWAY to idle HTTP/2 sessions (all of them when `all`): they finish their streams and close */
  closeSessions(all: boolean): void;
  /** destroys every HTTP/2 session */
  destroySessions(): void;
  /** a new session ticket key: tickets issued until now no longer resume (done by a timer, see `TICKET_KEY_ROTATION_MS`) */
  rotateTicketKeys(): void;
  /** stops the file watchers and the ticket key timer */
  stop(): void;
}

const OPEN = Symbol('drover.openStreams');
type TrackedSession = Http2Session & { [OPEN]?: number; [RAW_SOCKET]?: TLSSocket };

function onSessionTimeout(this: TrackedSession): void {
  // idle: no stream open (a stream waiting on its backend is governed by the upstream timeouts)
  if ((this[OPEN] ?? 0) === 0) this.close();
}

/** Builds the TLS server of `cfg` in front of `http1`; it is not listening yet. */
export function createTlsFront(cfg: ListenConfig, tlsCfg: ListenerTlsConfig, http1: http.Server, h2ctx: H2Context, observer: TlsObserver): TlsFront {
  const common: SecureContextOptions = {
    minVersion: tlsCfg.minVersion,
    ...(tlsCfg.clientCa === undefined ? {} : { ca: readFileSync(tlsCfg.clientCa, 'utf8') }),
  };
  const store = new CertificateStore(common);
  const files: CertFiles = loadCertFiles(store, tlsCfg.certificates, { logger: observer.logger, onReload: observer.reload, pollMs: observer.pollMs });
  let ticketKeys = randomBytes(48);
  const first = store.first;
  if (first === undefined) throw new Error('a TLS listener needs a certificate');
  const server = tls.createServer({
    ...first.options,
    // as on the plain listener (node:http's noDelay applies only to sockets it accepts itself):
    // a response written as several TLS records must not wait on the client's delayed ACK
    noDelay: true,
    ticketKeys,
    ALPNProtocols: [...tlsCfg.alpn],
    SNICallback: (servername, cb) => cb(null, store.select(servername)),
    ...(tlsCfg.clientCa === undefined ? {} : { requestCert: true, rejectUnauthorized: true }),
  });
  // Clients without SNI get the default (first) certificate: rebuilt whenever it changes.
  store.onChange((def) => {
    if (def !== undefined) server.setSecureContext({ ...def.options, ticketKeys });
  });
  const rotateTicketKeys = (): void => {
    ticketKeys = randomBytes(48);
    server.setTicketKeys(ticketKeys);
  };
  const rotation = setInterval(rotateTicketKeys, observer.ticketRotationMs ?? TICKET_KEY_ROTATION_MS);
  rotation.unref();
  server.maxConnections = cfg.limits.maxConnections;

  const logger = observer.logger;
  const ctx: H2Context = logger === undefined ? h2ctx : { ...h2ctx, onCutOff: (peer) => logger.warn({ peer, listener: front.label }, 'HTTP/2 session cut off: too many streams reset by the client (rapid reset)') };
  const h2 = http2.createServer(h2ServerOptions(cfg.limits.maxHeaderBytes, cfg.limits.maxHeaders));
  const sessions = new Set<TrackedSession>();
  // the socket being handed to the HTTP/2 server: its 'session' event fires during the hand-over
  let handing: TLSSocket | undefined;
  h2.on('session', (session: TrackedSession) => {
    sessions.add(session);
    if (handing !== undefined) session[RAW_SOCKET] = handing;
    session[OPEN] = 0;
    session.on('error', () => undefined);
    session.on('close', () => sessions.delete(session));
    session.setTimeout(cfg.limits.keepAliveTimeout, onSessionTimeout);
  });
  h2.on('stream', (stream: ServerHttp2Stream, headers: H2Headers) => {
    const session = stream.session as TrackedSession | undefined;
    if (session !== undefined) {
      session[OPEN] = (session[OPEN] ?? 0) + 1;
      stream.once('close', () => {
        session[OPEN] = (session[OPEN] ?? 1) - 1;
      });
    }
    try {
      handleStream(ctx, stream, headers);
    } catch {
      // a bug must cost one stream, never the process
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  });
  h2.on('error', () => undefined);

  const front: TlsFront = {
    server,
    store,
    label: cfg.address,
    closeSessions: (all) => {
      for (const s of sessions) if (!s.closed && (all || (s[OPEN] ?? 0) === 0)) s.close();
    },
    destroySessions: () => {
      for (const s of sessions) s.destroy();
    },
    rotateTicketKeys,
    stop: () => {
      files.close();
      clearInterval(rotation);
    },
  };
  server.on('secureConnection', (socket: TLSSocket) => {
    observer.handshake?.(front.label, 'success');
    socket.on('error', () => undefined);
    if (socket.alpnProtocol === 'h2') {
      handing = socket;
      h2.emit('connection', socket);
      handing = undefined;
    } else http1.emit('connection', socket);
  });
  server.on('tlsClientError', (_err: Error, socket: TLSSocket) => {
    observer.handshake?.(front.label, 'failure');
    socket.destroy();
  });
  server.on('error', () => undefined);
  return front;
}
