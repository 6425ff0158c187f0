/**
 * The series side of a cluster worker (`workers: N`): it keeps no rings, only what it counted
 * since its last `stats` message, per service and backend (the same cells a ring slot has, plus
 * the latency histogram of the interval). The primary adds each interval into its own rings
 * (`SeriesStore.apply`), so the dashboard's quantiles come from the merged histograms, not from
 * averaging per-worker quantiles.
 */
import { CELLS, errorIndex, LATENCY_BUCKETS, latencyBucket, statusClass } from './ring.js';
import type { SeriesRecorder, SeriesSink } from './store.js';

/** One service's or backend's counts over one interval, as sent over IPC. */
export interface SeriesDelta {
  readonly service: string;
  /** `""` for answers given without a backend */
  readonly backend: string;
  /** 5 status classes then 4 error kinds */
  readonly cells: number[];
  /** (bucket, count) pairs of the latency histogram */
  readonly latency: number[];
}

class Cell implements SeriesRecorder {
  readonly cells = new Uint32Array(CELLS);
  readonly hist = new Uint32Array(LATENCY_BUCKETS);
  dirty = false;
  constructor(
    readonly service: string,
    readonly backend: string,
    private readonly owner: SeriesDeltas,
  ) {}

  request(code: number, seconds?: number): void {
    this.touch();
    const cls = statusClass(code);
    this.cells[cls] = (this.cells[cls] as number) + 1;
    if (seconds !== undefined) {
      const b = latencyBucket(seconds);
      this.hist[b] = (this.hist[b] as number) + 1;
    }
  }

  error(kind: string): void {
    const i = errorIndex(kind);
    if (i < 0) return;
    this.touch();
    this.cells[i] = (this.cells[i] as number) + 1;
  }

  private touch(): void {
    if (this.dirty) return;
    this.dirty = true;
    this.owner.dirty.push(this);
  }
}

/** A worker's interval counts; `take()` hands them over and starts the next interval. */
export class SeriesDeltas implements SeriesSink {
  /** cells touched since the last `take` */
  readonly dirty: Cell[] = [];
  private readonly cells = new Map<string, Cell>();

  recorder(service: string, id?: string): SeriesRecorder {
    const backend = id ?? '';
    const key = `${service}\u0000${backend}`;
    let c = this.cells.get(key);
    if (c === undefined) {
      c = new Cell(service, backend, this);
      this.cells.set(key, c);
    }
    return c;
  }

  dropBackend(service: string, id: string): void {
    this.cells.delete(`${service}\u0000${id}`);
  }

  dropService(service: string): void {
    for (const [key, c] of this.cells) if (c.service === service) this.cells.delete(key);
  }

  /** What was counted since the last call (only cells that counted something), and resets them. */
  take(): SeriesDelta[] {
    const out: SeriesDelta[] = [];
    for (const c of this.dirty) {
      const latency: number[] = [];
      for (let b = 0; b < c.hist.length; b++) if ((c.hist[b] as number) > 0) latency.push(b, c.hist[b] as number);
      out.push({ service: c.service, backend: c.backend, cells: Array.from(c.cells), latency });
      c.cells.fill(0);
      c.hist.fill(0);
      c.dirty = false;
    }
    this.dirty.length = 0;
    return out;
  }
}
