/**
 * The services one drover process serves, shared by the single-process runtime and a cluster
 * worker: one `ServiceEntry` per service (pool, counters, retry budget, queue), the config and
 * access log in force, and the immutable `ProxyState` the listeners read, rebuilt whenever one of
 * those changes. Where members come from (registries and health checks, or the primary's
 * snapshots) and where passive outcomes go is the owner's business; creating, reconfiguring,
 * syncing, releasing and retiring services happens here only.
 */
import type { Backend } from '../../routing/backend.js';
import type { PoolDiff, SyncOptions } from '../../routing/pool.js';
import type { MemberSpec } from '../../routing/types.js';
import { defaultServiceConfig } from '../config/defaults.js';
import type { DroverConfig, ServiceConfig } from '../config/types.js';
import type { AccessLogEntry } from '../observability/access-log.js';
import type { Metrics } from '../observability/metrics.js';
import { buildProxyState, ServiceEntry, type PassiveReporter } from '../proxy/service.js';
import type { ProxyState } from '../proxy/types.js';
import { destroyUpstream, releaseUpstream } from '../proxy/upstream.js';

/** Where access log entries go; undefined: nowhere. */
export type AccessLogSink = ((entry: AccessLogEntry) => void) | undefined;

/** Options of `new ServiceTable()`. */
export interface ServiceTableOptions {
  readonly config: DroverConfig;
  readonly metrics: Metrics;
  readonly accessLog?: AccessLogSink;
  /** where every service's passive-health outcomes go */
  readonly passive: PassiveReporter;
  /** called after any pool's members, availability, draining or weights changed (cluster primary) */
  readonly onPoolChange?: (() => void) | undefined;
}

/** Every service of a process, and the snapshot its listeners read. */
export class ServiceTable {
  private readonly byName = new Map<string, ServiceEntry>();
  private readonly metrics: Metrics;
  private readonly passive: PassiveReporter;
  private readonly onPoolChange: (() => void) | undefined;
  private cfg: DroverConfig;
  private accessLog: AccessLogSink;
  private snapshot: ProxyState;
  /** per service, releases of departed backends still waiting for their in-flight requests */
  private readonly releasing = new WeakMap<ServiceEntry, Set<Promise<void>>>();

  constructor(options: ServiceTableOptions) {
    this.cfg = options.config;
    this.metrics = options.metrics;
    this.passive = options.passive;
    this.onPoolChange = options.onPoolChange;
    this.accessLog = options.accessLog;
    this.snapshot = buildProxyState(this.cfg, this.byName, this.accessLog);
  }

  /**
   * The snapshot the listeners read: replaced whole by `setConfig` and `setAccessLog`. It holds
   * this table's live map of services, so a service that comes or goes needs no new snapshot.
   */
  get state(): ProxyState {
    return this.snapshot;
  }

  /** The config in force. */
  get config(): DroverConfig {
    return this.cfg;
  }

  /** Every service by name. */
  services(): ReadonlyMap<string, ServiceEntry> {
    return this.byName;
  }

  get(name: string): ServiceEntry | undefined {
    return this.byName.get(name);
  }

  /**
   * Applies a new config: every service it names exists from now on, every service takes its
   * settings (one that left the config but still has members falls back to defaults), and the
   * snapshot is rebuilt (route hits of unchanged routes carried over).
   */
  setConfig(config: DroverConfig): void {
    this.cfg = config;
    for (const [name, entry] of this.byName) {
      const { settings, configured } = this.settingsOf(name);
      entry.reconfigure(settings, configured);
    }
    for (const svc of config.services) this.open(svc.name);
    this.rebuild();
  }

  /** Replaces the access log sink (after its file was reopened elsewhere). */
  setAccessLog(sink: AccessLogSink): void {
    this.accessLog = sink;
    this.rebuild();
  }

  /** The service `name`, created with its configured settings (or defaults) when it is new. */
  open(name: string): ServiceEntry {
    let entry = this.byName.get(name);
    if (entry === undefined) {
      const { settings, configured } = this.settingsOf(name);
      entry = new ServiceEntry(settings, this.metrics, this.passive, configured);
      if (this.onPoolChange !== undefined) entry.pool.onChange = this.onPoolChange;
      this.byName.set(name, entry);
    }
    return entry;
  }

  /**
   * Applies one service's member list: the pool diffs it and `alongside` runs in the same batch
   * (health's sync in the runtime, the primary's verdicts in a worker), so the pool rebuilds once;
   * every backend that left is released. Returns the diff.
   */
  sync(entry: ServiceEntry, members: readonly MemberSpec[], options: SyncOptions = {}, alongside?: () => void): PoolDiff {
    const pool = entry.pool;
    let diff: PoolDiff = { added: [], removed: [], updated: [] };
    pool.batch(() => {
      diff = pool.sync(members, options);
      alongside?.();
    });
    for (const b of diff.removed) this.release(entry, b);
    return diff;
  }

  /**
   * Retires a service: it leaves the table now (new requests for it get 503, as for any unknown
   * service), its pool closes and its members are released; its metric series go once the
   * requests it still has in flight are done, unless a service of that name came back meanwhile
   * (then they are the new one's).
   */
  retire(entry: ServiceEntry): void {
    const name = entry.name;
    if (this.byName.get(name) !== entry) return;
    this.byName.delete(name);
    for (const b of entry.pool.sync([]).removed) this.release(entry, b);
    entry.pool.close();
    void Promise.all([...(this.releasing.get(entry) ?? [])]).then(() => {
      if (!this.byName.has(name)) this.metrics.forgetService(name);
    });
  }

  /** Every backend of every pool. */
  *backends(): Iterable<Backend> {
    for (const entry of this.byName.values()) yield* entry.pool.backends();
  }

  /** Closes every pool and every upstream connection (the end of a shutdown, after the listeners drained). */
  async close(): Promise<void> {
    for (const entry of this.byName.values()) entry.pool.close();
    await Promise.all([...this.backends()].map((b) => destroyUpstream(b)));
  }

  /** A backend left its pool: its connections close once its in-flight requests are done, then its series go. */
  private release(entry: ServiceEntry, backend: Backend): void {
    let pending = this.releasing.get(entry);
    if (pending === undefined) this.releasing.set(entry, (pending = new Set()));
    const done: Promise<void> = releaseUpstream(backend).then(() => {
      pending.delete(done);
      if (entry.pool.get(backend.id) === undefined) this.metrics.forgetBackend(entry.name, backend.id);
    });
    pending.add(done);
  }

  /** A service's settings in the config in force, or defaults for one only a registry names. */
  private settingsOf(name: string): { settings: ServiceConfig; configured: boolean } {
    const configured = this.cfg.services.find((s) => s.name === name);
    return configured === undefined ? { settings: defaultServiceConfig(name), configured: false } : { settings: configured, configured: true };
  }

  private rebuild(): void {
    this.snapshot = buildProxyState(this.cfg, this.byName, this.accessLog, this.snapshot);
  }
}
