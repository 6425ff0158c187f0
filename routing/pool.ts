/**
 * One service's backends: membership (diffed from registry lists), availability (from health),
 * draining (registry or admin), panic mode, slow start, and the balancing policy that picks
 * among the current candidates. Everything that changes candidates or weights ends in exactly
 * one `policy.rebuild`, so `pick` stays a cheap synchronous call.
 */
import { Backend } from './backend.js';
import type { Policy } from './policy.js';
import { createPolicy } from './policies.js';
import { zoneCandidates } from './zones.js';
import type { BalancerName, Clock, HashKeySpec, MemberSpec, PickContext, RandomSource } from './types.js';

/** How a pool balances and protects its backends. */
export interface ServicePoolOptions {
  /** service name; becomes `Backend.service` */
  readonly name: string;
  readonly balancer: BalancerName;
  /** only for `hash`; default `{kind:'ip'}` */
  readonly hashKey?: HashKeySpec | undefined;
  /**
   * Percent 0-100. When fewer than this share of non-draining members is available, every
   * non-draining member becomes a candidate (Envoy's panic mode). 0 disables panic mode.
   */
  readonly panicThreshold: number;
  /** ms over which a joining or recovering backend's weight ramps up; 0 = off */
  readonly slowStart: number;
  /**
   * Most requests in flight to one backend; a backend at it is not picked. 0 or undefined =
   * unlimited. The caller (the data path) queues requests when every candidate is full.
   */
  readonly maxConns?: number | undefined;
  /** zone-aware routing: prefer members of this zone (see `zones.ts`); undefined = off */
  readonly localZone?: string | undefined;
  /** ms clock; default `Date.now` */
  readonly clock?: Clock | undefined;
  /** randomness in [0, 1); default `Math.random` */
  readonly random?: RandomSource | undefined;
}

/** What a `sync` changed. `removed` backends have `member === false` but live on for in-flight requests. */
export interface PoolDiff {
  readonly added: Backend[];
  readonly removed: Backend[];
  readonly updated: Backend[];
}

/** Options `reconfigure` can change (a config reload); the clock and randomness stay. */
export type ServicePoolSettings = Omit<ServicePoolOptions, 'name' | 'clock' | 'random'>;

/** Share of the weight a backend starts slow start with. */
export const SLOW_START_FLOOR = 0.1;
/** Number of weight steps over a slow-start window. */
export const SLOW_START_STEPS = 10;

interface Entry {
  readonly backend: Backend;
  /** `draining` as the registry last said */
  registryDraining: boolean;
  /** drained through the admin API; survives registry updates */
  adminDraining: boolean;
  /** effective weight still ramping up */
  ramping: boolean;
}

/** The backends of one service and the policy that balances over them. */
export class ServicePool {
  /** service name */
  readonly name: string;
  /**
   * Called after every change of membership, availability, draining, weights or settings (once
   * per batch). Must not throw; a throw from a slow-start step is swallowed.
   */
  onChange?: ((pool: ServicePool) => void) | undefined;

  /** the pool's ms clock (also the clock of its backends' latency estimates) */
  readonly clock: Clock;
  private readonly random: RandomSource;
  private settings: ServicePoolSettings;
  private policy: Policy;
  /** insertion order = `backends()` order */
  private readonly entries = new Map<string, Entry>();
  private current: readonly Backend[] = [];
  private inPanic = false;
  private weightsDirty = false;
  /** clock time of the first `sync`; undefined before it */
  private firstSyncAt: number | undefined;
  private rampTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(opts: ServicePoolOptions) {
    this.name = opts.name;
    this.clock = opts.clock ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.settings = pickSettings(opts);
    this.policy = createPolicy(opts.balancer, { random: this.random, hashKey: opts.hashKey, clock: this.clock });
    this.policy.rebuild(this.current);
  }

  /** True while fewer than `panicThreshold`% of non-draining members are available. */
  get panic(): boolean {
    return this.inPanic;
  }

  /** The balancer in use. */
  get balancer(): BalancerName {
    return this.settings.balancer;
  }

  /**
   * Applies a registry's full member list, diffed by `id`: unchanged ids keep their Backend
   * object (and its counters); a changed weight/zone/draining/meta/source mutates it in place; a
   * changed `url` replaces it (remove + add); missing ids leave (`member = false`). Members that
   * join after the pool's warm-up (the first `slowStart` ms after the first sync) ramp up.
   */
  sync(members: readonly MemberSpec[]): PoolDiff {
    const now = this.clock();
    if (this.firstSyncAt === undefined) this.firstSyncAt = now;
    const diff: PoolDiff = { added: [], removed: [], updated: [] };
    const next = new Map<string, MemberSpec>();
    for (const m of members) next.set(m.id, m);

    for (const [id, entry] of this.entries) {
      if (!next.has(id)) {
        this.drop(entry);
        diff.removed.push(entry.backend);
      }
    }
    for (const spec of next.values()) {
      const entry = this.entries.get(spec.id);
      if (entry === undefined) {
        diff.added.push(this.add(spec, now));
      } else if (entry.backend.url !== spec.url) {
        this.drop(entry);
        diff.removed.push(entry.backend);
        diff.added.push(this.add(spec, now));
      } else if (this.update(entry, spec, now)) {
        diff.updated.push(entry.backend);
      }
    }
    if (diff.added.length + diff.removed.length + diff.updated.length > 0) this.changed();
    return diff;
  }

  /**
   * Applies new settings from a config reload. The Backend objects stay; the policy is replaced
   * only when the balancer or hash key changed (so round-robin keeps its position otherwise).
   */
  reconfigure(opts: ServicePoolSettings): void {
    const prev = this.settings;
    this.settings = pickSettings(opts);
    if (prev.balancer !== opts.balancer || !sameHashKey(prev.hashKey, opts.hashKey)) {
      this.policy = createPolicy(opts.balancer, { random: this.random, hashKey: opts.hashKey, clock: this.clock });
      this.weightsDirty = true; // forces a rebuild of the new policy below
    }
    if (prev.slowStart !== opts.slowStart) this.rampStep(this.clock());
    this.changed();
  }

  /** The backend with this id, if it is a current member. */
  get(id: string): Backend | undefined {
    return this.entries.get(id)?.backend;
  }

  /** Current members (candidates or not), in the order they joined. */
  backends(): readonly Backend[] {
    const out: Backend[] = [];
    for (const e of this.entries.values()) out.push(e.backend);
    return out;
  }

  /** The backends new requests may go to right now (after health, draining and panic mode). */
  candidates(): readonly Backend[] {
    return this.current;
  }

  /**
   * Health's verdict. A backend that becomes available again ramps up (slow start) unless the
   * pool is still in its warm-up. Unknown ids are ignored.
   */
  setAvailable(id: string, available: boolean): void {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.backend.available === available) return;
    const b = entry.backend;
    b.available = available;
    if (available) {
      const now = this.clock();
      b.availableSince = now;
      if (this.shouldRamp(now)) this.startRamp(entry, now);
    }
    this.changed();
  }

  /**
   * Admin API drain (`true`) or undrain (`false`). Independent of the registry's `draining`:
   * undraining here does not override a registry drain, and a registry update does not undo
   * an admin drain. Returns the backend, or undefined for an unknown id.
   */
  setAdminDraining(id: string, draining: boolean): Backend | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    if (entry.adminDraining !== draining) {
      entry.adminDraining = draining;
      const was = entry.backend.draining;
      entry.backend.draining = entry.registryDraining || draining;
      if (was !== entry.backend.draining) this.changed();
    }
    return entry.backend;
  }

  /** True when the admin API drained this backend (whatever the registry says). */
  isAdminDraining(id: string): boolean {
    return this.entries.get(id)?.adminDraining ?? false;
  }

  /**
   * Chooses a backend for one request, skipping `exclude` (backends a retry already tried);
   * undefined when there is none (the proxy answers 503).
   */
  pick(ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined {
    const b = this.policy.pick(ctx, exclude);
    const max = this.settings.maxConns ?? 0;
    if (b === undefined || max === 0 || b.inflight < max) return b;
    return this.pickWithRoom(ctx, exclude, max);
  }

  /**
   * True when `maxConns` is set and every candidate outside `exclude` is at it (and there is at
   * least one): the request should wait for a slot, not be refused as having no backend.
   */
  saturated(exclude?: ReadonlySet<Backend>): boolean {
    const max = this.settings.maxConns ?? 0;
    if (max === 0) return false;
    let open = 0;
    for (const b of this.current) {
      if (exclude !== undefined && exclude.has(b)) continue;
      if (b.inflight < max) return false;
      open++;
    }
    return open > 0;
  }

  /**
   * The policy picked a full backend: pick again with every full candidate excluded too. Only
   * when limits bind, so the common pick stays one policy call and one comparison. (For
   * round_robin the full backend has used its turn: its share goes to the others while full.)
   */
  private pickWithRoom(ctx: PickContext, exclude: ReadonlySet<Backend> | undefined, max: number): Backend | undefined {
    const skip = new Set<Backend>(exclude);
    for (const c of this.current) if (c.inflight >= max) skip.add(c);
    return this.policy.pick(ctx, skip);
  }

  /** Stops the slow-start timer; weights freeze where they are. */
  close(): void {
    this.closed = true;
    if (this.rampTimer !== undefined) clearTimeout(this.rampTimer);
    this.rampTimer = undefined;
  }

  private add(spec: MemberSpec, now: number): Backend {
    const b = new Backend(this.name, spec, now);
    const entry: Entry = { backend: b, registryDraining: spec.draining, adminDraining: false, ramping: false };
    this.entries.set(spec.id, entry);
    if (this.shouldRamp(now)) this.startRamp(entry, now);
    return b;
  }

  private drop(entry: Entry): void {
    entry.backend.member = false;
    entry.ramping = false;
    this.entries.delete(entry.backend.id);
  }

  /** Mutates a kept backend to match `spec`; true if anything changed. */
  private update(entry: Entry, spec: MemberSpec, now: number): boolean {
    const b = entry.backend;
    let changed = false;
    if (b.weight !== spec.weight) {
      b.weight = spec.weight;
      b.effectiveWeight = entry.ramping ? this.rampWeight(b, now) : spec.weight;
      this.weightsDirty = true;
      changed = true;
    }
    if (b.zone !== spec.zone) {
      b.zone = spec.zone;
      changed = true;
    }
    if (b.source !== spec.source) {
      b.source = spec.source;
      changed = true;
    }
    if (entry.registryDraining !== spec.draining) {
      entry.registryDraining = spec.draining;
      b.draining = spec.draining || entry.adminDraining;
      changed = true;
    }
    const meta = spec.meta ?? {};
    if (!sameJson(b.meta, meta)) {
      b.meta = meta;
      changed = true;
    }
    return changed;
  }

  /** Joins and recoveries ramp, except during the warm-up after the first sync (all start cold together). */
  private shouldRamp(now: number): boolean {
    const s = this.settings.slowStart;
    return s > 0 && this.firstSyncAt !== undefined && now >= this.firstSyncAt + s;
  }

  private startRamp(entry: Entry, now: number): void {
    entry.ramping = true;
    entry.backend.effectiveWeight = this.rampWeight(entry.backend, now);
    this.weightsDirty = true;
    this.scheduleRamp();
  }

  /** Linear from `SLOW_START_FLOOR` of the weight at `availableSince` to full weight after `slowStart` ms. */
  private rampWeight(b: Backend, now: number): number {
    const s = this.settings.slowStart;
    const f = s <= 0 ? 1 : Math.min(1, Math.max(0, (now - b.availableSince) / s));
    return b.weight * (SLOW_START_FLOOR + (1 - SLOW_START_FLOOR) * f);
  }

  /** Recomputes every ramping weight; true if some are still ramping. */
  private rampStep(now: number): boolean {
    let more = false;
    for (const e of this.entries.values()) {
      if (!e.ramping) continue;
      const w = this.rampWeight(e.backend, now);
      if (w >= e.backend.weight) {
        e.ramping = false;
        e.backend.effectiveWeight = e.backend.weight;
      } else {
        e.backend.effectiveWeight = w;
        more = true;
      }
      this.weightsDirty = true;
    }
    return more;
  }

  private scheduleRamp(): void {
    if (this.rampTimer !== undefined || this.closed) return;
    const step = Math.max(1, Math.ceil(this.settings.slowStart / SLOW_START_STEPS));
    this.rampTimer = setTimeout(() => {
      this.rampTimer = undefined;
      try {
        const more = this.rampStep(this.clock());
        this.changed();
        if (more) this.scheduleRamp();
      } catch {
        // A throwing onChange listener must not take the process down from a timer.
      }
    }, step);
    this.rampTimer.unref();
  }

  /** Recomputes candidates and panic mode, rebuilds the policy once if needed, notifies. */
  private changed(): void {
    let members = 0;
    let healthy = 0;
    for (const e of this.entries.values()) {
      if (e.backend.draining) continue;
      members++;
      if (e.backend.available) healthy++;
    }
    // Envoy's rule: panic when healthy% < threshold; then every non-draining member is a candidate.
    const panic = members > 0 && healthy * 100 < this.settings.panicThreshold * members;
    const next: Backend[] = [];
    for (const e of this.entries.values()) {
      const b = e.backend;
      if (!b.draining && (panic || b.available)) next.push(b);
    }
    this.inPanic = panic;
    const chosen = zoneCandidates(this.settings.localZone, this.settings.panicThreshold, this.backends(), next);
    if (this.weightsDirty || !sameList(this.current, chosen)) {
      this.current = chosen;
      this.weightsDirty = false;
      this.policy.rebuild(chosen);
    }
    this.onChange?.(this);
  }
}

function pickSettings(o: ServicePoolSettings): ServicePoolSettings {
  return {
    balancer: o.balancer,
    hashKey: o.hashKey,
    panicThreshold: o.panicThreshold,
    slowStart: o.slowStart,
    maxConns: o.maxConns,
    localZone: o.localZone,
  };
}

function sameHashKey(a: HashKeySpec | undefined, b: HashKeySpec | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.kind !== b.kind) return false;
  return !('name' in a) || !('name' in b) || a.name === b.name;
}

function sameList(a: readonly Backend[], b: readonly Backend[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Registry meta comes from JSON, so a JSON comparison is exact for it. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch {
    return false;
  }
}
