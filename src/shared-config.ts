/**
 * The shared config's life cycle in a running drover: follows `registry.etcd.config_prefix`
 * (restarting the follower when the file changes how etcd is reached), validates every snapshot
 * whole, keeps the last good one, and tells the start command when a new one is in force. The
 * start command then merges it with the local file and applies the result through the one
 * reload path (`Runtime.reload`), exactly like a file change.
 */
import type { ConfigIssue } from './errors.js';
import { parseSharedConfig, type SharedConfig, type SharedSnapshot } from './config/shared.js';
import type { DroverConfig, EtcdRegistryConfig } from './config/types.js';
import type { Logger } from './log.js';
import type { EtcdConfigFollower } from './registry/etcd-config.js';
import type { EtcdRegistryOptions } from './registry/etcd.js';

/** What the source reports to (the start command). Neither callback may throw. */
export interface SharedConfigHandlers {
  /** a new valid shared config is the last good one: merge and apply it */
  readonly changed: (shared: SharedConfig) => void;
  /** a snapshot failed validation: nothing changed; count and log it */
  readonly refused: (revision: string, issues: readonly ConfigIssue[]) => void;
}

/** Follows the shared config of whatever the current config names. */
export class SharedConfigSource {
  private follower: EtcdConfigFollower | undefined;
  private key = '';
  private prefix: string | undefined;
  private good: SharedConfig | undefined;
  private lastValues: ReadonlyMap<string, string> | undefined;
  private answered = false;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly logger: Logger,
    private readonly handlers: SharedConfigHandlers,
    private readonly options: EtcdRegistryOptions = {},
  ) {}

  /** The last good shared config (undefined: none yet, or none configured). */
  current(): SharedConfig | undefined {
    return this.good;
  }

  /** The prefix followed now (undefined: no shared config configured). */
  followedPrefix(): string | undefined {
    return this.prefix;
  }

  /** False while a shared config is configured but no valid one has been read yet. */
  ready(): boolean {
    return this.prefix === undefined || this.good !== undefined;
  }

  /**
   * Starts, restarts or stops following to match `config.registry.etcd`. A change of endpoints,
   * auth, TLS or prefix starts over (the last good config is dropped only when the prefix changed).
   */
  async sync(config: DroverConfig): Promise<void> {
    const etcd = config.registry.etcd;
    const prefix = etcd?.configPrefix;
    const key = etcd === undefined || prefix === undefined ? '' : JSON.stringify(etcd);
    if (key === this.key) return;
    this.key = key;
    const old = this.follower;
    this.follower = undefined;
    await old?.close().catch(() => undefined);
    if (prefix !== this.prefix) {
      this.good = undefined;
      this.lastValues = undefined;
      this.answered = false;
    }
    this.prefix = prefix;
    if (etcd === undefined || prefix === undefined) {
      this.release();
      return;
    }
    const { EtcdConfigFollower } = await import('./registry/etcd-config.js');
    const follower = new EtcdConfigFollower(
      { ...(etcd as EtcdRegistryConfig), configPrefix: prefix },
      this.logger,
      { snapshot: (s) => this.onSnapshot(follower, s), connected: (c) => this.logger.debug({ connected: c, prefix }, 'shared config connection') },
      this.options,
    );
    this.follower = follower;
    await follower.follow();
  }

  /**
   * Resolves once etcd has answered with a first snapshot (valid or not), or after `ms`;
   * true when it answered. Resolves at once without a shared config.
   */
  waitFirst(ms: number): Promise<boolean> {
    if (this.prefix === undefined || this.answered) return Promise.resolve(this.prefix === undefined || this.answered);
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
    const f = this.follower;
    this.follower = undefined;
    this.key = '';
    await f?.close().catch(() => undefined);
    this.release();
  }

  private onSnapshot(from: EtcdConfigFollower, snapshot: SharedSnapshot): void {
    if (from !== this.follower) return; // a follower being replaced
    this.answered = true;
    this.release();
    // A re-list after a reconnect usually finds what is already in force: nothing to do.
    if (this.lastValues !== undefined && sameValues(this.lastValues, snapshot.values)) return;
    this.lastValues = snapshot.values;
    const parsed = parseSharedConfig(snapshot);
    if (parsed.config === undefined) {
      this.handlers.refused(snapshot.revision, parsed.issues);
      return;
    }
    this.good = parsed.config;
    this.handlers.changed(parsed.config);
  }

  private release(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
}

function sameValues(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
