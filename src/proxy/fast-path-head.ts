/**
 * The fast path's head classification: given what llhttp parsed of one request head, either the
 * request's header record (the fast path serves it) or why node:http must (a handover reason).
 * Pure: no connection, no parser, no clock; table-tested in test/fast-path-head.test.ts.
 *
 * Only the common case stays on the fast path: HTTP/1.1 keep-alive, no upgrade, an origin-form
 * target within the limits, exactly one valid Host, no repeated field, no Transfer-Encoding,
 * `Expect` or `TE`, and no body or a plain Content-Length of at most 64 KiB. Every other head
 * is node:http's, so every refusal (400, 414, 431) and every rare feature keeps its behaviour.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { ACME_CHALLENGE_PREFIX } from './edge-hooks.js';
import type { HandoverReason } from '../observability/fast-path-stats.js';
import { hostProblem, targetProblem, type HeadLimits } from './validate.js';

/**
 * bytes: a request body up to this size that arrives with its head, in the same read, is read
 * whole and served on the fast path; a larger or later one goes to node:http (streamed).
 */
export const MAX_WHOLE_BODY_BYTES = 64 * 1024;

/** A Content-Length value the fast path takes as is (node:http handles every other form). */
const PLAIN_LENGTH = /^[0-9]{1,9}$/;

/** What the classification needs to know about the listener. */
export interface HeadContext extends HeadLimits {
  /** an ACME http-01 responder is set: challenge paths are node:http's (answered before routing) */
  readonly challenges: boolean;
}

/**
 * The head's lower-cased header record when the fast path serves it (one field per name: a
 * repeated one is handed over), else why node:http must. Arguments are positional, as llhttp
 * hands them over (`kOnHeadersComplete`), so the parser callback allocates nothing to ask.
 * @param raw `[name, value, ...]` as sent; undefined when llhttp flushed fields early (a long head)
 * @param method the method's name; undefined for a method number this Node does not name
 */
export function classifyHead(
  major: number,
  minor: number,
  raw: readonly string[] | undefined,
  method: string | undefined,
  url: string | undefined,
  upgrade: boolean,
  keepAlive: boolean,
  ctx: HeadContext,
): IncomingHttpHeaders | HandoverReason {
  if (major !== 1 || minor !== 1 || upgrade || !keepAlive) return 'connection';
  // a head node:http's side would refuse is left to it, so the refusal is its own
  if (raw === undefined || url === undefined || targetProblem(url, raw.length / 2, major, minor, ctx) !== 0) return 'head';
  // an ACME challenge is answered by node:http's side, before routing
  if (ctx.challenges && url.startsWith(ACME_CHALLENGE_PREFIX)) return 'head';
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase();
    // Streamed bodies and anything about the connection's future go to node:http.
    if (lower === 'transfer-encoding' || lower === 'expect') return 'body';
    // A client that accepts trailers (gRPC over HTTP/1.1) is served by node:http, which writes
    // them; the fast path has no trailer support. Repeated fields: node:http folds or drops them
    // by name.
    if (lower === 'te' || lower === 'upgrade' || headers[lower] !== undefined) return 'head';
    headers[lower] = raw[i + 1] as string;
  }
  const length = headers['content-length'];
  if (length !== undefined && (!PLAIN_LENGTH.test(length) || Number(length) > MAX_WHOLE_BODY_BYTES)) return 'body';
  // repeated fields were handed over above: there is at most one Host here
  const host = headers['host'];
  if (host === undefined || hostProblem(1, host, minor) !== 0 || method === undefined || method === 'CONNECT') return 'head';
  return headers;
}
