/**
 * The service directory: merges the members that every source (static config, file registry,
 * etcd) reports for each service, and hands each touched service's merged list to the runtime,
 * which diffs it into the service's pool.
 *
 * Bursts are coalesced: events only mark services dirty, and one flush delivers each touched
 * service once, however many events touched it. The flush is a debounce with a cap: it happens
 * once no event arrived for `coalesceMs` (10 ms), or `maxWaitMs` (1 s) after the first
 * pending event, whichever comes first. A lone change therefore reaches its pool ~10 ms after
 * etcd sent it, while a storm (a deploy writing 1 000 keys in a second) costs one pool rebuild
 * per touched service instead of one per event. The price: under an uninterrupted stream of
 * events (less than 10 ms apart for a whole second), a change waits up to the 1 s cap.
 */
import type { Logger } from '../observability/log.js';
import type { MemberSpec } from '../../routing/types.js';
import type { RegistrySink } from './types.js';

/** The source name of members written under `services.<name>.backends` in drover.yaml. */
export const STATIC_SOURCE = 'static';

/** Sources in precedence order: when two report the same id for one service, the first wins. */
const PRECEDENCE = [STATIC_SOURCE, 'file', 'etcd', 'zookeeper', 'dns'];

/** Receives registry bookkeeping, for metrics. */
export interface DirectoryObserver {
  event(source: string, type: string): void;
  connected(source: string, connected: boolean): void;
  invalid(source: string): void;
  /** a change held back by a mass-removal guard (optional) */
  guarded?(source: string): void;
}

export interface DirectoryOptions {
  /** called with every touched service's merged members (an empty list: no member left) */
  readonly onChange: (changed: ReadonlyMap<string, readonly MemberSpec[]>) => void;
  readonly observer: DirectoryObserver;
  readonly logger: Logger;
  /** ms without a new event after which pending changes are flushed (debounce); default 10 */
  readonly coalesceMs?: number;
  /** ms after the first pending event by which a flush happens even if events keep coming; default 1000 */
  readonly maxWaitMs?: number;
  /** injected clock (ms) for deterministic tests; default Date.now */
  readonly now?: () => number;
}

/** Default debounce of the directory, ms. */
export const DEFAULT_COALESCE_MS = 10;
/** Default cap on how long a pending change waits during a storm, ms. */
export const DEFAULT_MAX_WAIT_MS = 1000;

export class ServiceDirectory implements RegistrySink {
  /** service -> source -> id -> member */
  private readonly members = new Map<string, Map<string, Map<string, MemberSpec>>>();
  private readonly dirty = new Set<string>();
  private readonly synced = new Set<string>();
  private readonly connectedSources = new Map<string, boolean>();
  private expected: readonly string[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** when the timer fires (ms, `now()` clock) */
  private timerDue = 0;
  /** when the oldest pending change arrived (ms); meaningful while `dirty` is not empty */
  private firstPendingAt = 0;
  private readonly opts: DirectoryOptions;
  private readonly coalesceMs: number;
  private readonly maxWaitMs: number;
  private readonly now: () => number;
  /** key + value pairs already logged as invalid: each is logged once */
  private readonly loggedInvalid = new Set<string>();

  constructor(opts: DirectoryOptions) {
    this.opts = opts;
    this.coalesceMs = opts.coalesceMs ?? DEFAULT_COALESCE_MS;
    this.maxWaitMs = Math.max(opts.maxWaitMs ?? DEFAULT_MAX_WAIT_MS, this.coalesceMs);
    this.now = opts.now ?? Date.now;
  }

  /** The sources `/readyz` waits for (besides static, which is always synced). */
  expectSources(sources: readonly string[]): void {
    this.expected = sources;
  }

  /** True once every expected source has listed everything at least once. */
  ready(): boolean {
    return this.expected.every((s) => this.synced.has(s));
  }

  /** The expected sources that have not listed everything once yet. */
  unsynced(): string[] {
    return this.expected.filter((s) => !this.synced.has(s));
  }

  /** Whether a source reported itself connected (undefined: never reported). */
  isConnected(source: string): boolean | undefined {
    return this.connectedSources.get(source);
  }

  /** Names of every service that has at least one member from any source. */
  serviceNames(): string[] {
    const out: string[] = [];
    for (const [name, bySource] of this.members) {
      for (const m of bySource.values()) {
        if (m.size > 0) {
          out.push(name);
          break;
        }
      }
    }
    return out;
  }

  /** The merged members of one service now (precedence static > file > etcd > zookeeper > dns on id clashes). */
  merged(service: string): MemberSpec[] {
    const bySource = this.members.get(service);
    if (bySource === undefined) return [];
    const out: MemberSpec[] = [];
    const seen = new Set<string>();
    const sources = [...PRECEDENCE.filter((s) => bySource.has(s)), ...[...bySource.keys()].filter((s) => !PRECEDENCE.includes(s))];
    for (const source of sources) {
      for (const m of (bySource.get(source) as Map<string, MemberSpec>).values()) {
        if (seen.has(m.id)) continue;
        seen.add(m.id);
        out.push(m);
      }
    }
    return out;
  }

  replaceAll(source: string, services: ReadonlyMap<string, readonly MemberSpec[]>): void {
    for (const [name, bySource] of this.members) {
      if (bySource.has(source) && !services.has(name)) {
        bySource.delete(source);
        this.prune(name);
        this.touch(name);
      }
    }
    for (const [name, list] of services) {
      const next = new Map<string, MemberSpec>();
      for (const m of list) next.set(m.id, m);
      const bySource = this.sourceMap(name);
      const prev = bySource.get(source);
      if (prev !== undefined && sameMembers(prev, next)) continue;
      bySource.set(source, next);
      this.prune(name);
      this.touch(name);
    }
  }

  put(source: string, service: string, member: MemberSpec): void {
    const bySource = this.sourceMap(service);
    let m = bySource.get(source);
    if (m === undefined) {
      m = new Map();
      bySource.set(source, m);
    }
    const prev = m.get(member.id);
    if (prev !== undefined && sameMember(prev, member)) return;
    m.set(member.id, member);
    this.touch(service);
  }

  delete(source: string, service: string, id: string): void {
    const m = this.members.get(service)?.get(source);
    if (m === undefined || !m.delete(id)) return;
    this.prune(service);
    this.touch(service);
  }

  /**
   * Drops a service's empty per-source maps, and the service itself once no source has a member
   * left: services come and go under churn, and an empty entry must not outlive them.
   */
  private prune(service: string): void {
    const bySource = this.members.get(service);
    if (bySource === undefined) return;
    for (const [source, m] of bySource) if (m.size === 0) bySource.delete(source);
    if (bySource.size === 0) this.members.delete(service);
  }

  markSynced(source: string): void {
    const first = !this.synced.has(source);
    this.synced.add(source);
    // The first full list goes to the pools now, not after the debounce: `/readyz` turns 200 as
    // soon as every source is synced, and a ready drover must already route to those members.
    if (first) this.flush();
  }

  setConnected(source: string, connected: boolean): void {
    if (this.connectedSources.get(source) === connected) return;
    this.connectedSources.set(source, connected);
    this.opts.observer.connected(source, connected);
    this.opts.logger.info({ source, connected }, connected ? 'registry connected' : 'registry disconnected');
  }

  countEvent(source: string, type: 'put' | 'delete' | 'resync'): void {
    this.opts.observer.event(source, type);
  }

  guardedChange(source: string): void {
    this.opts.observer.guarded?.(source);
  }

  invalidEntry(source: string, key: string, fullReason: string): void {
    this.opts.observer.invalid(source);
    // A reason quotes the value: five 1 MB garbage puts used to write 12 MB of log and keep
    // the megabytes in the dedupe set. Capped, the same garbage under one key logs once.
    const reason = capText(fullReason);
    const k = `${source}\u0000${capText(key)}\u0000${reason}`;
    if (this.loggedInvalid.has(k)) return;
    if (this.loggedInvalid.size > 10_000) this.loggedInvalid.clear(); // bounded memory under churn
    this.loggedInvalid.add(k);
    this.opts.logger.warn({ source, key: capText(key), reason, code: 'E_REGISTRY_INVALID_ENTRY' }, 'registry entry skipped');
  }

  /** Delivers pending changes now (tests and shutdown use it; normally a timer does). */
  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.dirty.size === 0) return;
    const changed = new Map<string, readonly MemberSpec[]>();
    for (const name of this.dirty) changed.set(name, this.merged(name));
    this.dirty.clear();
    this.opts.onChange(changed);
  }

  /** Stops the flush timer. */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private sourceMap(service: string): Map<string, Map<string, MemberSpec>> {
    let bySource = this.members.get(service);
    if (bySource === undefined) {
      bySource = new Map();
      this.members.set(service, bySource);
    }
    return bySource;
  }

  private touch(service: string): void {
    const now = this.now();
    if (this.dirty.size === 0) this.firstPendingAt = now;
    this.dirty.add(service);
    // Never earlier than now (a fake or stepped clock); only ever moves later within one burst.
    this.timerDue = Math.max(now, Math.min(now + this.coalesceMs, this.firstPendingAt + this.maxWaitMs));
    // One timer per burst, not one per event: the timer re-arms itself if the due time moved.
    if (this.timer === undefined) this.arm(now);
  }

  private arm(now: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const t = this.now();
      if (this.dirty.size > 0 && this.timerDue > t) this.arm(t);
      else this.flush();
    }, Math.max(0, this.timerDue - now));
    this.timer.unref();
  }
}

function sameMember(a: MemberSpec, b: MemberSpec): boolean {
  return (
    a.id === b.id &&
    a.url === b.url &&
    a.weight === b.weight &&
    a.zone === b.zone &&
    a.draining === b.draining &&
    a.source === b.source &&
    JSON.stringify(a.meta ?? {}) === JSON.stringify(b.meta ?? {})
  );
}

function sameMembers(a: ReadonlyMap<string, MemberSpec>, b: ReadonlyMap<string, MemberSpec>): boolean {
  if (a.size !== b.size) return false;
  for (const [id, m] of a) {
    const o = b.get(id);
    if (o === undefined || !sameMember(m, o)) return false;
  }
  return true;
}

/** chars of an invalid entry's key or reason kept in the log (and its dedupe key) */
const MAX_LOGGED_CHARS = 256;

/** `text` cut to MAX_LOGGED_CHARS, saying how long it was. */
export function capText(text: string): string {
  return text.length <= MAX_LOGGED_CHARS ? text : `${text.slice(0, MAX_LOGGED_CHARS)}... (${text.length} chars)`;
}
