/**
 * `random`: weighted random choice. Cumulative weights are precomputed at rebuild; a pick is
 * one random number and a binary search.
 */
import type { Backend } from './backend.js';
import type { Policy, PolicyDefinition, PolicyOptions } from './policy.js';
import type { PickContext, RandomSource } from './types.js';
import { CumulativeWeights, linearWeightedPick } from './weighted.js';

class RandomPolicy implements Policy {
  private readonly weights = new CumulativeWeights();

  constructor(private readonly random: RandomSource) {}

  rebuild(candidates: readonly Backend[]): void {
    this.weights.rebuild(candidates);
  }

  pick(_ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined {
    const w = this.weights;
    if (w.candidates.length === 0) return undefined;
    if (exclude !== undefined && exclude.size > 0) {
      return linearWeightedPick(w.candidates, exclude, undefined, this.random());
    }
    return w.candidates[w.index(this.random() * w.total)];
  }
}

/** Weighted random choice. */
export const random: PolicyDefinition = {
  name: 'random',
  description: 'weighted random choice',
  create(options: PolicyOptions): Policy {
    return new RandomPolicy(options.random);
  },
};
