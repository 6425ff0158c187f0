/**
 * Header rewriting for both directions, done on Node's raw header arrays (`[name, value, ...]`)
 * so that case and duplicates survive and no per-request header object is built.
 *
 * Hop-by-hop headers (RFC 9110 section 7.6.1) and every header named in `Connection` are removed
 * in both directions; `Expect` is removed upstream because Node already answered `100-continue`
 * and undici refuses it.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { FIELD_VALUE_UNSAFE } from '../config/values.js';

/** Lower-cased names that never cross the proxy in either direction. */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Headers drover itself sets on the way up; a client's copies are dropped or folded in. */
const FORWARDING: ReadonlySet<string> = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-request-id', 'expect']);

/**
 * Client-address and original-URL claims backends trust like X-Forwarded-For (NGINX's
 * X-Real-IP, X-Forwarded-Port, IIS/Symfony's X-Original-URL and X-Rewrite-URL): dropped from
 * an untrusted peer, kept from a trusted proxy.
 */
const CLAIMS: ReadonlySet<string> = new Set(['x-real-ip', 'x-forwarded-port', 'x-forwarded-server', 'x-original-url', 'x-rewrite-url', 'x-original-forwarded-for']);

/** What the proxy knows about the client connection, to build the forwarding headers. */
export interface ForwardingInfo {
  /** the TCP peer's address */
  readonly peer: string;
  /** the peer is listed in `trusted_proxies`: its X-Forwarded-* are kept and appended to */
  readonly trusted: boolean;
  /** `http` or `https`: the scheme of the listener */
  readonly proto: string;
}

/** A route's header edits, precomputed: lower-cased names. */
export interface HeaderEdits {
  readonly set: readonly { readonly name: string; readonly lower: string; readonly value: string }[];
  readonly remove: ReadonlySet<string>;
  /**
   * Every `set` value is one an HTTP/1.1 message may carry (no control characters but HTAB).
   * Names are tokens already (the config schema checks them).
   */
  readonly checked: boolean;
}

export const NO_EDITS: HeaderEdits = { set: [], remove: new Set(), checked: true };


/** Names listed in a `Connection` header value, lower-cased ("close" and "keep-alive" included). */
function connectionTokens(value: string | undefined, named: Set<string> | undefined): Set<string> | undefined {
  if (value === undefined) return named;
  // Nearly every message says just `keep-alive` or `close`: both are hop-by-hop already, so
  // the common case allocates nothing.
  if (value.length <= 10) {
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close') return named;
  }
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase();
    if (t !== '' && !HOP_BY_HOP.has(t)) (named ??= new Set()).add(t);
  }
  return named;
}

/** The result of preparing request headers for the upstream. */
export interface UpstreamRequestHeaders {
  /** flat `[name, value, ...]` array for undici */
  readonly headers: string[];
  /** the request id sent upstream (kept from the client or generated) */
  readonly requestId: string;
  /**
   * The client sent `TE: trailers` (it accepts response trailers). `TE` is hop-by-hop, so it is
   * not in `headers`; HTTP/2 upstreams are sent `te: trailers` when this is true (gRPC servers
   * require it).
   */
  readonly teTrailers: boolean;
}

/** True when a `TE` value lists `trailers` (`TE: trailers, deflate;q=0.5`). */
function listsTrailers(value: string): boolean {
  for (const token of value.split(',')) {
    const t = token.trim();
    const semi = t.indexOf(';');
    if ((semi === -1 ? t : t.slice(0, semi).trim()).toLowerCase() === 'trailers') return true;
  }
  return false;
}

/**
 * Builds the upstream request headers from the client's raw headers.
 * @param raw `req.rawHeaders`
 */
export function upstreamRequestHeaders(raw: readonly string[], info: ForwardingInfo, edits: HeaderEdits): UpstreamRequestHeaders {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 10 && name.toLowerCase() === 'connection') named = connectionTokens(raw[i + 1], named);
  }
  const out: string[] = [];
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  let forwarded: string | undefined;
  let requestId: string | undefined;
  let host: string | undefined;
  let teTrailers = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower === 'te' && listsTrailers(value)) teTrailers = true;
    if (HOP_BY_HOP.has(lower) || (named !== undefined && named.has(lower))) continue;
    if (FORWARDING.has(lower)) {
      switch (lower) {
        case 'x-forwarded-for':
          xff = xff === undefined ? value : `${xff}, ${value}`;
          break;
        case 'x-forwarded-proto':
          xfProto ??= value;
          break;
        case 'x-forwarded-host':
          xfHost ??= value;
          break;
        case 'forwarded':
          forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`;
          break;
        case 'x-request-id':
          requestId ??= value;
          break;
        default: // expect
          break;
      }
      continue;
    }
    if (edits.remove.has(lower)) continue;
    if (!info.trusted && CLAIMS.has(lower)) continue;
    if (lower === 'host') host = value;
    out.push(name, value);
  }
  // Route edits: `set` replaces every copy of the header.
  for (const edit of edits.set) {
    for (let i = 0; i < out.length; i += 2) {
      if ((out[i] as string).toLowerCase() === edit.lower) {
        out.splice(i, 2);
        i -= 2;
      }
    }
    out.push(edit.name, edit.value);
  }
  if (info.trusted) {
    out.push('x-forwarded-for', xff === undefined ? info.peer : `${xff}, ${info.peer}`);
    out.push('x-forwarded-proto', xfProto ?? info.proto);
    const fh = xfHost ?? host;
    if (fh !== undefined) out.push('x-forwarded-host', fh);
    if (forwarded !== undefined) out.push('forwarded', forwarded);
  } else {
    // An untrusted peer's claims are replaced, never appended to: it could name any address.
    out.push('x-forwarded-for', info.peer);
    out.push('x-forwarded-proto', info.proto);
    if (host !== undefined) out.push('x-forwarded-host', host);
  }
  const id = requestId !== undefined && isSaneRequestId(requestId) ? requestId : randomUUID();
  out.push('x-request-id', id);
  return { headers: out, requestId: id, teTrailers };
}

/** A client-supplied request id is kept only if it is short and printable (it ends up in logs). */
function isSaneRequestId(id: string): boolean {
  if (id.length === 0 || id.length > 200) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

/**
 * Filters a backend's raw response headers (undici gives Buffers) into a flat string array for
 * `res.writeHead`, dropping hop-by-hop and `Connection`-named headers.
 */
export function downstreamResponseHeaders(raw: readonly (Buffer | string)[]): string[] {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as Buffer | string;
    if (name.length === 10 && latin1(name).toLowerCase() === 'connection') {
      named = connectionTokens(latin1(raw[i + 1] as Buffer | string), named);
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = latin1(raw[i] as Buffer | string);
    // only names of a hop-by-hop length are lower-cased and looked up (most are not)
    if ((named !== undefined || HOP_BY_HOP_LENGTHS[name.length] === 1) && dropped(name.toLowerCase(), named)) continue;
    out.push(name, latin1(raw[i + 1] as Buffer | string));
  }
  return out;
}

/** `HOP_BY_HOP_LENGTHS[n]` is 1 when some hop-by-hop name has `n` characters. */
const HOP_BY_HOP_LENGTHS = new Uint8Array(32);
for (const h of HOP_BY_HOP) HOP_BY_HOP_LENGTHS[h.length] = 1;

function dropped(lower: string, named: Set<string> | undefined): boolean {
  return HOP_BY_HOP.has(lower) || (named !== undefined && named.has(lower));
}

/** A header as a string (undici hands over Buffers, Node's parser strings). */
function latin1(v: Buffer | string): string {
  return typeof v === 'string' ? v : v.toString('latin1');
}

/**
 * A backend's Transfer-Encoding other than a lone `chunked` (e.g. `gzip` or `gzip, chunked`),
 * or undefined. undici removes the chunked framing and hands over the body still gzip-coded;
 * relaying it re-chunked without the coding would hand the client bytes it cannot decode.
 */
export function responseCoding(raw: readonly (Buffer | string)[]): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as Buffer | string;
    if (name.length !== 17 || latin1(name).toLowerCase() !== 'transfer-encoding') continue;
    const value = latin1(raw[i + 1] as Buffer | string).trim().toLowerCase();
    if (value !== 'chunked') return value;
  }
  return undefined;
}

/** Trailer fields that must not be relayed: framing and routing fields (RFC 9110 section 6.5.1) and pseudo-headers. */
const NOT_TRAILERS: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'content-length', 'content-encoding', 'content-type', 'content-range', 'host', 'authorization', 'set-cookie', 'cache-control', 'expect']);

/**
 * A backend's response trailers (as undici or node:http2 give them) filtered for relaying:
 * undefined when none is left.
 */
export function responseTrailers(trailers: Readonly<Record<string, string | string[] | undefined>>): Record<string, string | string[]> | undefined {
  let out: Record<string, string | string[]> | undefined;
  for (const name of Object.keys(trailers)) {
    const lower = name.toLowerCase();
    const v = trailers[name];
    if (v === undefined || lower.startsWith(':') || NOT_TRAILERS.has(lower)) continue;
    (out ??= {})[lower] = v;
  }
  return out;
}

/** Counts `Host` headers in raw headers: more than one is a malformed request (400). */
export function hostHeaderCount(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') n++;
  }
  return n;
}

/** Precomputes a route's `request_headers` edits. */
export function compileEdits(set: readonly { name: string; value: string }[], remove: readonly string[]): HeaderEdits {
  if (set.length === 0 && remove.length === 0) return NO_EDITS;
  return {
    set: set.map((s) => ({ name: s.name, lower: s.name.toLowerCase(), value: s.value })),
    remove: new Set(remove.map((r) => r.toLowerCase())),
    checked: set.every((s) => !FIELD_VALUE_UNSAFE.test(s.value)),
  };
}

/**
 * The real client address behind trusted proxies: walking `X-Forwarded-For` from the right
 * (the entry the trusted peer appended), the first address that is not itself a trusted proxy
 * (what NGINX's `real_ip_recursive on` does). Entries that are not IP addresses stop the walk:
 * anything left of them is unverifiable. Falls back to `peer` when there is no usable entry.
 * @param peer the TCP peer, already known to be trusted
 * @param raw `req.rawHeaders`
 */
export function clientAddress(peer: string, raw: readonly string[], trusted: (addr: string) => boolean): string {
  let list: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 15 && name.toLowerCase() === 'x-forwarded-for') (list ??= []).push(...(raw[i + 1] as string).split(','));
  }
  if (list === undefined) return peer;
  let client = peer;
  for (let i = list.length - 1; i >= 0; i--) {
    const addr = stripMappedPrefix((list[i] as string).trim());
    if (isIP(addr) === 0) break;
    client = addr;
    if (!trusted(addr)) break;
  }
  return client;
}

function stripMappedPrefix(a: string): string {
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}
