/**
 * `p2c`: power of two choices. Draw two distinct candidates at random (in proportion to
 * effective weight), send to the one with fewer in-flight requests per unit of weight. Near the
 * quality of least_conn at O(log n) per pick, without herding onto one "least loaded" backend
 * when many balancers share a pool. On a tie the first draw wins, so an idle pool spreads by
 * weight.
 */
import type { Backend } from './backend.js';
import type { Policy, PolicyDefinition, PolicyOptions } from './policy.js';
import type { PickContext, RandomSource } from './types.js';
import { CumulativeWeights, linearWeightedPick } from './weighted.js';

class P2cPolicy implements Policy {
  private readonly weights = new CumulativeWeights();

  constructor(private readonly random: RandomSource) {}

  rebuild(candidates: readonly Backend[]): void {
    this.weights.rebuild(candidates);
  }

  pick(_ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined {
    const w = this.weights;
    const cands = w.candidates;
    const n = cands.length;
    if (n === 0) return undefined;
    let a: Backend | undefined;
    let b: Backend | undefined;
    if (exclude !== undefined && exclude.size > 0) {
      a = linearWeightedPick(cands, exclude, undefined, this.random());
      if (a === undefined) return undefined;
      b = linearWeightedPick(cands, exclude, a, this.random());
      if (b === undefined) return a;
    } else {
      if (n === 1) return cands[0];
      const ia = w.index(this.random() * w.total);
      a = cands[ia]!;
      // Second draw over the weight line with a's interval cut out: distinct without retrying.
      const wa = a.effectiveWeight;
      let u = this.random() * (w.total - wa);
      if (u >= w.before(ia)) u += wa;
      let ib = w.index(u);
      if (ib === ia) ib = ia + 1 < n ? ia + 1 : ia - 1; // rounding at an interval edge
      b = cands[ib]!;
    }
    return b.inflight / b.effectiveWeight < a.inflight / a.effectiveWeight ? b : a;
  }
}

/** Power of two random choices, by in-flight requests per unit of weight. */
export const p2c: PolicyDefinition = {
  name: 'p2c',
  description: 'power of two choices: two random backends (by weight), the one with fewer in-flight requests per weight',
  create(options: PolicyOptions): Policy {
    return new P2cPolicy(options.random);
  },
};
