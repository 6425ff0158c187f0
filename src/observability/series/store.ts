/**
 * Every time series drover keeps for the dashboard: one `SeriesRing` per service (all of its
 * requests, with or without a backend) and one per backend. Memory is bounded twice: each ring is
 * a fixed size (`SeriesRing.bytes`), and the number of rings is capped (`maxServices`,
 * `maxBackends`); a backend beyond the cap is still counted in its service's ring and in
 * `/metrics`, it just gets no chart of its own. Rings of a backend or service that goes away are
 * dropped with its metrics (`Metrics.forgetBackend` / `forgetService`).
 *
 * The data path holds one `SeriesRecorder` per backend (and one per service for answers given
 * without a backend): one call per finished request, no allocation.
 */
import { errorIndex, latencyBucket, SeriesRing, statusClass, type SeriesData } from './ring.js';

/** Default cap on services with a series (each about 35 KB). */
export const MAX_SERVICE_SERIES = 512;
/** Default cap on backends with a series (each about 19 KB): about 38 MB at most. */
export const MAX_BACKEND_SERIES = 2048;

/** Hot-path handle: counts into a service's ring and, when it has one, a backend's. */
export interface SeriesRecorder {
  /** One finished request: the status sent to the client, and its time in seconds (omit: no latency sample). */
  request(code: number, seconds?: number): void;
  /** One upstream error (connect, timeout, reset, status). */
  error(kind: string): void;
}

/** Where the data path's series go: rings (`SeriesStore`) or a cluster worker's interval counts (`SeriesDeltas`). */
export interface SeriesSink {
  /** A recorder for one backend of `service`; `id` undefined (or `""`): the service's own answers. */
  recorder(service: string, id?: string): SeriesRecorder;
  /** The backend left its pool: forget its series. */
  dropBackend(service: string, id: string): void;
  /** The service is gone: forget its series and its backends'. */
  dropService(service: string): void;
}

let cachedMs = -1;

/**
 * The current time in ms, read once per second at most: `Date.now()` costs as much as the rest of
 * a record, and 1 s slots need no finer clock. The cache is cleared by a timer at the next second
 * boundary, armed only while requests come (no wake-ups when idle); a late timer (a busy event
 * loop) counts a few requests into the second before, which a per-second chart does not show.
 */
export function coarseNow(): number {
  if (cachedMs < 0) {
    cachedMs = Date.now();
    setTimeout(() => {
      cachedMs = -1;
    }, 1000 - (cachedMs % 1000)).unref();
  }
  return cachedMs;
}

/** Options of `new SeriesStore()`. */
export interface SeriesStoreOptions {
  readonly maxServices?: number;
  readonly maxBackends?: number;
  /** ms clock; default `coarseNow` (tests pass a fake one) */
  readonly clock?: () => number;
}

/** One series as the admin API returns it. */
export interface SeriesView extends SeriesData {
  readonly service: string;
  /** null for a service's own series */
  readonly backend: string | null;
}

class Recorder implements SeriesRecorder {
  constructor(
    private readonly clock: () => number,
    private readonly service: SeriesRing,
    private readonly backend: SeriesRing | undefined,
  ) {}

  request(code: number, seconds?: number): void {
    const sec = Math.floor(this.clock() / 1000);
    const cls = statusClass(code);
    const bucket = seconds === undefined ? -1 : latencyBucket(seconds);
    this.service.request(sec, cls, bucket);
    this.backend?.request(sec, cls, bucket);
  }

  error(kind: string): void {
    const sec = Math.floor(this.clock() / 1000);
    const i = errorIndex(kind);
    this.service.error(sec, i);
    this.backend?.error(sec, i);
  }
}

interface ServiceRings {
  readonly ring: SeriesRing;
  readonly backends: Map<string, SeriesRing>;
}

/** The series of one drover process. */
export class SeriesStore implements SeriesSink {
  private readonly clock: () => number;
  private readonly maxServices: number;
  private readonly maxBackends: number;
  private readonly services = new Map<string, ServiceRings>();
  /** a ring that counts for nobody: for services beyond the cap */
  private readonly sink: SeriesRing;
  private backendCount = 0;

  constructor(options: SeriesStoreOptions = {}) {
    this.clock = options.clock ?? coarseNow;
    this.maxServices = options.maxServices ?? MAX_SERVICE_SERIES;
    this.maxBackends = options.maxBackends ?? MAX_BACKEND_SERIES;
    this.sink = new SeriesRing(this.nowSec(), 16);
  }

  /** A recorder for one backend of `service`; `id` undefined (or `""`): the service's own answers. */
  recorder(service: string, id?: string): SeriesRecorder {
    const svc = this.serviceRings(service);
    if (svc === undefined) return new Recorder(this.clock, this.sink, undefined);
    if (id === undefined || id === '') return new Recorder(this.clock, svc.ring, undefined);
    return new Recorder(this.clock, svc.ring, this.backendRing(svc, id));
  }

  /**
   * Adds one cluster worker's interval counts (`SeriesDeltas.take`) at the current second: into
   * the service's ring and, for a backend (`backend` not `""`), into the backend's.
   */
  apply(delta: { readonly service: string; readonly backend: string; readonly cells: ArrayLike<number>; readonly latency: ArrayLike<number> }): void {
    const svc = this.serviceRings(delta.service);
    if (svc === undefined) return;
    const sec = this.nowSec();
    svc.ring.add(sec, delta.cells, delta.latency);
    if (delta.backend !== '') this.backendRing(svc, delta.backend)?.add(sec, delta.cells, delta.latency);
  }

  /** Drops one backend's ring (it left its pool). Recorders taken before keep counting into their service only. */
  dropBackend(service: string, id: string): void {
    const svc = this.services.get(service);
    if (svc?.backends.delete(id) === true) this.backendCount--;
  }

  /** Drops a service's rings and its backends'. */
  dropService(service: string): void {
    const svc = this.services.get(service);
    if (svc === undefined) return;
    this.backendCount -= svc.backends.size;
    this.services.delete(service);
  }

  /** Service names with a series, in creation order. */
  serviceNames(): string[] {
    return [...this.services.keys()];
  }

  /** Backend ids of `service` with a series, or undefined for an unknown service. */
  backendIds(service: string): string[] | undefined {
    const svc = this.services.get(service);
    return svc === undefined ? undefined : [...svc.backends.keys()];
  }

  /** One service's series (backend undefined) or one backend's; undefined when there is none. */
  read(service: string, backend: string | undefined, since?: number): SeriesView | undefined {
    const svc = this.services.get(service);
    if (svc === undefined) return undefined;
    const ring = backend === undefined ? svc.ring : svc.backends.get(backend);
    if (ring === undefined) return undefined;
    return { service, backend: backend ?? null, ...ring.read(this.nowSec(), since) };
  }

  /** Number of rings held (services + backends), for tests and the README's memory figures. */
  get size(): { services: number; backends: number } {
    return { services: this.services.size, backends: this.backendCount };
  }

  /** The backend's ring, created while under the cap; undefined beyond it. */
  private backendRing(svc: ServiceRings, id: string): SeriesRing | undefined {
    let ring = svc.backends.get(id);
    if (ring === undefined && this.backendCount < this.maxBackends) {
      ring = new SeriesRing(this.nowSec(), 16);
      svc.backends.set(id, ring);
      this.backendCount++;
    }
    return ring;
  }

  private serviceRings(service: string): ServiceRings | undefined {
    let svc = this.services.get(service);
    if (svc === undefined) {
      if (this.services.size >= this.maxServices) return undefined;
      svc = { ring: new SeriesRing(this.nowSec(), 32), backends: new Map() };
      this.services.set(service, svc);
    }
    return svc;
  }

  private nowSec(): number {
    return Math.floor(this.clock() / 1000);
  }
}
