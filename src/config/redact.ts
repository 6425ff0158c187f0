/**
 * The one redactor: what `GET /api/config`, the route table view and any other admin answer show
 * of values that may be secrets. drover.yaml holds no secrets itself (only the names of the
 * variables that do), but anything that looks like one is masked anyway, so a future key, a
 * header set on the way to a backend or credentials in a URL cannot leak by accident.
 *
 * Rules: a key that ends like a secret's name (`password`, `secret`, `token`, `apiKey`,
 * `authorization`, `cookie`...) has its value replaced; names of variables holding one
 * (`token_env`, `passwordEnv`) and file paths (`tls.key`) stay visible. A header (a `{name,
 * value}` pair, or a header name in a route's match) whose name mentions auth, key, token,
 * secret, cookie or pass has its value replaced. `user:password@` in a URL loses the password.
 */

/** The placeholder that replaces a redacted value. */
export const REDACTED = '[redacted]';

/**
 * Keys whose values are secrets. Anchored at the end so that `token_env` / `passwordEnv` (names
 * of variables that hold a secret) and `tls.key` (a file path) stay visible.
 */
const SECRET_KEY = /(pass(word|wd)?|secret|token|credentials?|authorization|api[_-]?key|private[_-]?key|cookie)$/i;

/** Header names whose values may be credentials (`Authorization`, `X-Api-Key`, `Cookie`, `X-Auth-Token`...). */
const SECRET_HEADER = /(auth|key|token|secret|cookie|pass)/i;

/** A header's value as shown: redacted when its name says it may be a credential. */
export function redactHeader(name: string, value: string): string {
  return SECRET_HEADER.test(name) ? REDACTED : value;
}

/**
 * Returns a deep copy of `value` with secret-looking keys' values replaced by `[redacted]` and
 * passwords removed from URLs (`http://user:pw@host`). Maps become objects, sets arrays; cycles
 * become `[circular]`; what JSON cannot carry is dropped or made text. Idempotent.
 */
export function redact(value: unknown, seen: WeakSet<object> = new WeakSet()): unknown {
  if (typeof value === 'string') return redactUrl(value);
  if (value === null || typeof value !== 'object') {
    // JSON cannot carry these; keep the output serialisable.
    if (typeof value === 'bigint') return value.toString();
    if (typeof value === 'function' || typeof value === 'symbol') return undefined;
    return value;
  }
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => redact(v, seen));
    if (value instanceof Map) return redact(Object.fromEntries(value), seen);
    if (value instanceof Set) return redact([...value], seen);
    const out: Record<string, unknown> = {};
    // A header as config holds it, `{name: "Authorization", value: "Bearer ..."}` (route
    // `request_headers.set`, `match.headers`): the secret is in `value`, named by `name`.
    const pairName = (value as { name?: unknown }).name;
    const secretPair = typeof pairName === 'string' && 'value' in value && (SECRET_KEY.test(pairName) || SECRET_HEADER.test(pairName));
    for (const [k, v] of Object.entries(value)) {
      const secret = SECRET_KEY.test(k) || (secretPair && k === 'value');
      out[k] = secret && v !== null && v !== undefined && v !== '' ? REDACTED : redact(v, seen);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

function redactUrl(s: string): string {
  // Only strings that look like URLs with credentials: `scheme://user:password@host...`.
  return s.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@\s]*):[^/@\s]*@/i, `$1:${REDACTED}@`);
}
