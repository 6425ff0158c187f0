/**
 * Pure parsing of ZooKeeper instance znodes into members (no I/O; test/zookeeper-values.test.ts).
 *
 * - `drover` layout: `<prefix>/<service>/<instance>` holds what an etcd instance key holds
 *   (README "Registry keys"): JSON `{"url","weight","zone","draining","meta"}`, bare `host:port` or
 *   `http://host:port`. The member id is the znode name.
 * - `nerve` layout: Airbnb Nerve's ephemeral sequential children `<instance>_<sequence>`
 *   holding JSON `{"host","port","name","weight"?,"labels"?}`. The member id is the whole znode
 *   name (unique for the znode's life; a re-registering Nerve creates a new sequence number).
 *   `labels.az` or `labels.zone`, when a string, becomes the member's zone.
 */
import type { MemberSpec } from '../../routing/types.js';
import { parseJsonObject, parseMemberValue } from './etcd-values.js';
import { backendFromFields, isBackendId, parseWeight } from '../config/values.js';
import type { Result } from '../core/result.js';

/** The `source` of every member the ZooKeeper registry reports. */
export const ZOOKEEPER_SOURCE = 'zookeeper';

/** Key layouts of the ZooKeeper registry. */
export type ZooKeeperLayout = 'drover' | 'nerve';


/** Parses Nerve's JSON registration. */
export function parseNerveValue(raw: string): Result<{ url: string; weight: number; zone?: string | undefined; meta: Record<string, unknown> }> {
  const doc = parseJsonObject(raw);
  if (!doc.ok) return doc;
  const d = doc.value;
  const backend = backendFromFields(d['host'], d['port']);
  if (!backend.ok) return backend;
  let weight = 1;
  if (d['weight'] !== undefined && d['weight'] !== null) {
    const w = parseWeight(d['weight']);
    if (!w.ok) return { ok: false, reason: `"weight": ${w.reason}` };
    weight = w.value;
  }
  const labels = d['labels'];
  const labelObj = typeof labels === 'object' && labels !== null && !Array.isArray(labels) ? (labels as Record<string, unknown>) : undefined;
  const zone = labelObj?.['az'] ?? labelObj?.['zone'];
  const meta: Record<string, unknown> = {};
  if (typeof d['name'] === 'string') meta['name'] = d['name'];
  if (labelObj !== undefined) meta['labels'] = labelObj;
  return { ok: true, value: { url: backend.value.url, weight, zone: typeof zone === 'string' && zone !== '' ? zone : undefined, meta } };
}

/**
 * Turns one instance znode (its name and data) into a member of `source`, or says why not.
 * An empty znode is invalid (a registrant that wrote nothing names no backend).
 */
export function parseInstanceNode(layout: ZooKeeperLayout, name: string, data: string, source: string = ZOOKEEPER_SOURCE): Result<MemberSpec> {
  if (!isBackendId(name)) return { ok: false, reason: `instance name ${JSON.stringify(name)} is not a valid member id` };
  if (layout === 'nerve') {
    const v = parseNerveValue(data);
    if (!v.ok) return v;
    return { ok: true, value: { id: name, url: v.value.url, weight: v.value.weight, zone: v.value.zone, draining: false, source, meta: v.value.meta } };
  }
  const v = parseMemberValue(data);
  if (!v.ok) return v;
  return { ok: true, value: { id: name, url: v.value.url, weight: v.value.weight, zone: v.value.zone, draining: v.value.draining, source, meta: v.value.meta } };
}
