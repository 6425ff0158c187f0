/**
 * Pure parsing of the etcd key space into members: key layouts, value forms and the incremental
 * model the etcd registry feeds with raw puts and deletes. No I/O here, so every rule is
 * table-testable (test/etcd-values.test.ts).
 *
 * Layouts (README "Registry keys"):
 * - `drover`: `<prefix><service>/<instance-id>` = JSON `{"url","weight","zone","draining","meta"}`,
 *   or bare `host:port`, or `http://host:port` (`https://` and `h2c://` too): addresses and
 *   weights follow the one grammar of src/config/values.ts.
 * - `traefik`: `<prefix>http/services/<svc>/loadbalancer/servers/<n>/url` and `.../weight`.
 * - `skydns`: `<prefix><reversed domain labels>/<id>` = SkyDNS JSON (src/registry/skydns-values.ts).
 *   The model for a layout comes from src/registry/keyspace.ts.
 *
 * Invalid values are reported and skipped. An invalid update to a key that had a valid value
 * removes nothing: the last valid member stays (a registry typo never empties a pool).
 */
import type { MemberSpec } from '../../routing/types.js';
import { fail, ok, type Result } from '../core/result.js';
import { isBackendId, parseBackendUrl, parseWeight } from '../config/values.js';

/** Key layouts of the etcd registry (`registry.etcd.layout`). */
export type EtcdLayout = 'drover' | 'traefik' | 'skydns';

/** The `source` of every member the etcd registry reports. */
export const ETCD_SOURCE = 'etcd';


/** The fields of a member that come from a value (everything but `id` and `source`). */
export interface MemberValue {
  /** normalised origin `http://host:port` */
  readonly url: string;
  /** > 0, default 1 */
  readonly weight: number;
  readonly zone?: string | undefined;
  /** default false */
  readonly draining: boolean;
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/** Where a `drover`-layout key points. */
export interface DroverKey {
  readonly service: string;
  readonly id: string;
}

/** Where a `traefik`-layout key points. */
export interface TraefikKey {
  readonly service: string;
  /** the `<n>` of `servers/<n>/`, used as the member id */
  readonly server: string;
  readonly field: 'url' | 'weight';
}


function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses a `drover`-layout value: JSON object, bare `host:port` or `http://host:port`.
 * JSON fields other than url/weight/zone/draining/meta are ignored (forward compatibility).
 */
export function parseMemberValue(raw: string): Result<MemberValue> {
  const text = raw.trim();
  if (text === '') return fail('empty value');
  if (!text.startsWith('{')) {
    const backend = parseBackendUrl(text);
    return backend.ok ? ok({ url: backend.value.url, weight: 1, draining: false }) : backend;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return fail(`invalid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(doc)) return fail('value must be a JSON object');
  if (typeof doc['url'] !== 'string') return fail('"url" must be a string');
  const backend = parseBackendUrl(doc['url']);
  if (!backend.ok) return fail(`"url": ${backend.reason}`);
  let weight = 1;
  if (doc['weight'] !== undefined) {
    if (typeof doc['weight'] !== 'number') return fail('"weight" must be a number');
    const w = parseWeight(doc['weight']);
    if (!w.ok) return fail(`"weight": ${w.reason}`);
    weight = w.value;
  }
  const zone = doc['zone'];
  if (zone !== undefined && zone !== null && typeof zone !== 'string') return fail('"zone" must be a string');
  const draining = doc['draining'];
  if (draining !== undefined && typeof draining !== 'boolean') return fail('"draining" must be true or false');
  const meta = doc['meta'];
  if (meta !== undefined && meta !== null && !isPlainObject(meta)) return fail('"meta" must be an object');
  return ok({
    url: backend.value.url,
    weight,
    zone: typeof zone === 'string' && zone !== '' ? zone : undefined,
    draining: draining === true,
    meta: isPlainObject(meta) ? meta : undefined,
  });
}

/**
 * Splits a `drover`-layout key `<prefix><service>/<instance-id>`. Keys outside the prefix, or
 * deeper or shallower than service/id, are refused (the registry counts them invalid).
 */
export function parseDroverKey(prefix: string, key: string): Result<DroverKey> {
  // each segment, the service and the member, follows the id rule (control characters and
  // whitespace are a writer's bug)
  if (!key.startsWith(prefix)) return fail(`key is outside the prefix ${prefix}`);
  const parts = key.slice(prefix.length).split('/');
  if (parts.length !== 2 || !isBackendId(parts[0]) || !isBackendId(parts[1])) {
    return fail(`key must be ${prefix}<service>/<instance-id>`);
  }
  return ok({ service: parts[0], id: parts[1] });
}

/**
 * Recognises `<prefix>http/services/<svc>/loadbalancer/servers/<n>/(url|weight)`. Returns
 * undefined for every other key: a Traefik tree holds routers, middlewares and options that are
 * simply not ours, so they are neither members nor invalid.
 */
export function parseTraefikKey(prefix: string, key: string): TraefikKey | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const p = key.slice(prefix.length).split('/');
  if (p.length !== 7 || p[0] !== 'http' || p[1] !== 'services' || p[3] !== 'loadbalancer' || p[4] !== 'servers') {
    return undefined;
  }
  const field = p[6];
  if ((field !== 'url' && field !== 'weight') || !isBackendId(p[2]) || !isBackendId(p[5])) return undefined;
  return { service: p[2], server: p[5], field };
}

/** What applying one raw change did, in order; the registry forwards these to its sink. */
export type ModelEffect =
  | { readonly type: 'put'; readonly service: string; readonly member: MemberSpec }
  | { readonly type: 'delete'; readonly service: string; readonly id: string }
  | { readonly type: 'invalid'; readonly key: string; readonly reason: string };

/** The incremental view of one prefix: raw puts/deletes in, member effects out. */
export interface KeyspaceModel {
  /** Applies a put of `value` at `key` (both decoded as UTF-8). */
  put(key: string, value: string): ModelEffect[];
  /** Applies a delete of `key`. */
  delete(key: string): ModelEffect[];
  /** Every member currently known, per service (what a full list yields). */
  snapshot(): Map<string, MemberSpec[]>;
}

function member(id: string, v: MemberValue, source: string): MemberSpec {
  return { id, url: v.url, weight: v.weight, zone: v.zone, draining: v.draining, source, meta: v.meta };
}

/** Turns one key and its value into a member of one service, or says why not. */
export type KeyMemberParser = (key: string, value: string) => Result<{ readonly service: string; readonly member: MemberSpec }>;

/**
 * A layout with one key per member (drover, skydns): `parse` reads a key and its value; an
 * invalid update leaves the key's last valid member in place.
 */
export class KeyPerMemberModel implements KeyspaceModel {
  // key -> last valid member; invalid updates leave the entry alone
  private readonly members = new Map<string, { service: string; member: MemberSpec }>();
  constructor(private readonly parse: KeyMemberParser) {}

  put(key: string, value: string): ModelEffect[] {
    const r = this.parse(key, value);
    if (!r.ok) return [{ type: 'invalid', key, reason: r.reason }];
    this.members.set(key, { service: r.value.service, member: r.value.member });
    return [{ type: 'put', service: r.value.service, member: r.value.member }];
  }

  delete(key: string): ModelEffect[] {
    const entry = this.members.get(key);
    if (entry === undefined) return [];
    this.members.delete(key);
    return [{ type: 'delete', service: entry.service, id: entry.member.id }];
  }

  snapshot(): Map<string, MemberSpec[]> {
    const out = new Map<string, MemberSpec[]>();
    for (const { service, member: m } of this.members.values()) {
      const list = out.get(service) ?? [];
      list.push(m);
      out.set(service, list);
    }
    return out;
  }
}

/** `drover` layout: one key per member, `<prefix><service>/<id>` = a member value. */
export function droverModel(prefix: string, source: string): KeyspaceModel {
  return new KeyPerMemberModel((key, value) => {
    const k = parseDroverKey(prefix, key);
    if (!k.ok) return k;
    const v = parseMemberValue(value);
    if (!v.ok) return v;
    return ok({ service: k.value.service, member: member(k.value.id, v.value, source) });
  });
}

/** Parses JSON that must be an object. */
export function parseJsonObject(raw: string): Result<Record<string, unknown>> {
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (err) {
    return fail(`invalid JSON: ${(err as Error).message}`);
  }
  return isPlainObject(doc) ? ok(doc) : fail('value must be a JSON object');
}

interface TraefikServer {
  url?: string | undefined;
  weight?: string | undefined;
  /** what we last reported for this server */
  current?: MemberSpec | undefined;
}

/**
 * `traefik` layout: a server exists once its `url` key does; `weight` comes from the sibling key
 * (default 1; an invalid weight is reported and counts as 1).
 */
export class TraefikModel implements KeyspaceModel {
  private readonly servers = new Map<string, Map<string, TraefikServer>>();
  constructor(
    private readonly prefix: string,
    private readonly source: string,
  ) {}

  put(key: string, value: string): ModelEffect[] {
    const k = parseTraefikKey(this.prefix, key);
    if (k === undefined) return [];
    const server = this.server(k.service, k.server);
    if (k.field === 'url') server.url = value;
    else server.weight = value;
    return this.recompute(key, k.service, k.server, server);
  }

  delete(key: string): ModelEffect[] {
    const k = parseTraefikKey(this.prefix, key);
    if (k === undefined) return [];
    const byId = this.servers.get(k.service);
    const server = byId?.get(k.server);
    if (byId === undefined || server === undefined) return [];
    if (k.field === 'url') {
      server.url = undefined;
      const had = server.current !== undefined;
      server.current = undefined;
      if (server.weight === undefined) byId.delete(k.server);
      if (byId.size === 0) this.servers.delete(k.service);
      return had ? [{ type: 'delete', service: k.service, id: k.server }] : [];
    }
    server.weight = undefined;
    if (server.url === undefined) {
      byId.delete(k.server);
      if (byId.size === 0) this.servers.delete(k.service);
      return [];
    }
    return this.recompute(key, k.service, k.server, server);
  }

  snapshot(): Map<string, MemberSpec[]> {
    const out = new Map<string, MemberSpec[]>();
    for (const [service, byId] of this.servers) {
      const list: MemberSpec[] = [];
      for (const s of byId.values()) if (s.current !== undefined) list.push(s.current);
      if (list.length > 0) out.set(service, list);
    }
    return out;
  }

  private server(service: string, id: string): TraefikServer {
    let byId = this.servers.get(service);
    if (byId === undefined) this.servers.set(service, (byId = new Map()));
    let s = byId.get(id);
    if (s === undefined) byId.set(id, (s = {}));
    return s;
  }

  private recompute(key: string, service: string, id: string, s: TraefikServer): ModelEffect[] {
    if (s.url === undefined) return [];
    const effects: ModelEffect[] = [];
    const backend = parseBackendUrl(s.url);
    if (!backend.ok) {
      // Report against the url key even when the weight changed: that is what needs fixing.
      const urlKey = key.replace(/weight$/, 'url');
      return [{ type: 'invalid', key: urlKey, reason: backend.reason }];
    }
    let weight = 1;
    if (s.weight !== undefined) {
      const w = parseWeight(s.weight);
      if (w.ok) weight = w.value;
      else effects.push({ type: 'invalid', key: key.replace(/url$/, 'weight'), reason: w.reason });
    }
    const m: MemberSpec = { id, url: backend.value.url, weight, draining: false, source: this.source };
    s.current = m;
    effects.push({ type: 'put', service, member: m });
    return effects;
  }
}
