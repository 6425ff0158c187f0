/**
 * Allocation-free string hashing for the `hash` policy: FNV-1a over a character range, finished
 * with MurmurHash3's 32-bit mixer so that nearby keys (`user-1`, `user-2`) spread well. Not
 * cryptographic: a client who can choose keys can choose its backend, which is the point of
 * sticky hashing anyway.
 */
import type { HashKeySpec, PickContext } from './types.js';

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * FNV-1a of `s[start, end)` over UTF-16 code units, as an unsigned 32-bit integer.
 * @param start first index, default 0
 * @param end index after the last, default `s.length`
 */
export function fnv1a(s: string, start = 0, end = s.length): number {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

/** MurmurHash3's finaliser: a bijective avalanche mix of a 32-bit integer (unsigned result). */
export function fmix32(x: number): number {
  let h = x | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** `fnv1a` then `fmix32`: the hash of a whole string (unsigned 32-bit). */
export function hashString(s: string): number {
  return fmix32(fnv1a(s));
}

/**
 * Hashes the request's key as `spec` says, without building substrings. A missing or empty key
 * (no such header, no such cookie) falls back to the client IP, so such clients are still sticky.
 * Header values given as arrays use their first element.
 * @returns unsigned 32-bit hash
 */
export function hashRequestKey(spec: HashKeySpec, ctx: PickContext): number {
  switch (spec.kind) {
    case 'ip':
      return hashString(ctx.clientIp);
    case 'path':
      return ctx.path === '' ? hashString(ctx.clientIp) : hashString(ctx.path);
    case 'header': {
      const raw = ctx.headers[spec.name];
      const value = typeof raw === 'string' ? raw : raw?.[0];
      return value === undefined || value === '' ? hashString(ctx.clientIp) : hashString(value);
    }
    case 'cookie': {
      const header = ctx.headers.cookie;
      if (header !== undefined && header !== '') {
        const h = hashCookie(header, spec.name);
        if (h !== -1) return h;
      }
      return hashString(ctx.clientIp);
    }
  }
}

/**
 * Finds cookie `name` in a `Cookie` header (`a=1; b=2`) and hashes its value; -1 when absent
 * or empty. Names are matched exactly (cookie names are case-sensitive); surrounding spaces are
 * ignored; a double-quoted value is hashed without its quotes.
 */
function hashCookie(header: string, name: string): number {
  const len = header.length;
  let pos = 0;
  while (pos < len) {
    let semi = header.indexOf(';', pos);
    if (semi === -1) semi = len;
    let start = pos;
    while (start < semi && header.charCodeAt(start) === 0x20) start++;
    const eq = header.indexOf('=', start);
    if (eq !== -1 && eq < semi && eq - start === name.length && header.startsWith(name, start)) {
      let vs = eq + 1;
      let ve = semi;
      while (vs < ve && header.charCodeAt(vs) === 0x20) vs++;
      while (ve > vs && header.charCodeAt(ve - 1) === 0x20) ve--;
      if (ve - vs >= 2 && header.charCodeAt(vs) === 0x22 && header.charCodeAt(ve - 1) === 0x22) {
        vs++;
        ve--;
      }
      return ve > vs ? fmix32(fnv1a(header, vs, ve)) : -1;
    }
    pos = semi + 1;
  }
  return -1;
}
