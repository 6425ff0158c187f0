/**
 * The admin HTTP server (README "Admin API"): health and readiness probes, Prometheus metrics,
 * the JSON API the dashboard and `drover status` read, drain/undrain, and the dashboard page
 * (its routes live in `./dashboard-routes.ts`).
 *
 * Plain `node:http`: a dozen fixed routes need no framework. Every handler is wrapped so that no
 * input, and no exception from the model, can crash the process; failures answer 500 and are
 * logged with code `E_ADMIN`.
 */
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import { DroverError, ErrorCodes } from '../core/errors.js';
import { redact } from '../config/redact.js';
import { hostPortText } from '../config/values.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import type { AdminModel } from './model.js';
import { dashboardRoute } from './dashboard-routes.js';
import { adminHostAllowed } from './host-check.js';

/** Options of `startAdminServer`. */
export interface AdminServerOptions {
  /** interface to bind, e.g. `127.0.0.1` */
  readonly host: string;
  /** TCP port; 0 picks a free one (see the returned `address`) */
  readonly port: number;
  readonly model: AdminModel;
  readonly metrics: Metrics;
  /**
   * The text `GET /metrics` answers; default `metrics.metricsText()`, this process's registry (a
   * cluster primary hands in the sum of its own and its workers').
   */
  readonly metricsText?: (() => Promise<string>) | undefined;
  /**
   * Name of the environment variable holding the admin token (default in config:
   * `DROVER_ADMIN_TOKEN`). Read on every request, so setting or rotating it needs no restart;
   * when set and non-empty, POST endpoints need `Authorization: Bearer <token>`.
   */
  readonly tokenEnv: string;
  /**
   * Where the server logs. Used as given: the caller tags it (drover passes
   * `logger.child({ component: 'admin' })`), so the field is not added twice.
   */
  readonly logger: Logger;
  /** ms between `/api/stream` pushes; default 1000 */
  readonly streamIntervalMs?: number;
  /** `admin.allowed_hosts` (lower-cased); see `host-check.ts` for the default */
  readonly allowedHosts?: readonly string[] | undefined;
}

/** A running admin server. */
export interface AdminServer {
  /** where it actually listens (the real port when 0 was asked) */
  readonly address: { readonly host: string; readonly port: number };
  /** Stops listening, ends live streams and open connections; resolves when closed. */
  close(): Promise<void>;
}

/** Upper bound of buffered, unsent stream data per client (bytes) before it is dropped as too slow. */
const STREAM_MAX_BUFFERED = 4 * 1024 * 1024;

const JSON_TYPE = 'application/json; charset=utf-8';

/** Starts the admin server; rejects with `E_LISTEN_FAILED` when the address cannot be bound. */
export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const log = opts.logger;
  const streams = new Set<ServerResponse>();
  const intervalMs = opts.streamIntervalMs ?? 1000;
  let timer: NodeJS.Timeout | undefined;

  const streamPayload = (): string =>
    `data: ${JSON.stringify({ services: opts.model.services(), events: opts.model.events(), config: opts.model.configSources?.() ?? null })}\n\n`;

  const pushAll = (): void => {
    if (streams.size === 0) return;
    let payload: string;
    try {
      payload = streamPayload();
    } catch (err) {
      log.error({ err, code: ErrorCodes.ADMIN }, 'admin model failed while streaming');
      return;
    }
    for (const res of streams) {
      // A client that does not read must not make drover buffer without bound.
      if (res.writableLength > STREAM_MAX_BUFFERED) {
        res.destroy();
        continue;
      }
      res.write(payload);
    }
  };

  const addStream = (res: ServerResponse): void => {
    streams.add(res);
    res.on('close', () => {
      streams.delete(res);
      if (streams.size === 0 && timer !== undefined) {
        clearInterval(timer);
        timer = undefined;
      }
    });
    if (timer === undefined) {
      timer = setInterval(pushAll, intervalMs);
      timer.unref();
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const method = req.method ?? 'GET';
    const isGet = method === 'GET' || method === 'HEAD';
    const segments = rawPath.split('/');

    // Body-less API: whatever a client sends is read and dropped, so keep-alive stays usable.
    req.resume();
    // DNS rebinding: only names this listener answers to (host-check.ts)
    if (!adminHostAllowed(req.headers.host, opts.allowedHosts)) return sendJson(res, 403, { error: 'forbidden_host' });

    const getOnly = (serve: () => void | Promise<void>): void | Promise<void> => {
      if (!isGet) return methodNotAllowed(res, 'GET, HEAD');
      return serve();
    };

    switch (rawPath) {
      case '/healthz':
        return getOnly(() => send(res, 200, 'text/plain; charset=utf-8', 'ok\n'));
      case '/readyz':
        return getOnly(() =>
          opts.model.ready()
            ? send(res, 200, 'text/plain; charset=utf-8', 'ready\n')
            : send(res, 503, 'text/plain; charset=utf-8', notReadyBody(opts.model.notReady?.() ?? [])),
        );
      case '/metrics':
        return getOnly(async () => {
          const text = await (opts.metricsText ?? (() => opts.metrics.metricsText()))();
          send(res, 200, opts.metrics.contentType, text);
        });
      case '/api/services':
        return getOnly(() => sendJson(res, 200, { services: opts.model.services() }));
      case '/api/events':
        return getOnly(() => sendJson(res, 200, { events: opts.model.events() }));
      case '/api/config':
        return getOnly(() => sendJson(res, 200, { config: redact(opts.model.effectiveConfig()) }));
      case '/api/stream':
        return getOnly(() => {
          res.writeHead(200, {
            'content-type': 'text/event-stream; charset=utf-8',
            'cache-control': 'no-store',
            'x-content-type-options': 'nosniff',
            // Proxies in front (nginx) would otherwise buffer the stream.
            'x-accel-buffering': 'no',
          });
          if (method === 'HEAD') {
            res.end();
            return;
          }
          res.write(`retry: 2000\n${streamPayload()}`);
          addStream(res);
        });
      default:
        break;
    }

    // The page, its files, and the JSON only it reads (series, routes, checks).
    const page = dashboardRoute({ method, path: rawPath, query: q === -1 ? '' : rawUrl.slice(q + 1), ifNoneMatch: req.headers['if-none-match'] }, opts.model, opts.metrics.series);
    if (page !== undefined) {
      res.writeHead(page.status, page.headers);
      res.end(page.body);
      return;
    }

    // POST /api/services/{service}/backends/{id}/drain | undrain
    if (
      segments.length === 7 &&
      segments[1] === 'api' &&
      segments[2] === 'services' &&
      segments[4] === 'backends' &&
      (segments[6] === 'drain' || segments[6] === 'undrain')
    ) {
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      const service = decodeSegment(segments[3] ?? '');
      const id = decodeSegment(segments[5] ?? '');
      if (service === undefined || id === undefined || service === '' || id === '') {
        return sendJson(res, 400, { error: 'bad_request' });
      }
      if (!sameOrigin(req)) return sendJson(res, 403, { error: 'forbidden_origin' });
      if (!authorized(req, opts.tokenEnv)) {
        res.setHeader('www-authenticate', 'Bearer realm="drover"');
        return sendJson(res, 401, { error: 'unauthorized' });
      }
      const draining = segments[6] === 'drain';
      const view = opts.model.setDraining(service, id, draining);
      if (view === undefined) return sendJson(res, 404, { error: 'not_found' });
      log.info({ service, backend: id, draining }, draining ? 'backend drained by admin' : 'backend undrained by admin');
      return sendJson(res, 200, view);
    }

    return sendJson(res, 404, { error: 'not_found' });
  };

  const server = http.createServer((req, res) => {
    Promise.resolve()
      .then(() => handle(req, res))
      .catch((err: unknown) => {
        log.error({ err, code: ErrorCodes.ADMIN, method: req.method, url: req.url }, 'admin request failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal' });
        else res.destroy();
      });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    log.debug({ err }, 'admin: malformed request');
    if (socket.writable && err.code !== 'ECONNRESET') {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    } else {
      socket.destroy();
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(
        new DroverError(
          ErrorCodes.LISTEN_FAILED,
          `admin: cannot listen on ${hostPortText(opts.host, opts.port)}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      );
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  // After start, a server error (rare: e.g. EMFILE on accept) is logged, never thrown.
  server.on('error', (err) => log.error({ err, code: ErrorCodes.ADMIN }, 'admin server error'));

  const bound = server.address() as AddressInfo;
  const address = { host: bound.address, port: bound.port };
  log.info({ address: hostPortText(address.host, address.port) }, 'admin listening');

  let closing: Promise<void> | undefined;
  return {
    address,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        if (timer !== undefined) clearInterval(timer);
        timer = undefined;
        for (const res of streams) res.end();
        streams.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON_TYPE, JSON.stringify(value));
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('allow', allow);
  sendJson(res, 405, { error: 'method_not_allowed' });
}

/** Percent-decodes one path segment; undefined when the encoding is malformed. */
function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/**
 * Browsers send `Origin` on cross-site POSTs; refusing a foreign one stops a web page the
 * operator visits from draining backends through their browser (CSRF) when no token is set.
 * Non-browser clients (curl, scripts, `drover`) send no `Origin` and pass.
 */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === (req.headers.host ?? '');
  } catch {
    return false;
  }
}

/** True when no token is configured, or the request carries it (compared in constant time). */
function authorized(req: IncomingMessage, tokenEnv: string): boolean {
  const token = process.env[tokenEnv];
  if (token === undefined || token === '') return true;
  const header = req.headers.authorization ?? '';
  const match = /^Bearer[ \t]+(.+?)[ \t]*$/i.exec(header);
  if (match === null) return false;
  // Hashing first gives equal-length inputs, so timingSafeEqual does not leak the token length.
  const given = createHash('sha256').update(match[1] ?? '').digest();
  const expected = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, expected);
}

/** `not ready`, then what drover still waits for, one line each (`- registry etcd: ...`). */
function notReadyBody(reasons: readonly string[]): string {
  return `not ready\n${reasons.map((r) => `- ${r}\n`).join('')}`;
}
