/**
 * The `skydns` layout of the etcd registry: the records SkyDNS and CoreDNS's etcd plugin serve,
 * and that registrator's `skydns2` backend writes:
 *
 *   /skydns/<reversed domain labels>/<id>  =  {"host":"10.0.0.5","port":8080,"priority":10,"weight":10,"ttl":30}
 *
 * Service name: the domain name that the labels between the prefix and the id spell, read back
 * in DNS order. With the default prefix `/skydns/`, `/skydns/local/skydns/web/x1` is member `x1`
 * of service `web.skydns.local`; with prefix `/skydns/local/skydns/` the same key is member `x1`
 * of service `web`. So a drover that only serves one domain sets the prefix to that domain and
 * names its services by their leaf label.
 *
 * `weight` becomes the member weight (0 or absent: 1). `priority` and `ttl` are DNS-side
 * settings: etcd is watched, so `ttl` means nothing here, and priority groups are not applied
 * (every record of a name is a member). A record without `port` (an A record only) is invalid:
 * a member needs a port. Pure; no I/O.
 */
import type { MemberSpec } from '../../routing/types.js';
import { KeyPerMemberModel, parseJsonObject, type KeyspaceModel } from './etcd-values.js';
import { backendFromFields, isBackendId, parseWeight } from '../config/values.js';
import type { Result } from '../core/result.js';

/** Where a `skydns`-layout key points. */
export interface SkyDnsKey {
  /** the domain name below the prefix, in DNS order (`web.skydns.local`) */
  readonly service: string;
  readonly id: string;
}

const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9])?$/;

/** Splits `<prefix><label>/.../<label>/<id>` into the service (labels reversed, joined by `.`) and the id. */
export function parseSkyDnsKey(prefix: string, key: string): Result<SkyDnsKey> {
  if (!key.startsWith(prefix)) return { ok: false, reason: `key is outside the prefix ${prefix}` };
  const parts = key.slice(prefix.length).split('/');
  const id = parts.pop();
  if (id === undefined || !isBackendId(id) || parts.length === 0) return { ok: false, reason: `key must be ${prefix}<reversed domain labels>/<id>` };
  if (!parts.every((l) => LABEL.test(l))) return { ok: false, reason: `key must be ${prefix}<reversed domain labels>/<id> with DNS labels` };
  return { ok: true, value: { service: parts.reverse().join('.').toLowerCase(), id } };
}

/** Parses a SkyDNS record value into a member's url and weight. */
export function parseSkyDnsValue(raw: string): Result<{ url: string; weight: number; meta: Record<string, unknown> }> {
  const doc = parseJsonObject(raw);
  if (!doc.ok) return doc;
  const d = doc.value;
  if (d['port'] === undefined) return { ok: false, reason: '"port" is missing (a record without port is an A record, not a member)' };
  const backend = backendFromFields(d['host'], d['port']);
  if (!backend.ok) return backend;
  // SkyDNS: a weight of 0 (or none) means "no weight given", i.e. the default 1
  const w = d['weight'];
  let weight = 1;
  if (w !== undefined && w !== 0) {
    const parsed = typeof w === 'number' ? parseWeight(w) : undefined;
    if (parsed === undefined || !parsed.ok) return { ok: false, reason: `"weight": ${parsed?.reason ?? `weight must be a number, got ${JSON.stringify(w)}`}` };
    weight = parsed.value;
  }
  const meta: Record<string, unknown> = {};
  if (typeof d['priority'] === 'number') meta['priority'] = d['priority'];
  return { ok: true, value: { url: backend.value.url, weight, meta } };
}

/** SkyDNS's and CoreDNS's default priority of a record that names none. */
export const SKYDNS_DEFAULT_PRIORITY = 10;

/**
 * A record's priority as the member's priority level (the lowest level with an available member
 * serves, as a DNS client of SkyDNS/CoreDNS would use the SRV answer): an integer >= 0 as given,
 * anything else the SkyDNS default 10.
 */
export function skyDnsPriority(meta: Readonly<Record<string, unknown>>): number {
  const p = meta['priority'];
  return typeof p === 'number' && Number.isInteger(p) && p >= 0 ? p : SKYDNS_DEFAULT_PRIORITY;
}

/** `skydns` layout: one key per member. */
export function skyDnsModel(prefix: string, source: string): KeyspaceModel {
  return new KeyPerMemberModel((key, value) => {
    const k = parseSkyDnsKey(prefix, key);
    if (!k.ok) return k;
    const v = parseSkyDnsValue(value);
    if (!v.ok) return v;
    const member: MemberSpec = { id: k.value.id, url: v.value.url, weight: v.value.weight, draining: false, source, priority: skyDnsPriority(v.value.meta), meta: v.value.meta };
    return { ok: true, value: { service: k.value.service, member } };
  });
}
