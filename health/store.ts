/**
 * Where health state lives: one `ServiceHealth` per service name, kept across config reloads and
 * registry updates (records are keyed by service + backend id, never by config objects). The
 * store also owns the one timer that ends ejections on time.
 */
import { ServiceHealth, type BackendHealthView } from './state.js';
import type {
  AvailabilityListener,
  Clock,
  HealthTransition,
  ServiceHealthConfig,
  TransitionListener,
} from './types.js';

/** How to build a `HealthStore`; every field is optional. */
export interface HealthStoreOptions {
  /** told whenever a backend's availability changes (the wiring forwards it to the pool) */
  readonly availability?: AvailabilityListener | undefined;
  /** told of every real transition (logs, metrics, dashboard) */
  readonly transitions?: TransitionListener | undefined;
  /** ms clock for the expiry timer; default `Date.now` (must match the `now` the callers pass) */
  readonly clock?: Clock | undefined;
  /**
   * default true: a single unref'd timer ends each ejection when due. false: the caller calls
   * `tick(now)` (deterministic tests).
   */
  readonly autoExpire?: boolean | undefined;
  /** receives errors thrown by listeners inside the expiry timer (they must not crash the process) */
  readonly onError?: ((err: unknown) => void) | undefined;
}

/** service name -> ServiceHealth, outliving config reloads. */
export class HealthStore {
  private readonly byService = new Map<string, ServiceHealth>();
  private readonly clock: Clock;
  private readonly autoExpire: boolean;
  private readonly availability: AvailabilityListener | undefined;
  private readonly transitions: TransitionListener | undefined;
  private readonly onError: ((err: unknown) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt: number | undefined;
  private closed = false;

  constructor(options: HealthStoreOptions = {}) {
    this.clock = options.clock ?? Date.now;
    this.autoExpire = options.autoExpire ?? true;
    this.availability = options.availability;
    this.transitions = options.transitions;
    this.onError = options.onError;
  }

  /**
   * Gets the service's health, creating it on first use, and applies `cfg` (records are kept;
   * see `ServiceHealth.reconfigure`). Safe to call on every reload.
   */
  service(name: string, cfg: ServiceHealthConfig): ServiceHealth {
    const existing = this.byService.get(name);
    if (existing !== undefined) {
      if (existing.config !== cfg) existing.reconfigure(cfg, this.clock());
      return existing;
    }
    const created = new ServiceHealth(name, cfg, {
      setAvailable: (service, id, availability) => this.availability?.setAvailable(service, id, availability),
      onTransition: (t) => this.transitions?.onTransition(t),
      ejectionScheduled: () => this.arm(),
    });
    this.byService.set(name, created);
    return created;
  }

  /** The service's health, if it exists. */
  get(name: string): ServiceHealth | undefined {
    return this.byService.get(name);
  }

  /** Forgets a whole service (it left both the config and every registry). */
  delete(name: string): void {
    this.byService.delete(name);
    this.arm(); // its ejections no longer hold the expiry timer
  }

  /** Backends of every service still waiting for their first active check (see `/readyz`). */
  awaitingFirstCheck(): number {
    let n = 0;
    for (const sh of this.byService.values()) n += sh.awaitingFirstCheck();
    return n;
  }

  /** Names of the tracked services. */
  names(): string[] {
    return [...this.byService.keys()];
  }

  /** State of one backend, or undefined when the service or id is unknown. */
  snapshot(service: string, id: string): BackendHealthView | undefined {
    return this.byService.get(service)?.snapshot(id);
  }

  /** Ends every ejection due by `now`, in every service. */
  tick(now: number): HealthTransition[] {
    const out: HealthTransition[] = [];
    for (const sh of this.byService.values()) out.push(...sh.tick(now));
    this.arm();
    return out;
  }

  /** Stops the expiry timer. The state stays readable. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = undefined;
  }

  /** (Re)arms the expiry timer for the earliest ejection end. */
  private arm(): void {
    if (!this.autoExpire || this.closed) return;
    let next: number | undefined;
    for (const sh of this.byService.values()) {
      const at = sh.nextExpiry();
      if (at !== undefined && (next === undefined || at < next)) next = at;
    }
    if (next === this.timerAt && this.timer !== undefined) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = next;
    if (next === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = undefined;
      try {
        this.tick(this.clock());
      } catch (err) {
        this.onError?.(err);
        this.arm();
      }
    }, Math.max(0, next - this.clock()));
    this.timer.unref();
  }
}
