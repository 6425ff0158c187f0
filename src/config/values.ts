/**
 * The grammar of the values a user writes, in one place: addresses (listen, backend), weights,
 * durations and TTLs. The config schema, every registry (file, etcd, ZooKeeper, DNS, SkyDNS) and
 * the CLI (`drover register`) parse with these functions, so a value valid in one place is valid,
 * and means the same, everywhere (README "Values").
 *
 * - Backend address: `host:port` (HTTP/1.1), `http://host:port`, `https://host:port` or
 *   `h2c://host:port`, an optional trailing `/`; the port is always written out (1-65535), never
 *   guessed. Host: an IPv4 address, a bracketed IPv6 address or a DNS name (letters, digits, `-`,
 *   `_`), lower-cased. No credentials, path, query, fragment, whitespace or control character.
 * - Weight: a number > 0 and at most 1 000 000 (fractions allowed: 0.5 is half the default 1).
 * - Duration: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h` (`250ms`, `5s`,
 *   `1m30s`, `1.5s`), or `0`; printed back the same way (`formatDuration`).
 * - TTL (`drover register --ttl`): a duration of at least 1 s, rounded up to whole seconds.
 * - Servers: etcd endpoints (`http(s)://host[:port]` or `host:port`) and ZooKeeper's
 *   `host:port,host:port`, in the config and on the command line alike.
 */
import { isIP } from 'node:net';
import { formatDuration } from '../../health/duration.js';
import { fail, ok, type Result } from '../core/result.js';

export { formatDuration };

// ---- addresses ------------------------------------------------------------------------------

/** A `host:port` pair; `host` has no brackets (`::1`, not `[::1]`). */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** One DNS label: letters, digits, `_` and `-`, no `-` at either end. */
const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$/;

/** `host:port` text with IPv6 in brackets: a backend's default id, and its URL after `scheme://`. */
export function hostPortText(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function parsePort(text: string, min: number): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= min && port <= 65535 ? port : undefined;
}

/**
 * A host as written before `:port`: IPv4, `[IPv6]` (returned without brackets, in its canonical
 * form) or a DNS name (lower-cased). A name whose last label is all digits must be an IPv4
 * address (`10.0.0.300` is a typo, not a name).
 */
function parseHost(text: string): string | undefined {
  if (text.startsWith('[') && text.endsWith(']')) {
    const inner = text.slice(1, -1);
    if (isIP(inner) !== 6) return undefined;
    return new URL(`http://[${inner}]/`).hostname.slice(1, -1);
  }
  if (isIP(text) === 4) return text;
  const labels = text.split('.');
  if (text.length > 253 || !labels.every((l) => l.length <= 63 && LABEL.test(l)) || /^\d+$/.test(labels.at(-1) ?? '')) return undefined;
  return text.toLowerCase();
}

/** Parses a listen/admin address `host:port` or `[v6]:port`; port 0-65535 (0 = any free port). */
export function parseListenAddress(text: string): Result<HostPort> {
  const i = text.lastIndexOf(':');
  if (i <= 0) return fail(`"${text}" is not host:port (e.g. 127.0.0.1:8080, [::1]:8080)`);
  const host = parseHost(text.slice(0, i));
  if (host === undefined) return fail(`"${text.slice(0, i)}" is not a valid host (IPv6 needs brackets: [::1]:8080)`);
  const port = parsePort(text.slice(i + 1), 0);
  if (port === undefined) return fail(`"${text.slice(i + 1)}" is not a port (0-65535)`);
  return ok({ host, port });
}

/**
 * Schemes a backend URL may use: `http` (HTTP/1.1), `https` (HTTP/1.1 over TLS, see
 * `services.<name>.tls`) and `h2c` (HTTP/2 without TLS, e.g. gRPC servers).
 */
export const BACKEND_SCHEMES: readonly string[] = ['http', 'https', 'h2c'];

/** A backend address, normalised. */
export interface BackendUrl extends HostPort {
  /** `scheme://host:port` (scheme http, https or h2c), lower-case host, IPv6 in brackets, no path */
  readonly url: string;
  /** `host:port` (IPv6 in brackets): the default backend id */
  readonly id: string;
}

/**
 * Parses a backend address: `host:port` (http) or `scheme://host:port` with a scheme of
 * `BACKEND_SCHEMES`, an optional trailing `/` and nothing else. Surrounding whitespace is
 * ignored; the port is required, so ids (`host:port`) are never ambiguous and a forgotten port
 * is an error, not a guess of 80 or 443.
 */
export function parseBackendUrl(raw: string): Result<BackendUrl> {
  const text = raw.trim();
  if (text === '') return fail('an empty backend address');
  // A registry value with whitespace or control characters inside is a broken write, not an address.
  if (/[\x00-\x20\x7f]/.test(text)) return fail(`whitespace or a control character in ${JSON.stringify(text)}`);
  const schemed = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/is.exec(text);
  const scheme = schemed?.[1]?.toLowerCase() ?? 'http';
  if (schemed !== null && !BACKEND_SCHEMES.includes(scheme)) return fail(`"${text}" is not an http://, https:// or h2c:// URL (nor a bare host:port)`);
  const rest = schemed?.[2] ?? text;
  if (/^[^/?#]*@/.test(rest)) return fail(`"${text}": credentials in a backend URL are not supported`);
  const m = /^(\[[^\]]*\]|[^/:?#[\]]*)(?::([^/?#]*))?(\/?)(.*)$/s.exec(rest);
  if (m === null) return fail(`"${text}" is not a host:port or an http://, https:// or h2c:// URL`);
  const [, rawHost = '', rawPort, , after = ''] = m;
  const form = schemed === null ? 'host:port' : `${scheme}://host:port`;
  if (after !== '') return fail(`"${text}" has a path, query or fragment; a backend address is just ${form}`);
  const host = parseHost(rawHost);
  if (host === undefined) return fail(schemed === null && rawPort === undefined ? `"${text}" is not a host:port or an http://, https:// or h2c:// URL` : `"${rawHost}" is not a valid host`);
  if (rawPort === undefined || rawPort === '') return fail(`"${text}" needs an explicit port: ${form}`);
  const port = parsePort(rawPort, 1);
  if (port === undefined) return fail(`"${rawPort}" is not a port (1-65535)`);
  const id = hostPortText(host, port);
  return ok({ host, port, url: `${scheme}://${id}`, id });
}

/**
 * A backend address from separate JSON fields (Nerve, SkyDNS): `host` a name or IP (IPv6 with
 * or without brackets), `port` 1-65535 as a number or digits. Always `http`.
 */
export function backendFromFields(host: unknown, port: unknown): Result<BackendUrl> {
  if (typeof host !== 'string' || host === '') return fail('"host" must be a non-empty string');
  const p = typeof port === 'string' && /^\d+$/.test(port) ? Number(port) : port;
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) return fail('"port" must be a whole number 1-65535');
  const parsed = parseBackendUrl(host.includes(':') && !host.startsWith('[') ? `[${host}]:${p}` : `${host}:${p}`);
  return parsed.ok ? parsed : fail(`"host": ${parsed.reason}`);
}

/**
 * Parses one etcd client endpoint: `http://host[:port]` or `https://host[:port]`, or a bare
 * `host:port` (what etcdctl takes; http). Returns the URL drover connects to.
 */
export function parseEtcdEndpoint(raw: string): Result<string> {
  const text = raw.trim();
  if (/^[^:/]+:\d+$|^\[[^\]]+\]:\d+$/.test(text)) {
    const hp = parseListenAddress(text);
    if (!hp.ok || hp.value.port === 0) return fail(`"${text}" is not host:port or an http:// or https:// URL (e.g. http://127.0.0.1:2379)`);
    return ok(`http://${hostPortText(hp.value.host, hp.value.port)}`);
  }
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return fail(`"${text}" is not a URL (e.g. http://127.0.0.1:2379)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return fail(`"${text}" must be an http:// or https:// URL`);
  if (u.pathname !== '/' || u.search !== '' || u.hash !== '') return fail(`"${text}" must not have a path`);
  return ok(text);
}

/** Parses comma-separated etcd endpoints (`--etcd`), each as `parseEtcdEndpoint`; at least one. */
export function parseEtcdEndpoints(text: string): Result<string[]> {
  const parts = text.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (parts.length === 0) return fail('at least one endpoint is required (e.g. http://127.0.0.1:2379)');
  const out: string[] = [];
  for (const part of parts) {
    const r = parseEtcdEndpoint(part);
    if (!r.ok) return r;
    out.push(r.value);
  }
  return ok(out);
}

/**
 * Parses a comma-separated list of `host:port` servers (ZooKeeper's connect string): host as in
 * every address (IPv6 in brackets), port 1-65535. Returns it with the spaces around commas gone.
 */
export function parseServerList(text: string): Result<string> {
  const parts = text.split(',').map((x) => x.trim());
  const bad = parts.filter((x) => {
    const r = parseListenAddress(x);
    return !r.ok || r.value.port === 0;
  });
  if (parts.length === 0 || bad.length > 0) return fail(`"${bad.join(',')}" is not host:port[,host:port...] (e.g. 127.0.0.1:2181)`);
  return ok(parts.join(','));
}

// ---- HTTP fields ----------------------------------------------------------------------------

/** An HTTP token (RFC 9110 5.6.2): what a header name (and a method) is made of. */
export const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A character a header value or a reason phrase may not hold: anything but tab, visible ASCII
 * and obs-text (what node:http and undici refuse).
 */
export const FIELD_VALUE_UNSAFE = /[^\t\x20-\x7e\x80-\xff]/;

// ---- ids ------------------------------------------------------------------------------------

/**
 * A backend id, wherever it comes from (`backends[].id`, an etcd key, a znode, a SkyDNS key): no
 * `/`, whitespace or control character (ids end up in admin URLs, `/api/services/S/backends/ID`).
 * Registries' key segments naming a service follow the same rule.
 */
export const BACKEND_ID_PATTERN = /^[^/\s\u0000-\u001f\u007f]+$/;

/** True for a valid backend id (see `BACKEND_ID_PATTERN`). */
export function isBackendId(text: string | undefined): text is string {
  return text !== undefined && BACKEND_ID_PATTERN.test(text);
}

// ---- weights --------------------------------------------------------------------------------

/** Largest weight accepted anywhere; a larger one is taken for a typo. Covers DNS SRV's 0-65535. */
export const MAX_WEIGHT = 1_000_000;

/** Checks a weight: a number (or its digits) > 0 and at most `MAX_WEIGHT`. */
export function parseWeight(v: unknown): Result<number> {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) return fail(`weight must be a number, got ${JSON.stringify(v)}`);
  if (n <= 0) return fail(`weight must be > 0 (use "draining": true to stop new traffic), got ${n}`);
  if (n > MAX_WEIGHT) return fail(`weight must be <= ${MAX_WEIGHT}, got ${n}`);
  return ok(n);
}

// ---- durations ------------------------------------------------------------------------------

/**
 * Longest duration accepted, in ms: Node's timers silently fire after 1 ms for anything larger
 * than a signed 32-bit delay, so a bigger value would turn "wait a long time" into "do not wait".
 */
export const MAX_DURATION_MS = 2_147_483_647;

/** The accepted syntax, anchored; also used as the JSON Schema `pattern`. */
export const DURATION_PATTERN = /^(?:0|(?:\d+(?:\.\d+)?(?:ms|s|m|h))+)$/;

const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Sums the parts of text that matched `pattern`, in whole ms (rounded); undefined over `max`. */
function sumDuration(text: string, pattern: RegExp, max: number): number | undefined {
  const trimmed = text.trim();
  if (!pattern.test(trimmed)) return undefined;
  let total = 0;
  for (const m of trimmed.matchAll(PART)) total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? Number.NaN);
  const ms = Math.round(total);
  return Number.isFinite(ms) && ms <= max ? ms : undefined;
}

/**
 * Parses a duration string to whole milliseconds (rounded to nearest). Returns `undefined` when
 * the text does not match {@link DURATION_PATTERN} or exceeds {@link MAX_DURATION_MS}.
 */
export function parseDuration(text: string): number | undefined {
  return sumDuration(text, DURATION_PATTERN, MAX_DURATION_MS);
}

/** Why `text` is not a duration, for messages (config issues, CLI errors). */
export function durationProblem(text: string): string {
  return DURATION_PATTERN.test(text.trim())
    ? `"${text}" is too long (at most ${MAX_DURATION_MS} ms, about 596h)`
    : `"${text}" is not a duration; write e.g. 250ms, 5s, 2m, 1h or 1m30s`;
}

/** Long durations (`hsts`): the duration syntax plus a `d` unit, e.g. `365d`, `8760h`. */
export const LONG_DURATION_PATTERN = /^(?:0|(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+)$/;

/** Longest long duration, in ms: 10 years (no timer ever waits for one). */
export const MAX_LONG_DURATION_MS = 10 * 366 * 86_400_000;

/**
 * Parses a long duration (a max-age sent to clients, never a timer) to whole ms; undefined when
 * it does not match {@link LONG_DURATION_PATTERN} or exceeds {@link MAX_LONG_DURATION_MS}.
 */
export function parseLongDuration(text: string): number | undefined {
  return sumDuration(text, LONG_DURATION_PATTERN, MAX_LONG_DURATION_MS);
}

/**
 * Parses a TTL (an etcd lease, a ZooKeeper session): a duration of at least 1 s, in whole
 * seconds (rounded up: a lease never ends before the time asked for).
 */
export function parseTtlSeconds(text: string): Result<number> {
  const ms = parseDuration(text);
  if (ms === undefined) return fail(durationProblem(text));
  if (ms < 1000) return fail(`"${text}" is shorter than 1s`);
  return ok(Math.ceil(ms / 1000));
}
