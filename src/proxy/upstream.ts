/**
 * One undici connection pool per backend, created when the backend joins and closed gracefully
 * (after its in-flight requests finish) when it leaves. Kept in `Backend.ext` so the per-request
 * lookup is a property read.
 */
import { Pool } from 'undici';
import type { Backend } from '../../routing/backend.js';
import type { TimeoutsConfig } from '../config/types.js';

/** The data path's per-backend slot, stored in `Backend.ext`. */
export interface Upstream {
  readonly pool: Pool;
  /** ms: the connect timeout the pool was built with (a reload that changes it rebuilds the pool) */
  readonly connectTimeout: number;
}

/**
 * Keep-alive sockets are closed by us before a typical backend (NGINX 75 s, Node 5 s) closes
 * them, so a request rarely lands on a socket the backend is closing. 4 s is below Node's 5 s
 * default; undici also honours a `Keep-Alive: timeout=N` hint from the backend.
 */
const KEEP_ALIVE_MS = 4_000;

/** Returns the backend's upstream pool, creating it (or replacing it when timeouts changed). */
export function upstreamOf(backend: Backend, timeouts: TimeoutsConfig): Upstream {
  const ext = backend.ext as Upstream | undefined;
  if (ext !== undefined && ext.connectTimeout === timeouts.connect) return ext;
  if (ext !== undefined) void closeQuietly(ext.pool);
  const pool = new Pool(backend.url, {
    connect: { timeout: timeouts.connect, noDelay: true },
    connectTimeout: timeouts.connect,
    headersTimeout: timeouts.responseHeaders,
    bodyTimeout: timeouts.idle,
    keepAliveTimeout: KEEP_ALIVE_MS,
    keepAliveTimeoutThreshold: 1_000,
    pipelining: 1,
  });
  const up: Upstream = { pool, connectTimeout: timeouts.connect };
  backend.ext = up;
  return up;
}

/** Releases a departed backend's pool once its in-flight requests have finished. */
export function releaseUpstream(backend: Backend): Promise<void> {
  const ext = backend.ext as Upstream | undefined;
  if (ext === undefined) return Promise.resolve();
  backend.ext = undefined;
  return closeQuietly(ext.pool);
}

async function closeQuietly(pool: Pool): Promise<void> {
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
