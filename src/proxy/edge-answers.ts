/**
 * Answers a listener gives itself before routing: ACME http-01 challenge tokens (from a
 * responder the runtime registers), the `redirect_https` 308, and the HSTS header value.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ACME_CHALLENGE_PREFIX, type EdgeHooks } from './edge-hooks.js';
import { hostWithoutPort } from './handler.js';

export { ACME_CHALLENGE_PREFIX, type ChallengeResponder, type EdgeHooks } from './edge-hooks.js';

/** `Strict-Transport-Security` for `hsts` ms, or undefined when off (0). */
export function hstsValue(hstsMs: number): string | undefined {
  return hstsMs > 0 ? `max-age=${Math.floor(hstsMs / 1000)}` : undefined;
}

/** The token of an ACME challenge path, or undefined when `url` is not one. */
export function challengeToken(url: string): string | undefined {
  if (!url.startsWith(ACME_CHALLENGE_PREFIX)) return undefined;
  const q = url.indexOf('?');
  const token = url.slice(ACME_CHALLENGE_PREFIX.length, q === -1 ? undefined : q);
  return token === '' || token.includes('/') ? undefined : token;
}

/**
 * Where `redirect_https` sends a request: `https://` + the Host without its port (the HTTPS
 * port is not known from here; the default 443 is meant) + the target as sent. Undefined
 * without a usable Host.
 */
export function httpsLocation(host: string | undefined, url: string): string | undefined {
  const h = hostWithoutPort(host);
  if (h === '' || !url.startsWith('/')) return undefined;
  return `https://${h}${url}`;
}

function plain(res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': status === 200 ? 'text/plain' : 'application/json', 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

/**
 * Answers `req` itself when it is an ACME challenge (with a responder set) or the listener
 * redirects to HTTPS; true when it did.
 */
export function answerAtEdge(hooks: EdgeHooks, redirectHttps: boolean, req: IncomingMessage, res: ServerResponse): boolean {
  const url = req.url ?? '';
  const responder = hooks.challenge;
  if (responder !== undefined) {
    const token = challengeToken(url);
    if (token !== undefined) {
      const auth = responder(token);
      if (auth !== undefined) plain(res, 200, auth);
      else plain(res, 404, '{"error":"no_such_challenge"}');
      return true;
    }
  }
  if (!redirectHttps) return false;
  const location = httpsLocation(req.headers.host, url);
  if (location === undefined) plain(res, 400, '{"error":"bad_request"}', { connection: 'close' });
  else {
    res.writeHead(308, { location, 'content-length': 0 });
    res.end();
  }
  return true;
}
