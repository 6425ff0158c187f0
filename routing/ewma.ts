/**
 * `ewma`: power of two choices over a latency-aware cost (Finagle's and Linkerd's peak EWMA).
 * Two distinct candidates are drawn at random in proportion to effective weight; the request
 * goes to the one with the lower
 *
 *     cost = latency x (in-flight / effective weight + 1)
 *
 * (Finagle writes `latency x (pending + 1)` with unweighted draws. Here the draw is already by
 * weight, as in p2c, so the in-flight count is taken per unit of weight, as p2c does; dividing
 * the whole `(in-flight + 1)` by weight would count weight twice and send every idle pick to the
 * heavier of the two draws. With equal latencies and nothing in flight both costs tie, the first
 * draw wins, and picks spread exactly by weight.)
 *
 * where `latency` is the backend's peak-sensitive moving average of time to response headers
 * (`latency.ts`, decay 10 s), raised to the time since the backend last answered while requests
 * wait for its answer (so a backend that stalls is avoided during the stall, not only after
 * its stalled requests come back). Unlike least_conn and p2c this sees a backend that is slow
 * but not yet full (GC pauses, a noisy neighbour).
 *
 * A backend without a sample yet (new, or the pool just started) is priced at the median
 * latency of the sampled candidates, not at 0: pricing it at 0 would send every request to it
 * until its first answers come back (Traefik's leasttime herd). With no sample anywhere every
 * latency is the same neutral value, and the policy is plain p2c. On a tie the first draw wins.
 */
import type { Backend } from './backend.js';
import { medianLatency } from './latency.js';
import type { Policy, PolicyDefinition, PolicyOptions } from './policy.js';
import type { Clock, PickContext, RandomSource } from './types.js';
import { CumulativeWeights, TwoChoices } from './weighted.js';

/** The latency of every backend when none has a sample (ms): any constant > 0 gives plain p2c. */
const NEUTRAL_LATENCY_MS = 1;

class EwmaPolicy implements Policy {
  private readonly weights = new CumulativeWeights();
  private readonly two = new TwoChoices();
  private readonly scratch = { buf: new Float64Array(8) };
  /** the median for the pick in progress; NaN until needed (computed at most once per pick) */
  private median = NaN;

  constructor(
    private readonly random: RandomSource,
    private readonly clock: Clock,
  ) {}

  rebuild(candidates: readonly Backend[]): void {
    this.weights.rebuild(candidates);
  }

  pick(_ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined {
    const two = this.two;
    if (!two.draw(this.weights, this.random, exclude)) return undefined;
    const a = two.a!;
    const b = two.b;
    if (b === undefined) return a;
    const now = this.clock();
    this.median = NaN;
    return this.cost(b, now) < this.cost(a, now) ? b : a;
  }

  /** The load of one backend at `now`; see the file comment. */
  private cost(b: Backend, now: number): number {
    let latency = b.latency.value(now);
    if (latency === undefined) {
      if (Number.isNaN(this.median)) this.median = medianLatency(this.weights.candidates, now, this.scratch) ?? NEUTRAL_LATENCY_MS;
      latency = this.median;
    }
    if (b.latency.waiting > 0) {
      const waited = now - b.latency.progressAt;
      if (waited > latency) latency = waited;
    }
    return latency * (b.inflight / b.effectiveWeight + 1);
  }
}

/** Power of two choices by peak-EWMA latency x (in-flight per unit of weight + 1). */
export const ewma: PolicyDefinition = {
  name: 'ewma',
  description: 'power of two choices by peak-EWMA latency x (in-flight per weight + 1): avoids slow backends, not only full ones',
  create(options: PolicyOptions): Policy {
    return new EwmaPolicy(options.random, options.clock ?? Date.now);
  },
};
