/**
 * The series side of a cluster worker (`workers: N`): it keeps no rings, only what it counted
 * since its last `stats` message, per service and backend (the same cells a ring slot has, plus
 * the latency histogram of the interval). The primary adds each interval into its own rings
 * (`SeriesStore.apply`), so the dashboard's quantiles come from the merged histograms, not from
 * averaging per-worker quantiles.
 */
import { CELLS, errorIndex, LATENCY_BUCKETS, latencyBucket, statusClass } from './ring.js';
import { MAX_BACKEND_SERIES, MAX_SERVICE_SERIES, type SeriesRecorder, type SeriesSink } from './store.js';

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

/** Counts nothing: for services beyond the cap (the primary keeps no series for them either). */
const NO_RECORDER: SeriesRecorder = { request: () => undefined, error: () => undefined };

/**
 * A worker's interval counts; `take()` hands them over and starts the next interval. One cell
 * (804 bytes of typed arrays) per service and per backend that had traffic, capped as the
 * primary's rings are (`maxServices`, `maxBackends`): a backend beyond the cap is counted in its
 * service's own cell, so the service's totals stay whole.
 */
export class SeriesDeltas implements SeriesSink {
  /** cells touched since the last `take` */
  readonly dirty: Cell[] = [];
  private readonly cells = new Map<string, Cell>();
  /** service -> how many cells it has (its own and its backends') */
  private readonly perService = new Map<string, number>();
  private backendCells = 0;
  private readonly maxServices: number;
  private readonly maxBackends: number;

  constructor(options: { readonly maxServices?: number; readonly maxBackends?: number } = {}) {
    this.maxServices = options.maxServices ?? MAX_SERVICE_SERIES;
    this.maxBackends = options.maxBackends ?? MAX_BACKEND_SERIES;
  }

  recorder(service: string, id?: string): SeriesRecorder {
    const backend = id ?? '';
    const key = `${service}\u0000${backend}`;
    let c = this.cells.get(key);
    if (c !== undefined) return c;
    const n = this.perService.get(service);
    if (n === undefined && this.perService.size >= this.maxServices) return NO_RECORDER;
    if (backend !== '') {
      if (this.backendCells >= this.maxBackends) return this.recorder(service);
      this.backendCells++;
    }
    c = new Cell(service, backend, this);
    this.cells.set(key, c);
    this.perService.set(service, (n ?? 0) + 1);
    return c;
  }

  dropBackend(service: string, id: string): void {
    if (id === '' || !this.cells.delete(`${service}\u0000${id}`)) return;
    this.backendCells--;
    const n = (this.perService.get(service) ?? 1) - 1;
    if (n > 0) this.perService.set(service, n);
    else this.perService.delete(service);
  }

  dropService(service: string): void {
    for (const [key, c] of this.cells) {
      if (c.service !== service) continue;
      this.cells.delete(key);
      if (c.backend !== '') this.backendCells--;
    }
    this.perService.delete(service);
  }

  /** Cells held (services' own and backends'), for tests. */
  get size(): { cells: number; backends: number } {
    return { cells: this.cells.size, backends: this.backendCells };
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
