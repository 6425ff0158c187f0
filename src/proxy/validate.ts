/**
 * The checks a request head must pass before drover routes it, beyond what Node's strict parser
 * (llhttp, lenient flags off) already refuses. llhttp rejects bad request lines, bare LF, NUL and
 * other control characters, obs-fold, whitespace before the colon, CL+TE, duplicate or invalid
 * Content-Length and any Transfer-Encoding other than a final `chunked`; it lets through the
 * cases below, which an edge proxy must not forward (RFC 9112 sections 3.2 and 3.3, RFC 9110 7.2).
 */
import type { IncomingMessage } from 'node:http';
import { hostHeaderCount } from './headers.js';

/** The per-listener limits the handler enforces itself (Node enforces the others). */
export interface HeadLimits {
  /** bytes of the request target; longer: 414 */
  readonly maxUrlBytes: number;
  /** header fields; more: 431 */
  readonly maxHeaders: number;
}

/** A Host value: reg-name, IPv4 or [IPv6], with an optional port. */
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]{0,5})?$/;

/**
 * The status a malformed request gets (400, 414 or 431), or 0 when the head is acceptable.
 * Refused: HTTP/0.9 and anything but 1.0/1.1; a target that is not origin-form (absolute-form
 * and `*` are not proxied) or carries a fragment; more than one Host, a missing Host on 1.1, or
 * a Host value that is not an authority; too long a target; too many header fields.
 */
export function requestProblem(req: IncomingMessage, limits: HeadLimits): 0 | 400 | 414 | 431 | 501 {
  const problem = targetProblem(req.url ?? '', req.rawHeaders.length / 2, req.httpVersionMajor, req.httpVersionMinor, limits);
  if (problem !== 0) return problem;
  const host = hostProblem(hostHeaderCount(req.rawHeaders), req.headers.host, req.httpVersionMinor);
  if (host !== 0) return host;
  return codingProblem(req.headers['transfer-encoding']);
}

/**
 * RFC 9112 section 6.1: a request whose last transfer-coding is not `chunked` has no reliable
 * length (400); one with other codings before `chunked` (`gzip, chunked`) is one drover would
 * have to decode to forward, and re-chunking it without them would change the body the backend
 * sees, so it is refused as not understood (501, as NGINX does; HAProxy answers 422).
 */
export function codingProblem(te: string | undefined): 0 | 400 | 501 {
  if (te === undefined) return 0;
  const v = te.trim().toLowerCase();
  if (v === 'chunked') return 0;
  return /(?:^|,)[ \t]*chunked[ \t]*$/.test(v) ? 501 : 400;
}

/**
 * `requestProblem`'s checks of the request line and the field count (431, 414, 400), on the
 * facts both front ends have before looking at individual fields.
 * @param fields header fields in the head
 */
export function targetProblem(url: string, fields: number, major: number, minor: number, limits: HeadLimits): 0 | 400 | 414 | 431 {
  if (fields > limits.maxHeaders) return 431;
  if (url.length > limits.maxUrlBytes) return 414;
  if (major !== 1 || (minor !== 0 && minor !== 1)) return 400;
  if (url.charCodeAt(0) !== 47 /* '/' */ || url.includes('#')) return 400;
  return 0;
}

/**
 * `requestProblem`'s Host checks (400): exactly one on HTTP/1.1 (at most one on 1.0), and an
 * authority as its value.
 * @param hosts Host fields in the head; `host` is the value of the first
 */
export function hostProblem(hosts: number, host: string | undefined, minor: number): 0 | 400 {
  if (hosts > 1 || (hosts === 0 && minor === 1)) return 400;
  if (host !== undefined && !HOST_VALUE.test(host)) return 400;
  return 0;
}
