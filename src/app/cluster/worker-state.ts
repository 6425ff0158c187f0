/**
 * A serving worker's view of the proxy: the same service table as the single-process runtime
 * (src/app/service-table.ts), but its pools are fed by the primary's snapshots instead of
 * registries and health checks. Per-request work is the same as in one process; what crosses to
 * the primary is batched (counter deltas and passive outcomes: `takeStats`, `takePassive`).
 */
import type { Backend } from '../../../routing/backend.js';
import type { PassiveOutcome } from '../../../health/types.js';
import type { DroverConfig } from '../../config/types.js';
import type { Metrics } from '../../observability/metrics.js';
import type { ProxyState } from '../../proxy/types.js';
import { ServiceTable, type AccessLogSink } from '../service-table.js';
import type { BackendStats, PassiveReport, PoolsSnapshot, QueueStats } from './protocol.js';

/** Where a worker's passive outcomes go (batched to the primary). */
export interface PassiveSink {
  passive(service: string, id: string, outcome: PassiveOutcome): void;
}

/** Per-backend counters already reported, to send deltas. */
interface Reported {
  requests: number;
  failures: number;
  inflight: number;
}

/** The worker's services, routes and state; `state` is what the listeners read. */
export class WorkerProxy implements PassiveSink {
  /** the services, their config and the snapshot the listeners read */
  readonly table: ServiceTable;
  private seq = -1;
  private readonly reported = new WeakMap<Backend, Reported>();
  /** passive outcomes not yet sent, in order; successes collapsed per backend */
  private pending: PassiveReport[] = [];
  /** backends whose last pending outcome is a success (a further success adds nothing) */
  private readonly lastWasSuccess = new Set<string>();
  /** queue depth last sent, per service */
  private readonly queuesSent = new Map<string, number>();
  /** route hits already sent, for the snapshot they were counted in */
  private hitsSent: { state: ProxyState; hits: Float64Array } | undefined;
  /** called when a failure is queued, so it reaches the primary promptly */
  onFailureQueued: (() => void) | undefined;

  constructor(config: DroverConfig, metrics: Metrics, accessLog: AccessLogSink) {
    this.table = new ServiceTable({ config, metrics, accessLog, passive: (service, id, outcome) => this.passive(service, id, outcome) });
    this.table.setConfig(config);
  }

  /** The snapshot the listeners read. */
  get state(): ProxyState {
    return this.table.state;
  }

  /** A config reload from the primary. */
  setConfig(config: DroverConfig): void {
    this.table.setConfig(config);
  }

  setAccessLog(sink: AccessLogSink): void {
    this.table.setAccessLog(sink);
  }

  /**
   * Applies the primary's pools: members, then availability, in one batch per pool. A service
   * the primary no longer has is retired here too: its pool goes at once, its metric series once
   * its in-flight requests are done (unless it came back meanwhile).
   */
  apply(snapshot: PoolsSnapshot): void {
    if (snapshot.seq <= this.seq) return;
    this.seq = snapshot.seq;
    const seen = new Set<string>();
    for (const s of snapshot.services) {
      seen.add(s.name);
      const entry = this.table.open(s.name);
      this.table.sync(entry, s.members, {}, () => s.members.forEach((m, i) => entry.pool.setAvailable(m.id, s.availability[i] ?? 'pending')));
    }
    for (const [name, entry] of this.table.services()) if (!seen.has(name)) this.table.retire(entry);
  }

  passive(service: string, id: string, outcome: PassiveOutcome): void {
    const key = `${service}\u0000${id}`;
    if (outcome.kind === 'success') {
      // Any success resets a failure run; a second one in a row tells the primary nothing new.
      if (this.lastWasSuccess.has(key)) return;
      this.lastWasSuccess.add(key);
      this.pending.push({ service, id, outcome });
      return;
    }
    this.lastWasSuccess.delete(key);
    this.pending.push({ service, id, outcome });
    this.onFailureQueued?.();
  }

  /** Takes the queued passive outcomes. */
  takePassive(): PassiveReport[] {
    const out = this.pending;
    this.pending = [];
    // The next success after a flush is sent again: the primary may have seen failures meanwhile
    // from another worker, and one message per backend per flush is cheap.
    this.lastWasSuccess.clear();
    return out;
  }

  /**
   * Route hits since the last call, by route index; [] when none. A rebuilt snapshot carries the
   * hits of unchanged routes, so what was sent is carried the same way.
   */
  takeRouteHits(): number[] {
    const st = this.state;
    let sent = this.hitsSent;
    if (sent === undefined || sent.state !== st) {
      const hits = new Float64Array(st.routeHits.length);
      if (sent !== undefined) for (let i = 0; i < hits.length; i++) if (sent.state.routeKeys[i] === st.routeKeys[i]) hits[i] = sent.hits[i] ?? 0;
      sent = this.hitsSent = { state: st, hits };
    }
    let out: number[] | undefined;
    for (let i = 0; i < st.routeHits.length; i++) {
      const now = st.routeHits[i] ?? 0;
      const d = now - (sent.hits[i] ?? 0);
      if (d > 0) {
        (out ??= new Array<number>(st.routeHits.length).fill(0))[i] = d;
        sent.hits[i] = now;
      }
    }
    return out ?? [];
  }

  /** Counter deltas and in-flight counts of backends that changed since the last call. */
  takeStats(): BackendStats[] {
    const out: BackendStats[] = [];
    for (const svc of this.table.services().values()) {
      for (const b of svc.pool.backends()) {
        let r = this.reported.get(b);
        if (r === undefined) {
          r = { requests: 0, failures: 0, inflight: 0 };
          this.reported.set(b, r);
        }
        if (b.requests === r.requests && b.failures === r.failures && b.inflight === r.inflight) continue;
        out.push({ service: svc.name, id: b.id, requests: b.requests - r.requests, failures: b.failures - r.failures, inflight: b.inflight });
        r.requests = b.requests;
        r.failures = b.failures;
        r.inflight = b.inflight;
      }
    }
    return out;
  }

  /** Queue depths (absolute) of the services whose depth changed since the last call. */
  takeQueues(): QueueStats[] {
    const out: QueueStats[] = [];
    const services = this.table.services();
    for (const [name, svc] of services) {
      const depth = svc.queueDepth;
      if (depth === (this.queuesSent.get(name) ?? 0)) continue;
      out.push({ service: name, depth });
      this.queuesSent.set(name, depth);
    }
    for (const [name, depth] of this.queuesSent) {
      if (services.has(name)) continue;
      // a retired service: the primary forgets the depth it last heard (a service of that name
      // added again later must not start with it)
      if (depth > 0) out.push({ service: name, depth: 0 });
      this.queuesSent.delete(name);
    }
    return out;
  }
}
