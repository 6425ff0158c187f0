/**
 * One active health probe: an HTTP GET (status in range passes) or a bare TCP connect. Never
 * rejects and never leaves an `error` event unhandled; every outcome becomes a `ProbeResult` with
 * a short detail for the transition reason.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

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
}

/** A probe in flight: `cancel` aborts it, and its promise then never resolves with a result that matters. */
export interface RunningProbe {
  readonly result: Promise<ProbeResult>;
  cancel(): void;
}

/** Host and port of an origin; brackets stripped from IPv6 literals. */
function target(url: string): { host: string; port: number; secure: boolean } {
  const u = new URL(url);
  const secure = u.protocol === 'https:';
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port === '' ? (secure ? 443 : 80) : Number(u.port);
  return { host, port, secure };
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

  let where: { host: string; port: number; secure: boolean };
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
  } else {
    let connected = false;
    const mod = where.secure ? https : http;
    const req = mod.request({
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
      const status = res.statusCode ?? 0;
      const ok = status >= spec.expectStatus.min && status <= spec.expectStatus.max;
      finish({ ok, detail: `status ${status}` });
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
