/**
 * Weighted sampling shared by `random` and `p2c`: cumulative effective weights precomputed at
 * rebuild and a binary search per pick (O(log n), no allocation), plus a linear path for
 * retries that must skip some backends.
 */
import type { Backend } from './backend.js';

/** Cumulative effective weights of a candidate list. */
export class CumulativeWeights {
  /** the candidates of the last rebuild */
  candidates: readonly Backend[] = [];
  /** `cum[i]` = sum of effective weights of candidates 0..i */
  private cum = new Float64Array(0);
  /** sum of all effective weights */
  total = 0;

  /** Precomputes the cumulative weights of `candidates` (read from `effectiveWeight`). */
  rebuild(candidates: readonly Backend[]): void {
    const cum = new Float64Array(candidates.length);
    let total = 0;
    for (let i = 0; i < candidates.length; i++) {
      total += candidates[i]!.effectiveWeight;
      cum[i] = total;
    }
    this.candidates = candidates;
    this.cum = cum;
    this.total = total;
  }

  /** Sum of the weights of candidates before index `i`. */
  before(i: number): number {
    return i === 0 ? 0 : this.cum[i - 1]!;
  }

  /**
   * Index of the candidate whose weight interval holds `u` (0 <= u < total): the first `i` with
   * `cum[i] > u`. Requires at least one candidate.
   */
  index(u: number): number {
    const cum = this.cum;
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cum[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/**
 * Linear weighted pick among `candidates` that are neither in `exclude` nor `avoid`; `r` in
 * [0, 1). Returns undefined when nothing is left. O(n): only used on retries.
 */
export function linearWeightedPick(
  candidates: readonly Backend[],
  exclude: ReadonlySet<Backend> | undefined,
  avoid: Backend | undefined,
  r: number,
): Backend | undefined {
  let total = 0;
  let last: Backend | undefined;
  for (let i = 0; i < candidates.length; i++) {
    const b = candidates[i]!;
    if (b === avoid || (exclude !== undefined && exclude.has(b))) continue;
    total += b.effectiveWeight;
    last = b;
  }
  if (last === undefined) return undefined;
  let u = r * total;
  for (let i = 0; i < candidates.length; i++) {
    const b = candidates[i]!;
    if (b === avoid || (exclude !== undefined && exclude.has(b))) continue;
    u -= b.effectiveWeight;
    if (u < 0) return b;
  }
  // Floating-point rounding can leave u at exactly 0 after the last subtraction.
  return last;
}

/**
 * Two distinct candidates drawn at random in proportion to effective weight: the draw of the
 * power-of-two-choices policies (`p2c`, `ewma`). The results land in `a` and `b` (fields, not a
 * returned pair, so a pick allocates nothing); `b` is undefined when only one candidate is left.
 */
export class TwoChoices {
  a: Backend | undefined;
  b: Backend | undefined;

  /** Draws from `w`'s candidates, skipping `exclude`; false when nothing is left. */
  draw(w: CumulativeWeights, random: () => number, exclude?: ReadonlySet<Backend>): boolean {
    const cands = w.candidates;
    const n = cands.length;
    this.a = undefined;
    this.b = undefined;
    if (n === 0) return false;
    if (exclude !== undefined && exclude.size > 0) {
      this.a = linearWeightedPick(cands, exclude, undefined, random());
      if (this.a === undefined) return false;
      this.b = linearWeightedPick(cands, exclude, this.a, random());
      return true;
    }
    if (n === 1) {
      this.a = cands[0];
      return true;
    }
    const ia = w.index(random() * w.total);
    const a = cands[ia]!;
    // Second draw over the weight line with a's interval cut out: distinct without retrying.
    const wa = a.effectiveWeight;
    let u = random() * (w.total - wa);
    if (u >= w.before(ia)) u += wa;
    let ib = w.index(u);
    if (ib === ia) ib = ia + 1 < n ? ia + 1 : ia - 1; // rounding at an interval edge
    this.a = a;
    this.b = cands[ib];
    return true;
  }
}
