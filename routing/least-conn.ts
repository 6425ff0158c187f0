/**
 * `least_conn`: the candidate with the fewest in-flight requests per unit of effective weight.
 * Ties (common at low load, when everyone has 0 in flight) are broken at random in proportion to
 * weight, so an idle pool still spreads by weight, as NGINX's least_conn does with its
 * round-robin tie-break.
 */
import type { Backend } from './backend.js';
import type { Policy, PolicyDefinition, PolicyOptions } from './policy.js';
import type { PickContext, RandomSource } from './types.js';

class LeastConnPolicy implements Policy {
  private candidates: readonly Backend[] = [];

  constructor(private readonly random: RandomSource) {}

  rebuild(candidates: readonly Backend[]): void {
    this.candidates = candidates;
  }

  pick(_ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined {
    const cands = this.candidates;
    const skip = exclude !== undefined && exclude.size > 0 ? exclude : undefined;
    let best: Backend | undefined;
    let bestScore = Infinity;
    let tieWeight = 0;
    for (let i = 0; i < cands.length; i++) {
      const b = cands[i]!;
      if (skip !== undefined && skip.has(b)) continue;
      const w = b.effectiveWeight;
      const score = b.inflight / w;
      if (best === undefined || score < bestScore) {
        best = b;
        bestScore = score;
        tieWeight = w;
      } else if (score === bestScore) {
        // Weighted reservoir sampling over the tied set: one pass, no allocation.
        tieWeight += w;
        if (this.random() * tieWeight < w) best = b;
      }
    }
    return best;
  }
}

/** Least in-flight requests per unit of weight; weighted random tie-break. */
export const leastConn: PolicyDefinition = {
  name: 'least_conn',
  description: 'fewest in-flight requests per unit of weight; ties broken at random by weight',
  create(options: PolicyOptions): Policy {
    return new LeastConnPolicy(options.random);
  },
};
