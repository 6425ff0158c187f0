/**
 * What the admin API shows of a running drover (`AdminModel`), read from the service table,
 * health's store and the event log: every view is built on request, nothing is cached.
 */
import type { Backend } from '../../routing/backend.js';
import type { HealthMonitor } from '../../health/monitor.js';
import type { HealthStore } from '../../health/store.js';
import type { AdminModel, BackendView, CheckView, ConfigSourcesView, EventView, RouteView, ServiceView } from '../admin/model.js';
import { checkView, routeViews } from '../admin/views.js';
import { redact } from '../config/redact.js';
import { describeConfig } from '../config/shared.js';
import type { Logger } from '../observability/log.js';
import type { ServiceEntry } from '../proxy/service.js';
import type { EventLog } from './event-log.js';
import type { ServiceTable } from './service-table.js';

/** A backend's latency estimate for the admin API: ms, one decimal; null without a sample. */
function latencyView(b: Backend, now: number): number | null {
  const v = b.latency.value(now);
  return v === undefined ? null : Math.round(v * 10) / 10;
}

/** What the admin model reads. */
export interface AdminModelParts {
  readonly table: ServiceTable;
  readonly store: HealthStore;
  /** holds the admin drain */
  readonly monitor: HealthMonitor;
  readonly events: EventLog;
  readonly logger: Logger;
  /** `/readyz` */
  readonly ready: () => boolean;
  /** why not ready, one line each (the body of a 503 `/readyz`) */
  readonly notReady: () => readonly string[];
  /** a service's queue depth when this process does not queue itself (cluster primary); default its own */
  readonly queueDepth?: ((service: string) => number | undefined) | undefined;
}

/** The admin API's view of one drover process. */
export class ProcessAdminModel implements AdminModel {
  constructor(private readonly parts: AdminModelParts) {}

  services(): ServiceView[] {
    const config = this.parts.table.config;
    const order = new Map(config.services.map((s, i) => [s.name, i]));
    const entries = [...this.parts.table.services().values()].sort((a, b) => (order.get(a.name) ?? 1e9) - (order.get(b.name) ?? 1e9) || a.name.localeCompare(b.name));
    const origin = config.origin?.services;
    return entries.map((e) => ({
      name: e.name,
      balancer: e.config.balancer,
      panic: e.pool.panic,
      ...(e.config.maxConns > 0 ? { queue_depth: this.parts.queueDepth?.(e.name) ?? e.queueDepth } : {}),
      config_source: e.configured ? (origin?.[e.name] ?? 'file') : 'registry',
      backends: e.pool.backends().map((b) => this.view(e, b)),
    }));
  }

  setDraining(service: string, id: string, draining: boolean): BackendView | undefined {
    const entry = this.parts.table.get(service);
    const b = entry?.pool.get(id);
    // Health holds the admin drain (apart from the registry's) and tells the pool.
    if (entry === undefined || b === undefined || !this.parts.monitor.setDraining(service, id, draining)) return undefined;
    this.parts.logger.info({ service, backend: id, draining }, draining ? 'backend drained' : 'backend undrained');
    return this.view(entry, b);
  }

  ready(): boolean {
    return this.parts.ready();
  }

  notReady(): readonly string[] {
    return this.parts.notReady();
  }

  effectiveConfig(): unknown {
    return redact(describeConfig(this.parts.table.config));
  }

  configSources(): ConfigSourcesView {
    const config = this.parts.table.config;
    const etcd = config.origin?.etcd;
    const routes = config.origin?.routes ?? [];
    return {
      file: config.file,
      etcd: etcd === undefined ? null : { prefix: etcd.prefix, revision: etcd.revision },
      routes: { file: config.routes.length - routes.filter((r) => r === 'etcd').length, etcd: routes.filter((r) => r === 'etcd').length },
    };
  }

  events(): EventView[] {
    return this.parts.events.list();
  }

  routes(): RouteView[] {
    const config = this.parts.table.config;
    const origin = config.origin?.routes;
    return routeViews(config.routes, this.parts.table.state.routeHits).map((r) => ({ ...r, source: origin?.[r.index] ?? 'file' }));
  }

  checks(service: string): { id: string; checks: CheckView[] }[] | undefined {
    const entry = this.parts.table.get(service);
    if (entry === undefined) return undefined;
    const health = this.parts.store.get(service);
    return entry.pool.backends().map((b) => ({ id: b.id, checks: (health?.recentChecks(b.id) ?? []).map(checkView) }));
  }

  private view(entry: ServiceEntry, b: Backend): BackendView {
    const h = this.parts.store.snapshot(entry.name, b.id);
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
}
