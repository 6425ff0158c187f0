/**
 * One time series of request outcomes: the last `SERIES_SECONDS` seconds at 1 s resolution in
 * fixed-size typed arrays (a ring indexed by the absolute Unix second), for the dashboard's
 * charts. Per slot: requests by status class (1xx..5xx), upstream errors by kind (connect,
 * timeout, reset, status), and the p50 and p99 latency of that second.
 *
 * Latency is counted per second in one fixed-bucket histogram (log-spaced, 8 % apart); when the
 * second ends its p50 and p99 are kept as bucket numbers (one byte each) and the histogram is
 * cleared. So memory does not depend on traffic, and recording is a few array increments.
 *
 * Time moves only forward: the ring is rolled on the first record (or read) of a new second,
 * zeroing the slots of the seconds that had no traffic. A clock that steps back keeps recording
 * into the newest slot.
 */

/** Seconds kept: 15 minutes. */
export const SERIES_SECONDS = 900;

/** Status classes, in slot order. */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Upstream error kinds, in slot order (the `kind` label of `drover_upstream_errors_total`). */
export const ERROR_KINDS = ['connect', 'timeout', 'reset', 'status'] as const;

/** An upstream error kind. */
export type SeriesErrorKind = (typeof ERROR_KINDS)[number];

/** Counters per slot: 5 status classes then 4 error kinds. */
export const CELLS = STATUS_CLASSES.length + ERROR_KINDS.length;
const ERR_BASE = STATUS_CLASSES.length;

/** Upper bound of latency bucket 0, in ms. */
const BUCKET_BASE_MS = 0.05;
/** Ratio between consecutive bucket bounds: a quantile is off by at most 8 %. */
const BUCKET_RATIO = 1.08;
const LOG_RATIO = Math.log(BUCKET_RATIO);
/** Latency buckets: bucket 191's bound is about 120 s; slower requests count in the last one. */
export const LATENCY_BUCKETS = 192;

/** The bucket (0-based) of a latency in seconds: the first whose upper bound is >= it. */
export function latencyBucket(seconds: number): number {
  const ms = seconds * 1000;
  if (!(ms > BUCKET_BASE_MS)) return 0; // also NaN and negatives
  const b = Math.ceil(Math.log(ms / BUCKET_BASE_MS) / LOG_RATIO - 1e-9);
  return b >= LATENCY_BUCKETS ? LATENCY_BUCKETS - 1 : b;
}

/** The upper bound of a latency bucket, in ms (what a quantile in that bucket is shown as). */
export function bucketUpperMs(bucket: number): number {
  return BUCKET_BASE_MS * Math.pow(BUCKET_RATIO, bucket);
}

/** Which counter a status code goes to (0..4); 1xx for anything below 200, 5xx for anything above 599. */
export function statusClass(code: number): number {
  const c = Math.floor(code / 100) - 1;
  return c < 0 ? 0 : c > 4 ? 4 : c;
}

/** Index of an error kind's counter, or -1 for an unknown kind. */
export function errorIndex(kind: string): number {
  switch (kind) {
    case 'connect':
      return ERR_BASE;
    case 'timeout':
      return ERR_BASE + 1;
    case 'reset':
      return ERR_BASE + 2;
    case 'status':
      return ERR_BASE + 3;
    default:
      return -1;
  }
}

/** Width of a ring's counters: 16-bit (saturating at 65 535 per second) or 32-bit. */
export type CounterWidth = 16 | 32;

/** What `SeriesRing.read` returns: arrays aligned on `t`, oldest first. */
export interface SeriesData {
  /** Unix seconds of each point */
  readonly t: number[];
  /** requests per second by status class */
  readonly req: Record<(typeof STATUS_CLASSES)[number], number[]>;
  /** upstream errors per second by kind */
  readonly err: Record<SeriesErrorKind, number[]>;
  /** median latency of each second in ms; null when the second had no request */
  readonly p50_ms: (number | null)[];
  /** 99th percentile latency of each second in ms; null when the second had no request */
  readonly p99_ms: (number | null)[];
}

/** One fixed-size ring of per-second outcome counters. */
export class SeriesRing {
  private readonly counts: Uint16Array | Uint32Array;
  private readonly max: number;
  /** p50 / p99 of each slot as bucket + 1; 0 = no sample */
  private readonly p50 = new Uint8Array(SERIES_SECONDS);
  private readonly p99 = new Uint8Array(SERIES_SECONDS);
  /** latency histogram of the newest second */
  private readonly hist = new Uint32Array(LATENCY_BUCKETS);
  private histCount = 0;
  /** the Unix second of the newest slot */
  private head: number;
  /** first second with data (the ring was created then) */
  private readonly born: number;

  constructor(nowSec: number, width: CounterWidth) {
    this.counts = width === 16 ? new Uint16Array(SERIES_SECONDS * CELLS) : new Uint32Array(SERIES_SECONDS * CELLS);
    this.max = width === 16 ? 0xffff : 0xffffffff;
    this.head = nowSec;
    this.born = nowSec;
  }

  /** Bytes of typed-array storage one ring of this width holds (the README states these). */
  static bytes(width: CounterWidth): number {
    return SERIES_SECONDS * CELLS * (width / 8) + 2 * SERIES_SECONDS + LATENCY_BUCKETS * 4;
  }

  /**
   * Counts one finished request in second `sec`: `cls` from `statusClass`, `bucket` from
   * `latencyBucket` or -1 for no latency sample (a WebSocket upgrade).
   */
  request(sec: number, cls: number, bucket: number): void {
    if (sec > this.head) this.roll(sec);
    const i = (this.head % SERIES_SECONDS) * CELLS + cls;
    const c = this.counts;
    if ((c[i] as number) < this.max) c[i] = (c[i] as number) + 1;
    if (bucket >= 0) {
      this.hist[bucket] = (this.hist[bucket] as number) + 1;
      this.histCount++;
    }
  }

  /** Counts one upstream error (`index` from `errorIndex`) in second `sec`. */
  error(sec: number, index: number): void {
    if (index < 0) return;
    if (sec > this.head) this.roll(sec);
    const i = (this.head % SERIES_SECONDS) * CELLS + index;
    const c = this.counts;
    if ((c[i] as number) < this.max) c[i] = (c[i] as number) + 1;
  }

  /**
   * Adds counts gathered elsewhere (a cluster worker's last interval) to second `sec`: `cells` in
   * slot order (5 status classes, then 4 error kinds), `latency` as (bucket, count) pairs.
   */
  add(sec: number, cells: ArrayLike<number>, latency: ArrayLike<number>): void {
    if (sec > this.head) this.roll(sec);
    const base = (this.head % SERIES_SECONDS) * CELLS;
    const c = this.counts;
    for (let k = 0; k < CELLS && k < cells.length; k++) {
      const n = cells[k] as number;
      if (n > 0) c[base + k] = Math.min(this.max, (c[base + k] as number) + n);
    }
    for (let i = 0; i + 1 < latency.length; i += 2) {
      const b = latency[i] as number;
      const n = latency[i + 1] as number;
      if (b >= 0 && b < LATENCY_BUCKETS && n > 0) {
        this.hist[b] = (this.hist[b] as number) + n;
        this.histCount += n;
      }
    }
  }

  /**
   * The complete seconds after `since` (Unix seconds; omit for all that are kept) up to
   * `nowSec - 1`: the current second is still filling and would draw as a dip.
   */
  read(nowSec: number, since = 0): SeriesData {
    if (nowSec > this.head) this.roll(nowSec);
    const last = nowSec - 1;
    const first = Math.max(since + 1, this.born, nowSec - SERIES_SECONDS + 1);
    const out: SeriesData = {
      t: [],
      req: { '1xx': [], '2xx': [], '3xx': [], '4xx': [], '5xx': [] },
      err: { connect: [], timeout: [], reset: [], status: [] },
      p50_ms: [],
      p99_ms: [],
    };
    const classes = STATUS_CLASSES.map((k) => out.req[k]);
    const kinds = ERROR_KINDS.map((k) => out.err[k]);
    for (let s = first; s <= last; s++) {
      const slot = s % SERIES_SECONDS;
      const base = slot * CELLS;
      out.t.push(s);
      for (let k = 0; k < classes.length; k++) classes[k]!.push(this.counts[base + k] as number);
      for (let k = 0; k < kinds.length; k++) kinds[k]!.push(this.counts[base + ERR_BASE + k] as number);
      out.p50_ms.push(quantileMs(this.p50[slot] as number));
      out.p99_ms.push(quantileMs(this.p99[slot] as number));
    }
    return out;
  }

  /** Ends the newest second (its quantiles are kept) and clears the slots up to `sec`. */
  private roll(sec: number): void {
    const slot = this.head % SERIES_SECONDS;
    if (this.histCount > 0) {
      this.p50[slot] = quantileBucket(this.hist, this.histCount, 0.5) + 1;
      this.p99[slot] = quantileBucket(this.hist, this.histCount, 0.99) + 1;
      this.hist.fill(0);
      this.histCount = 0;
    }
    const gap = Math.min(sec - this.head, SERIES_SECONDS);
    for (let k = 1; k <= gap; k++) {
      const s = (this.head + k) % SERIES_SECONDS;
      this.counts.fill(0, s * CELLS, s * CELLS + CELLS);
      this.p50[s] = 0;
      this.p99[s] = 0;
    }
    this.head = sec;
  }
}

/** The bucket holding the `q` quantile of `count` samples (nearest rank). */
function quantileBucket(hist: Uint32Array, count: number, q: number): number {
  const rank = Math.max(1, Math.ceil(q * count));
  let acc = 0;
  for (let b = 0; b < hist.length; b++) {
    acc += hist[b] as number;
    if (acc >= rank) return b;
  }
  return hist.length - 1;
}

/** A stored quantile (bucket + 1, 0 = none) as ms rounded to 3 significant digits, or null. */
function quantileMs(stored: number): number | null {
  if (stored === 0) return null;
  return Number(bucketUpperMs(stored - 1).toPrecision(3));
}
