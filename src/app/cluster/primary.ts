/**
 * `workers: N` (N > 1): the primary process keeps the registry watch, health checks and admin API
 * (the ordinary `Runtime`, started without listeners) and runs N serving workers with node:cluster
 * on the shared listeners. It pushes every pool change to the workers as a whole snapshot
 * (coalesced to one per event-loop turn), folds the workers' counters into its own backends
 * (so `/api/services` and `drover status` show the sums) and feeds their passive-health outcomes
 * to its health monitor (health is decided once, not N times). `/metrics` aggregates the
 * primary's registry and every worker's with prom-client's `AggregatorRegistry.aggregate`.
 * A worker that dies is replaced; the listening socket stays open in the meantime.
 */
import cluster, { type Worker } from 'node:cluster';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { AggregatorRegistry } from 'prom-client';
import type { Availability } from '../../../routing/types.js';
import type { DroverConfig } from '../../config/types.js';
import type { Logger } from '../../observability/log.js';
import type { Metrics } from '../../observability/metrics.js';
import type { Runtime } from '../runtime.js';
import { isDroverMessage, type PoolsSnapshot, type PrimaryMessage, type ServiceSnapshot, type WorkerMessage } from './protocol.js';

/** V8 flags for workers: a larger young generation measurably helps a proxy's short-lived garbage. */
export const WORKER_V8_FLAGS: readonly string[] = ['--max-semi-space-size=64'];

/** ms to wait for every worker to listen at start. */
const START_TIMEOUT_MS = 15_000;
/** ms to wait for each worker's `/metrics` answer. */
const METRICS_TIMEOUT_MS = 2_000;
/** Respawns within `CRASH_WINDOW_MS` beyond which the next respawn waits `CRASH_BACKOFF_MS`. */
const CRASH_LIMIT = 10;
const CRASH_WINDOW_MS = 10_000;
const CRASH_BACKOFF_MS = 1_000;

/** `workers: N | auto` -> a process count (auto: the cores this process may use). */
export function workerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? Math.max(1, os.availableParallelism()) : workers;
}

export interface ClusterOptions {
  readonly runtime: Runtime;
  readonly config: DroverConfig;
  readonly workers: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

interface WorkerSlot {
  readonly worker: Worker;
  listening: boolean;
  /** `service\0id` -> in-flight count this worker reported last */
  readonly inflight: Map<string, number>;
  /** service -> requests waiting in this worker's queue, as it reported last */
  readonly queues: Map<string, number>;
}

export class ClusterPrimary {
  private readonly opts: ClusterOptions;
  private config: DroverConfig;
  private readonly slots = new Map<number, WorkerSlot>();
  private seq = 0;
  private pushQueued = false;
  private stopping = false;
  private addresses: { host: string; port: number }[] = [];
  private readonly respawns: number[] = [];
  private metricsId = 0;
  private readonly metricsWaiters = new Map<number, { pending: Set<number>; results: object[][]; done: () => void }>();
  private onListening: (() => void) | undefined;

  private constructor(opts: ClusterOptions) {
    this.opts = opts;
    this.config = opts.config;
  }

  /** Forks the workers and resolves once every one of them listens. */
  static async start(opts: ClusterOptions): Promise<ClusterPrimary> {
    const c = new ClusterPrimary(opts);
    cluster.setupPrimary({
      exec: fileURLToPath(new URL('./worker.js', import.meta.url)),
      args: [],
      execArgv: [...process.execArgv.filter((a) => !a.startsWith('--max-semi-space-size')), ...WORKER_V8_FLAGS],
      serialization: 'advanced',
    });
    cluster.on('message', (worker, m: unknown) => c.onMessage(worker, m));
    cluster.on('exit', (worker, code, signal) => c.onExit(worker, code, signal));
    const all = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('workers did not start listening in time')), START_TIMEOUT_MS);
      c.onListening = () => {
        if ([...c.slots.values()].filter((s) => s.listening).length >= opts.workers) {
          clearTimeout(timer);
          c.onListening = undefined;
          resolve();
        }
      };
    });
    for (let i = 0; i < opts.workers; i++) c.fork();
    try {
      await all;
    } catch (err) {
      await c.shutdown(0);
      throw err;
    }
    return c;
  }

  /** The bound listener addresses (as the first worker reported them). */
  listenAddresses(): { host: string; port: number }[] {
    return this.addresses;
  }

  /** Worker process ids, for tests and logs. */
  workerPids(): number[] {
    return [...this.slots.values()].map((s) => s.worker.process.pid ?? 0);
  }

  /** Pools changed in the primary: one snapshot goes out at the end of this event-loop turn. */
  poolsChanged(): void {
    if (this.pushQueued || this.stopping) return;
    this.pushQueued = true;
    setImmediate(() => {
      this.pushQueued = false;
      this.broadcast({ drover: 'snapshot', snapshot: this.snapshot() });
    });
  }

  /** A config reload that the runtime already applied. */
  reload(config: DroverConfig): void {
    this.config = config;
    this.broadcast({ drover: 'config', config, snapshot: this.snapshot() });
  }

  /** SIGUSR1: every worker reopens its access log. */
  reopenAccessLog(): void {
    this.broadcast({ drover: 'reopen' });
  }

  /** Asks every worker to finish its in-flight requests (up to `graceMs`) and waits for them to exit. */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    const exits = [...this.slots.values()].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.worker.isDead()) return resolve();
          s.worker.once('exit', () => resolve());
        }),
    );
    this.broadcast({ drover: 'stop', graceMs });
    const kill = setTimeout(() => {
      for (const s of this.slots.values()) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
    }, graceMs + 2_000);
    await Promise.all(exits);
    clearTimeout(kill);
  }

  // ---- internals -------------------------------------------------------------------------

  private fork(): void {
    const worker = cluster.fork();
    this.slots.set(worker.id, { worker, listening: false, inflight: new Map(), queues: new Map() });
    worker.on('error', (err) => this.opts.logger.warn({ err, worker: worker.id }, 'worker channel error'));
  }

  private snapshot(): PoolsSnapshot {
    const services: ServiceSnapshot[] = [];
    for (const svc of this.opts.runtime.pools().values()) {
      const members = [];
      const availability: Availability[] = [];
      for (const b of svc.pool.backends()) {
        members.push({ id: b.id, url: b.url, weight: b.weight, zone: b.zone, draining: b.draining, source: b.source, meta: b.meta });
        availability.push(b.availability);
      }
      services.push({ name: svc.name, members, availability });
    }
    return { seq: ++this.seq, services };
  }

  private send(slot: WorkerSlot, m: PrimaryMessage): void {
    if (!slot.worker.isConnected()) return;
    try {
      slot.worker.send(m, undefined, () => undefined);
    } catch (err) {
      this.opts.logger.warn({ err, worker: slot.worker.id }, 'could not message a worker');
    }
  }

  private broadcast(m: PrimaryMessage): void {
    for (const s of this.slots.values()) if (s.listening || m.drover === 'stop') this.send(s, m);
  }

  private onMessage(worker: Worker, raw: unknown): void {
    if (!isDroverMessage(raw)) return;
    const slot = this.slots.get(worker.id);
    if (slot === undefined) return;
    const m = raw as WorkerMessage;
    switch (m.drover) {
      case 'hello':
        this.send(slot, { drover: 'init', config: this.config, snapshot: this.snapshot() });
        break;
      case 'listening':
        slot.listening = true;
        if (this.addresses.length === 0) this.addresses = [...m.listen];
        this.opts.logger.info({ worker: worker.id, pid: worker.process.pid }, 'worker listening');
        this.onListening?.();
        break;
      case 'stats':
        this.applyStats(slot, m);
        break;
      case 'metrics': {
        const w = this.metricsWaiters.get(m.id);
        if (w !== undefined && w.pending.delete(worker.id)) {
          w.results.push([...m.metrics]);
          if (w.pending.size === 0) w.done();
        }
        break;
      }
    }
  }

  private applyStats(slot: WorkerSlot, m: Extract<WorkerMessage, { drover: 'stats' }>): void {
    const pools = this.opts.runtime.pools();
    for (const s of m.backends) {
      const b = pools.get(s.service)?.pool.get(s.id);
      const key = `${s.service}\u0000${s.id}`;
      const prev = slot.inflight.get(key) ?? 0;
      slot.inflight.set(key, s.inflight);
      if (b === undefined) continue;
      b.requests += s.requests;
      b.failures += s.failures;
      b.inflight += s.inflight - prev;
    }
    for (const p of m.passive) this.opts.runtime.monitor.passive(p.service, p.id, p.outcome);
    // The dashboard's series and route hits are kept here, from every worker's counts.
    for (const d of m.series ?? []) this.opts.metrics.series.apply(d);
    if (m.routes !== undefined && m.routes.length > 0) this.opts.runtime.addRouteHits(m.routes);
    for (const q of m.queues ?? []) {
      if (q.depth > 0) slot.queues.set(q.service, q.depth);
      else slot.queues.delete(q.service);
    }
  }

  /** Requests waiting in `service`'s queues, summed over the workers (each queues on its own). */
  queueDepth(service: string): number {
    let n = 0;
    for (const s of this.slots.values()) n += s.queues.get(service) ?? 0;
    return n;
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slots.get(worker.id);
    if (slot === undefined) return;
    this.slots.delete(worker.id);
    // Its in-flight requests are gone with it.
    const pools = this.opts.runtime.pools();
    for (const [key, n] of slot.inflight) {
      const [service, id] = key.split('\u0000') as [string, string];
      const b = pools.get(service)?.pool.get(id);
      if (b !== undefined) b.inflight = Math.max(0, b.inflight - n);
    }
    for (const w of this.metricsWaiters.values()) if (w.pending.delete(worker.id) && w.pending.size === 0) w.done();
    if (this.stopping) return;
    this.opts.logger.warn({ worker: worker.id, pid: worker.process.pid, code, signal }, 'worker died: starting a replacement');
    const now = Date.now();
    this.respawns.push(now);
    while (this.respawns.length > 0 && (this.respawns[0] ?? 0) < now - CRASH_WINDOW_MS) this.respawns.shift();
    if (this.respawns.length > CRASH_LIMIT) setTimeout(() => this.stopping || this.fork(), CRASH_BACKOFF_MS).unref();
    else this.fork();
  }

  /** `/metrics`: the primary's registry plus every listening worker's, summed by prom-client. */
  async metricsText(): Promise<string> {
    const own = await this.opts.metrics.registry.getMetricsAsJSON();
    const id = ++this.metricsId;
    const targets = [...this.slots.values()].filter((s) => s.listening && s.worker.isConnected());
    const results: object[][] = [];
    await new Promise<void>((resolve) => {
      const pending = new Set(targets.map((s) => s.worker.id));
      const timer = setTimeout(() => finish(), METRICS_TIMEOUT_MS);
      const finish = (): void => {
        clearTimeout(timer);
        this.metricsWaiters.delete(id);
        resolve();
      };
      if (pending.size === 0) return finish();
      this.metricsWaiters.set(id, { pending, results, done: finish });
      for (const s of targets) this.send(s, { drover: 'metrics', id });
    });
    return AggregatorRegistry.aggregate([own, ...results]).metrics();
  }
}
