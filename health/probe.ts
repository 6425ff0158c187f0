/**
 * One active health probe: an HTTP GET (status in range passes) or a bare TCP connect. Never
 * rejects and never leaves an `error` event unhandled; every outcome becomes a `ProbeResult` with
 * a short detail for the transition reason. The GET speaks what the backend URL says: HTTP/1.1
 * (`http://`), HTTP/1.1 over TLS (`https://`, with `spec.tls`) or HTTP/2 cleartext (`h2c://`).
 */
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import type { ProbeTls } from './types.js';

/** What a probe saw. */
export interface ProbeResult {
  readonly ok: boolean;
  /** `status 200`, `status 500`, `connect ECONNREFUSED`, `timeout after 1000ms`, `reset ECONNRESET`, `tcp connect ok` */
  readonly detail: string;
}

/** What to probe and how; built by the checker from the backend URL and `ActiveCheckConfig`. */
export interface ProbeSpec {
  /** the backend's origin, `http://host:port` (or `https://`) */
  readonly url: string;
  /** HTTP path to GET; ignored when `tcp` */
  readonly path?: string | undefined;
  readonly tcp: boolean;
  /** ms for the whole probe (connect + response headers) */
  readonly timeout: number;
  /** inclusive range of passing statuses */
  readonly expectStatus: { readonly min: number; readonly max: number };
  /** TLS client options for `https://` backends */
  readonly tls?: ProbeTls | undefined;
}

/** A probe in flight: `cancel` aborts it, and its promise then never resolves with a result that matters. */
export interface RunningProbe {
  readonly result: Promise<ProbeResult>;
  cancel(): void;
}

/** Host and port of an origin; brackets stripped from IPv6 literals. */
function target(url: string): { host: string; port: number; secure: boolean; h2c: boolean } {
  // h2c is not a scheme WHATWG URL knows (its host would stay opaque): parse it as http
  const h2c = url.startsWith('h2c:');
  const u = new URL(h2c ? `http${url.slice(3)}` : url);
  const secure = u.protocol === 'https:';
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port === '' ? (secure ? 443 : 80) : Number(u.port);
  return { host, port, secure, h2c };
}

/** The TLS options of `spec` in node:tls's (mutable) shape. */
function tlsOptions(tls: ProbeTls | undefined): { ca?: string[]; servername?: string; rejectUnauthorized?: boolean } {
  if (tls === undefined) return {};
  return {
    ...(tls.ca === undefined ? {} : { ca: [...tls.ca] }),
    ...(tls.servername === undefined ? {} : { servername: tls.servername }),
    ...(tls.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: tls.rejectUnauthorized }),
  };
}

/** Status in the spec's range -> the probe's verdict. */
function statusResult(spec: ProbeSpec, status: number): ProbeResult {
  return { ok: status >= spec.expectStatus.min && status <= spec.expectStatus.max, detail: `status ${status}` };
}

function errorCode(err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const message = (err as { message?: unknown }).message;
    if (typeof message === 'string') return message;
  }
  return String(err);
}

function describeError(err: unknown, connected: boolean): string {
  const code = errorCode(err);
  if (!connected) return `connect ${code}`;
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'socket hang up') return `reset ${code}`;
  return `error ${code}`;
}

/** Starts one probe. The probe is bounded by `spec.timeout` and always settles. */
export function startProbe(spec: ProbeSpec): RunningProbe {
  let settle!: (r: ProbeResult) => void;
  const result = new Promise<ProbeResult>((resolve) => {
    settle = resolve;
  });
  let done = false;
  const finish = (r: ProbeResult): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    settle(r);
  };

  let destroy: () => void = () => undefined;
  const timer = setTimeout(() => {
    finish({ ok: false, detail: `timeout after ${spec.timeout}ms` });
    destroy();
  }, spec.timeout);
  timer.unref();

  let where: { host: string; port: number; secure: boolean; h2c: boolean };
  try {
    where = target(spec.url);
  } catch (err) {
    finish({ ok: false, detail: `bad url ${errorCode(err)}` });
    return { result, cancel: () => undefined };
  }

  if (spec.tcp) {
    const socket = net.connect({ host: where.host, port: where.port });
    destroy = () => socket.destroy();
    socket.on('connect', () => {
      finish({ ok: true, detail: 'tcp connect ok' });
      socket.destroy();
    });
    socket.on('error', (err) => finish({ ok: false, detail: describeError(err, false) }));
    socket.on('close', () => finish({ ok: false, detail: 'connect closed' }));
  } else if (where.h2c) {
    // a fresh session per probe, closed once the verdict is in (as for HTTP/1.1 below)
    let connected = false;
    const host = where.host.includes(':') ? `[${where.host}]` : where.host;
    const session = http2.connect(`http://${host}:${where.port}`);
    destroy = () => session.destroy();
    session.on('error', (err) => finish({ ok: false, detail: describeError(err, connected) }));
    session.once('connect', () => {
      connected = true;
    });
    session.once('close', () => finish({ ok: false, detail: connected ? 'reset closed' : 'connect closed' }));
    const stream = session.request({ ':method': 'GET', ':path': spec.path ?? '/', 'user-agent': 'drover-health', accept: '*/*' });
    stream.on('error', (err) => finish({ ok: false, detail: describeError(err, connected) }));
    stream.on('response', (headers) => {
      finish(statusResult(spec, Number(headers[':status'] ?? 0)));
      session.destroy();
    });
    stream.end();
  } else {
    let connected = false;
    const mod = where.secure ? https : http;
    const req = mod.request({
      ...(where.secure ? tlsOptions(spec.tls) : {}),
      host: where.host,
      port: where.port,
      method: 'GET',
      path: spec.path ?? '/',
      // A fresh connection per probe: it tests what a new request would meet, and no idle
      // sockets outlive the checker.
      agent: false,
      headers: { 'user-agent': 'drover-health', connection: 'close', accept: '*/*' },
    });
    destroy = () => req.destroy();
    req.on('socket', (socket) => {
      socket.once('connect', () => {
        connected = true;
      });
      socket.once('secureConnect', () => {
        connected = true;
      });
    });
    req.on('response', (res) => {
      finish(statusResult(spec, res.statusCode ?? 0));
      // The verdict is in; read and drop the body, but never longer than the probe timeout.
      res.on('error', () => undefined);
      res.on('end', () => req.destroy());
      res.resume();
      destroy = () => req.destroy();
      const drainTimer = setTimeout(() => req.destroy(), spec.timeout);
      drainTimer.unref();
      res.on('close', () => clearTimeout(drainTimer));
    });
    req.on('error', (err) => finish({ ok: false, detail: describeError(err, connected) }));
    req.end();
  }

  return {
    result,
    cancel: () => {
      finish({ ok: false, detail: 'cancelled' });
      destroy();
    },
  };
}
