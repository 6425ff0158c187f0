/**
 * One service's backends: membership (diffed from registry lists), availability (health's
 * verdict, drain included: health is its only owner, the pool applies it), panic mode, slow
 * start, and the balancing policy that picks among the current candidates. Everything that
 * changes candidates or weights ends in exactly one `policy.rebuild` (one per `batch`), so
 * `pick` stays a cheap synchronous call.
 *
 * Public shape: membership `sync`, health `setAvailable`, settings `reconfigure`, `batch` to
 * group them, `pick` / `candidates()` for the data path, `whenDecided` for a request that
 * arrives while every member still waits for its first verdict, `close`.
 */
import { Backend } from './backend.js';
import type { Policy } from './policy.js';
import { createPolicy } from './policies.js';
import { zoneCandidates } from './zones.js';
import type { Availability, BalancerName, Clock, HashKeySpec, MemberSpec, PickContext, RandomSource } from './types.js';

/** How a pool balances and protects its backends. */
export interface ServicePoolOptions {
  /** service name; becomes `Backend.service` */
  readonly name: string;
  readonly balancer: BalancerName;
  /** only for `hash`; default `{kind:'ip'}` */
  readonly hashKey?: HashKeySpec | undefined;
  /**
   * Percent 0-100. When fewer than this share of the members that have a verdict (`available`
   * or `failed`) is available, the `failed` ones become candidates too (Envoy's panic mode).
   * `pending` and `draining` members never count and never serve; with none available and some
   * `pending`, panic waits for their verdicts. 0 disables panic mode.
   */
  readonly panicThreshold: number;
  /**
   * ms over which a backend's weight ramps up when it becomes available after it was seen
   * `failed`, or for the first time after it joined a pool that had already had its initial
   * sync (HAProxy's `slowstart` rule); 0 = off
   */
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

/** Options of one `sync`. */
export interface SyncOptions {
  /**
   * true: these members are the pool's initial set (present at start): they do not ramp when
   * they first become available. Default: true for the pool's first sync only, so members that
   * join later ramp. The wiring passes true until every registry has listed once.
   */
  readonly initial?: boolean | undefined;
}

/** Share of the weight a backend starts slow start with. */
export const SLOW_START_FLOOR = 0.1;
/** Number of weight steps over a slow-start window. */
export const SLOW_START_STEPS = 10;

interface Entry {
  readonly backend: Backend;
  /** effective weight still ramping up */
  ramping: boolean;
  /** ramp when it next becomes available: it joined after the initial set, or was seen failed */
  rampOnAvailable: boolean;
}

/** A request waiting for a verdict (see `whenDecided`). */
interface Waiter {
  readonly done: () => void;
  readonly timer: NodeJS.Timeout;
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
  /** members still `pending` (waiting for their first verdict), as of the last `changed` */
  private pendingCount = 0;
  private synced = false;
  /** > 0 inside `batch`: `changed` is deferred to its end */
  private batchDepth = 0;
  private changedInBatch = false;
  private readonly waiters = new Set<Waiter>();
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

  /** True while fewer than `panicThreshold`% of the members with a verdict are available. */
  get panic(): boolean {
    return this.inPanic;
  }

  /** Members waiting for their first verdict (`pending`). */
  get awaitingVerdict(): number {
    return this.pendingCount;
  }

  /** The balancer in use. */
  get balancer(): BalancerName {
    return this.settings.balancer;
  }

  /**
   * Applies a registry's full member list, diffed by `id`: unchanged ids keep their Backend
   * object (and its counters); a changed weight/zone/meta/source mutates it in place; a
   * changed `url` replaces it (remove + add); missing ids leave (`member = false`). A new
   * Backend is `pending` until `setAvailable` says otherwise. Members that join outside the
   * initial set (see `SyncOptions.initial`) ramp up when they first become available. The
   * registry's `draining` flag is not read here: health folds it into availability.
   */
  sync(members: readonly MemberSpec[], options: SyncOptions = {}): PoolDiff {
    const now = this.clock();
    const initial = options.initial ?? !this.synced;
    this.synced = true;
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
        diff.added.push(this.add(spec, now, initial));
      } else if (entry.backend.url !== spec.url) {
        this.drop(entry);
        diff.removed.push(entry.backend);
        diff.added.push(this.add(spec, now, initial));
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
   * Health's verdict, the only input that decides whether a member may get new requests. A
   * backend that becomes available after it was seen `failed`, or for the first time after it
   * joined outside the initial set, ramps up over `slowStart` (HAProxy's rule; an undrain is no
   * recovery and does not ramp, unless the drain interrupted a ramp). Unknown ids are ignored.
   */
  setAvailable(id: string, availability: Availability): void {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.backend.availability === availability) return;
    const b = entry.backend;
    const was = b.availability;
    b.availability = availability;
    if (availability === 'failed') entry.rampOnAvailable = true;
    if (availability === 'available') {
      const now = this.clock();
      b.availableSince = now;
      if (entry.rampOnAvailable && this.settings.slowStart > 0) this.startRamp(entry, now);
      entry.rampOnAvailable = false;
    } else if (was === 'available' && entry.ramping) {
      // Out mid-ramp: the ramp starts over when it is back.
      entry.ramping = false;
      entry.rampOnAvailable = true;
      b.effectiveWeight = b.weight;
      this.weightsDirty = true;
    }
    this.changed();
  }

  /**
   * Runs `fn` (a `sync` and the `setAvailable` calls that follow it, say) with the candidate
   * rebuild and the `onChange` notification deferred to its end: one rebuild for the batch.
   */
  batch(fn: () => void): void {
    this.batchDepth++;
    try {
      fn();
    } finally {
      this.batchDepth--;
      if (this.batchDepth === 0 && this.changedInBatch) {
        this.changedInBatch = false;
        this.changed();
      }
    }
  }

  /**
   * For a request that found no candidate while members still wait for their first verdict:
   * calls `done` once (asynchronously) as soon as there is a candidate or nothing is `pending`
   * any more, or after `timeoutMs`, or when the pool closes, whichever comes first; the caller
   * then picks again. Returns a function that cancels the wait (`done` is then not called).
   */
  whenDecided(timeoutMs: number, done: () => void): () => void {
    if (this.closed || this.current.length > 0 || this.pendingCount === 0) {
      queueMicrotask(done);
      return () => undefined;
    }
    const waiter: Waiter = {
      done,
      timer: setTimeout(() => {
        this.waiters.delete(waiter);
        done();
      }, Math.max(0, timeoutMs)),
    };
    waiter.timer.unref();
    this.waiters.add(waiter);
    return () => {
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
    };
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

  /** Stops the slow-start timer (weights freeze where they are) and releases waiting requests. */
  close(): void {
    this.closed = true;
    if (this.rampTimer !== undefined) clearTimeout(this.rampTimer);
    this.rampTimer = undefined;
    this.releaseWaiters();
  }

  private add(spec: MemberSpec, now: number, initial: boolean): Backend {
    const b = new Backend(this.name, spec, now);
    this.entries.set(spec.id, { backend: b, ramping: false, rampOnAvailable: !initial });
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
    if (b.priority !== (spec.priority ?? 0)) {
      b.priority = spec.priority ?? 0;
      changed = true;
    }
    const meta = spec.meta ?? {};
    if (!sameJson(b.meta, meta)) {
      b.meta = meta;
      changed = true;
    }
    return changed;
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
    if (this.batchDepth > 0) {
      this.changedInBatch = true;
      return;
    }
    const level = servingLevel(this.entries.values());
    const members: Backend[] = [];
    for (const e of this.entries.values()) if (level === undefined || e.backend.priority === level) members.push(e.backend);
    let judged = 0;
    let healthy = 0;
    let pending = 0;
    for (const b of members) {
      const a = b.availability;
      if (a === 'pending') pending++;
      if (a !== 'available' && a !== 'failed') continue;
      judged++;
      if (a === 'available') healthy++;
    }
    // Envoy's rule, over the members that have a verdict: panic when healthy% < threshold; then
    // the failed ones serve too. A member still waiting for its first check never does, and
    // while nothing is available but some wait, panic waits for their verdicts too (requests
    // wait with it, see `whenDecided`): at start, the one judged first must not take everything.
    const panic = judged > 0 && healthy * 100 < this.settings.panicThreshold * judged && (healthy > 0 || pending === 0);
    const next: Backend[] = [];
    for (const b of members) {
      const a = b.availability;
      if (a === 'available' || (panic && a === 'failed')) next.push(b);
    }
    this.inPanic = panic;
    this.pendingCount = pending;
    const chosen = zoneCandidates(this.settings.localZone, this.settings.panicThreshold, members, next);
    if (this.weightsDirty || !sameList(this.current, chosen)) {
      this.current = chosen;
      this.weightsDirty = false;
      this.policy.rebuild(chosen);
    }
    if (this.waiters.size > 0 && (chosen.length > 0 || pending === 0)) this.releaseWaiters();
    this.onChange?.(this);
  }

  /** Hands every waiting request back to its caller, after the current call stack. */
  private releaseWaiters(): void {
    if (this.waiters.size === 0) return;
    const ready = [...this.waiters];
    this.waiters.clear();
    for (const w of ready) clearTimeout(w.timer);
    queueMicrotask(() => {
      for (const w of ready) w.done();
    });
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

/**
 * The priority level that serves (RFC 2782's SRV priority, HAProxy's backup servers): the lowest
 * level with an available member; when none is available, the lowest level with a member still
 * waiting for its first check (requests wait for its verdict, as at start); when every member
 * has failed or drains, undefined: every level counts (panic mode decides over all of them).
 * Pools whose members all have the default level 0 always get 0 or undefined, which select the
 * same members.
 */
export function servingLevel(entries: Iterable<{ readonly backend: Backend }>): number | undefined {
  let available: number | undefined;
  let waiting: number | undefined;
  for (const { backend: b } of entries) {
    if (b.availability === 'available' && (available === undefined || b.priority < available)) available = b.priority;
    if (b.availability === 'pending' && (waiting === undefined || b.priority < waiting)) waiting = b.priority;
  }
  return available ?? waiting;
}
