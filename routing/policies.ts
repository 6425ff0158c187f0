/**
 * The one registry of balancing policies. The config schema, `--help`, the docs and the pools
 * all read from here, so adding a policy means adding one file and one line below.
 */
import type { Policy, PolicyDefinition, PolicyOptions } from './policy.js';
import type { BalancerName } from './types.js';
import { roundRobin } from './round-robin.js';
import { leastConn } from './least-conn.js';
import { p2c } from './p2c.js';
import { random } from './random.js';
import { hash } from './hash.js';
import { ewma } from './ewma.js';

/** Every policy, in the order of `BALANCER_NAMES`; `round_robin` (the default) first. */
export const POLICIES: readonly PolicyDefinition[] = [roundRobin, leastConn, p2c, random, hash, ewma];

/**
 * The policy names as a non-empty tuple, usable as `z.enum(BALANCER_NAMES)`. A test checks it
 * matches `POLICIES` name for name.
 */
export const BALANCER_NAMES = ['round_robin', 'least_conn', 'p2c', 'random', 'hash', 'ewma'] as const satisfies readonly [
  BalancerName,
  ...BalancerName[],
];

// Compile-time guard: every BalancerName is listed (the `satisfies` above checks the converse).
const exhaustive: Exclude<BalancerName, (typeof BALANCER_NAMES)[number]> extends never ? true : never = true;
void exhaustive;

/** The default `balancer:` of a service. */
export const DEFAULT_BALANCER: BalancerName = 'round_robin';

const BY_NAME: ReadonlyMap<BalancerName, PolicyDefinition> = new Map(POLICIES.map((p) => [p.name, p]));

/**
 * Creates a fresh policy instance (policies are stateful: one per pool).
 * @throws Error for a name not in `POLICIES` (the config schema rejects those first)
 */
export function createPolicy(name: BalancerName, options: PolicyOptions): Policy {
  const def = BY_NAME.get(name);
  if (def === undefined) throw new Error(`unknown balancer: ${String(name)}`);
  return def.create(options);
}
