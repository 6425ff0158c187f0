/**
 * The request path drover routes on and forwards: RFC 3986 syntax-based normalisation, so that
 * `/public/../admin`, `/public/%2e%2e/admin` and `/public//x` cannot match one route and reach
 * the backend as another path (NGINX normalises its `location` URI the same way).
 *
 * - percent-encoded unreserved characters (ALPHA DIGIT `-` `.` `_` `~`) are decoded (section
 *   6.2.2.2); other escapes are kept, with upper-case hex digits (6.2.2.1);
 * - with `merge_slashes` (default on), runs of `/` become one;
 * - dot-segments are removed (section 5.2.4, remove_dot_segments); one that would climb above
 *   the root is refused (400), as NGINX does;
 * - a malformed escape (`%zz`, `%4`) or an encoded NUL is refused (400).
 *
 * The common path (no `%`, no `//`, no `/.`) is returned as is without allocating.
 */

/** The normalised path, or why it is refused. */
export interface NormalPath {
  /** normalised path (no query) */
  readonly path: string;
  /** the raw path holds an encoded `/` or `\` (`%2F`, `%5C`): see `escapedSlashProblem` */
  readonly escapedSlash: boolean;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Normalises `raw` (a path without its query, starting with `/`).
 * @returns undefined when the path is refused (400)
 */
export function normalizePath(raw: string, mergeSlashes: boolean): NormalPath | undefined {
  const pct = raw.indexOf('%');
  if (pct === -1 && !raw.includes('/.') && !(mergeSlashes && raw.includes('//'))) return { path: raw, escapedSlash: false };
  let decoded = raw;
  let escapedSlash = false;
  if (pct !== -1) {
    let out = raw.slice(0, pct);
    for (let i = pct; i < raw.length; i++) {
      const ch = raw[i] as string;
      if (ch !== '%') {
        out += ch;
        continue;
      }
      const hi = hexValue(raw.charCodeAt(i + 1));
      const lo = hexValue(raw.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return undefined;
      const code = hi * 16 + lo;
      if (code === 0) return undefined;
      const c = String.fromCharCode(code);
      if (UNRESERVED.test(c)) out += c;
      else {
        if (code === 0x2f || code === 0x5c) escapedSlash = true;
        out += `%${HEX[hi] as string}${HEX[lo] as string}`;
      }
      i += 2;
    }
    decoded = out;
  }
  const path = removeDotSegments(mergeSlashes ? decoded.replace(/\/{2,}/g, '/') : decoded);
  return path === undefined ? undefined : { path, escapedSlash };
}

/**
 * RFC 3986 section 5.2.4 on an absolute path, segment-wise.
 * @returns undefined when a `..` would climb above the root
 */
export function removeDotSegments(path: string): string | undefined {
  if (!path.includes('/.')) return path;
  const input = path.split('/');
  const out: string[] = [];
  // input[0] is the empty string before the leading '/'
  for (let i = 1; i < input.length; i++) {
    const seg = input[i] as string;
    const last = i === input.length - 1;
    if (seg === '.') {
      if (last) out.push('');
      continue;
    }
    if (seg === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(seg);
  }
  return `/${out.join('/')}`;
}

/**
 * True when an encoded slash makes the routing decision ambiguous: the matched route tests the
 * path (`path`, a `path_prefix` other than `/`) or rewrites it (`strip_prefix`). A backend that
 * decodes `%2F` would see other segments than the ones drover matched, so such a request is
 * refused (400); on a route that matches every path it is forwarded as sent (APIs put encoded
 * slashes in identifiers).
 */
export function escapedSlashProblem(route: { readonly match: { readonly path?: string | undefined; readonly pathPrefix?: string | undefined }; readonly stripPrefix?: string | undefined }): boolean {
  return route.match.path !== undefined || (route.match.pathPrefix !== undefined && route.match.pathPrefix !== '/') || route.stripPrefix !== undefined;
}
