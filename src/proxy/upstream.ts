/**
 * One connection pool per backend, created by its first request (`upstreamOf`, again when the
 * service's timeouts or TLS settings change) and closed gracefully (after its in-flight requests
 * finish) when it leaves. Kept in `Backend.ext` so the per-request lookup is a property read.
 * The backend URL's scheme picks the kind: `http://` to an IP address gets an `H1Upstream`
 * (HTTP/1.1 on bare handles, see h1-upstream.ts) once the fast path's self-test passed, else an
 * undici `Pool`, as `https://` does (TLS as `services.<name>.tls` says); `h2c://` gets an
 * `H2Upstream` (HTTP/2 cleartext on node:http2, see h2-upstream.ts).
 * `DROVER_UPSTREAM=undici` keeps every HTTP/1.1 backend on undici.
 */
import { isIP } from 'node:net';
import { Pool } from 'undici';
import type { Backend } from '../../routing/backend.js';
import type { TimeoutsConfig, UpstreamTlsConfig } from '../config/types.js';
import { H1Upstream } from './h1-upstream.js';
import { H2Upstream } from './h2-upstream.js';
import { HeadersDeadline } from './headers-deadline.js';
import { interimSwallowingConnector } from './interim.js';
import { fastPathVerified } from './internals.js';
import type { UpstreamDispatcher } from './upstream-types.js';
import { upstreamTlsOptions } from './upstream-tls.js';

/** The data path's per-backend slot, stored in `Backend.ext`. */
export interface Upstream {
  readonly pool: UpstreamDispatcher;
  /** true for HTTP/2 backends (`h2c://`): they are sent `te: trailers` when the client sent it */
  readonly h2: boolean;
  /** ms: the connect timeout the pool was built with (a reload that changes it rebuilds the pool) */
  readonly connectTimeout: number;
  /** the TLS settings the pool was built with (compared by identity: config objects are frozen and replaced on reload) */
  readonly tls: UpstreamTlsConfig | undefined;
}

/**
 * Keep-alive sockets are closed by us before a typical backend (NGINX 75 s, Node 5 s) closes
 * them, so a request rarely lands on a socket the backend is closing. 4 s is below Node's 5 s
 * default; undici also honours a `Keep-Alive: timeout=N` hint from the backend.
 */
const KEEP_ALIVE_MS = 4_000;

/**
 * Returns the backend's upstream pool, creating it (or replacing it when timeouts or TLS
 * settings changed).
 * @param tls the service's `tls` (used by `https://` backends only)
 */
export function upstreamOf(backend: Backend, timeouts: TimeoutsConfig, tls?: UpstreamTlsConfig): Upstream {
  const ext = backend.ext as Upstream | undefined;
  const secure = backend.url.startsWith('https:');
  if (ext !== undefined && ext.connectTimeout === timeouts.connect && (!secure || sameTls(ext.tls, tls))) return ext;
  if (ext !== undefined) void closeQuietly(ext.pool);
  const up = backend.url.startsWith('h2c:') ? h2Upstream(backend.url, timeouts) : poolUpstream(backend.url, timeouts, secure ? tls : undefined, secure);
  backend.ext = up;
  return up;
}

/** Same settings: the same object, or equal fields (a reload builds new objects for unchanged services). */
function sameTls(a: UpstreamTlsConfig | undefined, b: UpstreamTlsConfig | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  // the CA's contents, not its path: a reload after the file changed must rebuild the pool
  return a.caPem?.join('\n') === b.caPem?.join('\n') && a.serverName === b.serverName && a.verify === b.verify;
}

function h2Upstream(url: string, timeouts: TimeoutsConfig): Upstream {
  return { pool: new H2Upstream(url, { connectTimeout: timeouts.connect }), h2: true, connectTimeout: timeouts.connect, tls: undefined };
}

function poolUpstream(url: string, timeouts: TimeoutsConfig, tls: UpstreamTlsConfig | undefined, secure: boolean): Upstream {
  // response_headers kept to the millisecond (undici's own clock is coarse: headers-deadline.ts)
  const undici = (): HeadersDeadline =>
    new HeadersDeadline(new Pool(url, {
      // undici's own connector, with a backend's unsolicited `100 Continue` taken out (interim.ts)
      connect: interimSwallowingConnector({ timeout: timeouts.connect, noDelay: true, ...(secure ? upstreamTlsOptions(tls) : {}) }),
      connectTimeout: timeouts.connect,
      headersTimeout: timeouts.responseHeaders,
      bodyTimeout: timeouts.idle,
      keepAliveTimeout: KEEP_ALIVE_MS,
      keepAliveTimeoutThreshold: KEEP_ALIVE_THRESHOLD_MS,
      pipelining: 1,
    }));
  const lean = secure ? undefined : leanUpstream(url, timeouts, undici);
  return { pool: lean ?? undici(), h2: false, connectTimeout: timeouts.connect, tls };
}

/** ms taken off a backend's `Keep-Alive: timeout` hint (undici's `keepAliveTimeoutThreshold`) */
const KEEP_ALIVE_THRESHOLD_MS = 1_000;

/**
 * An `H1Upstream` for a plain `http://` backend at an IP address, when the fast path's
 * self-test passed and `DROVER_UPSTREAM` is not `undici`; undefined otherwise (a host name
 * needs a resolver; undici's connector has one). Streamed request bodies go to `undici()`.
 */
function leanUpstream(url: string, timeouts: TimeoutsConfig, undici: () => UpstreamDispatcher): H1Upstream | undefined {
  if (!fastPathVerified() || process.env['DROVER_UPSTREAM'] === 'undici') return undefined;
  const u = new URL(url);
  const address = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  if (u.protocol !== 'http:' || isIP(address) === 0) return undefined;
  return new H1Upstream(address, u.port === '' ? 80 : Number(u.port), u.host, {
    connectTimeout: timeouts.connect,
    headersTimeout: timeouts.responseHeaders,
    bodyTimeout: timeouts.idle,
    keepAliveMs: KEEP_ALIVE_MS,
    keepAliveThresholdMs: KEEP_ALIVE_THRESHOLD_MS,
    fallback: undici,
  });
}

/** Releases a departed backend's pool once its in-flight requests have finished. */
export function releaseUpstream(backend: Backend): Promise<void> {
  const ext = backend.ext as Upstream | undefined;
  if (ext === undefined) return Promise.resolve();
  backend.ext = undefined;
  return closeQuietly(ext.pool);
}

async function closeQuietly(pool: UpstreamDispatcher): Promise<void> {
  try {
    await pool.close();
  } catch {
    // already closed or destroyed: nothing left to release
  }
}

/** Destroys a pool at once (shutdown after the grace period). */
export async function destroyUpstream(backend: Backend): Promise<void> {
  const ext = backend.ext as Upstream | undefined;
  if (ext === undefined) return;
  backend.ext = undefined;
  try {
    await ext.pool.destroy();
  } catch {
    // nothing to do
  }
}
