/**
 * The zod schema of `drover.yaml` (snake_case, as users write it): the single source of truth for
 * validation, defaults and the published JSON Schema (`config/drover.schema.json`). Every object
 * is strict so a typo is an error, not a silently ignored key. Durations come out in ms; the
 * camelCase `DroverConfig` is built from this output by `load.ts`.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { BALANCER_NAMES } from '../../routing/policies.js';
import type { BalancerName, HashKeySpec } from '../../routing/types.js';
import { fail, ok, type Result } from '../core/result.js';
import { HTTP_TOKEN, DURATION_PATTERN, LONG_DURATION_PATTERN, MAX_WEIGHT, BACKEND_ID_PATTERN, durationProblem, parseBackendUrl, parseDuration, parseEtcdEndpoint, parseListenAddress, parseLongDuration, parseServerList, type HostPort } from './values.js';

/** Balancer names as written in YAML: owned by the routing layer, re-exported for convenience. */
export { BALANCER_NAMES };
// Fails to compile if `BalancerName` gains a member the routing list lacks.
const allBalancersListed: Exclude<BalancerName, (typeof BALANCER_NAMES)[number]> extends never ? true : false = true;
void allBalancersListed;

/** Service names end up in etcd keys and admin URLs, hence the conservative alphabet. */
export const SERVICE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HOST_MATCH_PATTERN = /^(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
/** A DNS name as written in `services.<name>.dns` (labels may start with `_`, a trailing dot is allowed). */
const HOSTNAME_PATTERN_DNS = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9])?\.)*[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9])?\.?$/;

// ---------------------------------------------------------------------------------------------
// Value parsers of the config alone (addresses, weights and durations: ./values.ts).

/** Checks a trusted-proxy entry: an IPv4/IPv6 address or CIDR. */
export function checkCidr(text: string): Result<string> {
  const [addr = '', bits, ...extra] = text.split('/');
  const family = isIP(addr);
  if (family === 0 || extra.length > 0) return fail(`"${text}" is not an IP address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`);
  if (bits === undefined) return ok(text);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return fail(`"${text}": prefix length must be 0-${max}`);
  return ok(text);
}

/** Parses `hash_key` (`ip`, `path`, `header:NAME`, `cookie:NAME`); header names are lower-cased. */
export function parseHashKey(text: string): Result<HashKeySpec> {
  if (text === 'ip') return ok({ kind: 'ip' });
  if (text === 'path') return ok({ kind: 'path' });
  const m = /^(header|cookie):(.+)$/.exec(text);
  if (m !== null && HTTP_TOKEN.test(m[2] ?? '')) {
    const name = m[2] ?? '';
    return ok(m[1] === 'header' ? { kind: 'header', name: name.toLowerCase() } : { kind: 'cookie', name });
  }
  return fail(`"${text}" is not a hash key; use ip, path, header:NAME or cookie:NAME`);
}

/** Parses `expect_status`: a status `200` or an inclusive range `200-399`. */
export function parseStatusRange(value: number | string): Result<{ min: number; max: number }> {
  const m = /^(\d{3})(?:-(\d{3}))?$/.exec(String(value));
  const min = Number(m?.[1]);
  const max = m?.[2] === undefined ? min : Number(m[2]);
  if (m === null || min < 100 || max > 599 || min > max) {
    return fail(`"${String(value)}" is not a status or range of statuses (e.g. 200, 200-399)`);
  }
  return ok({ min, max });
}

// ---------------------------------------------------------------------------------------------
// Building blocks.

/**
 * zod skips refinements once a field has failed; drover reports every problem at once, so
 * cross-field checks run whenever the value is at least a map (they read fields defensively).
 */
const onAnyMap = { when: (p: { value: unknown }): boolean => typeof p.value === 'object' && p.value !== null && !Array.isArray(p.value) };

/** Turns a parser's refusal into a zod issue, its value into the output. */
function parsedBy<T>(parse: (text: string) => Result<T>) {
  return (text: string, ctx: z.RefinementCtx): T => {
    const r = parse(text);
    if (!r.ok) {
      ctx.issues.push({ code: 'custom', message: r.reason, input: text });
      return z.NEVER;
    }
    return r.value;
  };
}

/** A duration string (`250ms`, `5s`, `2m`, `1h`, `1m30s`) that comes out as whole ms. */
function duration(description: string) {
  return z
    .string()
    .regex(DURATION_PATTERN, {
      error: (iss) => durationProblem(String(iss.input)),
    })
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.issues.push({ code: 'custom', message: durationProblem(text), input: text });
        return z.NEVER;
      }
      return ms;
    })
    .describe(description);
}

/** A max-age sent to clients (`365d`, `8760h`): the duration syntax plus days, up to 10 years. */
function longDuration(description: string) {
  return z
    .string()
    .regex(LONG_DURATION_PATTERN, { error: (iss) => `"${String(iss.input)}" is not a duration; write e.g. 365d, 8760h or 30m` })
    .transform((text, ctx) => {
      const ms = parseLongDuration(text);
      if (ms === undefined) {
        ctx.issues.push({ code: 'custom', message: `"${text}" is too long (at most 10 years)`, input: text });
        return z.NEVER;
      }
      return ms;
    })
    .describe(description);
}

function absPathish(description: string) {
  return z.string().min(1, { error: 'must not be empty' }).describe(description);
}

function urlPath(description: string) {
  return z
    .string()
    .regex(/^\/[^\s?#]*$/, { error: (iss) => `"${String(iss.input)}" must start with "/" (no spaces, query or fragment)` })
    .describe(description);
}

const envName = (description: string) =>
  z.string().regex(ENV_NAME_PATTERN, { error: (iss) => `"${String(iss.input)}" is not an environment variable name` }).describe(description);

const headerName = z
  .string()
  .regex(HTTP_TOKEN, { error: (iss) => `"${String(iss.input)}" is not a valid header name` });

/** Header values: YAML turns `2` or `true` into non-strings, which users mean as text. */
const headerValue = z
  .union([z.string(), z.number(), z.boolean()], { error: 'expected a header value (text)' })
  .transform((v) => String(v));

const address = (description: string) =>
  z
    .string()
    .transform(parsedBy(parseListenAddress))
    .describe(`${description}; host:port, e.g. 127.0.0.1:8080 or [::1]:8080`);

const certPair = z
  .strictObject({
    cert: absPathish('certificate chain, PEM (relative to the config file)'),
    key: absPathish('private key, PEM (relative to the config file)'),
  })
  .describe('one certificate and its private key');

/** ALPN protocol ids a TLS listener may offer. */
export const ALPN_PROTOCOLS = ['h2', 'http/1.1'] as const;

const tlsListener = z
  .strictObject({
    cert: absPathish('shorthand for one certificate: certificate chain, PEM (relative to the config file)').optional(),
    key: absPathish('shorthand for one certificate: private key, PEM (relative to the config file)').optional(),
    certificates: z
      .array(certPair)
      .min(1, { error: 'needs at least one certificate' })
      .optional()
      .describe('certificates chosen by SNI: exact name, then wildcard (*.example.com); the first is the default'),
    min_version: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2').describe('lowest TLS version accepted (default TLSv1.2)'),
    alpn: z
      .array(z.enum(ALPN_PROTOCOLS))
      .min(1, { error: 'needs at least one protocol' })
      .default(['h2', 'http/1.1'])
      .describe('protocols offered by ALPN, in order of preference (default [h2, http/1.1]; [http/1.1] turns HTTP/2 off)'),
    client_ca: absPathish('CA bundle, PEM: clients must present a certificate signed by it (mutual TLS)').optional(),
  })
  .superRefine((v, ctx) => {
    const short = v.cert !== undefined || v.key !== undefined;
    if (short && v.certificates !== undefined) ctx.addIssue({ code: 'custom', path: [], message: 'give either cert and key or certificates, not both' });
    else if ((v.cert === undefined) !== (v.key === undefined)) ctx.addIssue({ code: 'custom', path: [], message: 'cert and key go together' });
    else if (!short && v.certificates === undefined) ctx.addIssue({ code: 'custom', path: [], message: 'needs cert and key, or certificates' });
  }, onAnyMap)
  .describe('HTTPS (and HTTP/2 by ALPN) on this listener');

// ---------------------------------------------------------------------------------------------
// Services.

const backendSchema = z
  .strictObject({
    url: z
      .string()
      .transform(parsedBy(parseBackendUrl))
      .describe('host:port (HTTP/1.1), or http://, https:// or h2c:// host:port of the backend (port required)'),
    weight: z
      .number()
      .gt(0, { error: (iss) => `weight must be > 0 (use draining: true to stop new traffic), got ${String(iss.input)}` })
      .max(MAX_WEIGHT)
      .default(1)
      .describe(`relative share of traffic, a number > 0 and at most ${MAX_WEIGHT} (default 1)`),
    id: z
      .string()
      .regex(BACKEND_ID_PATTERN, { error: (iss) => `"${String(iss.input)}" is not a valid id (no "/", spaces or control characters)` })
      .optional()
      .describe('unique within the service (default host:port of the url)'),
    zone: z.string().min(1).optional().describe('locality label, e.g. an availability zone'),
    draining: z.boolean().default(false).describe('true: finish in-flight requests, send no new ones'),
  })
  .describe('one static backend');

const activeHealthSchema = z
  .strictObject({
    path: urlPath('HTTP path to GET (e.g. /healthz); or set tcp: true').optional(),
    tcp: z.boolean().optional().describe('true: a TCP connect is the check (instead of path)'),
    interval: duration('time between checks (default 2s)').prefault('2s'),
    timeout: duration('a check slower than this fails (default 1s)').prefault('1s'),
    rise: z.int().min(1).max(100).default(2).describe('consecutive passes to become healthy (default 2)'),
    fall: z.int().min(1).max(100).default(3).describe('consecutive failures to become unhealthy (default 3)'),
    expect_status: z
      .union([z.int().min(100).max(599), z.string().regex(/^\d{3}(?:-\d{3})?$/)], { error: 'expected a status (200) or a range (200-399)' })
      .transform((v, ctx) => parsedBy(parseStatusRange)(String(v), ctx))
      .prefault('200-399')
      .describe('status or inclusive range that counts as a pass (default 200-399)'),
  })
  .superRefine((v, ctx) => {
    if (v.path !== undefined && v.tcp === true) {
      ctx.addIssue({ code: 'custom', path: ['tcp'], message: 'use either path or tcp: true, not both' });
    } else if (v.path === undefined && v.tcp !== true) {
      ctx.addIssue({ code: 'custom', path: [], message: 'active checks need either path: /healthz or tcp: true' });
    }
  }, onAnyMap)
  .describe('active checks; omit to disable');

const passiveHealthSchema = z
  .strictObject({
    consecutive_failures: z
      .int()
      .min(1)
      .max(1000)
      .default(5)
      .describe('connect errors, resets, timeouts or 5xx in a row that eject a backend (default 5)'),
    ejection: duration('base ejection time, grows with repeated ejections (default 30s)').prefault('30s'),
    max_ejected_percent: z.number().min(0).max(100).default(50).describe('never eject more than this % of a pool (default 50)'),
  })
  .describe('passive checks (outlier ejection), on by default');

const timeoutsSchema = z
  .strictObject({
    connect: duration('TCP connect to a backend (default 2s)').prefault('2s'),
    response_headers: duration('wait for the response headers (default 30s)').prefault('30s'),
    idle: duration('longest silence while streaming a body either way (default 60s)').prefault('60s'),
  })
  .describe('per-request timeouts');

const upstreamTlsSchema = z
  .strictObject({
    ca: absPathish('CA bundle that signs the backends\' certificates, PEM (relative to the config file; default: the system CAs)').optional(),
    server_name: z
      .string()
      .regex(/^[A-Za-z0-9.-]+$/, { error: (iss) => `"${String(iss.input)}" is not a host name` })
      .optional()
      .describe('name sent in SNI and checked against the certificate (default: the backend URL host)'),
    verify: z.boolean().default(true).describe('check the backend certificate (default true); false accepts any certificate'),
  })
  .describe('TLS to https:// backends');

/** One entry of `services:`. */
export const serviceSchema = z
  .strictObject({
    balancer: z.enum(BALANCER_NAMES).default('round_robin').describe('balancing policy (default round_robin)'),
    hash_key: z
      .string()
      .transform(parsedBy(parseHashKey))
      .optional()
      .describe('balancer: hash only; ip | path | header:NAME | cookie:NAME (default ip)'),
    health: z
      .strictObject({
        active: activeHealthSchema.optional(),
        passive: passiveHealthSchema.prefault({}),
      })
      .prefault({})
      .describe('active and passive health checking'),
    slow_start: duration("ramp a new or recovered backend's weight over this window (default 0s: off)").prefault('0s'),
    panic_threshold: z
      .number()
      .min(0)
      .max(100)
      .default(50)
      .describe('% healthy below which all non-draining backends are used (default 50)'),
    retries: z
      .int()
      .min(0)
      .max(10)
      .default(2)
      .describe('retries to a different backend: connect failures always, others only for idempotent body-less requests (default 2)'),
    timeouts: timeoutsSchema.prefault({}),
    tls: upstreamTlsSchema.optional(),
    max_conns: z
      .int()
      .min(0)
      .max(1_000_000)
      .default(0)
      .describe('most requests in flight to one backend (per drover process); above it requests wait in the queue (default 0: unlimited)'),
    queue: z
      .strictObject({
        size: z.int().min(0).max(1_000_000).default(0).describe('requests that may wait for a free backend; 0: none, answer 503 backend_saturated (default 0)'),
        timeout: duration('longest wait in the queue before 503 queue_timeout (default 1s)').prefault('1s'),
      })
      .prefault({})
      .describe('where requests wait while every candidate is at max_conns (FIFO)'),
    request_buffering: z
      .strictObject({
        max_bytes: z
          .int()
          .min(1)
          .max(64 * 1024 * 1024)
          .describe('request bodies up to this many bytes are read whole from the client before a backend connection is taken; larger ones stream'),
      })
      .optional()
      .describe('read small request bodies whole before contacting a backend, so slow uploads hold no upstream connection (default off: bodies stream)'),
    zone_aware: z
      .boolean()
      .default(false)
      .describe('prefer backends whose zone equals the DROVER_ZONE environment variable while at least panic_threshold % of them are available (default false)'),
    backends: z.array(backendSchema).default([]).describe('static members, merged with the registries\''),
    dns: z
      .union(
        [
          z.strictObject({ srv: z.string().regex(HOSTNAME_PATTERN_DNS).describe('SRV name, e.g. _http._tcp.web.service.consul') }),
          z.strictObject({
            a: z.string().regex(HOSTNAME_PATTERN_DNS).describe('name whose A/AAAA records are the members'),
            port: z.int().min(1).max(65535).describe('port of every member'),
          }),
        ],
        { error: 'expected {srv: NAME} or {a: NAME, port: N}' },
      )
      .optional()
      .describe('members from DNS (registry.dns): SRV targets and ports, or A/AAAA addresses with a port'),
  })
  .superRefine((v, ctx) => {
    // hash_key with another balancer is accepted and ignored: the README's own example
    // writes it under round_robin, and keeping it lets an operator flip `balancer` alone.
    checkUniqueIds(v.backends, ctx);
  }, onAnyMap)
  .describe('a service: a pool of backends and how to use them');

// Refinements run even when a field failed to parse (zod 4 keeps going to report everything),
// so they look at their input defensively.
function checkUniqueIds(backends: unknown, ctx: z.RefinementCtx): void {
  if (!Array.isArray(backends)) return;
  const seen = new Map<string, number>();
  backends.forEach((b: unknown, i) => {
    const given = (b as { id?: unknown } | null)?.id;
    const fromUrl = ((b as { url?: unknown } | null)?.url as { id?: unknown } | undefined)?.id;
    const id = typeof given === 'string' ? given : fromUrl;
    if (typeof id !== 'string') return;
    const first = seen.get(id);
    if (first === undefined) {
      seen.set(id, i);
    } else {
      ctx.addIssue({
        code: 'custom',
        path: ['backends', i, typeof given === 'string' ? 'id' : 'url'],
        message: `duplicate backend id "${id}" (also backends.${first}); give one an explicit id`,
      });
    }
  });
}

/** Service name as a map key. */
export const serviceNameSchema = z
  .string()
  .regex(SERVICE_NAME_PATTERN, {
    error: (iss) => `"${String(iss.input)}" is not a valid service name (letters, digits, ".", "_", "-"; starts with a letter or digit)`,
  });

// ---------------------------------------------------------------------------------------------
// Routes.

const routeSchema = z
  .strictObject({
    match: z
      .strictObject({
        host: z
          .string()
          .regex(HOST_MATCH_PATTERN, { error: (iss) => `"${String(iss.input)}" is not a host name or *.suffix pattern` })
          .optional()
          .describe('exact host (api.example.com) or *.example.com; case-insensitive, port ignored'),
        path_prefix: urlPath('request path starts with this').optional(),
        path: urlPath('request path equals this (query ignored)').optional(),
        method: z
          .string()
          .regex(HTTP_TOKEN, { error: (iss) => `"${String(iss.input)}" is not an HTTP method` })
          .optional()
          .describe('HTTP method, e.g. GET'),
        headers: z.record(headerName, headerValue).optional().describe('request headers that must have exactly these values'),
      })
      .superRefine((v, ctx) => {
        if (v.path !== undefined && v.path_prefix !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['path'], message: 'use either path (exact) or path_prefix, not both' });
        }
      }, onAnyMap)
      .describe('all given conditions must hold; {} matches everything'),
    service: z.string().min(1).describe('the service that handles matching requests'),
    strip_prefix: urlPath('removed from the start of the path before forwarding').optional(),
    upgrades: z
      .array(z.string().regex(HTTP_TOKEN, { error: (iss) => `"${String(iss.input)}" is not an Upgrade protocol token` }))
      .optional()
      .describe('Upgrade protocols tunnelled on this route (default [websocket]; others get 400)'),
    request_headers: z
      .strictObject({
        set: z.record(headerName, headerValue).optional().describe('headers to set (replacing any the client sent)'),
        remove: z.array(headerName).optional().describe('headers to remove'),
      })
      .optional()
      .describe('request header rewriting'),
  })
  .describe('a route; the first match wins');

// ---------------------------------------------------------------------------------------------
// Registry.

/** Members and shared config must live in disjoint key ranges, or each would read the other's keys. */
function configPrefixOverlap(v: { prefix?: unknown; layout?: unknown; config_prefix?: unknown }): string | undefined {
  if (typeof v.config_prefix !== 'string' || v.config_prefix === '') return undefined;
  const slash = (p: string): string => (p.endsWith('/') ? p : `${p}/`);
  const members = slash(typeof v.prefix === 'string' && v.prefix !== '' ? v.prefix : v.layout === 'traefik' ? 'traefik/' : '/drover/services/');
  const shared = slash(v.config_prefix);
  if (shared.startsWith(members) || members.startsWith(shared)) {
    return `"${v.config_prefix}" overlaps the members prefix "${members}"; use a separate prefix such as /drover/config/`;
  }
  return undefined;
}

const etcdSchema = z
  .strictObject({
    endpoints: z
      .array(
        z.string().transform(parsedBy(parseEtcdEndpoint)),
      )
      .min(1, { error: 'needs at least one endpoint' })
      .describe('etcd client URLs (or host:port), e.g. [http://127.0.0.1:2379]'),
    prefix: z
      .string()
      .min(1)
      .optional()
      .describe('key prefix (default /drover/services/ for layout drover, traefik/ for layout traefik, /skydns/ for layout skydns); a trailing / is added'),
    layout: z.enum(['drover', 'traefik', 'skydns']).default('drover').describe('key layout (default drover); skydns: CoreDNS/SkyDNS JSON under /skydns/<reversed name>/<id>'),
    config_prefix: z
      .string()
      .regex(/^[^\s]+$/, { error: 'must be a key prefix without spaces, e.g. /drover/config/' })
      .optional()
      .describe('shared config: `routes` and `services/<name>` under this prefix are merged after the file\'s own (e.g. /drover/config/; a trailing / is added)'),
    min_members_ratio: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .describe('guard (default off): one etcd revision or re-list that would leave fewer than this share (0-1) of the members is held back; the removals apply with a later revision that puts none of them back, or at etcd\'s next progress notification'),
    username_env: envName('environment variable holding the etcd user name').optional(),
    password_env: envName('environment variable holding the etcd password').optional(),
    tls: z
      .strictObject({
        ca: absPathish('CA bundle, PEM').optional(),
        cert: absPathish('client certificate, PEM').optional(),
        key: absPathish('client key, PEM').optional(),
      })
      .superRefine((v, ctx) => {
        if ((v.cert === undefined) !== (v.key === undefined)) {
          ctx.addIssue({ code: 'custom', path: [], message: 'cert and key go together' });
        }
      }, onAnyMap)
      .optional()
      .describe('TLS to etcd (paths relative to the config file)'),
  })
  .superRefine((v, ctx) => {
    if ((v.username_env === undefined) !== (v.password_env === undefined)) {
      ctx.addIssue({ code: 'custom', path: [], message: 'username_env and password_env go together' });
    }
    const overlap = configPrefixOverlap(v);
    if (overlap !== undefined) ctx.addIssue({ code: 'custom', path: ['config_prefix'], message: overlap });
  }, onAnyMap)
  .describe('etcd v3 registry');

const zookeeperSchema = z
  .strictObject({
    servers: z
      .string()
      .transform(parsedBy(parseServerList))
      .describe('ZooKeeper servers, comma-separated host:port (e.g. 127.0.0.1:2181)'),
    prefix: z
      .string()
      .regex(/^\/(?:[^/\s]+(?:\/[^/\s]+)*)?\/?$/, { error: (iss) => `"${String(iss.input)}" is not a ZooKeeper path (starts with /, no empty segments)` })
      .default('/drover/services')
      .describe('znode under which <service>/<instance> live (default /drover/services)'),
    layout: z.enum(['drover', 'nerve']).default('drover').describe('drover: data as etcd values (JSON or host:port); nerve: Nerve JSON {host,port,name,weight} (default drover)'),
    session_timeout: duration('ZooKeeper session timeout asked for (the server clamps it; default 10s)').prefault('10s'),
  })
  .describe('ZooKeeper registry: ephemeral znodes <prefix>/<service>/<instance>');

const dnsServerSchema = z.string().superRefine((s, ctx) => {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+|[0-9A-Fa-f:]+))(?::(\d{1,5}))?$/.exec(s);
  const host = m?.[1] ?? m?.[2];
  const v6bare = m?.[2] !== undefined && m[2].includes(':');
  if (m === null || host === undefined || isIP(v6bare ? s : host) === 0 || (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535))) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not an IP address with an optional port (e.g. 127.0.0.1:53, [::1]:53)` });
  }
});

const dnsRegistrySchema = z
  .strictObject({
    servers: z.array(dnsServerSchema).min(1).optional().describe('DNS servers, IP[:port] (default: the system resolvers)'),
    refresh: duration('re-resolve at least this often; shorter answer TTLs are honoured, never below 1s (default 5s)').prefault('5s'),
    timeout: duration('wait for one answer before retrying (default 1s)').prefault('1s'),
  })
  .describe('DNS registry: members from SRV or A/AAAA records named by services.<name>.dns');

// ---------------------------------------------------------------------------------------------
// ACME.

/** A DNS name http-01 can validate: no wildcard, no port, no trailing dot. */
const DNS_NAME_PATTERN = /^(?=.{1,253}$)(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;

function checkDirectoryUrl(text: string): string | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return `"${text}" is not a URL (e.g. https://acme-v02.api.letsencrypt.org/directory)`;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return `"${text}" must be an https:// URL`;
  return undefined;
}

const acmeSchema = z
  .strictObject({
    directory: z
      .string()
      .superRefine((s, ctx) => {
        const err = checkDirectoryUrl(s);
        if (err !== undefined) ctx.addIssue({ code: 'custom', message: err });
      })
      .describe("the ACME server's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory"),
    email: z.email({ error: (iss) => `"${String(iss.input)}" is not an e-mail address` }).optional().describe('contact address for the ACME account'),
    domains: z
      .array(z.string().regex(DNS_NAME_PATTERN, { error: (iss) => `"${String(iss.input)}" is not a DNS name http-01 can validate (no wildcards)` }))
      .min(1, { error: 'needs at least one domain' })
      .describe('names on the certificate (one certificate for all of them; the first is its name)'),
    storage: absPathish('directory for the account key and certificates (relative to the config file; default acme/)').default('acme/'),
    ca: absPathish('PEM CA to trust for the directory (test servers such as pebble); default: the system CAs').optional(),
  })
  .describe('obtain and renew certificates with ACME http-01 (answered on the plain listeners)');

// ---------------------------------------------------------------------------------------------
// The file.

/** Limits on client connections and requests (`limits:` and `listen[].limits:`), without defaults. */
const limitFields = {
  max_header_bytes: z.int().min(1024).max(1024 * 1024).describe('request line + headers, bytes; larger heads get 431 (default 16384)'),
  max_headers: z.int().min(1).max(10_000).describe('most header fields in one request; more get 431 (default 100)'),
  max_url_bytes: z.int().min(64).max(1024 * 1024).describe('longest request target, bytes; longer get 414 (default 8192)'),
  headers_timeout: duration('time to receive the complete request head; slower clients get 408 (default 10s)'),
  request_timeout: duration('time to receive the complete request, body included; slower clients get 408 (default 5m)'),
  send_timeout: duration('a client that takes no byte of a pending response for this long is disconnected: slow readers (default 60s)'),
  keep_alive_timeout: duration('an idle keep-alive client connection is closed after this (default 60s)'),
  max_connections: z.int().min(1).max(1_000_000).describe('concurrent client connections per listener; more are closed at once (default 10000)'),
};

const limitsSchema = z
  .strictObject({
    max_header_bytes: limitFields.max_header_bytes.default(16 * 1024),
    max_headers: limitFields.max_headers.default(100),
    max_url_bytes: limitFields.max_url_bytes.default(8192),
    headers_timeout: limitFields.headers_timeout.prefault('10s'),
    request_timeout: limitFields.request_timeout.prefault('5m'),
    send_timeout: limitFields.send_timeout.prefault('60s'),
    keep_alive_timeout: limitFields.keep_alive_timeout.prefault('60s'),
    max_connections: limitFields.max_connections.default(10_000),
  })
  .describe('limits on client connections and requests, for every listener (each listener may override any of them)');

const listenLimitsSchema = z
  .strictObject(limitFields)
  .partial()
  .describe("this listener's limits; unset keys come from the top-level limits");

const listenSchema = z
  .strictObject({
    address: address('where to accept client connections (port 0: any free port)'),
    tls: tlsListener.optional(),
    redirect_https: z.boolean().default(false).describe('answer every request 308 to https://<host><path>, proxy nothing (plain listeners only; default false)'),
    hsts: longDuration('> 0 adds Strict-Transport-Security: max-age=N (seconds) to the answers of this listener, e.g. 365d (default 0s: off)').prefault('0s'),
    limits: listenLimitsSchema.optional(),
  })
  .superRefine((v, ctx) => {
    if (v.redirect_https === true && v.tls !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['redirect_https'], message: 'redirect_https is for plain listeners: this one already serves HTTPS' });
    }
  }, onAnyMap)
  .describe('one listener');

/** The whole `drover.yaml`. */
export const configSchema = z
  .strictObject({
    listen: z
      .array(listenSchema)
      .min(1, { error: 'needs at least one listener' })
      .prefault([{ address: '127.0.0.1:8080' }])
      .describe('listeners (default one on 127.0.0.1:8080)'),
    limits: limitsSchema.prefault({}),
    trusted_proxies: z
      .array(
        z.string().superRefine((s, ctx) => {
          const r = checkCidr(s);
          if (!r.ok) ctx.addIssue({ code: 'custom', message: r.reason });
        }),
      )
      .default([])
      .describe('CIDRs whose X-Forwarded-* headers are kept and appended to (default none)'),
    merge_slashes: z.boolean().default(true).describe('runs of "/" in request paths are merged into one before routing (default true)'),
    access_log: z.string().min(1).default('stdout').describe('off | stdout | PATH (JSON lines; default stdout)'),
    shutdown_grace: duration('on SIGTERM/SIGINT, time to let in-flight requests finish (default 30s)').prefault('30s'),
    workers: z
      .union([z.int().min(1).max(1024), z.literal('auto')], { error: 'expected a positive whole number or "auto"' })
      .default(1)
      .describe('serving processes: 1 | N | auto (default 1)'),
    admin: z
      .strictObject({
        address: address('admin API, metrics and dashboard (default 127.0.0.1:9901)').prefault('127.0.0.1:9901'),
        token_env: envName('if this variable is set, POST endpoints need "Authorization: Bearer <token>" (default DROVER_ADMIN_TOKEN)').default(
          'DROVER_ADMIN_TOKEN',
        ),
        allowed_hosts: z
          .array(z.string().min(1))
          .optional()
          .describe('Host values (host or host:port) the admin API answers; default: loopback names and the admin address (DNS rebinding guard)'),
      })
      .prefault({})
      .describe('admin endpoint'),
    registry: z
      .strictObject({
        file: absPathish('YAML file of services and backends, watched (relative to the config file)').optional(),
        etcd: etcdSchema.optional(),
        zookeeper: zookeeperSchema.optional(),
        dns: dnsRegistrySchema.optional(),
      })
      .prefault({})
      .describe('where members come from besides services: (any subset; merged per service)'),
    acme: acmeSchema.optional(),
    services: z.record(serviceNameSchema, serviceSchema).default({}).describe('services by name'),
    routes: z.array(routeSchema).default([]).describe('routes in order; the first match wins'),
  })
  .superRefine((v, ctx) => {
    const seen = new Map<string, number>();
    if (!Array.isArray(v.listen)) return;
    v.listen.forEach((l: unknown, i) => {
      const a = (l as { address?: Partial<HostPort> } | null)?.address;
      if (typeof a?.host !== 'string' || typeof a.port !== 'number') return;
      const key = `${a.host}:${a.port}`;
      const first = seen.get(key);
      if (a.port !== 0 && first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['listen', i, 'address'], message: `duplicate listener (also listen.${first})` });
      }
      seen.set(key, i);
    });
    // http-01 is answered on plain listeners only: without one, no certificate could ever be issued
    if (v.acme !== undefined && v.listen.every((l: unknown) => (l as { tls?: unknown } | null)?.tls !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['acme'], message: 'acme needs a listener without tls: http-01 challenges are answered on plain listeners (port 80 for public ACME servers)' });
    }
  }, onAnyMap)
  .meta({ title: 'drover configuration (drover.yaml)' });

/** The parsed, defaulted (but not yet resolved) config: snake_case, durations in ms. */
export type ParsedConfig = z.output<typeof configSchema>;
/** What a user may write. */
export type ConfigInput = z.input<typeof configSchema>;

/** A registry file: `services:` map or directly `service -> {backends: [...]}`; members only. */
const servicesFileEntrySchema = z
  .strictObject({ backends: z.array(backendSchema).default([]).describe('members of this service') })
  .superRefine((v, ctx) => checkUniqueIds(v.backends, ctx), onAnyMap);

/** Schema of the registry file's service map (`service -> {backends}`). */
export const servicesFileMapSchema = z.record(serviceNameSchema, servicesFileEntrySchema);

/** Keys of `services.NAME` that only make sense in drover.yaml; used for a better message. */
export const SERVICE_ONLY_KEYS: readonly string[] = Object.keys(serviceSchema.shape).filter((k) => k !== 'backends');
