/**
 * The active checker of one service: probes every backend every `interval` (±10% jitter so many
 * drovers do not probe in step), at most one probe in flight per backend, a new backend at once,
 * and feeds each result to the service's state machine. Timers are unref'd: the checker never
 * keeps the process alive.
 */
import { startProbe, type ProbeResult, type ProbeSpec, type RunningProbe } from './probe.js';
import type { ActiveCheckConfig, Clock, RandomSource } from './types.js';

/** Where results go; `ServiceHealth` satisfies it. */
export interface ActiveResultSink {
  activeResult(id: string, ok: boolean, detail: string, now: number): unknown;
}

/** Starts one probe; replaceable in tests of the scheduling alone. */
export type ProbeStarter = (spec: ProbeSpec) => RunningProbe;

/** How to build an `ActiveChecker`; only `service`, `sink` and `config` are required. */
export interface ActiveCheckerOptions {
  /** service name, for error reports */
  readonly service: string;
  readonly sink: ActiveResultSink;
  readonly config: ActiveCheckConfig;
  /** ms clock for result timestamps; default `Date.now` */
  readonly clock?: Clock | undefined;
  /** jitter source in [0, 1); default `Math.random` */
  readonly random?: RandomSource | undefined;
  /** default: the real HTTP/TCP probe */
  readonly probe?: ProbeStarter | undefined;
  /** receives errors thrown by the sink (or its listeners); they never escape a timer */
  readonly onError?: ((err: unknown) => void) | undefined;
}

/** Fraction of `interval` by which each delay is randomly lengthened or shortened. */
export const JITTER = 0.1;

interface Target {
  url: string;
  timer: NodeJS.Timeout | undefined;
  /** ms timestamp the pending timer fires at */
  dueAt: number;
  running: RunningProbe | undefined;
  /** ms timestamp the latest probe started */
  startedAt: number;
}

/**
 * Probes the backends of one service. The owner calls `add`/`remove` as members come and go,
 * `reconfigure` on reload and `close` when the service (or its active checks) goes away.
 */
export class ActiveChecker {
  readonly service: string;
  private cfg: ActiveCheckConfig;
  private readonly sink: ActiveResultSink;
  private readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly probe: ProbeStarter;
  private readonly onError: ((err: unknown) => void) | undefined;
  private readonly targets = new Map<string, Target>();
  private closed = false;

  constructor(options: ActiveCheckerOptions) {
    this.service = options.service;
    this.cfg = options.config;
    this.sink = options.sink;
    this.clock = options.clock ?? Date.now;
    this.random = options.random ?? Math.random;
    this.probe = options.probe ?? startProbe;
    this.onError = options.onError;
  }

  /** The config in force. */
  get config(): ActiveCheckConfig {
    return this.cfg;
  }

  /** Ids being checked. */
  ids(): string[] {
    return [...this.targets.keys()];
  }

  /**
   * Starts checking a backend, with a first probe at once. Adding a known id with the same URL
   * does nothing; with another URL it aborts the probe in flight and starts over on the new URL.
   */
  add(id: string, url: string): void {
    if (this.closed) return;
    const existing = this.targets.get(id);
    if (existing !== undefined) {
      if (existing.url === url) return;
      this.stop(existing);
      existing.url = url;
      this.schedule(id, existing, 0);
      return;
    }
    const t: Target = { url, timer: undefined, dueAt: 0, running: undefined, startedAt: 0 };
    this.targets.set(id, t);
    this.schedule(id, t, 0);
  }

  /** Stops checking a backend; a probe in flight is aborted and its result dropped. */
  remove(id: string): void {
    const t = this.targets.get(id);
    if (t === undefined) return;
    this.stop(t);
    this.targets.delete(id);
  }

  /**
   * Applies a new config. Probes in flight finish under the old one. A shorter interval takes
   * effect at once (pending timers are pulled in); a longer one from the next probe.
   */
  reconfigure(cfg: ActiveCheckConfig): void {
    this.cfg = cfg;
    const now = this.clock();
    for (const [id, t] of this.targets) {
      if (t.running !== undefined || t.timer === undefined) continue;
      const latest = now + cfg.interval * (1 + JITTER);
      if (t.dueAt > latest) {
        clearTimeout(t.timer);
        t.timer = undefined;
        this.schedule(id, t, this.delay());
      }
    }
  }

  /** Stops every timer and probe. The checker is unusable afterwards. */
  close(): void {
    this.closed = true;
    for (const t of this.targets.values()) this.stop(t);
    this.targets.clear();
  }

  /** One jittered interval in ms. */
  private delay(): number {
    return Math.max(0, this.cfg.interval * (1 + (this.random() * 2 - 1) * JITTER));
  }

  private stop(t: Target): void {
    if (t.timer !== undefined) clearTimeout(t.timer);
    t.timer = undefined;
    const running = t.running;
    t.running = undefined;
    running?.cancel();
  }

  private schedule(id: string, t: Target, delayMs: number): void {
    t.dueAt = this.clock() + delayMs;
    t.timer = setTimeout(() => {
      t.timer = undefined;
      this.run(id, t);
    }, delayMs);
    t.timer.unref();
  }

  private run(id: string, t: Target): void {
    if (this.closed || this.targets.get(id) !== t || t.running !== undefined) return;
    const cfg = this.cfg;
    const interval = this.delay();
    t.startedAt = this.clock();
    const running = this.probe({
      url: t.url,
      path: cfg.path,
      tcp: cfg.tcp,
      timeout: cfg.timeout,
      expectStatus: cfg.expectStatus,
      tls: cfg.tls,
    });
    t.running = running;
    running.result.then(
      (r) => this.completed(id, t, running, r, interval),
      (err: unknown) => this.completed(id, t, running, { ok: false, detail: `error ${String(err)}` }, interval),
    );
  }

  private completed(id: string, t: Target, running: RunningProbe, r: ProbeResult, interval: number): void {
    // A cancelled or superseded probe (removed, URL changed, closed) reports nothing.
    if (t.running !== running || this.closed || this.targets.get(id) !== t) return;
    t.running = undefined;
    const now = this.clock();
    try {
      this.sink.activeResult(id, r.ok, r.detail, now);
    } catch (err) {
      this.onError?.(err);
    }
    // Cadence is measured from probe start to probe start; a slow probe delays only its own next one.
    this.schedule(id, t, Math.max(0, t.startedAt + interval - now));
  }
}
