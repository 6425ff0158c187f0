/**
 * `hash`: consistent hashing by weighted rendezvous (highest-random-weight) hashing. Each
 * candidate scores `weight / -ln(u)`, with `u` in (0, 1) a hash of (key, backend id); the highest
 * score wins. Properties that matter here:
 * - removing a backend moves only the keys it owned (everyone else's ranking is unchanged);
 * - adding one moves only about weight/total of the keys, all of them onto the newcomer;
 * - a retry that excludes the first choice lands on the key's second choice, also stable;
 * - weights are exact, with no virtual-node ring to size or rebuild.
 * A pick costs O(n) cheap hash mixes; pools are small enough that this beats a ring's upkeep.
 * The backend's `id` is hashed (not its URL), so the ranking survives address changes.
 */
import type { Backend } from './backend.js';
import { fmix32, hashRequestKey, hashString } from './hash-key.js';
import type { Policy, PolicyDefinition, PolicyOptions } from './policy.js';
import type { HashKeySpec, PickContext } from './types.js';

const TWO_POW_32 = 4294967296;
const DEFAULT_KEY: HashKeySpec = { kind: 'ip' };

class HashPolicy implements Policy {
  private candidates: readonly Backend[] = [];
  private seeds = new Uint32Array(0);
  private readonly keySpec: HashKeySpec;

  constructor(keySpec: HashKeySpec | undefined) {
    this.keySpec = keySpec ?? DEFAULT_KEY;
  }

  rebuild(candidates: readonly Backend[]): void {
    const seeds = new Uint32Array(candidates.length);
    for (let i = 0; i < candidates.length; i++) seeds[i] = hashString(candidates[i]!.id);
    this.candidates = candidates;
    this.seeds = seeds;
  }

  pick(ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined {
    const cands = this.candidates;
    if (cands.length === 0) return undefined;
    const skip = exclude !== undefined && exclude.size > 0 ? exclude : undefined;
    const key = hashRequestKey(this.keySpec, ctx);
    const seeds = this.seeds;
    let best: Backend | undefined;
    let bestScore = -1;
    for (let i = 0; i < cands.length; i++) {
      const b = cands[i]!;
      if (skip !== undefined && skip.has(b)) continue;
      const h = fmix32(fmix32(key ^ seeds[i]!) + seeds[i]!);
      const u = (h + 0.5) / TWO_POW_32;
      const score = b.effectiveWeight / -Math.log(u);
      if (score > bestScore) {
        bestScore = score;
        best = b;
      }
    }
    return best;
  }
}

/** Weighted rendezvous hashing on `hash_key` (ip, header, cookie or path). */
export const hash: PolicyDefinition = {
  name: 'hash',
  description: 'consistent hashing (weighted rendezvous) on hash_key: ip | header:NAME | cookie:NAME | path',
  create(options: PolicyOptions): Policy {
    return new HashPolicy(options.hashKey);
  },
};
