/**
 * The shared config's life cycle in a running drover: follows `registry.etcd.config_prefix`
 * (restarting the follower when the file changes how etcd is reached), validates every snapshot
 * whole, keeps the last good one, and tells the start command when a new one is in force. The
 * start command then merges it with the local file and applies the result through the one
 * reload path (`Runtime.reload`), exactly like a file change.
 */
import type { ConfigIssue } from '../core/errors.js';
import { ok } from '../core/result.js';
import { parseSharedConfig, type SharedConfig, type SharedParse, type SharedSnapshot } from '../config/shared.js';
import { parseTraefikRouters } from '../config/traefik-routers.js';
import type { DroverConfig, EtcdRegistryConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { EtcdConfigFollower } from '../registry/etcd-config.js';
import type { EtcdRegistryOptions } from '../registry/etcd.js';

/** What the source reports to (the start command). Neither callback may throw. */
export interface SharedConfigHandlers {
  /** a new valid shared config is the last good one: merge and apply it */
  readonly changed: (shared: SharedConfig) => void;
  /** a snapshot failed validation: nothing changed; count and log it */
  readonly refused: (revision: string, issues: readonly ConfigIssue[]) => void;
  /** Traefik routers that cannot become routes (the others apply); log them */
  readonly skipped?: (revision: string, issues: readonly ConfigIssue[]) => void;
}

/** One followed prefix and its last good state. */
interface Part {
  readonly prefix: string;
  readonly parse: (snapshot: SharedSnapshot) => SharedParse;
  follower?: EtcdConfigFollower;
  good?: SharedConfig;
  lastValues?: ReadonlyMap<string, string>;
  answered: boolean;
}

/** Follows the shared config of whatever the current config names. */
export class SharedConfigSource {
  private parts: Part[] = [];
  private key = '';
  private waiters: (() => void)[] = [];

  constructor(
    private readonly logger: Logger,
    private readonly handlers: SharedConfigHandlers,
    private readonly options: EtcdRegistryOptions = {},
  ) {}

  /** The shared config in force: every part's last good state (undefined: none yet, or none configured). */
  current(): SharedConfig | undefined {
    const good = this.parts.map((p) => p.good).filter((g): g is SharedConfig => g !== undefined);
    const first = good[0];
    if (first === undefined) return undefined;
    if (good.length === 1) return first;
    const revision = good.map((g) => BigInt(g.revision)).reduce((a, b) => (a > b ? a : b));
    return Object.freeze({
      prefix: first.prefix,
      revision: String(revision),
      routes: good.flatMap((g) => g.routes).map((r, index) => ({ ...r, index })),
      services: good.flatMap((g) => g.services),
    });
  }

  /** The first prefix followed now (undefined: no shared config configured). */
  followedPrefix(): string | undefined {
    return this.parts[0]?.prefix;
  }

  /**
   * Why drover is not ready on the shared config's account: one line per part without a valid
   * state yet (empty when every part has one, or when no shared config is configured).
   */
  waitingFor(): string[] {
    return this.parts
      .filter((p) => p.good === undefined)
      .map((p) => (p.answered ? `shared config under ${p.prefix} refused (invalid): waiting for a valid one` : `shared config under ${p.prefix} not read from etcd yet`));
  }

  /**
   * Starts, restarts or stops following to match `config.registry.etcd`. A change of endpoints,
   * auth, TLS or prefixes starts over (a part keeps its last good state if its prefix stayed).
   */
  async sync(config: DroverConfig): Promise<void> {
    const etcd = config.registry.etcd;
    const wanted: Omit<Part, 'answered'>[] = [];
    if (etcd?.configPrefix !== undefined) wanted.push({ prefix: etcd.configPrefix, parse: parseSharedConfig });
    if (etcd?.layout === 'traefik') wanted.push({ prefix: `${etcd.prefix}http/routers/`, parse: parseRouters(this.handlers) });
    const key = etcd === undefined || wanted.length === 0 ? '' : JSON.stringify(etcd);
    if (key === this.key) return;
    this.key = key;
    const old = this.parts;
    await Promise.all(old.map((p) => p.follower?.close().catch(() => undefined)));
    this.parts = wanted.map((w) => {
      const kept = old.find((p) => p.prefix === w.prefix);
      return { ...w, answered: kept?.answered ?? false, ...(kept?.good === undefined ? {} : { good: kept.good, lastValues: kept.lastValues }) };
    });
    if (etcd === undefined || this.parts.length === 0) {
      this.release();
      return;
    }
    const { EtcdConfigFollower } = await import('../registry/etcd-config.js');
    for (const part of this.parts) {
      const follower = new EtcdConfigFollower(
        { ...(etcd as EtcdRegistryConfig), configPrefix: part.prefix },
        this.logger,
        { snapshot: (s) => this.onSnapshot(part, follower, s), connected: (c) => this.logger.debug({ connected: c, prefix: part.prefix }, 'shared config connection') },
        this.options,
      );
      part.follower = follower;
      await follower.follow();
    }
  }

  /**
   * Resolves once etcd has answered every part with a first snapshot (valid or not), or after
   * `ms`; true when it answered. Resolves at once without a shared config.
   */
  waitFirst(ms: number): Promise<boolean> {
    if (this.parts.every((p) => p.answered)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(done);
    });
  }

  /** Stops following. */
  async close(): Promise<void> {
    const parts = this.parts;
    this.parts = [];
    this.key = '';
    await Promise.all(parts.map((p) => p.follower?.close().catch(() => undefined)));
    this.release();
  }

  private onSnapshot(part: Part, from: EtcdConfigFollower, snapshot: SharedSnapshot): void {
    if (part.follower !== from || !this.parts.includes(part)) return; // a follower being replaced
    part.answered = true;
    if (this.parts.every((p) => p.answered)) this.release();
    // A re-list after a reconnect usually finds what is already in force: nothing to do.
    if (part.lastValues !== undefined && sameValues(part.lastValues, snapshot.values)) return;
    part.lastValues = snapshot.values;
    const parsed = part.parse(snapshot);
    if (!parsed.ok) {
      this.handlers.refused(snapshot.revision, parsed.reason);
      return;
    }
    part.good = parsed.value;
    const current = this.current();
    if (current !== undefined) this.handlers.changed(current);
  }

  private release(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
}

/** Traefik routers as a part: always a config (bad routers skipped and reported). */
function parseRouters(handlers: SharedConfigHandlers): (snapshot: SharedSnapshot) => SharedParse {
  return (snapshot) => {
    const { routes, skipped } = parseTraefikRouters(snapshot);
    if (skipped.length > 0) handlers.skipped?.(snapshot.revision, skipped);
    return ok(Object.freeze({ prefix: snapshot.prefix, revision: snapshot.revision, routes, services: [] }));
  };
}

function sameValues(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
