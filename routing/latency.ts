/**
 * Each backend's latency as the data path observes it: a peak-sensitive exponentially weighted
 * moving average of the time to response headers (Finagle's `PeakEwma`, also tower/Linkerd's).
 * Tracked for every backend whatever the balancer, so `/api/services` can show it; the `ewma`
 * policy (`./ewma.ts`) balances on it.
 *
 * Per sample: `w = exp(-dt / tau)`; if `rtt > cost * w` then `cost = rtt` (a spike is believed
 * at once), else `cost = cost * w + rtt * (1 - w)` (a recovery is believed gradually). Between
 * samples the estimate decays towards 0 with the same `tau` when read (Finagle's read observes
 * a 0), so a backend that was slow and then got no traffic is tried again after a while instead
 * of being starved forever: that probe is how it wins its traffic back when it recovers.
 *
 * The peak test compares with `cost * w`, the estimate as a reader sees it at that moment, not
 * the stored `cost`: Finagle's reads decay the stored value in place, so there the two are the
 * same; here reads do not write (a pick must not depend on how often others read), and comparing
 * with the stale stored value would let the first probe after a long idle spell pull a decayed
 * estimate back up towards the old peak. Under steady traffic `w` is close to 1 and the rule is
 * exactly Finagle's.
 */
/** Decay time constant `tau` of the moving average, in ms (10 s, as Finagle and Linkerd). */
export const EWMA_DECAY_MS = 10_000;

/** A failed attempt counts as a sample of at least this many ms (see `failurePenalty`). */
export const FAILURE_PENALTY_FLOOR_MS = 250;
/** ...and at least this many times the service's median latency. */
export const FAILURE_PENALTY_FACTOR = 10;
/**
 * ...but that multiple of the median at most this many ms (30 s, the default `response_headers`
 * timeout): a bound whatever the median is.
 */
export const FAILURE_PENALTY_CEILING_MS = 30_000;

/** One backend's peak EWMA; all times in ms on the pool's clock. */
export class PeakEwma {
  /** the estimate as of `stamp`, ms; meaningless while `sampled` is false */
  private cost = 0;
  /** clock time of the last sample */
  private stamp = 0;
  /** false until the first sample: a fresh backend is priced at its service's median instead */
  sampled = false;
  /**
   * The same estimate over successful answers only (`okValue`): what the failure penalty is
   * relative to. Over every sample, penalties would feed the median they are taken from: with
   * two of three backends failing now and then, each failure lifted the next tenfold.
   */
  private okCost = 0;
  private okStamp = 0;
  private okSampled = false;
  /**
   * Clock time the backend last made progress: its last response headers, or the moment a
   * request was sent to it while none was waiting for headers. While requests wait (`waiting`),
   * `now - progressAt` is a lower bound of what the next answer will take, so a backend that
   * stalls looks slow before any stalled request comes back. (Requests streaming a body after
   * their headers do not count: a long download is not a stall.)
   */
  progressAt = 0;
  /** requests sent to the backend that have not had their response headers (or failed) yet */
  waiting = 0;

  /** A request was sent at `now`; it waits for headers until `observe` or `abandon`. */
  sent(now: number): void {
    if (this.waiting === 0) this.progressAt = now;
    this.waiting++;
  }

  /** A request that was `sent` ended without a sample (the client left, a stale connection). */
  abandon(): void {
    if (this.waiting > 0) this.waiting--;
  }

  /**
   * Feeds one sample of `rttMs` observed at `now` (ends one `sent` request's wait); `ok` false
   * for a failure's penalty sample (`failurePenalty`), which moves `value` but not `okValue`.
   */
  observe(rttMs: number, now: number, ok = true): void {
    if (this.waiting > 0) this.waiting--;
    const rtt = rttMs > 0 ? rttMs : 0;
    this.cost = this.sampled ? peakStep(this.cost, this.stamp, rtt, now) : rtt;
    this.sampled = true;
    this.stamp = now;
    if (ok) {
      this.okCost = this.okSampled ? peakStep(this.okCost, this.okStamp, rtt, now) : rtt;
      this.okSampled = true;
      this.okStamp = now;
    }
    this.progressAt = now;
  }

  /** The estimate at `now` (decayed since the last sample), ms; undefined before any sample. */
  value(now: number): number | undefined {
    return this.sampled ? decayed(this.cost, this.stamp, now) : undefined;
  }

  /** The estimate over successful answers only, at `now`; undefined before the first one. */
  okValue(now: number): number | undefined {
    return this.okSampled ? decayed(this.okCost, this.okStamp, now) : undefined;
  }
}

/** `cost` (as of `stamp`) decayed to `now`. */
function decayed(cost: number, stamp: number, now: number): number {
  const dt = now > stamp ? now - stamp : 0;
  return dt === 0 ? cost : cost * Math.exp(-dt / EWMA_DECAY_MS);
}

/** The estimate after a sample `rtt` at `now`: a peak is believed at once, a recovery gradually. */
function peakStep(cost: number, stamp: number, rtt: number, now: number): number {
  const dt = now > stamp ? now - stamp : 0;
  const w = Math.exp(-dt / EWMA_DECAY_MS);
  const d = cost * w;
  return rtt > d ? rtt : d + rtt * (1 - w);
}

/**
 * The median of the current estimates of the sampled backends among `backends`, or undefined
 * when none has a sample. `scratch` is reused between calls (no allocation once it is large
 * enough); the result is the lower middle value for an even count. `okOnly`: of the estimates
 * over successful answers (`okValue`), what a failure's penalty is relative to.
 */
export function medianLatency(backends: readonly { readonly latency: PeakEwma }[], now: number, scratch: { buf: Float64Array }, okOnly = false): number | undefined {
  if (scratch.buf.length < backends.length) scratch.buf = new Float64Array(backends.length * 2);
  let n = 0;
  for (let i = 0; i < backends.length; i++) {
    const e = backends[i]!.latency;
    const v = okOnly ? e.okValue(now) : e.value(now);
    if (v !== undefined) scratch.buf[n++] = v;
  }
  if (n === 0) return undefined;
  const sorted = scratch.buf.subarray(0, n).sort();
  return sorted[(n - 1) >> 1];
}

/**
 * The sample a failed attempt (connect error, reset, timeout, 5xx answer) feeds into its
 * backend's estimate: the time it took, but at least `FAILURE_PENALTY_FACTOR` x the service's
 * median latency of successful answers (`medianLatency(..., true)`) and at least
 * `FAILURE_PENALTY_FLOOR_MS`. A failure that came back fast (a
 * refused connection, an instant 503) must not make a broken backend look like the fastest one
 * (the "fast failure black hole"); being relative to the median keeps the penalty meaningful for
 * services whose normal latency is far above the floor. The relative part stops at
 * `FAILURE_PENALTY_CEILING_MS`; a failure that took longer (a timeout) still counts its own time.
 */
export function failurePenalty(elapsedMs: number, median: number | undefined): number {
  const relative = median === undefined ? 0 : Math.min(median * FAILURE_PENALTY_FACTOR, FAILURE_PENALTY_CEILING_MS);
  return Math.max(elapsedMs, relative, FAILURE_PENALTY_FLOOR_MS);
}
