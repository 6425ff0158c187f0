/**
 * The running proxy: owns the current config, the service pools, health, the registries, the
 * listeners and the admin server, and wires them in the one direction data flows:
 * registry event -> per-service member list -> pool diff -> health tracking -> policy rebuild.
 *
 * A config reload builds a new immutable `ProxyState` and swaps it in one assignment; pools,
 * backends, connections and health records are kept and reconfigured in place. A service that
 * is neither configured nor has a member left is retired whole (see `retire`).
 */
import type { Backend } from '../../routing/backend.js';
import type { PoolDiff } from '../../routing/pool.js';
import type { MemberSpec } from '../../routing/types.js';
import { HealthMonitor } from '../../health/monitor.js';
import { HealthStore } from '../../health/store.js';
import type { HealthTransition } from '../../health/types.js';
import type { AdminModel, BackendView, CheckView, ConfigSourcesView, EventView, RouteView, ServiceView } from '../admin/model.js';
import { checkView, routeViews } from '../admin/views.js';
import { startAdminServer } from '../admin/server.js';
import type { DroverConfig, ServiceConfig } from '../config/types.js';
import { defaultServiceConfig } from '../config/defaults.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { syncAcme, type AcmeManager } from '../acme/manager.js';
import type { ChallengeResponder } from '../proxy/edge-answers.js';
import { startListener, type Listener } from '../proxy/listener.js';
import type { TlsObserver } from '../proxy/tls-front.js';
import { buildProxyState, ServiceEntry } from '../proxy/service.js';
import type { AccessLogEntry, ProxyState, ServiceRuntime } from '../proxy/types.js';
import { destroyUpstream, releaseUpstream } from '../proxy/upstream.js';
import { openTunnels } from '../proxy/websocket.js';
import { ServiceDirectory, STATIC_SOURCE } from '../registry/directory.js';
import { createRegistries, registriesKey } from '../registry/create.js';
import type { Registry } from '../registry/types.js';
import { redactConfig } from '../config/redact.js';
import { describeConfig } from '../config/shared.js';

/** A backend's latency estimate for the admin API: ms, one decimal; null without a sample. */
function latencyView(b: Backend, now: number): number | null {
  const v = b.latency.value(now);
  return v === undefined ? null : Math.round(v * 10) / 10;
}

/** Most state changes kept for `GET /api/events`. */
const MAX_EVENTS = 200;
/**
 * Most registry changes and reloads kept besides: in their own logs, so a churning registry
 * never pushes health transitions out of the list.
 */
const MAX_OTHER_EVENTS: Readonly<Record<'registry' | 'reload', number>> = { registry: 100, reload: 50 };

export interface RuntimeOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** where access log lines go; undefined: built from `config.accessLog` by the caller */
  readonly accessLog?: ((entry: AccessLogEntry) => void) | undefined;
  /** false: bind no proxy listener (the cluster primary: workers serve); default true */
  readonly serve?: boolean | undefined;
  /** called after any pool's members, availability, draining or weights changed (cluster primary) */
  readonly onPoolChange?: (() => void) | undefined;
  /**
   * An extra condition of `/readyz` (the shared config read from etcd once): what it still waits
   * for, one line each; empty (the default) when nothing.
   */
  readonly waitingFor?: (() => readonly string[]) | undefined;
}

/** A started drover. */
export class Runtime implements AdminModel {
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly store: HealthStore;
  readonly monitor: HealthMonitor;
  readonly onPoolChange: (() => void) | undefined;
  private readonly serve: boolean;
  private readonly waitingFor: () => readonly string[];
  private readonly directory: ServiceDirectory;
  private readonly entries = new Map<string, ServiceEntry>();
  private readonly eventLog: EventView[] = [];
  private readonly otherEvents: Record<'registry' | 'reload', EventView[]> = { registry: [], reload: [] };
  private config: DroverConfig;
  private state: ProxyState;
  private registries: Registry[] = [];
  private registryKey = '';
  private listeners: Listener[] = [];
  /** obtains and renews the `acme:` certificate; undefined without `acme:` */
  private acme: AcmeManager | undefined;
  private acmeStarted = false;
  private admin: { address: { host: string; port: number }; close(): Promise<void> } | undefined;
  private accessLog: ((entry: AccessLogEntry) => void) | undefined;
  private stopping = false;
  /** `start` has run its first registry sync (before that, the directory's readiness means nothing) */
  private startedUp = false;
  /** every registry has listed once since start: members that join from now on ramp (slow start) */
  private settled = false;
  /** every backend under active checks had its first verdict once (latched: `/readyz` warm-up) */
  private warm = false;
  /** per service, releases of departed backends still waiting for their in-flight requests */
  private readonly releasing = new WeakMap<ServiceEntry, Set<Promise<void>>>();

  private constructor(config: DroverConfig, options: RuntimeOptions) {
    this.config = config;
    this.logger = options.logger;
    this.metrics = options.metrics;
    this.accessLog = options.accessLog;
    this.serve = options.serve ?? true;
    this.onPoolChange = options.onPoolChange;
    this.waitingFor = options.waitingFor ?? (() => []);
    this.store = new HealthStore({
      // health is the one owner of availability; the pool only applies it
      availability: { setAvailable: (service, id, availability) => this.entries.get(service)?.pool.setAvailable(id, availability) },
      transitions: { onTransition: (t) => this.onTransition(t) },
      onError: (err) => this.logger.error({ err }, 'health listener failed'),
    });
    this.monitor = new HealthMonitor({ store: this.store, onError: (err) => this.logger.error({ err }, 'health check failed') });
    this.directory = new ServiceDirectory({
      onChange: (changed) => this.applyMembers(changed),
      observer: {
        event: (source, type) => this.metrics.registryEvent(source, type),
        connected: (source, connected) => this.metrics.registryConnected(source, connected),
        invalid: (source) => this.metrics.registryInvalid(source),
        guarded: (source) => this.metrics.registryGuarded(source),
      },
      logger: this.logger.child({ component: 'registry' }),
    });
    this.metrics.setBackendStates(() => this.backendSamples());
    this.state = this.buildState(config);
  }

  /** Builds the runtime, binds every listener and the admin server, starts the registries. */
  static async start(config: DroverConfig, options: RuntimeOptions): Promise<Runtime> {
    const rt = new Runtime(config, options);
    rt.applyServices(config);
    await rt.restartRegistries(config);
    rt.directory.flush();
    rt.startedUp = true;
    if (rt.directory.ready()) rt.settled = true;
    try {
      if (rt.serve) for (const l of config.listen) rt.listeners.push(await startListener(l, () => rt.state, rt.tlsObserver()));
      rt.admin = await startAdminServer({
        host: config.admin.host,
        port: config.admin.port,
        model: rt,
        metrics: rt.metrics,
        tokenEnv: config.admin.tokenEnv,
        allowedHosts: config.admin.allowedHosts,
        logger: rt.logger.child({ component: 'admin' }),
      });
      // after the listeners: http-01 challenges must be answerable before the first order (a
      // cluster primary serves nothing itself: it starts ACME once its workers listen)
      if (rt.serve) rt.startAcme();
    } catch (err) {
      await rt.shutdown(0);
      throw err;
    }
    return rt;
  }

  /**
   * Starts obtaining and renewing the `acme:` certificate (if configured) and keeps it in step
   * with reloads from now on. Call once the plain listeners serve: http-01 needs them.
   */
  startAcme(): void {
    this.acmeStarted = true;
    this.syncAcme(this.config);
  }

  /**
   * The ACME manager for `config.acme`: the certificate it obtains is served on every TLS
   * listener by SNI, and its pending challenges are answered by every listener before
   * `redirect_https` (cluster workers answer them from the storage files, see the handler).
   */
  private syncAcme(config: DroverConfig): void {
    this.acme = syncAcme(this.acme, config.acme, this.logger, (domain, certPem, keyPem) => {
      try {
        const served = this.setCertificate(`acme:${domain}`, certPem, keyPem);
        this.logger.info({ component: 'acme', domain, listeners: served }, 'certificate served');
      } catch (err) {
        this.logger.error({ component: 'acme', domain, err: err instanceof Error ? err.message : String(err) }, 'certificate refused');
      }
    });
    const acme = this.acme;
    this.setChallengeResponder(acme === undefined ? undefined : (token) => acme.challenge(token));
  }

  /** What TLS listeners report to: handshake and certificate reload counts, and the log. */
  private tlsObserver(): TlsObserver {
    this.metrics.setCertificates(() => this.listeners.flatMap((l) => l.certificates?.list() ?? []));
    return {
      handshake: (listener, result) => this.metrics.tlsHandshake(listener, result),
      reload: (result) => this.metrics.configReload(result),
      logger: this.logger.child({ component: 'tls' }),
    };
  }

  /**
   * Serves a certificate obtained at run time (ACME) on every TLS listener, next to the files'
   * ones: chosen by SNI like them, replacing an earlier one of the same `name`. Throws a
   * `DroverError` (`E_TLS_CERTIFICATE`) when the pair cannot be served; nothing changes then.
   * Returns how many listeners took it (0 when none does TLS).
   */
  setCertificate(name: string, certPem: string, keyPem: string): number {
    let n = 0;
    for (const l of this.listeners) {
      if (l.certificates === undefined) continue;
      l.certificates.set(name, certPem, keyPem);
      n++;
    }
    return n;
  }

  /** Registers the answerer of ACME http-01 challenges on every listener (undefined removes it). */
  setChallengeResponder(responder: ChallengeResponder | undefined): void {
    for (const l of this.listeners) l.setChallengeResponder(responder);
  }

  /** Bound proxy listener addresses, in config order. */
  listenAddresses(): { host: string; port: number }[] {
    return this.listeners.map((l) => ({ host: l.host, port: l.port }));
  }

  /** The bound admin address. */
  adminAddress(): { host: string; port: number } | undefined {
    return this.admin?.address;
  }

  /** Every service by name (the cluster primary snapshots their pools for its workers). */
  pools(): ReadonlyMap<string, ServiceRuntime> {
    return this.entries;
  }

  /** The config now in force. */
  currentConfig(): DroverConfig {
    return this.config;
  }

  /**
   * Applies a new, already validated config without dropping a connection. Listener and admin
   * addresses are bound at start: a change to them is logged and needs a restart.
   */
  async reload(config: DroverConfig): Promise<void> {
    const old = this.config;
    if (JSON.stringify(old.listen) !== JSON.stringify(config.listen) || old.admin.address !== config.admin.address) {
      this.logger.warn('listen or admin address changed: takes effect at the next restart');
    }
    this.config = config;
    this.applyServices(config);
    this.state = this.buildState(config);
    if (this.acmeStarted) this.syncAcme(config);
    await this.restartRegistries(config);
    this.directory.flush();
  }

  // ---- registries -> pools -------------------------------------------------------------

  private async restartRegistries(config: DroverConfig): Promise<void> {
    const key = registriesKey(config);
    if (key === this.registryKey) return;
    this.registryKey = key;
    const old = this.registries;
    this.registries = await createRegistries(config, this.logger);
    this.directory.expectSources(this.registries.map((r) => r.source));
    await Promise.all(old.map((r) => r.close().catch(() => undefined)));
    // Sources that are gone (or restarted) start from nothing; the new registry re-lists.
    for (const r of old) if (!this.registries.some((n) => n.source === r.source)) this.directory.replaceAll(r.source, new Map());
    for (const r of this.registries) {
      try {
        await r.start(this.directory);
      } catch (err) {
        this.logger.error({ err, source: r.source }, 'registry failed to start');
      }
    }
  }

  /** Static members from the config, services created or reconfigured. */
  private applyServices(config: DroverConfig): void {
    const statics = new Map<string, MemberSpec[]>();
    for (const svc of config.services) {
      statics.set(
        svc.name,
        svc.backends.map((b) => ({ id: b.id, url: b.url, weight: b.weight, zone: b.zone, draining: b.draining, source: STATIC_SOURCE })),
      );
      const entry = this.entries.get(svc.name);
      if (entry === undefined) this.entries.set(svc.name, this.newEntry(svc, true));
      else entry.reconfigure(svc, true);
    }
    // A service that left the config but still has registry members falls back to defaults.
    for (const [name, entry] of this.entries) {
      if (entry.configured && !config.services.some((s) => s.name === name)) entry.reconfigure(defaultServiceConfig(name), false);
    }
    this.directory.replaceAll(STATIC_SOURCE, statics);
    // Applied now rather than at the directory's next flush, so the new settings (health above
    // all) are in force when this returns; that flush then finds nothing left to change.
    for (const entry of [...this.entries.values()]) this.applyService(entry, this.directory.merged(entry.name));
  }

  private applyMembers(changed: ReadonlyMap<string, readonly MemberSpec[]>): void {
    let created = false;
    for (const [name, members] of changed) {
      let entry = this.entries.get(name);
      if (entry === undefined) {
        if (members.length === 0) continue;
        const configured = this.config.services.find((s) => s.name === name);
        entry = this.newEntry(configured ?? defaultServiceConfig(name), configured !== undefined);
        this.entries.set(name, entry);
        created = true;
      }
      this.metrics.poolUpdate(name);
      this.applyService(entry, members);
    }
    if (this.startedUp && !this.settled && this.directory.ready()) this.settled = true;
    if (created) this.state = this.buildState(this.config);
  }

  /**
   * One service's merged member list: the pool first, then health, in one batch, so every
   * verdict health reports finds its Backend and the pool rebuilds once. A new Backend is
   * `pending` until health's `add` (in the same batch) says what it may receive.
   */
  private applyService(entry: ServiceEntry, members: readonly MemberSpec[]): void {
    const pool = entry.pool;
    let diff: PoolDiff = { added: [], removed: [], updated: [] };
    pool.batch(() => {
      diff = pool.sync(members, { initial: !this.settled });
      this.monitor.sync(entry.name, entry.config.health, members);
    });
    for (const b of diff.removed) this.release(entry, b);
    this.registryEvents(entry.name, diff.added, diff.removed);
    if (diff.added.length + diff.removed.length > 0) {
      this.logger.info(
        { service: entry.name, added: diff.added.map((b) => b.id), removed: diff.removed.map((b) => b.id), members: members.length },
        'pool changed',
      );
    }
    if (!entry.configured && pool.backends().length === 0) this.retire(entry);
  }

  /** A backend left its pool: close its connections once its in-flight requests are done. */
  private release(entry: ServiceEntry, backend: Backend): void {
    let pending = this.releasing.get(entry);
    if (pending === undefined) this.releasing.set(entry, (pending = new Set()));
    const done: Promise<void> = releaseUpstream(backend).then(() => {
      pending.delete(done);
      if (entry.pool.get(backend.id) === undefined) this.metrics.forgetBackend(entry.name, backend.id);
    });
    pending.add(done);
  }

  /**
   * A service that is not configured and has no member left: its pool, health records and
   * checker timers, and admin entry go now (new requests for it get 503, as for any unknown
   * service); its metric series go once the requests it still has in flight are done, unless the
   * service came back meanwhile (then they are the new one's).
   */
  private retire(entry: ServiceEntry): void {
    const name = entry.name;
    if (this.entries.get(name) !== entry) return;
    this.entries.delete(name);
    this.monitor.removeService(name);
    entry.pool.close();
    void Promise.all([...(this.releasing.get(entry) ?? [])]).then(() => {
      if (!this.entries.has(name)) this.metrics.forgetService(name);
    });
    this.logger.info({ service: name }, 'service retired');
  }

  private newEntry(config: ServiceConfig, configured: boolean): ServiceEntry {
    const entry = new ServiceEntry(config, this.metrics, (service, id, outcome) => this.monitor.passive(service, id, outcome), configured);
    if (this.onPoolChange !== undefined) entry.pool.onChange = this.onPoolChange;
    return entry;
  }

  // ---- state for the data path -----------------------------------------------------------

  private buildState(config: DroverConfig): ProxyState {
    return buildProxyState(config, this.entries, this.accessLog, this.state);
  }


  /** Replaces the access log sink (after reopening its file). */
  setAccessLog(sink: ((entry: AccessLogEntry) => void) | undefined): void {
    this.accessLog = sink;
    this.state = this.buildState(this.config);
  }

  // ---- health -----------------------------------------------------------------------------

  private onTransition(t: HealthTransition): void {
    this.metrics.healthTransition(t.service, t.to);
    this.pushEvent({ kind: 'health', at: new Date(t.at).toISOString(), service: t.service, backend: t.id, from: t.from, to: t.to, reason: t.reason });
    this.logger.info({ service: t.service, backend: t.id, from: t.from, to: t.to, reason: t.reason }, 'health transition');
  }

  private pushEvent(event: EventView): void {
    const kind = event.kind ?? 'health';
    const log = kind === 'health' ? this.eventLog : this.otherEvents[kind];
    log.push(event);
    if (log.length > (kind === 'health' ? MAX_EVENTS : MAX_OTHER_EVENTS[kind])) log.shift();
  }

  /** Registry changes for the events list: one event per backend that joined or left a pool. */
  private registryEvents(service: string, added: readonly Backend[], removed: readonly Backend[]): void {
    const at = new Date().toISOString();
    for (const b of added) this.pushEvent({ kind: 'registry', at, service, backend: b.id, from: '', to: 'joined', reason: `${b.source}: ${b.url}` });
    for (const b of removed) this.pushEvent({ kind: 'registry', at, service, backend: b.id, from: '', to: 'left', reason: `${b.source}: ${b.url}` });
  }

  /** A config reload was applied (`ok`) or refused, for the events list; `detail` says what triggered it or why it failed. */
  noteReload(ok: boolean, detail: string): void {
    this.pushEvent({ kind: 'reload', at: new Date().toISOString(), service: '', backend: '', from: '', to: ok ? 'applied' : 'refused', reason: detail });
  }

  private *backendSamples(): Iterable<{ service: string; backend: string; up: boolean; inflight: number }> {
    for (const entry of this.entries.values()) {
      for (const b of entry.pool.backends()) yield { service: entry.name, backend: b.id, up: b.available, inflight: b.inflight };
    }
  }

  // ---- AdminModel ---------------------------------------------------------------------------

  services(): ServiceView[] {
    const order = new Map(this.config.services.map((s, i) => [s.name, i]));
    const entries = [...this.entries.values()].sort((a, b) => (order.get(a.name) ?? 1e9) - (order.get(b.name) ?? 1e9) || a.name.localeCompare(b.name));
    const origin = this.config.origin?.services;
    return entries.map((e) => ({
      name: e.name,
      balancer: e.config.balancer,
      panic: e.pool.panic,
      ...(e.config.maxConns > 0 ? { queue_depth: this.queueDepths?.(e.name) ?? e.queueDepth } : {}),
      config_source: e.configured ? (origin?.[e.name] ?? 'file') : 'registry',
      backends: e.pool.backends().map((b) => this.view(e, b)),
    }));
  }

  private view(entry: ServiceEntry, b: Backend): BackendView {
    const h = this.store.snapshot(entry.name, b.id);
    const view: BackendView = {
      id: b.id,
      url: b.url,
      weight: b.weight,
      source: b.source,
      // health's answer, drain included: the one owner of a backend's state
      state: h?.state ?? 'unknown',
      inflight: b.inflight,
      requests: b.requests,
      failures: b.failures,
      last_change: h === undefined ? null : new Date(h.since).toISOString(),
      reason: h?.reason ?? '',
      latency_ewma_ms: latencyView(b, entry.pool.clock()),
      max_conns: entry.config.maxConns,
    };
    if (b.zone !== undefined) view.zone = b.zone;
    view.effective_weight = b.effectiveWeight;
    if (h?.lastCheck !== undefined) view.last_check = checkView(h.lastCheck);
    return view;
  }

  setDraining(service: string, id: string, draining: boolean): BackendView | undefined {
    const entry = this.entries.get(service);
    const b = entry?.pool.get(id);
    // Health holds the admin drain (apart from the registry's) and tells the pool.
    if (entry === undefined || b === undefined || !this.monitor.setDraining(service, id, draining)) return undefined;
    this.logger.info({ service, backend: id, draining }, draining ? 'backend drained' : 'backend undrained');
    return this.view(entry, b);
  }

  /**
   * Every registry has listed once and, like Envoy's cluster warm-up, every backend under
   * active checks has had its first verdict (its first probe's result, a timeout included).
   * Once warm, later members do not make drover unready again.
   */
  ready(): boolean {
    if (this.stopping || !this.directory.ready() || this.waitingFor().length > 0) return false;
    if (!this.warm) this.warm = this.store.awaitingFirstCheck() === 0;
    return this.warm;
  }

  /** Why `ready()` is false, one line each (empty when ready): the body of a 503 `/readyz`. */
  notReady(): string[] {
    if (this.ready()) return [];
    if (this.stopping) return ['shutting down'];
    const out = this.directory.unsynced().map((source) =>
      this.directory.isConnected(source) === false ? `registry ${source}: unreachable, members not listed yet` : `registry ${source}: members not listed yet`,
    );
    out.push(...this.waitingFor());
    const waiting = this.store.awaitingFirstCheck();
    if (out.length === 0 && waiting > 0) out.push(`${waiting} backend${waiting === 1 ? '' : 's'} waiting for a first health check`);
    return out;
  }

  effectiveConfig(): unknown {
    return redactConfig(describeConfig(this.config));
  }

  configSources(): ConfigSourcesView {
    const etcd = this.config.origin?.etcd;
    const routes = this.config.origin?.routes ?? [];
    return {
      file: this.config.file,
      etcd: etcd === undefined ? null : { prefix: etcd.prefix, revision: etcd.revision },
      routes: { file: this.config.routes.length - routes.filter((r) => r === 'etcd').length, etcd: routes.filter((r) => r === 'etcd').length },
    };
  }

  events(): EventView[] {
    // Each log is in time order; ISO 8601 UTC strings sort as times, and the sort is stable.
    return [...this.eventLog, ...this.otherEvents.registry, ...this.otherEvents.reload].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  }

  /**
   * Where `/api/services` reads each service's `queue_depth` from instead of this process's own
   * queue: the cluster primary, which serves nothing, passes its workers' sum.
   */
  queueDepths: ((service: string) => number) | undefined;

  /** Route hits counted by cluster workers (by route index), added to this process's. */
  addRouteHits(hits: readonly number[]): void {
    const own = this.state.routeHits;
    for (let i = 0; i < hits.length && i < own.length; i++) own[i] = (own[i] ?? 0) + (hits[i] ?? 0);
  }

  routes(): RouteView[] {
    const origin = this.config.origin?.routes;
    return routeViews(this.config.routes, this.state.routeHits).map((r) => ({ ...r, source: origin?.[r.index] ?? 'file' }));
  }

  checks(service: string): { id: string; checks: CheckView[] }[] | undefined {
    const entry = this.entries.get(service);
    if (entry === undefined) return undefined;
    const health = this.store.get(service);
    return entry.pool.backends().map((b) => ({ id: b.id, checks: (health?.recentChecks(b.id) ?? []).map(checkView) }));
  }

  // ---- shutdown ---------------------------------------------------------------------------

  /**
   * Stops accepting, lets in-flight requests (and open WebSockets) finish for up to `graceMs`,
   * then closes everything that is left.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    this.acme?.stop();
    const closing = Promise.all(this.listeners.map((l) => l.close()));
    // server.close() stops accepting at once: from here new connections are refused.
    this.logger.info({ listeners: this.listeners.length }, 'listeners closed');
    // Keep-alive connections that go idle after their response are closed as they do.
    const idle = setInterval(() => {
      for (const l of this.listeners) l.closeIdle();
    }, 50);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), graceMs);
    });
    const drained = (async (): Promise<'drained'> => {
      await closing;
      while (openTunnels.size > 0) await new Promise((r) => setTimeout(r, 50));
      return 'drained';
    })();
    const result = await Promise.race([drained, expired]);
    clearInterval(idle);
    if (timer !== undefined) clearTimeout(timer);
    if (result === 'expired') {
      this.logger.warn({ graceMs }, 'shutdown grace expired: closing remaining connections');
      for (const l of this.listeners) l.destroyAll();
    }
    await Promise.all(this.registries.map((r) => r.close().catch(() => undefined)));
    this.directory.close();
    this.monitor.close();
    await this.admin?.close();
    for (const entry of this.entries.values()) {
      entry.pool.close();
      await Promise.all(entry.pool.backends().map((b) => destroyUpstream(b)));
    }
  }
}
