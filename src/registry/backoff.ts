/**
 * Capped exponential backoff with jitter, for reconnect loops. Jitter keeps a fleet of drovers
 * from reconnecting in lockstep after an etcd outage.
 */
import type { RandomSource } from '../../routing/types.js';

/** Backoff settings. */
export interface BackoffOptions {
  /** ms, first delay; default 100 */
  readonly initialMs?: number;
  /** ms, largest delay; default 5000 */
  readonly maxMs?: number;
  /** growth factor per failure; default 2 */
  readonly factor?: number;
  /** injected for deterministic tests; default Math.random */
  readonly random?: RandomSource;
}

/**
 * "Equal jitter": the n-th delay is uniform in [d/2, d] with d = min(max, initial * factor^n),
 * so delays still grow but never collapse to zero.
 */
export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly random: RandomSource;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 100;
    this.maxMs = options.maxMs ?? 5000;
    this.factor = options.factor ?? 2;
    this.random = options.random ?? Math.random;
  }

  /** The next delay in ms; each call counts one more failure. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    if (ceiling < this.maxMs) this.attempt++;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** Back to the first delay, after a success. */
  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
