/**
 * Optional glue for the wiring code: keeps, per service, the state machine (in the `HealthStore`)
 * and the active checker in step with the config and the merged member list, so the caller makes
 * one `sync` per service change instead of diffing members itself.
 */
import { ActiveChecker, type ProbeStarter } from './active.js';
import type { HealthStore } from './store.js';
import type { Clock, PassiveOutcome, RandomSource, ServiceHealthConfig } from './types.js';

/** What the monitor needs of one member (a `MemberSpec` fits). */
export interface MonitoredMember {
  readonly id: string;
  /** origin probed by active checks */
  readonly url: string;
  /** the registry's draining flag */
  readonly draining: boolean;
}

/** How to build a `HealthMonitor`; only `store` is required. */
export interface HealthMonitorOptions {
  readonly store: HealthStore;
  /** ms clock; default `Date.now` (use the same one as the store) */
  readonly clock?: Clock | undefined;
  /** jitter source for the checkers; default `Math.random` */
  readonly random?: RandomSource | undefined;
  /** probe implementation; default the real HTTP/TCP probe */
  readonly probe?: ProbeStarter | undefined;
  /** errors thrown by listeners inside probe callbacks */
  readonly onError?: ((err: unknown) => void) | undefined;
}

interface Tracked {
  checker: ActiveChecker | undefined;
  urls: Map<string, string>;
}

/**
 * Drives a `HealthStore` and one `ActiveChecker` per service with active checks, from the
 * services' configs and merged member lists. Optional: the wiring may use the parts directly.
 */
export class HealthMonitor {
  private readonly store: HealthStore;
  private readonly clock: Clock;
  private readonly random: RandomSource | undefined;
  private readonly probe: ProbeStarter | undefined;
  private readonly onError: ((err: unknown) => void) | undefined;
  private readonly services = new Map<string, Tracked>();

  constructor(options: HealthMonitorOptions) {
    this.store = options.store;
    this.clock = options.clock ?? Date.now;
    this.random = options.random;
    this.probe = options.probe;
    this.onError = options.onError;
  }

  /**
   * Brings one service in line with `cfg` and its full member list: new members are added (and
   * probed at once), gone ones removed, a changed URL restarts probing, a change of the
   * registry's `draining` flag is forwarded. Call after every reload or registry change.
   */
  sync(service: string, cfg: ServiceHealthConfig, members: readonly MonitoredMember[]): void {
    const now = this.clock();
    const sh = this.store.service(service, cfg);
    let tracked = this.services.get(service);
    if (tracked === undefined) {
      tracked = { checker: undefined, urls: new Map() };
      this.services.set(service, tracked);
    }
    const active = cfg.active;
    if (active === undefined) {
      tracked.checker?.close();
      tracked.checker = undefined;
    } else if (tracked.checker === undefined) {
      tracked.checker = new ActiveChecker({
        service,
        sink: sh,
        config: active,
        clock: this.clock,
        random: this.random,
        probe: this.probe,
        onError: this.onError,
      });
    } else if (tracked.checker.config !== active) {
      tracked.checker.reconfigure(active);
    }

    const seen = new Set<string>();
    for (const m of members) {
      seen.add(m.id);
      const oldUrl = tracked.urls.get(m.id);
      if (oldUrl !== undefined && oldUrl !== m.url) sh.remove(m.id); // another host: its history does not apply
      // The registry's flag is its own drain; an admin drain is held apart and left alone.
      if (!sh.has(m.id)) sh.add(m.id, now, { draining: m.draining });
      else sh.setDraining(m.id, 'registry', m.draining, now);
      tracked.urls.set(m.id, m.url);
      tracked.checker?.add(m.id, m.url);
    }
    for (const id of sh.ids()) {
      if (seen.has(id)) continue;
      sh.remove(id);
      tracked.checker?.remove(id);
      tracked.urls.delete(id);
    }
  }

  /** Forgets a service entirely: stops its checker and drops its records. */
  removeService(service: string): void {
    this.services.get(service)?.checker?.close();
    this.services.delete(service);
    this.store.delete(service);
  }

  /** Reports one proxied request's outcome (the data path's hook into passive ejection). */
  passive(service: string, id: string, outcome: PassiveOutcome): void {
    this.store.get(service)?.passiveResult(id, outcome, this.clock());
  }

  /**
   * Admin drain/undrain, held apart from the registry's drain (see `ServiceHealth.setDraining`);
   * returns false when the backend is unknown.
   */
  setDraining(service: string, id: string, draining: boolean): boolean {
    const sh = this.store.get(service);
    if (sh === undefined || !sh.has(id)) return false;
    sh.setDraining(id, 'admin', draining, this.clock());
    return true;
  }

  /** Stops every checker and the store's expiry timer. */
  close(): void {
    for (const t of this.services.values()) t.checker?.close();
    this.services.clear();
    this.store.close();
  }
}
