/**
 * Prometheus metrics (README "Metrics"). One `Metrics` object owns its own prom-client
 * `Registry`, never the global one, so tests and several instances in one process do not clash.
 *
 * The proxy's hot path only touches pre-bound children cached per service, per backend and per
 * status code: no label objects are built per request. Gauges that mirror live state
 * (`drover_backend_up`, `drover_backend_inflight`) are filled at scrape time from a source the
 * runtime registers, so the data path never updates a gauge.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { FastPathStats } from './fast-path-stats.js';
import { SeriesStore, type SeriesSink } from './series/store.js';

/** Kinds of upstream failure, the `kind` label of `drover_upstream_errors_total`. */
export type UpstreamErrorKind = 'connect' | 'timeout' | 'reset' | 'status';

const UPSTREAM_ERROR_KINDS: readonly UpstreamErrorKind[] = ['connect', 'timeout', 'reset', 'status'];

/** The `type` values of `drover_registry_events_total`. */
const REGISTRY_EVENT_TYPES: readonly string[] = ['put', 'delete', 'resync'];

/**
 * Buckets of `drover_request_duration_seconds`, in seconds: 1 ms to 10 s, dense where a proxy's
 * latencies usually are (a few ms to a few hundred ms).
 */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Per-service hot-path handles; obtained once from `Metrics.service(name)` and kept. */
export interface ServiceMetrics {
  /** Records one request's total time as the client saw it, in seconds. */
  observeDuration(seconds: number): void;
  /** Counts one retry to another backend. */
  retry(): void;
}

/** Per-backend hot-path handles; obtained once from `Metrics.backend(service, id)` and kept. */
export interface BackendMetrics {
  /** Counts one request answered by this backend; `code` is the status sent to the client. */
  request(code: number): void;
  /** Counts one upstream failure of this backend. */
  upstreamError(kind: UpstreamErrorKind): void;
}

/** Per-service handles of the wait queue (`max_conns` + `queue`); obtained once and kept. */
export interface QueueMetrics {
  /** Sets `drover_queue_depth` to the requests waiting now. */
  depth(n: number): void;
  /** Records how long one request waited (dispatched, timed out or abandoned), in seconds. */
  observeWait(seconds: number): void;
}

/** One backend's live state, read at scrape time for the `up` and `inflight` gauges. */
export interface BackendStateSample {
  readonly service: string;
  readonly backend: string;
  /** true while the backend may receive new requests */
  readonly up: boolean;
  /** requests currently in flight */
  readonly inflight: number;
}

/** Options of `new Metrics()`. */
export interface MetricsOptions {
  /** register prom-client's default process metrics; default true (tests turn it off) */
  readonly defaultMetrics?: boolean;
  /** where the data path's series go; default `series` (a cluster worker passes `SeriesDeltas`) */
  readonly seriesSink?: SeriesSink;
}

/**
 * A hot-path count: a plain number bumped per request, folded into its prom-client counter at
 * scrape time. prom-client's bound children still validate and hash their labels on every
 * `inc()`, which measurably costs on a proxy's per-request path; a field increment does not.
 */
class Tally {
  n = 0;
  private flushed = 0;
  constructor(readonly labels: Readonly<Record<string, string>>) {}

  /** Adds what was counted since the last scrape to `counter`. */
  flushTo(counter: Counter<string>): void {
    const delta = this.n - this.flushed;
    if (delta > 0) {
      counter.inc(this.labels, delta);
      this.flushed = this.n;
    }
  }
}

class BackendHandles implements BackendMetrics {
  /** `code` -> tally; a handful of codes per backend, so a Map stays tiny */
  readonly byCode = new Map<number, Tally>();
  readonly errors: Record<UpstreamErrorKind, Tally>;

  constructor(
    upstreamErrors: Counter<'service' | 'backend' | 'kind'>,
    readonly service: string,
    readonly id: string,
  ) {
    const tally = (kind: UpstreamErrorKind): Tally => {
      const labels = { service, backend: id, kind };
      // Exported at 0 from the start, so `rate()` and alerts see the very first error. Not for
      // the service-level pseudo backend `""` (answers given without any backend): no upstream
      // is involved there, so zero series would only be noise.
      if (id !== '') upstreamErrors.inc(labels, 0);
      return new Tally(labels);
    };
    this.errors = { connect: tally('connect'), timeout: tally('timeout'), reset: tally('reset'), status: tally('status') };
  }

  request(code: number): void {
    let t = this.byCode.get(code);
    if (t === undefined) {
      t = new Tally({ service: this.service, backend: this.id, code: String(code) });
      this.byCode.set(code, t);
    }
    t.n++;
  }

  upstreamError(kind: UpstreamErrorKind): void {
    // An unknown kind (a caller bug) is dropped rather than creating an unbounded label.
    const t = this.errors[kind] as Tally | undefined;
    if (t !== undefined) t.n++;
  }
}

/** One service's request-duration histogram, kept as plain bucket counts. */
class DurationCells {
  /** per bucket (not cumulative); the last cell is +Inf */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(bounds: number) {
    this.counts = new Float64Array(bounds + 1);
  }
}

/**
 * `drover_request_duration_seconds` as a custom prom-client metric: `observe` is a bucket search
 * and three additions on plain numbers; the exposition is built from them at scrape time in the
 * shape prom-client's own histograms produce (so registries and cluster aggregation treat it the
 * same).
 */
class DurationHistogram {
  readonly name = 'drover_request_duration_seconds';
  readonly help = 'Time from request received to response finished, in seconds, by service.';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly bounds: readonly number[];
  private readonly cells = new Map<string, DurationCells>();

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
  }

  /** The cells of one service (created on first use). */
  cellsOf(service: string): DurationCells {
    let c = this.cells.get(service);
    if (c === undefined) {
      c = new DurationCells(this.bounds.length);
      this.cells.set(service, c);
    }
    return c;
  }

  observe(c: DurationCells, seconds: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && seconds > (bounds[i] as number)) i++;
    c.counts[i] = (c.counts[i] as number) + 1;
    c.sum += seconds;
    c.count++;
  }

  remove(service: string): void {
    this.cells.delete(service);
  }

  reset(): void {
    this.cells.clear();
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] } {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    const bucket = `${this.name}_bucket`;
    for (const [service, c] of this.cells) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += c.counts[i] as number;
        values.push({ labels: { le: this.bounds[i] as number, service }, value: acc, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf', service }, value: c.count, metricName: bucket });
      values.push({ labels: { service }, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { service }, value: c.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** The metrics of one drover process. */
export class Metrics {
  /** the registry `/metrics` serves; not prom-client's global registry */
  readonly registry: Registry;
  /** the dashboard's per-second series, fed from the same outcome path (dropped with the metrics) */
  readonly series = new SeriesStore();
  /** what the data path records into: `series`, or a cluster worker's interval counts */
  readonly seriesSink: SeriesSink;
  /** the fast path's counters: every listener of this process is handed this one object */
  readonly fastPath = new FastPathStats();

  private readonly requests: Counter<'service' | 'backend' | 'code'>;
  private readonly duration: DurationHistogram;
  private readonly upstreamErrors: Counter<'service' | 'backend' | 'kind'>;
  private readonly backendUp: Gauge<'service' | 'backend'>;
  private readonly backendInflight: Gauge<'service' | 'backend'>;
  private readonly retries: Counter<'service'>;
  private readonly healthTransitions: Counter<'service' | 'to'>;
  private readonly registryEvents: Counter<'source' | 'type'>;
  private readonly registryConnectedGauge: Gauge<'source'>;
  private readonly invalidEntries: Counter<'source'>;
  private readonly guardedChanges: Counter<'source'>;
  private readonly poolUpdates: Counter<'service'>;
  private readonly configReloads: Counter<'result'>;
  private readonly tlsHandshakes: Counter<'listener' | 'result'>;
  private certificateSource: (() => Iterable<{ readonly name: string; readonly notAfter: number }>) | undefined;
  private readonly queueDepth: Gauge<'service'>;
  private readonly queueWait: Histogram<'service'>;

  private readonly services = new Map<string, ServiceMetrics>();
  /** service -> retries counted on the hot path, folded in at scrape time */
  private readonly retryTallies = new Map<string, Tally>();
  /** service -> backend id -> handles */
  private readonly backends = new Map<string, Map<string, BackendHandles>>();
  /** service -> `to` values seen, so `forgetService` can remove those series */
  private readonly transitionsSeen = new Map<string, Set<string>>();
  private stateSource: (() => Iterable<BackendStateSample>) | undefined;
  /** registry sources seen (a handful: file, etcd) */
  private readonly sources = new Set<string>();

  constructor(options: MetricsOptions = {}) {
    const registry = new Registry();
    this.registry = registry;
    this.seriesSink = options.seriesSink ?? this.series;
    const registers = [registry];
    // Scrape-time gauges read the source through `self`, since prom-client calls collect() with
    // `this` bound to the gauge.
    const self = this;

    this.requests = new Counter({
      name: 'drover_requests_total',
      help: 'Requests proxied, by service, backend and the status code sent to the client.',
      labelNames: ['service', 'backend', 'code'] as const,
      registers,
      collect() {
        for (const byId of self.backends.values()) for (const h of byId.values()) for (const t of h.byCode.values()) t.flushTo(this);
      },
    });
    this.duration = new DurationHistogram(DURATION_BUCKETS_SECONDS);
    registry.registerMetric(this.duration as unknown as Metric);
    this.upstreamErrors = new Counter({
      name: 'drover_upstream_errors_total',
      help: 'Upstream failures by service, backend and kind (connect, timeout, reset, status).',
      labelNames: ['service', 'backend', 'kind'] as const,
      registers,
      collect() {
        for (const byId of self.backends.values()) for (const h of byId.values()) for (const t of Object.values(h.errors)) t.flushTo(this);
      },
    });
    this.backendUp = new Gauge({
      name: 'drover_backend_up',
      help: '1 while the backend may receive new requests, else 0.',
      labelNames: ['service', 'backend'] as const,
      registers,
      collect() {
        self.fillStateGauge(this, (s) => (s.up ? 1 : 0));
      },
    });
    this.backendInflight = new Gauge({
      name: 'drover_backend_inflight',
      help: 'Requests currently in flight to the backend.',
      labelNames: ['service', 'backend'] as const,
      registers,
      collect() {
        self.fillStateGauge(this, (s) => s.inflight);
      },
    });
    this.retries = new Counter({
      name: 'drover_retries_total',
      help: 'Retries to a different backend, by service.',
      labelNames: ['service'] as const,
      registers,
      collect() {
        for (const t of self.retryTallies.values()) t.flushTo(this);
      },
    });
    this.healthTransitions = new Counter({
      name: 'drover_health_transitions_total',
      help: 'Backend health state changes, by service and new state.',
      labelNames: ['service', 'to'] as const,
      registers,
    });
    this.registryEvents = new Counter({
      name: 'drover_registry_events_total',
      help: 'Registry events seen, by source and type (put, delete, resync).',
      labelNames: ['source', 'type'] as const,
      registers,
    });
    this.registryConnectedGauge = new Gauge({
      name: 'drover_registry_connected',
      help: '1 while the registry source is connected, else 0.',
      labelNames: ['source'] as const,
      registers,
    });
    this.guardedChanges = new Counter({
      name: 'drover_registry_guarded_changes_total',
      help: 'Registry revisions or re-lists whose removals were held back by registry.etcd.min_members_ratio, by source.',
      labelNames: ['source'] as const,
      registers,
    });
    this.invalidEntries = new Counter({
      name: 'drover_registry_invalid_entries_total',
      help: 'Registry values that did not parse and were skipped, by source.',
      labelNames: ['source'] as const,
      registers,
    });
    this.poolUpdates = new Counter({
      name: 'drover_pool_updates_total',
      help: 'Member lists applied to a service pool (one per coalesced registry flush that touched the service).',
      labelNames: ['service'] as const,
      registers,
    });
    this.configReloads = new Counter({
      name: 'drover_config_reloads_total',
      help: 'Config reloads, by result (success, failure).',
      labelNames: ['result'] as const,
      registers,
    });
    this.queueDepth = new Gauge({
      name: 'drover_queue_depth',
      help: 'Requests waiting for a backend below max_conns, by service.',
      labelNames: ['service'] as const,
      registers,
    });
    this.queueWait = new Histogram({
      name: 'drover_queue_wait_seconds',
      help: 'Time requests spent in the wait queue (dispatched, timed out or abandoned), in seconds, by service.',
      labelNames: ['service'] as const,
      buckets: [...DURATION_BUCKETS_SECONDS],
      registers,
    });
    // The fast path counts in plain fields (no prom-client call per request); folded in at
    // scrape time.
    new Counter({
      name: 'drover_fast_path_requests_total',
      help: 'Requests answered on the fast path (read off the socket without node:http).',
      registers,
      collect(this: Counter) {
        this.reset();
        this.inc(self.fastPath.requests);
      },
    });
    new Counter({
      name: 'drover_fast_path_handovers_total',
      help: 'Client connections handed from the fast path to node:http, by reason (parse_error, incomplete, pipelined, body, connection, head).',
      labelNames: ['reason'] as const,
      registers,
      collect(this: Counter<'reason'>) {
        this.reset();
        for (const [reason, n] of self.fastPath.handovers) this.labels(reason).inc(n);
      },
    });
    this.tlsHandshakes = new Counter({
      name: 'drover_tls_handshakes_total',
      help: 'TLS handshakes on client listeners, by listener (bound address) and result (success, failure).',
      labelNames: ['listener', 'result'] as const,
      registers,
    });
    new Gauge({
      name: 'drover_tls_certificate_expiry_seconds',
      help: "Seconds until a served certificate's notAfter (negative once expired), by certificate name.",
      labelNames: ['name'] as const,
      registers,
      collect(this: Gauge<'name'>) {
        this.reset();
        const source = self.certificateSource;
        if (source === undefined) return;
        const now = Date.now();
        try {
          for (const c of source()) this.set({ name: c.name }, Math.round((c.notAfter - now) / 1000));
        } catch {
          this.reset();
        }
      },
    });
    // Both results exist from the start so `increase()` and alerts see the first failure.
    this.configReloads.labels('success').inc(0);
    this.configReloads.labels('failure').inc(0);

    // prom-client samples event loop delay every 10 ms: 100 wake-ups a second, most of an idle
    // drover's CPU (measured: 10 ms/s idle with it, 3 without). Kept: a coarser sample would
    // shift every nodejs_eventloop_lag_* value (they include the sample interval: ~10 ms now).
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  }

  /** Content-Type of `metricsText()` (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for `GET /metrics`. */
  metricsText(): Promise<string> {
    return this.registry.metrics();
  }

  /** Hot-path handles of one service; cached, so call it once per service and keep the result. */
  service(name: string): ServiceMetrics {
    let handles = this.services.get(name);
    if (handles === undefined) {
      const hist = this.duration;
      const cells = hist.cellsOf(name);
      this.retries.inc({ service: name }, 0); // exported from the start, like the other counters
      const retries = new Tally({ service: name });
      this.retryTallies.set(name, retries);
      handles = {
        observeDuration: (seconds: number) => hist.observe(cells, seconds),
        retry: () => {
          retries.n++;
        },
      };
      this.services.set(name, handles);
    }
    return handles;
  }

  /**
   * Queue handles of one service. Only services with `max_conns` ask for them, so a service
   * without limits exports no queue series. Queueing is the saturated path: prom-client's bound
   * children are cheap enough there.
   */
  queue(service: string): QueueMetrics {
    const depth = this.queueDepth.labels(service);
    const wait = this.queueWait.labels(service);
    depth.set(0);
    return { depth: (n) => depth.set(n), observeWait: (s) => wait.observe(s) };
  }

  /** Hot-path handles of one backend; cached per (service, id). */
  backend(service: string, id: string): BackendMetrics {
    let byId = this.backends.get(service);
    if (byId === undefined) {
      byId = new Map();
      this.backends.set(service, byId);
    }
    let handles = byId.get(id);
    if (handles === undefined) {
      handles = new BackendHandles(this.upstreamErrors, service, id);
      byId.set(id, handles);
    }
    return handles;
  }

  /**
   * Deletes every series labelled with this backend (requests, upstream errors, up, inflight) and
   * drops the cached handles. Call it when a backend leaves its pool for good, so a churning
   * registry does not grow the exposition without bound. Handles obtained before stay usable but
   * would recreate their series: take fresh ones if the backend comes back.
   */
  forgetBackend(service: string, id: string): void {
    const byId = this.backends.get(service);
    const handles = byId?.get(id);
    if (handles !== undefined) {
      for (const code of handles.byCode.keys()) this.requests.remove(service, id, String(code));
      byId?.delete(id);
      if (byId?.size === 0) this.backends.delete(service);
    }
    for (const kind of UPSTREAM_ERROR_KINDS) this.upstreamErrors.remove(service, id, kind);
    this.backendUp.remove(service, id);
    this.backendInflight.remove(service, id);
    this.series.dropBackend(service, id);
    if (this.seriesSink !== this.series) this.seriesSink.dropBackend(service, id);
  }

  /** Deletes every series of a service (and of all its backends); for a service removed from config. */
  forgetService(name: string): void {
    const byId = this.backends.get(name);
    if (byId !== undefined) for (const id of [...byId.keys()]) this.forgetBackend(name, id);
    this.duration.remove(name);
    this.series.dropService(name);
    if (this.seriesSink !== this.series) this.seriesSink.dropService(name);
    this.retries.remove(name);
    this.retryTallies.delete(name);
    this.poolUpdates.remove(name);
    this.queueDepth.remove(name);
    this.queueWait.remove(name);
    this.services.delete(name);
    const seen = this.transitionsSeen.get(name);
    if (seen !== undefined) for (const to of seen) this.healthTransitions.remove(name, to);
    this.transitionsSeen.delete(name);
  }

  /** Counts one backend health change of `service` to state `to` (e.g. healthy, unhealthy, ejected). */
  healthTransition(service: string, to: string): void {
    let seen = this.transitionsSeen.get(service);
    if (seen === undefined) {
      seen = new Set();
      this.transitionsSeen.set(service, seen);
    }
    seen.add(to);
    this.healthTransitions.labels(service, to).inc();
  }

  /** Counts one registry event (`type`: put, delete, resync) from `source` (file, etcd). */
  registryEvent(source: string, type: string): void {
    this.knownSource(source);
    this.registryEvents.labels(source, type).inc();
  }

  /** Sets `drover_registry_connected{source}` to 1 or 0. */
  registryConnected(source: string, connected: boolean): void {
    this.knownSource(source);
    this.registryConnectedGauge.labels(source).set(connected ? 1 : 0);
  }

  /** Counts one registry value that did not parse. */
  registryInvalid(source: string): void {
    this.knownSource(source);
    this.invalidEntries.labels(source).inc();
  }

  /** Counts one registry change held back by the mass-removal guard. */
  registryGuarded(source: string): void {
    this.knownSource(source);
    this.guardedChanges.labels(source).inc();
  }

  /**
   * The first time a source is heard of, its counters are exported at 0 (invalid entries, and
   * every event type), so an alert on `increase(...) > 0` fires on the very first one.
   */
  private knownSource(source: string): void {
    if (this.sources.has(source)) return;
    this.sources.add(source);
    this.invalidEntries.labels(source).inc(0);
    // only etcd has the mass-removal guard (registry.etcd.min_members_ratio)
    if (source === 'etcd') this.guardedChanges.labels(source).inc(0);
    for (const type of REGISTRY_EVENT_TYPES) this.registryEvents.labels(source, type).inc(0);
  }

  /** Counts one member list applied to `service`'s pool (`drover_pool_updates_total`). */
  poolUpdate(service: string): void {
    this.poolUpdates.labels(service).inc();
  }

  /** Counts one config reload attempt. */
  configReload(result: 'success' | 'failure'): void {
    this.configReloads.labels(result).inc();
  }

  /** Counts one TLS handshake on the listener bound at `listener` (`host:port`). */
  tlsHandshake(listener: string, result: 'success' | 'failure'): void {
    this.tlsHandshakes.labels(listener, result).inc();
  }

  /**
   * Registers where `drover_tls_certificate_expiry_seconds` comes from: the served certificates'
   * names and notAfter (ms since the epoch), read at scrape time. Must be cheap and not throw.
   */
  setCertificates(source: () => Iterable<{ readonly name: string; readonly notAfter: number }>): void {
    this.certificateSource = source;
  }

  /**
   * Registers where `drover_backend_up` and `drover_backend_inflight` come from. The source is
   * called at scrape time (twice per scrape, once per gauge); it must be cheap and must not throw.
   * Backends it no longer yields vanish from those two gauges at the next scrape.
   */
  setBackendStates(source: () => Iterable<BackendStateSample>): void {
    this.stateSource = source;
  }

  private fillStateGauge(gauge: Gauge<'service' | 'backend'>, value: (s: BackendStateSample) => number): void {
    gauge.reset();
    const source = this.stateSource;
    if (source === undefined) return;
    try {
      for (const s of source()) gauge.set({ service: s.service, backend: s.backend }, value(s));
    } catch {
      // A failing source must not break the whole scrape: the gauge is left empty this time.
      gauge.reset();
    }
  }
}
