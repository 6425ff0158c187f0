/**
 * `round_robin`: NGINX's smooth weighted round-robin. Each pick adds every candidate's
 * effective weight to its `current`, takes the largest (first one on a tie) and subtracts the
 * total from it. Weights 3:1:1 give a,b,a,c,a: heavy backends are interleaved, not bunched.
 */
import type { Backend } from './backend.js';
import type { Policy, PolicyDefinition, PolicyOptions } from './policy.js';
import type { PickContext } from './types.js';

class RoundRobinPolicy implements Policy {
  private candidates: readonly Backend[] = [];
  /** `current` weight of each candidate, same index as `candidates` */
  private current = new Float64Array(0);

  rebuild(candidates: readonly Backend[]): void {
    // Carry `current` over for backends that stay, so a pool change does not reset fairness
    // (NGINX keeps it too when a peer's weight changes); newcomers start at 0.
    const carried = new Map<Backend, number>();
    for (let i = 0; i < this.candidates.length; i++) {
      carried.set(this.candidates[i]!, this.current[i]!);
    }
    const next = new Float64Array(candidates.length);
    for (let i = 0; i < candidates.length; i++) next[i] = carried.get(candidates[i]!) ?? 0;
    this.candidates = candidates;
    this.current = next;
  }

  pick(_ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined {
    const cands = this.candidates;
    const current = this.current;
    const skip = exclude !== undefined && exclude.size > 0 ? exclude : undefined;
    let total = 0;
    let best = -1;
    for (let i = 0; i < cands.length; i++) {
      const b = cands[i]!;
      // Like NGINX's `tried` bitmap: an excluded peer neither gains nor counts in the total.
      if (skip !== undefined && skip.has(b)) continue;
      const w = b.effectiveWeight;
      const c = current[i]! + w;
      current[i] = c;
      total += w;
      if (best === -1 || c > current[best]!) best = i;
    }
    if (best === -1) return undefined;
    current[best] = current[best]! - total;
    return cands[best];
  }
}

/** Smooth weighted round-robin (NGINX's algorithm). */
export const roundRobin: PolicyDefinition = {
  name: 'round_robin',
  description: 'smooth weighted round-robin (NGINX): spreads requests in proportion to weight, interleaved',
  create(_options: PolicyOptions): Policy {
    return new RoundRobinPolicy();
  },
};
