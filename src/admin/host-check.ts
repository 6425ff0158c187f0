/**
 * The admin API's DNS-rebinding guard. A web page on `rebind.example` can have its name
 * re-pointed at 127.0.0.1 and then talk to the admin listener from the operator's browser, with
 * `Host` and `Origin` both `rebind.example:9901`, so comparing Origin with Host proves nothing.
 * What the attacker cannot choose is a name the admin listener answers to: so the admin API only
 * serves requests whose Host is an IP literal (no DNS involved, nothing to rebind), a loopback
 * name (`localhost`, `*.localhost`), or one of `admin.allowed_hosts`. Everything else gets 403
 * `{"error":"forbidden_host"}`, before any endpoint runs.
 */
import { isIP } from 'node:net';

/** The host part of a Host header value, lower-cased, without port or IPv6 brackets. */
function hostPart(value: string): string {
  const v = value.trim().toLowerCase();
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    return end === -1 ? v : v.slice(1, end);
  }
  const colon = v.indexOf(':');
  return colon === -1 ? v : v.slice(0, colon);
}

/**
 * True when the admin API answers a request with this Host header.
 * @param allowed `admin.allowed_hosts`, lower-cased: names (any port) or `name:port` (that port only)
 */
export function adminHostAllowed(host: string | undefined, allowed: readonly string[] | undefined): boolean {
  // HTTP/1.0 clients may send no Host; a browser always sends one
  if (host === undefined || host === '') return true;
  const name = hostPart(host);
  if (isIP(name) !== 0) return true;
  const lower = host.trim().toLowerCase();
  if (allowed !== undefined && (allowed.includes(name) || allowed.includes(lower))) return true;
  return name === 'localhost' || name.endsWith('.localhost') || name === 'localhost.';
}
