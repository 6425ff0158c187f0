/**
 * Pure rules that turn DNS answers into members (test/dns-registry.test.ts): SRV priorities and
 * weights, address records, TTLs. The DNS registry (src/registry/dns.ts) does the queries.
 *
 * SRV (RFC 2782): every record whose target resolves to at least one address becomes members
 * (one per address) carrying the rank of the record's priority as the member's `priority`; the pool serves
 * only the lowest priority with an available member (health checks, passive ejection and drains
 * included), so higher values are fallbacks that take traffic only while every member of the
 * lower ones is down (routing/pool.ts `servingLevel`). Weight: the SRV weight, with 0 read as 1
 * (drover's weights are > 0; a 0 record then gets an equal share instead of "almost none").
 */
import type { MemberSpec } from '../../routing/types.js';
import { hostPortText } from '../config/values.js';

/** The `source` of every member the DNS registry reports. */
export const DNS_SOURCE = 'dns';

/** Shortest re-resolution interval, whatever the TTL says (ms). */
export const MIN_TTL_MS = 1000;

/** One SRV record's data. */
export interface SrvRecord {
  readonly target: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
  /** seconds */
  readonly ttl: number;
}

/** Addresses of one name and the lowest TTL among them (seconds). */
export interface Addresses {
  readonly addresses: readonly string[];
  readonly ttl: number;
}

/** A member list and how long it may be trusted (seconds; Infinity when nothing says). */
export interface Resolution {
  readonly members: MemberSpec[];
  readonly ttl: number;
}

/** Members for addresses with one port (A/AAAA, or one SRV record). */
export function addressMembers(addresses: readonly string[], port: number, weight = 1, meta?: Record<string, unknown>, priority?: number): MemberSpec[] {
  // `addr:port` with IPv6 in brackets, as a backend's default id and URL are written everywhere
  return addresses.map((a) => ({
    id: hostPortText(a, port),
    url: `http://${hostPortText(a, port)}`,
    weight,
    draining: false,
    source: DNS_SOURCE,
    ...(priority !== undefined ? { priority } : {}),
    ...(meta !== undefined ? { meta } : {}),
  }));
}

/**
 * Members of every SRV record whose target resolves, lowest priority first. A member's
 * `priority` is the rank of its record's priority among those of the resolvable records (the
 * lowest is 0, the next 1...), so the primary group is level 0 like the members of every other
 * source of the service, and the fallbacks come after them; `meta.priority` keeps the SRV value.
 * `resolve(target)` gives that target's addresses (undefined: it resolved to nothing). An address
 * and port named twice keeps its lowest priority (then its first record). TTL: the lowest of the
 * SRV and address TTLs used.
 */
export async function srvMembers(records: readonly SrvRecord[], resolve: (target: string) => Promise<Addresses | undefined>): Promise<Resolution> {
  const ordered = records.map((r, i) => ({ r, i })).sort((x, y) => x.r.priority - y.r.priority || x.i - y.i);
  const members: MemberSpec[] = [];
  const seen = new Set<string>();
  let ttl = Infinity;
  let rank = -1;
  let rankOf: number | undefined;
  for (const { r } of ordered) {
    const addrs = await resolve(r.target);
    if (addrs === undefined || addrs.addresses.length === 0) continue;
    if (r.priority !== rankOf) {
      rankOf = r.priority;
      rank++;
    }
    ttl = Math.min(ttl, r.ttl, addrs.ttl);
    for (const m of addressMembers(addrs.addresses, r.port, Math.max(1, r.weight), { target: r.target, priority: r.priority, srv_weight: r.weight }, rank)) {
      if (seen.has(m.id)) continue;
      seen.add(m.id);
      members.push(m);
    }
  }
  return { members, ttl };
}

/** When to resolve next after a good answer: its TTL, within [MIN_TTL_MS, refreshMs]. */
export function nextResolveMs(ttlSeconds: number, refreshMs: number): number {
  const ttlMs = Number.isFinite(ttlSeconds) ? ttlSeconds * 1000 : refreshMs;
  return Math.max(MIN_TTL_MS, Math.min(ttlMs, refreshMs));
}

/**
 * Whether an empty answer (NXDOMAIN or no records) may empty the service: only the second in a
 * row does, so one glitch of a server (or a record being rewritten) never empties a pool.
 */
export function emptyConfirmed(consecutiveEmpty: number): boolean {
  return consecutiveEmpty >= 2;
}
