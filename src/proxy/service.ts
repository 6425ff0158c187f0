/**
 * One service as the data path sees it, and the immutable snapshot the listeners read. Shared by
 * the single-process runtime and by cluster workers: the only difference between the two is
 * where passive-health outcomes go (the local health monitor, or the primary over IPC).
 */
import { BlockList, isIP } from 'node:net';
import type { Backend } from '../../routing/backend.js';
import { failurePenalty, medianLatency } from '../../routing/latency.js';
import { ServicePool, type ServicePoolSettings } from '../../routing/pool.js';
import { RouteTable } from '../../routing/route-table.js';
import type { PassiveOutcome } from '../../health/types.js';
import type { DroverConfig, ServiceConfig } from '../config/types.js';
import type { Metrics } from '../observability/metrics.js';
import { compileEdits } from './headers.js';
import { AcmeStorage } from '../acme/storage.js';
import { WaitQueue, type Waiter } from './queue.js';
import type { AccessLogEntry, Admission, AttemptOutcome, BackendCounters, ProxyState, ServiceCounters, ServiceRuntime } from './types.js';

/** Retry budget: each request earns this fraction of a retry... */
const RETRY_EARN = 0.2;
/** ...up to this many banked retries (so a burst of failures after a quiet spell can still retry). */
const RETRY_BANK = 20;

/** Where one service's passive-health outcomes go. */
export type PassiveReporter = (service: string, id: string, outcome: PassiveOutcome) => void;

const SUCCESS: PassiveOutcome = { kind: 'success' };

/** Maps one attempt's outcome to what passive ejection counts (5xx fail, 4xx succeed). */
export function toPassive(outcome: AttemptOutcome): PassiveOutcome {
  if (outcome.ok) return outcome.status >= 500 ? { kind: 'status', status: outcome.status } : SUCCESS;
  if (outcome.kind === 'status') return { kind: 'status', status: outcome.status ?? 500 };
  return { kind: outcome.kind };
}

/** The environment variable naming the zone this drover runs in (`zone_aware`). */
export const ZONE_ENV = 'DROVER_ZONE';

/** The pool settings of a service config (`zone_aware` resolved against `DROVER_ZONE`). */
export function poolSettings(config: ServiceConfig, env: NodeJS.ProcessEnv = process.env): ServicePoolSettings {
  const zone = env[ZONE_ENV];
  return {
    balancer: config.balancer,
    hashKey: config.hashKey,
    panicThreshold: config.panicThreshold,
    slowStart: config.slowStart,
    maxConns: config.maxConns,
    localZone: config.zoneAware && zone !== undefined && zone !== '' ? zone : undefined,
  };
}

/** One service's pool, counters and retry budget; reconfigured in place on reload. */
export class ServiceEntry implements ServiceRuntime {
  readonly name: string;
  config: ServiceConfig;
  /** true while the config has a `services.<name>` entry; false: registry-only, defaults */
  configured: boolean;
  readonly pool: ServicePool;
  readonly counters: ServiceCounters;
  private readonly metrics: Metrics;
  private readonly reporter: PassiveReporter;
  private readonly perBackend = new WeakMap<Backend, BackendCounters>();
  /** backends whose last reported outcome was a failure (a success must reset their streak) */
  private readonly failing = new WeakSet<Backend>();
  private tokens = RETRY_BANK;
  /** requests waiting for a slot below `max_conns`; created with the first limit */
  private queue: WaitQueue | undefined;
  private readonly scratch = { buf: new Float64Array(8) };

  constructor(config: ServiceConfig, metrics: Metrics, reporter: PassiveReporter, configured = true) {
    this.name = config.name;
    this.config = config;
    this.configured = configured;
    this.metrics = metrics;
    this.reporter = reporter;
    this.pool = new ServicePool({ name: config.name, ...poolSettings(config) });
    const svc = metrics.service(config.name);
    const orphan = metrics.backend(config.name, '');
    const series = metrics.seriesSink.recorder(config.name);
    this.counters = {
      observeDuration: (s) => svc.observeDuration(s),
      retry: () => svc.retry(),
      request: (code, seconds) => {
        orphan.request(code);
        series.request(code, seconds);
      },
    };
    if (config.maxConns > 0) this.waitQueue();
  }

  reconfigure(config: ServiceConfig, configured = true): void {
    this.config = config;
    this.configured = configured;
    this.pool.reconfigure(poolSettings(config));
    if (config.maxConns > 0) this.waitQueue();
    // a raised limit (or none any more) frees slots for whoever waits
    this.queue?.drain();
  }

  admit(w: Waiter): Admission {
    const limited = this.config.maxConns > 0;
    const queue = this.queue;
    // FIFO: while others wait, a newcomer queues behind them instead of overtaking
    if (!limited || queue === undefined || queue.length === 0) {
      const b = this.pool.pick(w.ctx, w.tried);
      if (b !== undefined) {
        this.acquire(b);
        return b;
      }
      if (!limited || !this.pool.saturated(w.tried)) return 'none';
    } else if (this.pool.candidates().length === 0) {
      return 'none';
    }
    return this.waitQueue().enqueue(w, this.config.queue.size, this.config.queue.timeout) ? 'queued' : 'saturated';
  }

  /** The queue, created with the first limit (so its series exist from then on, at 0). */
  private waitQueue(): WaitQueue {
    return (this.queue ??= new WaitQueue((ctx, tried) => this.takeSlot(ctx, tried), this.metrics.queue(this.name)));
  }

  /** The queue's way to a backend: a pick within the limits, slot taken. */
  private takeSlot(ctx: Waiter['ctx'], tried: Waiter['tried']): Backend | undefined {
    const b = this.pool.pick(ctx, tried);
    if (b !== undefined) this.acquire(b);
    return b;
  }

  acquire(backend: Backend): void {
    backend.inflight++;
  }

  release(backend: Backend): void {
    backend.inflight--;
    const q = this.queue;
    if (q !== undefined && q.length > 0) q.drain();
  }

  /** Requests waiting in the queue now. */
  get queueDepth(): number {
    return this.queue?.length ?? 0;
  }

  leaveQueue(w: Waiter): boolean {
    return this.queue?.remove(w) ?? false;
  }

  attemptSent(backend: Backend): void {
    backend.latency.sent(this.pool.clock());
  }

  attemptSettled(backend: Backend, ms: number, outcome: 'ok' | 'failed' | 'none'): void {
    if (outcome === 'none') {
      backend.latency.abandon();
      return;
    }
    const now = this.pool.clock();
    // a failure's penalty is relative to the median of successful answers (not of estimates
    // that hold earlier penalties: those compounded tenfold per failure)
    const ok = outcome === 'ok';
    const sample = ok ? ms : failurePenalty(ms, medianLatency(this.pool.candidates(), now, this.scratch, true));
    backend.latency.observe(sample, now, ok);
  }

  backendCounters(backend: Backend): BackendCounters {
    let m = this.perBackend.get(backend);
    if (m === undefined) {
      // The metrics and the dashboard's series count the same outcomes, through one handle.
      const metrics = this.metrics.backend(this.name, backend.id);
      const series = this.metrics.seriesSink.recorder(this.name, backend.id);
      m = {
        request: (code, seconds) => {
          metrics.request(code);
          series.request(code, seconds);
        },
        upstreamError: (kind) => {
          metrics.upstreamError(kind);
          series.error(kind);
        },
      };
      this.perBackend.set(backend, m);
    }
    return m;
  }

  report(backend: Backend, outcome: AttemptOutcome): void {
    if (!backend.member) return; // a departed backend's last answers change nothing
    const passive = toPassive(outcome);
    if (passive.kind === 'success') {
      // A success only resets a failure streak (ejections end on the store's own timer), so
      // the common case, a success after a success, needs no trip to the health store.
      if (!this.failing.has(backend)) return;
      this.failing.delete(backend);
    } else {
      this.failing.add(backend);
    }
    this.reporter(this.name, backend.id, passive);
  }

  earnRetry(): void {
    if (this.tokens < RETRY_BANK) this.tokens += RETRY_EARN;
  }

  takeRetry(): boolean {
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Builds the snapshot the listeners read: route table, header edits, trusted proxies. */
export function buildProxyState(
  config: DroverConfig,
  services: ReadonlyMap<string, ServiceRuntime>,
  accessLog: ((entry: AccessLogEntry) => void) | undefined,
  previous?: ProxyState,
): ProxyState {
  const trusted = new BlockList();
  for (const cidr of config.trustedProxies) {
    const [addr, bits] = cidr.split('/');
    const family = isIP(addr ?? '') === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) trusted.addAddress(addr ?? '', family);
    else trusted.addSubnet(addr ?? '', Number(bits), family);
  }
  const routeKeys = config.routes.map((r) => JSON.stringify(r));
  const routeHits = new Float64Array(config.routes.length);
  if (previous !== undefined) {
    for (let i = 0; i < routeKeys.length; i++) if (previous.routeKeys[i] === routeKeys[i]) routeHits[i] = previous.routeHits[i] ?? 0;
  }
  return {
    routes: new RouteTable(config.routes),
    routeHits,
    routeKeys,
    edits: config.routes.map((r) => compileEdits(r.requestHeaders.set, r.requestHeaders.remove)),
    services,
    trusted,
    anyTrusted: config.trustedProxies.length > 0,
    mergeSlashes: config.mergeSlashes,
    accessLog: config.accessLog === 'off' ? undefined : accessLog,
    ...(config.acme === undefined ? {} : { acmeChallenges: new AcmeStorage(config.acme.storage) }),
  };
}
