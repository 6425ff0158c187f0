/**
 * Zone-aware routing (`zone_aware: true`), a simplified form of Envoy's locality-aware routing:
 * while enough of the local zone's backends are available, new requests go to the local zone
 * only (no cross-zone latency or transfer cost); otherwise they spill over to every candidate.
 * Computed when the pool changes, never per request: the pool hands the result to its policy.
 */
import type { Backend } from './backend.js';

/**
 * The candidates to balance over, given the pool's candidates after health, draining and panic
 * mode (`candidates`) and every member (`members`).
 *
 * The local zone is preferred while at least `panicThreshold` % of its non-draining members are
 * available (and at least one is); then the result is its available members. Otherwise, and when
 * `zone` is undefined (not zone-aware) or no member is in it, `candidates` is returned as is.
 * @param zone the local zone (`DROVER_ZONE`), undefined when zone awareness is off
 * @param panicThreshold percent 0-100, the service's `panic_threshold`
 */
export function zoneCandidates(
  zone: string | undefined,
  panicThreshold: number,
  members: Iterable<Backend>,
  candidates: readonly Backend[],
): readonly Backend[] {
  if (zone === undefined) return candidates;
  let local = 0;
  let available = 0;
  for (const b of members) {
    if (b.zone !== zone || b.draining) continue;
    local++;
    if (b.available) available++;
  }
  if (available === 0 || available * 100 < panicThreshold * local) return candidates;
  const out: Backend[] = [];
  for (const b of candidates) if (b.zone === zone && b.available) out.push(b);
  // Every available local member is a candidate unless something else excluded it; if nothing
  // local survived that filtering, spilling over is the only way to serve.
  return out.length > 0 ? out : candidates;
}
