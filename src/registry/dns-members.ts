/**
 * Pure rules that turn DNS answers into members (test/dns-members.test.ts): SRV priority groups
 * and weights, address records, TTLs. The DNS registry (src/registry/dns.ts) does the queries.
 *
 * SRV (RFC 2782): every record of the lowest priority value whose target resolves to at least
 * one address is used; higher priority values are fallbacks, used only while no record of a lower
 * one resolves. The registry does not see drover's health state, so "available" here means
 * "resolvable": a lower group whose targets resolve but are all down stays selected (the pool's
 * panic threshold and health checks handle that). Weight: the SRV weight, with 0 read as 1
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
export function addressMembers(addresses: readonly string[], port: number, weight = 1, meta?: Record<string, unknown>): MemberSpec[] {
  // `addr:port` with IPv6 in brackets, as a backend's default id and URL are written everywhere
  return addresses.map((a) => ({
    id: hostPortText(a, port),
    url: `http://${hostPortText(a, port)}`,
    weight,
    draining: false,
    source: DNS_SOURCE,
    ...(meta !== undefined ? { meta } : {}),
  }));
}

/** The priority values present, lowest first (each is tried in turn by `pickSrvGroup`). */
export function priorityGroups(records: readonly SrvRecord[]): number[][] {
  const byPriority = new Map<number, number[]>();
  records.forEach((r, i) => byPriority.set(r.priority, [...(byPriority.get(r.priority) ?? []), i]));
  return [...byPriority.entries()].sort((a, b) => a[0] - b[0]).map(([, idx]) => idx);
}

/**
 * Members of the lowest priority group with at least one resolvable target. `resolve(target)`
 * gives that target's addresses (undefined: it resolved to nothing). Duplicates (same address
 * and port) keep the first. TTL: the lowest of the group's SRV and address TTLs.
 */
export async function pickSrvGroup(records: readonly SrvRecord[], resolve: (target: string) => Promise<Addresses | undefined>): Promise<Resolution> {
  for (const group of priorityGroups(records)) {
    const members: MemberSpec[] = [];
    const seen = new Set<string>();
    let ttl = Infinity;
    for (const i of group) {
      const r = records[i] as SrvRecord;
      const addrs = await resolve(r.target);
      if (addrs === undefined || addrs.addresses.length === 0) continue;
      ttl = Math.min(ttl, r.ttl, addrs.ttl);
      for (const m of addressMembers(addrs.addresses, r.port, Math.max(1, r.weight), { target: r.target, priority: r.priority, srv_weight: r.weight })) {
        if (seen.has(m.id)) continue;
        seen.add(m.id);
        members.push(m);
      }
    }
    if (members.length > 0) return { members, ttl };
  }
  return { members: [], ttl: Infinity };
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
