/**
 * The key space model of each etcd layout (drover, traefik, skydns), and the full member list of
 * a range read. Apart from etcd-values.ts so that the layouts' modules import its parsers without
 * an import circle.
 */
import type { MemberSpec } from '../../routing/types.js';
import { ETCD_SOURCE, TraefikModel, droverModel, type EtcdLayout, type KeyspaceModel } from './etcd-values.js';
import { skyDnsModel } from './skydns-values.js';

/** Creates the model for a layout. `prefix` ends with `/` (or is `''` for the whole key space). */
export function createKeyspaceModel(layout: EtcdLayout, prefix: string, source: string = ETCD_SOURCE): KeyspaceModel {
  if (layout === 'skydns') return skyDnsModel(prefix, source);
  return layout === 'traefik' ? new TraefikModel(prefix, source) : droverModel(prefix, source);
}

/**
 * Builds the full member list of a range read (the initial list or a resync): every key is
 * applied to a fresh model. Returns the members per service and the invalid entries seen.
 */
export function assembleKeyspace(
  layout: EtcdLayout,
  prefix: string,
  kvs: Iterable<readonly [key: string, value: string]>,
  source: string = ETCD_SOURCE,
): { model: KeyspaceModel; services: Map<string, MemberSpec[]>; invalid: { key: string; reason: string }[] } {
  const model = createKeyspaceModel(layout, prefix, source);
  const invalid: { key: string; reason: string }[] = [];
  for (const [key, value] of kvs) {
    for (const e of model.put(key, value)) if (e.type === 'invalid') invalid.push({ key: e.key, reason: e.reason });
  }
  return { model, services: model.snapshot(), invalid };
}
