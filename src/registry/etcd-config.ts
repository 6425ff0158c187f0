/**
 * Follows `registry.etcd.config_prefix` with the etcd registry's own loop (list at revision R,
 * watch from R + 1, reconnect and resume, re-list after compaction or a replaced store; same
 * endpoints, auth and TLS) and hands on the whole state under the prefix as one snapshot per
 * change: after a full list, and after each watch response (every event of one revision, i.e.
 * one transaction, arrives in one response). Validation and merging are the consumer's
 * (`src/config/shared.ts`); this module only keeps the key -> value map.
 */
import type { EtcdRegistryConfig } from '../config/types.js';
import type { SharedSnapshot } from '../config/shared.js';
import type { Logger } from '../observability/log.js';
import { EtcdRegistry, type EtcdRegistryOptions, type WatchEvent } from './etcd.js';

/** What the follower reports to. */
export interface SharedConfigListener {
  /** The state under the prefix changed (or was listed). Called in revision order; must not throw. */
  snapshot(snapshot: SharedSnapshot): void;
  /** The connection to etcd went up or down. */
  connected?(connected: boolean): void;
}

/** Follows one config prefix; `follow()` starts, `close()` stops (inherited). */
export class EtcdConfigFollower extends EtcdRegistry {
  private readonly values = new Map<string, string>();
  private readonly prefix: string;

  constructor(
    config: EtcdRegistryConfig & { readonly configPrefix: string },
    logger: Logger,
    private readonly listener: SharedConfigListener,
    options?: EtcdRegistryOptions,
  ) {
    super(config, logger, options);
    this.prefix = config.configPrefix;
  }

  /** Connects and starts following; rejects only for a local problem (an unreadable TLS file). */
  async follow(): Promise<void> {
    await this.open();
  }

  protected override watchedPrefix(): string {
    return this.prefix;
  }

  protected override applyList(kvs: readonly (readonly [string, string])[], revision: bigint, resync: boolean): void {
    this.values.clear();
    for (const [k, v] of kvs) this.values.set(k, v);
    this.log.info({ prefix: this.prefix, revision: String(revision), keys: kvs.length, resync }, 'shared config listed');
    this.emit(revision);
  }

  protected override applyEvents(events: readonly WatchEvent[]): void {
    let revision = 0n;
    for (const ev of events) {
      const key = ev.kv.key.toString('utf8');
      if (ev.type === 'Delete') this.values.delete(key);
      else this.values.set(key, ev.kv.value.toString('utf8'));
      const rev = BigInt(ev.kv.mod_revision);
      if (rev > revision) revision = rev;
    }
    this.emit(revision);
  }

  protected override reportConnected(connected: boolean): void {
    const listener = this.listener;
    if (listener.connected !== undefined) this.safely(() => listener.connected?.(connected));
  }

  private emit(revision: bigint): void {
    const snapshot: SharedSnapshot = { prefix: this.prefix, revision: String(revision), values: new Map(this.values) };
    this.safely(() => this.listener.snapshot(snapshot));
  }
}
