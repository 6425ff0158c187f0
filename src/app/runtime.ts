/**
 * A running drover, as wiring: the service table (src/app/service-table.ts), health (store,
 * monitor), the registries and their directory, the listeners, ACME and the admin server (whose
 * views are src/app/admin-model.ts), connected in the one direction data flows:
 * registry event -> per-service member list -> pool diff -> health tracking -> policy rebuild.
 *
 * A config reload builds a new immutable `ProxyState` and swaps it in one assignment; pools,
 * backends, connections and health records are kept and reconfigured in place. A service that
 * is neither configured nor has a member left is retired whole (see `retire`).
 */
import type { MemberSpec } from '../../routing/types.js';
import { HealthMonitor } from '../../health/monitor.js';
import { HealthStore } from '../../health/store.js';
import type { HealthTransition } from '../../health/types.js';
import { startAdminServer } from '../admin/server.js';
import type { DroverConfig } from '../config/types.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { syncAcme, type AcmeManager } from '../acme/manager.js';
import type { ChallengeResponder } from '../proxy/edge-answers.js';
import { startListener, type Listener } from '../proxy/listener.js';
import type { TlsObserver } from '../proxy/tls-front.js';
import type { ServiceEntry } from '../proxy/service.js';
import type { ServiceRuntime } from '../proxy/types.js';
import { drainListeners } from './listeners.js';
import { ServiceTable, type AccessLogSink } from './service-table.js';
import { ServiceDirectory, STATIC_SOURCE } from '../registry/directory.js';
import { createRegistries, registriesKey } from '../registry/create.js';
import type { Registry } from '../registry/types.js';
import { ProcessAdminModel } from './admin-model.js';
import { EventLog } from './event-log.js';

export interface RuntimeOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** where access log lines go; undefined: built from `config.accessLog` by the caller */
  readonly accessLog?: AccessLogSink;
  /** false: bind no proxy listener (the cluster primary: workers serve); default true */
  readonly serve?: boolean | undefined;
  /** called after any pool's members, availability, draining or weights changed (cluster primary) */
  readonly onPoolChange?: (() => void) | undefined;
  /**
   * A service's `queue_depth` in `/api/services` when this process does not queue itself (the
   * cluster primary: its workers' sum); undefined, or answering undefined: this process's own queue
   */
  readonly queueDepths?: ((service: string) => number | undefined) | undefined;
  /** what `GET /metrics` answers (a cluster primary: every process's sum); default this process's registry */
  readonly metricsText?: (() => Promise<string>) | undefined;
  /**
   * An extra condition of `/readyz` (the shared config read from etcd once): what it still waits
   * for, one line each; empty (the default) when nothing.
   */
  readonly waitingFor?: (() => readonly string[]) | undefined;
}

/** A started drover. */
export class Runtime {
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly store: HealthStore;
  readonly monitor: HealthMonitor;
  private readonly serve: boolean;
  private readonly waitingFor: () => readonly string[];
  private readonly metricsText: (() => Promise<string>) | undefined;
  private readonly queueDepths: ((service: string) => number | undefined) | undefined;
  private readonly directory: ServiceDirectory;
  /** the services, their config and the snapshot the listeners read */
  private readonly table: ServiceTable;
  /** health transitions, registry changes and reloads for `GET /api/events` */
  private readonly eventLog = new EventLog();
  private registries: Registry[] = [];
  private registryKey = '';
  private listeners: Listener[] = [];
  /** obtains and renews the `acme:` certificate; undefined without `acme:` */
  private acme: AcmeManager | undefined;
  private acmeStarted = false;
  private admin: { address: { host: string; port: number }; close(): Promise<void> } | undefined;
  private stopping = false;
  /** `start` has run its first registry sync (before that, the directory's readiness means nothing) */
  private startedUp = false;
  /** every registry has listed once since start: members that join from now on ramp (slow start) */
  private settled = false;
  /** every backend under active checks had its first verdict once (latched: `/readyz` warm-up) */
  private warm = false;

  private constructor(config: DroverConfig, options: RuntimeOptions) {
    this.logger = options.logger;
    this.metrics = options.metrics;
    this.serve = options.serve ?? true;
    this.waitingFor = options.waitingFor ?? (() => []);
    this.metricsText = options.metricsText;
    this.queueDepths = options.queueDepths;
    this.store = new HealthStore({
      // health is the one owner of availability; the pool only applies it
      availability: { setAvailable: (service, id, availability) => this.table.get(service)?.pool.setAvailable(id, availability) },
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
    this.table = new ServiceTable({
      config,
      metrics: this.metrics,
      accessLog: options.accessLog,
      passive: (service, id, outcome) => this.monitor.passive(service, id, outcome),
      onPoolChange: options.onPoolChange,
    });
    this.metrics.setBackendStates(() => this.backendSamples());
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
      if (rt.serve) for (const l of config.listen) rt.listeners.push(await startListener(l, () => rt.table.state, rt.metrics.fastPath, rt.tlsObserver()));
      rt.admin = await startAdminServer({
        host: config.admin.host,
        port: config.admin.port,
        model: new ProcessAdminModel({
          table: rt.table,
          store: rt.store,
          monitor: rt.monitor,
          events: rt.eventLog,
          logger: rt.logger,
          ready: () => rt.ready(),
          notReady: () => rt.notReady(),
          queueDepth: rt.queueDepths,
        }),
        metrics: rt.metrics,
        metricsText: rt.metricsText,
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
    this.syncAcme(this.table.config);
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
        this.logger.error({ component: 'acme', domain, err: errorMessage(err) }, 'certificate refused');
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
    return this.table.services();
  }

  /** The config now in force. */
  currentConfig(): DroverConfig {
    return this.table.config;
  }

  /**
   * Applies a new, already validated config without dropping a connection. Listener and admin
   * addresses are bound at start: a change to them is logged and needs a restart.
   */
  async reload(config: DroverConfig): Promise<void> {
    const old = this.table.config;
    if (JSON.stringify(old.listen) !== JSON.stringify(config.listen) || old.admin.address !== config.admin.address) {
      this.logger.warn('listen or admin address changed: takes effect at the next restart');
    }
    this.applyServices(config);
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

  /**
   * A new config's services (created or reconfigured; one that left the config but still has
   * registry members falls back to defaults) and its static members.
   */
  private applyServices(config: DroverConfig): void {
    this.table.setConfig(config);
    const statics = new Map<string, MemberSpec[]>();
    for (const svc of config.services) {
      statics.set(
        svc.name,
        svc.backends.map((b) => ({ id: b.id, url: b.url, weight: b.weight, zone: b.zone, draining: b.draining, source: STATIC_SOURCE })),
      );
    }
    this.directory.replaceAll(STATIC_SOURCE, statics);
    // Applied now rather than at the directory's next flush, so the new settings (health above
    // all) are in force when this returns; that flush then finds nothing left to change.
    for (const entry of [...this.table.services().values()]) this.applyService(entry, this.directory.merged(entry.name));
  }

  private applyMembers(changed: ReadonlyMap<string, readonly MemberSpec[]>): void {
    for (const [name, members] of changed) {
      if (members.length === 0 && this.table.get(name) === undefined) continue;
      this.metrics.poolUpdate(name);
      this.applyService(this.table.open(name), members);
    }
    if (this.startedUp && !this.settled && this.directory.ready()) this.settled = true;
  }

  /**
   * One service's merged member list: the pool first, then health, in one batch, so every
   * verdict health reports finds its Backend and the pool rebuilds once. A new Backend is
   * `pending` until health's `add` (in the same batch) says what it may receive.
   */
  private applyService(entry: ServiceEntry, members: readonly MemberSpec[]): void {
    const diff = this.table.sync(entry, members, { initial: !this.settled }, () => this.monitor.sync(entry.name, entry.config.health, members));
    this.eventLog.registry(entry.name, diff.added, diff.removed);
    if (diff.added.length + diff.removed.length > 0) {
      this.logger.info(
        { service: entry.name, added: diff.added.map((b) => b.id), removed: diff.removed.map((b) => b.id), members: members.length },
        'pool changed',
      );
    }
    if (!entry.configured && entry.pool.backends().length === 0) this.retire(entry);
  }

  /**
   * A service that is not configured and has no member left: its pool, health records and
   * checker timers, and admin entry go now; its metric series once the requests it still has in
   * flight are done (see `ServiceTable.retire`).
   */
  private retire(entry: ServiceEntry): void {
    if (this.table.get(entry.name) !== entry) return;
    this.table.retire(entry);
    this.monitor.removeService(entry.name);
    this.logger.info({ service: entry.name }, 'service retired');
  }

  /** Replaces the access log sink (after reopening its file). */
  setAccessLog(sink: AccessLogSink): void {
    this.table.setAccessLog(sink);
  }

  // ---- health -----------------------------------------------------------------------------

  private onTransition(t: HealthTransition): void {
    this.metrics.healthTransition(t.service, t.to);
    this.eventLog.health(t);
    this.logger.info({ service: t.service, backend: t.id, from: t.from, to: t.to, reason: t.reason }, 'health transition');
  }

  /** A config reload was applied (`ok`) or refused, for the events list; `detail` says what triggered it or why it failed. */
  noteReload(ok: boolean, detail: string): void {
    this.eventLog.reload(ok, detail);
  }

  private *backendSamples(): Iterable<{ service: string; backend: string; up: boolean; inflight: number }> {
    for (const entry of this.table.services().values()) {
      for (const b of entry.pool.backends()) yield { service: entry.name, backend: b.id, up: b.available, inflight: b.inflight };
    }
  }

  // ---- admin -------------------------------------------------------------------------------

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

  /** Route hits counted by cluster workers (by route index), added to this process's. */
  addRouteHits(hits: readonly number[]): void {
    const own = this.table.state.routeHits;
    for (let i = 0; i < hits.length && i < own.length; i++) own[i] = (own[i] ?? 0) + (hits[i] ?? 0);
  }

  // ---- shutdown ---------------------------------------------------------------------------

  /**
   * Stops accepting, lets in-flight requests (and open WebSockets) finish for up to `graceMs`,
   * then closes everything that is left.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    this.acme?.stop();
    // server.close() stops accepting at once: from here new connections are refused
    for (const l of this.listeners) void l.close();
    this.logger.info({ listeners: this.listeners.length }, 'listeners closed');
    if ((await drainListeners(this.listeners, graceMs)) === 'expired') {
      this.logger.warn({ graceMs }, 'shutdown grace expired: closing remaining connections');
    }
    await Promise.all(this.registries.map((r) => r.close().catch(() => undefined)));
    this.directory.close();
    this.monitor.close();
    await this.admin?.close();
    await this.table.close();
  }
}
