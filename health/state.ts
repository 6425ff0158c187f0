/**
 * The health state machine of one service: pure (no timers, no I/O; every input carries its own
 * `now` in ms), so it is tested with a fake clock and driven in production by the active checker,
 * the proxy's request outcomes, an expiry timer (`HealthStore`) and the registry/admin drain.
 *
 * Each backend has an underlying health (`unknown` | `healthy` | `unhealthy`, from active checks)
 * and two overlays: an outlier ejection and draining (held independently by the registry and by
 * the admin API). The shown state is `draining` > `ejected` > underlying health. Only changes of
 * the shown state are transitions; availability (what the data path may send it, see
 * `Availability`) is reported separately, and only when it changes. This is the one place that
 * decides availability: the pool only applies it.
 *
 * Verdict before traffic (Envoy's rule for hosts that are being warmed up): under active checks
 * a new backend is `unknown` and `pending` until its first probe, which gives a verdict at once
 * either way (pass: healthy; fail: unhealthy). Only later changes need `rise` passes or `fall`
 * failures in a row.
 */
import type {
  Availability,
  AvailabilityListener,
  DrainSource,
  HealthSnapshot,
  HealthState,
  HealthTransition,
  PassiveOutcome,
  ServiceHealthConfig,
  TransitionListener,
} from './types.js';
import { formatDuration } from './duration.js';

/** Longest ejection, whatever the base: 5 minutes (Envoy's default `max_ejection_time`). */
export const MAX_EJECTION_MS = 300_000;

/** Ejections never grow beyond this many times the base ejection time. */
export const MAX_EJECTION_FACTOR = 10;

/**
 * Length in ms of the `n`-th ejection (n >= 1): `base * 2^(n-1)`, capped at
 * `MAX_EJECTION_FACTOR * base` and at `MAX_EJECTION_MS`, but never shorter than `base`.
 * With the default base of 30 s: 30 s, 60 s, 120 s, 240 s, then 300 s.
 */
export function ejectionDuration(base: number, n: number): number {
  const cap = Math.max(base, Math.min(MAX_EJECTION_FACTOR * base, MAX_EJECTION_MS));
  return Math.min(base * 2 ** Math.max(0, n - 1), cap);
}

/** true when a request outcome counts as a failure for ejection: connect, reset, timeout, 5xx. */
export function isPassiveFailure(outcome: PassiveOutcome): boolean {
  if (outcome.kind === 'success') return false;
  if (outcome.kind === 'status') return outcome.status >= 500;
  return true;
}


/** Result of the latest active probe of a backend. */
export interface LastCheck {
  readonly ok: boolean;
  /** e.g. `status 200`, `connect ECONNREFUSED`, `timeout after 1000ms` */
  readonly detail: string;
  /** ms timestamp */
  readonly at: number;
}

/** Active probe results kept per backend for the dashboard (oldest dropped first). */
export const CHECK_HISTORY = 10;

/** `snapshot` plus the latest active probe, for the admin API. */
export interface BackendHealthView extends HealthSnapshot {
  readonly lastCheck: LastCheck | undefined;
}

/** Optional receivers of a service's output; `HealthStore` passes one that fans out. */
export type HealthObserver = Partial<
  TransitionListener &
    AvailabilityListener & {
      /** an ejection was started that ends at `until` (ms): arm a timer to call `tick` then */
      ejectionScheduled(service: string, id: string, until: number): void;
    }
>;

type Underlying = 'unknown' | 'healthy' | 'unhealthy';

interface BackendRecord {
  health: Underlying;
  healthReason: string;
  /**
   * Set on backends that were serving when active checks were turned on by a reload: they stay
   * available while `unknown` until their first probe gives a verdict, so adding a check does
   * not take a whole service out while it is probed.
   */
  provisional: boolean;
  passes: number;
  fails: number;
  lastCheck: LastCheck | undefined;
  /** the latest probe results, oldest first, at most `CHECK_HISTORY` */
  checks: LastCheck[];
  passiveFails: number;
  /** label of the latest passive failure in the current run */
  passiveLabel: string;
  /** the current run mixed failure kinds */
  passiveMixed: boolean;
  ejectedAt: number;
  ejectedUntil: number | undefined;
  ejections: number;
  lastEjectionEnd: number | undefined;
  ejectionReason: string;
  /** drained by the registry's `"draining": true` */
  registryDrain: boolean;
  /** drained through the admin API; survives registry updates */
  adminDrain: boolean;
  state: HealthState;
  reason: string;
  since: number;
  availability: Availability;
}

const PASSIVE_LABELS: Record<'connect' | 'reset' | 'timeout', readonly [one: string, many: string]> = {
  connect: ['connect error', 'connect errors'],
  reset: ['reset', 'resets'],
  timeout: ['timeout', 'timeouts'],
};

const UNDRAIN_REASON: Record<DrainSource, string> = {
  registry: 'undrained (registry)',
  admin: 'undrained through the admin API',
};

function drainSources(rec: BackendRecord): DrainSource[] {
  const out: DrainSource[] = [];
  if (rec.registryDrain) out.push('registry');
  if (rec.adminDrain) out.push('admin');
  return out;
}

/** `draining (registry)`, `drained through the admin API`, or both joined by `; `. */
function drainReason(rec: BackendRecord): string {
  const parts: string[] = [];
  if (rec.registryDrain) parts.push('draining (registry)');
  if (rec.adminDrain) parts.push('drained through the admin API');
  return parts.join('; ');
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The health records of one service's backends, keyed by backend id. */
export class ServiceHealth {
  /** service name, copied into every transition */
  readonly service: string;
  private cfg: ServiceHealthConfig;
  private readonly records = new Map<string, BackendRecord>();
  private readonly observer: HealthObserver;
  /** outputs of the input being processed; flushed to the observer when it returns */
  private pendingTransitions: HealthTransition[] = [];
  private pendingAvailability: [id: string, availability: Availability][] = [];
  private pendingEjections: [id: string, until: number][] = [];

  constructor(service: string, cfg: ServiceHealthConfig, observer: HealthObserver = {}) {
    this.service = service;
    this.cfg = cfg;
    this.observer = observer;
  }

  /** The config in force. */
  get config(): ServiceHealthConfig {
    return this.cfg;
  }

  /** Number of backends tracked. */
  get size(): number {
    return this.records.size;
  }

  /** Is this backend tracked? */
  has(id: string): boolean {
    return this.records.has(id);
  }

  /** Ids of the tracked backends, in insertion order. */
  ids(): string[] {
    return [...this.records.keys()];
  }

  /**
   * Starts tracking a backend, in state `unknown` (or `draining` if the registry says
   * `draining`). With active checks it is `pending` until its first probe result; without, it is
   * available at once. Always reports the initial availability to `setAvailable`. Adding a known
   * id does nothing.
   */
  add(id: string, now: number, options: { draining?: boolean } = {}): void {
    if (this.records.has(id)) return;
    const active = this.cfg.active;
    const rec: BackendRecord = {
      health: 'unknown',
      healthReason: active === undefined ? 'added; no active checks' : 'added; waiting for its first check',
      provisional: false,
      passes: 0,
      fails: 0,
      lastCheck: undefined,
      checks: [],
      passiveFails: 0,
      passiveLabel: '',
      passiveMixed: false,
      ejectedAt: 0,
      ejectedUntil: undefined,
      ejections: 0,
      lastEjectionEnd: undefined,
      ejectionReason: '',
      registryDrain: options.draining === true,
      adminDrain: false,
      state: 'unknown',
      reason: '',
      since: now,
      availability: 'pending',
    };
    rec.state = this.shownOf(rec);
    rec.reason = rec.state === 'draining' ? drainReason(rec) : rec.healthReason;
    rec.availability = this.availabilityOf(rec);
    this.records.set(id, rec);
    this.pendingAvailability.push([id, rec.availability]);
    this.flush();
  }

  /** Forgets a backend (it left the registry). Its state is gone: a later `add` starts afresh. */
  remove(id: string): void {
    this.records.delete(id);
  }

  /** May this backend receive new requests? false for an unknown id. */
  isAvailable(id: string): boolean {
    return this.records.get(id)?.availability === 'available';
  }

  /** What the data path is told about this backend; undefined for an unknown id. */
  availability(id: string): Availability | undefined {
    return this.records.get(id)?.availability;
  }

  /**
   * Backends under active checks that have had no probe result yet (the ones `/readyz` waits
   * for). 0 without active checks.
   */
  awaitingFirstCheck(): number {
    if (this.cfg.active === undefined) return 0;
    let n = 0;
    for (const rec of this.records.values()) if (rec.lastCheck === undefined) n++;
    return n;
  }

  /** Current state of one backend, or undefined for an unknown id. */
  snapshot(id: string): BackendHealthView | undefined {
    const rec = this.records.get(id);
    if (rec === undefined) return undefined;
    return {
      state: rec.state,
      reason: rec.reason,
      since: rec.since,
      available: rec.availability === 'available',
      availability: rec.availability,
      drainedBy: drainSources(rec),
      ejections: rec.ejections,
      ejectedUntil: rec.ejectedUntil,
      lastCheck: rec.lastCheck,
    };
  }

  /** The latest active probe results of one backend (at most `CHECK_HISTORY`), oldest first; [] for an unknown id. */
  recentChecks(id: string): readonly LastCheck[] {
    return [...(this.records.get(id)?.checks ?? [])];
  }

  /**
   * Applies a new config, keeping every record. Turning active checks off moves `unhealthy`
   * backends to `unknown` (nothing could bring them back) and makes them available; turning them
   * on keeps serving backends available until their first probe decides (they were serving a
   * moment ago: taking them all out for one probe would empty the service for nothing). Changed
   * rise/fall/ejection values apply from the next result on.
   */
  reconfigure(cfg: ServiceHealthConfig, now: number): HealthTransition[] {
    const wasActive = this.cfg.active !== undefined;
    const isActive = cfg.active !== undefined;
    this.cfg = cfg;
    if (wasActive !== isActive) {
      for (const [id, rec] of this.records) {
        rec.passes = 0;
        rec.fails = 0;
        rec.lastCheck = undefined;
        if (isActive) {
          rec.provisional = rec.health === 'unknown';
        } else {
          rec.provisional = false;
          if (rec.health !== 'healthy') {
            rec.health = 'unknown';
            rec.healthReason = 'active checks disabled';
          }
        }
        this.commit(id, rec, now, rec.healthReason);
      }
    }
    return this.flush();
  }

  /**
   * One active probe result. `detail` says what was seen (`status 500`, `connect ECONNREFUSED`).
   * The first result of a backend that has none (`unknown`) is its verdict at once: a pass makes
   * it healthy, a failure unhealthy. After that, `rise` consecutive passes make a backend healthy
   * and `fall` consecutive failures unhealthy; any pass resets the failure run and any failure the
   * pass run, which damps flapping. Ignored for unknown ids and when the service has no active
   * checks (a probe that outlived a reload).
   */
  activeResult(id: string, ok: boolean, detail: string, now: number): HealthTransition[] {
    const rec = this.records.get(id);
    const active = this.cfg.active;
    if (rec === undefined || active === undefined) return [];
    rec.lastCheck = { ok, detail, at: now };
    rec.checks.push(rec.lastCheck);
    if (rec.checks.length > CHECK_HISTORY) rec.checks.shift();
    if (rec.health === 'unknown') {
      rec.passes = ok ? 1 : 0;
      rec.fails = ok ? 0 : 1;
      rec.health = ok ? 'healthy' : 'unhealthy';
      rec.healthReason = ok ? 'first check passed' : `first check failed: ${detail}`;
      rec.provisional = false;
    } else if (ok) {
      rec.fails = 0;
      rec.passes += 1;
      if (rec.health !== 'healthy' && rec.passes >= active.rise) {
        rec.health = 'healthy';
        rec.healthReason = plural(active.rise, 'passed check');
        rec.provisional = false;
      }
    } else {
      rec.passes = 0;
      rec.fails += 1;
      if (rec.health !== 'unhealthy' && rec.fails >= active.fall) {
        rec.health = 'unhealthy';
        rec.healthReason = `${plural(active.fall, 'failed check')}: ${detail}`;
        rec.provisional = false;
      }
    }
    this.commit(id, rec, now, rec.healthReason);
    return this.flush();
  }

  /**
   * The outcome of one proxied request. `consecutiveFailures` failures in a row eject the backend
   * for `ejectionDuration(ejection, n)`, unless that would put more than `maxEjectedPercent` of the
   * service's backends in ejection at once (as Envoy does: then it is not ejected, and the next
   * failure tries again). Any success resets the run. Outcomes seen while ejected are ignored
   * (they are requests sent before the ejection).
   */
  passiveResult(id: string, outcome: PassiveOutcome, now: number): HealthTransition[] {
    const rec = this.records.get(id);
    if (rec === undefined) return [];
    if (rec.ejectedUntil !== undefined) {
      if (now < rec.ejectedUntil) return [];
      this.endEjection(id, rec, now);
    }
    if (!isPassiveFailure(outcome)) {
      rec.passiveFails = 0;
      return this.flush();
    }
    const label =
      outcome.kind === 'status'
        ? String(outcome.status)
        : outcome.kind === 'success'
          ? ''
          : (PASSIVE_LABELS[outcome.kind][0] ?? outcome.kind);
    if (rec.passiveFails === 0) rec.passiveMixed = false;
    else if (label !== rec.passiveLabel) rec.passiveMixed = true;
    rec.passiveLabel = label;
    rec.passiveFails += 1;
    const threshold = this.cfg.passive.consecutiveFailures;
    if (threshold > 0 && rec.passiveFails >= threshold && this.mayEject()) {
      this.eject(id, rec, outcome, now);
    }
    return this.flush();
  }

  /** Ends the ejections due by `now`. Call on a timer (see `nextExpiry`). */
  tick(now: number): HealthTransition[] {
    for (const [id, rec] of this.records) {
      if (rec.ejectedUntil !== undefined && rec.ejectedUntil <= now) this.endEjection(id, rec, now);
    }
    return this.flush();
  }

  /** ms timestamp of the earliest ejection end, or undefined when nothing is ejected. */
  nextExpiry(): number | undefined {
    let next: number | undefined;
    for (const rec of this.records.values()) {
      if (rec.ejectedUntil !== undefined && (next === undefined || rec.ejectedUntil < next)) next = rec.ejectedUntil;
    }
    return next;
  }

  /**
   * Drains (no new requests, in-flight ones finish) or undrains a backend for one `source`: the
   * registry (`"draining": true`) and the admin API each hold their own drain, and the backend
   * stays draining while either does (undraining through the admin API does not override the
   * registry, and a registry update does not undo an admin drain). Undraining the last one
   * restores the underlying state. While draining, `reason` names every source holding it.
   * Repeating the current value does nothing.
   */
  setDraining(id: string, source: DrainSource, draining: boolean, now: number): HealthTransition[] {
    const rec = this.records.get(id);
    if (rec === undefined) return [];
    if ((source === 'admin' ? rec.adminDrain : rec.registryDrain) === draining) return [];
    if (source === 'admin') rec.adminDrain = draining;
    else rec.registryDrain = draining;
    const reason = rec.adminDrain || rec.registryDrain ? drainReason(rec) : UNDRAIN_REASON[source];
    this.commit(id, rec, now, reason);
    // Still draining for the other source: no transition, but the reason says who holds it now.
    if (rec.state === 'draining') rec.reason = reason;
    return this.flush();
  }

  private mayEject(): boolean {
    let ejected = 0;
    for (const rec of this.records.values()) if (rec.ejectedUntil !== undefined) ejected += 1;
    return (ejected + 1) * 100 <= this.cfg.passive.maxEjectedPercent * this.records.size;
  }

  private eject(id: string, rec: BackendRecord, outcome: PassiveOutcome, now: number): void {
    const base = this.cfg.passive.ejection;
    // Decay: one level forgiven per base ejection time spent back in service.
    const forgiven = rec.lastEjectionEnd === undefined ? 0 : Math.floor((now - rec.lastEjectionEnd) / Math.max(1, base));
    rec.ejections = Math.max(0, rec.ejections - forgiven) + 1;
    const duration = ejectionDuration(base, rec.ejections);
    const n = rec.passiveFails;
    let what: string;
    if (rec.passiveMixed) what = `${n} consecutive failures (last: ${rec.passiveLabel})`;
    else if (outcome.kind === 'status' || outcome.kind === 'success') what = `${n} consecutive ${rec.passiveLabel}`;
    else what = `${n} consecutive ${n === 1 ? PASSIVE_LABELS[outcome.kind][0] : PASSIVE_LABELS[outcome.kind][1]}`;
    rec.ejectionReason = `ejected: ${what} (for ${formatDuration(duration)})`;
    rec.ejectedAt = now;
    rec.ejectedUntil = now + duration;
    rec.passiveFails = 0;
    // Reported apart from transitions: an ejection under a drain changes no shown state.
    this.pendingEjections.push([id, rec.ejectedUntil]);
    this.commit(id, rec, now, rec.ejectionReason);
  }

  private endEjection(id: string, rec: BackendRecord, now: number): void {
    const lasted = (rec.ejectedUntil ?? now) - rec.ejectedAt;
    rec.ejectedUntil = undefined;
    rec.lastEjectionEnd = now;
    rec.passiveFails = 0;
    this.commit(id, rec, now, `ejection ended after ${formatDuration(lasted)}`);
  }

  private shownOf(rec: BackendRecord): HealthState {
    if (rec.adminDrain || rec.registryDrain) return 'draining';
    if (rec.ejectedUntil !== undefined) return 'ejected';
    return rec.health;
  }

  private availabilityOf(rec: BackendRecord): Availability {
    if (rec.adminDrain || rec.registryDrain) return 'draining';
    if (rec.ejectedUntil !== undefined || rec.health === 'unhealthy') return 'failed';
    if (rec.health === 'healthy' || this.cfg.active === undefined || rec.provisional) return 'available';
    return 'pending';
  }

  /** Records the effect of a mutation: a transition if the shown state moved, an availability change if that moved. */
  private commit(id: string, rec: BackendRecord, now: number, reason: string): void {
    const to = this.shownOf(rec);
    const availability = this.availabilityOf(rec);
    if (to !== rec.state) {
      this.pendingTransitions.push({ service: this.service, id, from: rec.state, to, reason, at: now, available: availability === 'available' });
      rec.state = to;
      rec.reason = reason;
      rec.since = now;
    }
    if (availability !== rec.availability) {
      rec.availability = availability;
      this.pendingAvailability.push([id, availability]);
    }
  }

  /** Hands the pending outputs to the observer, after the state is consistent, and returns the transitions. */
  private flush(): HealthTransition[] {
    const transitions = this.pendingTransitions;
    const availability = this.pendingAvailability;
    const ejections = this.pendingEjections;
    if (transitions.length === 0 && availability.length === 0 && ejections.length === 0) return [];
    this.pendingTransitions = [];
    this.pendingAvailability = [];
    this.pendingEjections = [];
    if (this.observer.ejectionScheduled !== undefined) {
      for (const [id, until] of ejections) this.observer.ejectionScheduled(this.service, id, until);
    }
    if (this.observer.setAvailable !== undefined) {
      for (const [id, a] of availability) this.observer.setAvailable(this.service, id, a);
    }
    if (this.observer.onTransition !== undefined) {
      for (const t of transitions) this.observer.onTransition(t);
    }
    return transitions;
  }
}
