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
import { CumulativeWeights, TwoChoices } from './weighted.js';

class P2cPolicy implements Policy {
  private readonly weights = new CumulativeWeights();
  private readonly two = new TwoChoices();

  constructor(private readonly random: RandomSource) {}

  rebuild(candidates: readonly Backend[]): void {
    this.weights.rebuild(candidates);
  }

  pick(_ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined {
    const two = this.two;
    if (!two.draw(this.weights, this.random, exclude)) return undefined;
    const a = two.a!;
    const b = two.b;
    if (b === undefined) return a;
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
