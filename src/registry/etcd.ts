/**
 * The etcd v3 registry: lists the prefix once, then follows it with a watch, and reports members
 * to a RegistrySink (the client it watches through is built by ./etcd-client.ts).
 *
 * Why the watch is driven by hand (a raw gRPC Watch stream) instead of etcd3's `Watcher`: the
 * library's watcher reconnects on its own, advances its resume revision from the *creation*
 * header (events between the two can be lost if the stream drops again), and throws from stream
 * handlers in some cancel races. Here one loop owns the whole life cycle:
 *
 *   list (one range read at revision R) -> replaceAll -> watch from R+1
 *     stream lost            -> connected=false, nothing removed, resume from last revision + 1
 *     watch compacted        -> full re-list, replaceAll (the sink diffs), watch again
 *     store went backwards   -> (revision or raft term lower than seen: etcd wiped/restored) re-list
 *     re-list fails          -> retry with backoff; replaceAll is never called with a failed list
 *
 * Every call carries a deadline (etcd3 ignores `dialTimeout`), gRPC keepalive detects a frozen
 * peer, and no promise rejection or 'error' event escapes this module.
 */
import { Range, castGrpcError, EtcdInvalidAuthTokenError, type Etcd3, type IWatchResponse, type IResponseHeader } from 'etcd3';
import type { EtcdRegistryConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { callSink } from './sink-call.js';
import { DroverError, ErrorCodes, errorMessage } from '../core/errors.js';
import type { RandomSource } from '../../routing/types.js';
import type { Registry, RegistrySink } from './types.js';
import { Backoff, sleep, type BackoffOptions } from './backoff.js';
import { ETCD_SOURCE, type KeyspaceModel, type ModelEffect } from './etcd-values.js';
import { assembleKeyspace } from './keyspace.js';
import { RemovalGuard, type HeldMember } from './removal-guard.js';
import { createEtcdClient, resolveEtcdConnection } from './etcd-client.js';

/** Tuning knobs of EtcdRegistry; the defaults suit production, tests shorten them. */
export interface EtcdRegistryOptions {
  /** reconnect / re-list backoff; default 100 ms doubling to 5 s, with jitter */
  readonly backoff?: BackoffOptions;
  /** jitter source; default Math.random */
  readonly random?: RandomSource;
  /** ms, deadline of the list and of watch creation; default 5000 */
  readonly callTimeoutMs?: number;
  /** ms, gRPC keepalive interval; default 10000 (see EtcdConnectionOptions in ./etcd-client.ts) */
  readonly keepaliveTimeMs?: number;
  /** ms, gRPC keepalive answer timeout; default 5000 */
  readonly keepaliveTimeoutMs?: number;
  /** where `usernameEnv` / `passwordEnv` are looked up; default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

/** How a watch session ended, and what the loop does next. */
interface WatchEnd {
  /** list the prefix again before watching (compaction, store went backwards, cancel) */
  readonly relist: boolean;
  readonly reason: string;
}

/** Resolves like `p`, or rejects after `ms`; `onLate` receives a value that arrives too late. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string, onLate?: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(new DroverError(ErrorCodes.REGISTRY_UNREACHABLE, `${what} timed out after ${ms} ms`));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        if (timedOut) onLate?.(v);
        else resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (!timedOut) reject(err);
      },
    );
  });
}

/** One event of a watch response. */
export type WatchEvent = NonNullable<IWatchResponse['events']>[number];

/** The etcd v3 registry (README "Configuration", "Registry keys" and "Metrics"). `source` is `etcd`. */
export class EtcdRegistry implements Registry {
  readonly source = ETCD_SOURCE;

  protected readonly log: Logger;
  private readonly backoff: Backoff;
  private readonly callTimeoutMs: number;
  private readonly abort = new AbortController();
  private client: Etcd3 | undefined;
  private sink: RegistrySink | undefined;
  private loop: Promise<void> | undefined;
  private model: KeyspaceModel | undefined;
  /** highest store revision whose changes under the prefix have all been applied */
  private lastRevision = 0n;
  private highestTerm = 0n;
  private synced = false;
  private connected: boolean | undefined;
  private warnedUnreachable = false;
  private stopWatch: (() => void) | undefined;
  private closed = false;
  /** `min_members_ratio`: mass removals held back (see ./removal-guard.ts) */
  private readonly guard: RemovalGuard;

  constructor(
    protected readonly config: EtcdRegistryConfig,
    logger: Logger,
    private readonly options: EtcdRegistryOptions = {},
  ) {
    // the one `component` of its lines: the caller adds none (pino repeats a key, never replaces it)
    this.log = logger.child({ component: 'registry', source: ETCD_SOURCE });
    this.backoff = new Backoff({ ...options.backoff, ...(options.random !== undefined ? { random: options.random } : {}) });
    this.callTimeoutMs = options.callTimeoutMs ?? 5000;
    this.guard = new RemovalGuard(config.minMembersRatio);
  }

  /**
   * Resolves as soon as the loop is running; the first list may still be retrying. Rejects only
   * for a local problem (an unreadable TLS file), never because etcd is unreachable.
   */
  async start(sink: RegistrySink): Promise<void> {
    this.sink = sink;
    await this.open();
  }

  /**
   * The key range this follows. Subclasses that follow another prefix with the same list/watch
   * loop (the shared config: `./etcd-config.ts`) override it with the hooks below.
   */
  protected watchedPrefix(): string {
    return this.config.prefix;
  }

  /** Connects and starts the list/watch loop (what `start` does once it has a sink). */
  protected async open(): Promise<void> {
    if (this.loop !== undefined) throw new Error('EtcdRegistry already started');
    const conn = await resolveEtcdConnection(this.config, this.options.env);
    for (const w of conn.warnings) this.log.warn({ code: ErrorCodes.REGISTRY_UNREACHABLE }, w);
    this.client = createEtcdClient({
      ...conn,
      callTimeoutMs: this.callTimeoutMs,
      ...(this.options.keepaliveTimeMs !== undefined ? { keepaliveTimeMs: this.options.keepaliveTimeMs } : {}),
      ...(this.options.keepaliveTimeoutMs !== undefined ? { keepaliveTimeoutMs: this.options.keepaliveTimeoutMs } : {}),
    });
    this.setConnected(false);
    this.loop = this.run().catch((err: unknown) => this.log.error({ err }, 'etcd registry loop stopped unexpectedly'));
  }

  /** Cancels the watch, stops retrying and closes the client. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.stopWatch?.();
    this.client?.close();
    await this.loop;
  }

  private async run(): Promise<void> {
    let needList = true;
    while (!this.closed) {
      try {
        if (needList) {
          await this.list();
          needList = false;
        }
        if (this.closed) break;
        const end = await this.watch();
        if (this.closed) break;
        needList = end.relist;
        this.setConnected(false);
        this.log.warn({ code: ErrorCodes.REGISTRY_UNREACHABLE, relist: end.relist, revision: String(this.lastRevision) }, `etcd watch ended: ${end.reason}`);
      } catch (err) {
        if (this.closed) break;
        // Warn once per outage (connected -> not), then keep the retries at debug level.
        const level = this.connected === false && this.warnedUnreachable ? 'debug' : 'warn';
        this.warnedUnreachable = true;
        this.setConnected(false);
        this.log[level]({ code: ErrorCodes.REGISTRY_UNREACHABLE, err: errorMessage(err), endpoints: this.config.endpoints }, 'etcd unreachable; retrying');
        // A token that etcd stopped accepting is only refreshed by a unary call: re-list.
        if (err instanceof EtcdInvalidAuthTokenError) needList = true;
      }
      await sleep(this.backoff.next(), this.abort.signal);
    }
  }

  /** One range read of the prefix; replaceAll only after it fully succeeded. */
  private async list(): Promise<void> {
    const client = this.requireClient();
    const res = await withTimeout(
      client.getAll().prefix(this.watchedPrefix()).exec(),
      this.callTimeoutMs * 2,
      'etcd list',
    );
    if (this.closed) return;
    const revision = BigInt(res.header.revision);
    const kvs = res.kvs.map((kv) => [kv.key.toString('utf8'), kv.value.toString('utf8')] as const);
    this.lastRevision = revision;
    this.highestTerm = BigInt(res.header.raft_term);
    this.applyList(kvs, revision, this.synced);
    this.synced = true;
    this.setConnected(true);
  }

  /**
   * A full list at `revision` succeeded: replace everything known (members: the sink diffs).
   * `resync`: not the first list (after compaction, a wiped store, an auth token refresh).
   */
  protected applyList(kvs: readonly (readonly [string, string])[], revision: bigint, resync: boolean): void {
    const { model, services, invalid } = assembleKeyspace(this.config.layout, this.config.prefix, kvs, ETCD_SOURCE);
    const sink = this.requireSink();
    this.model = model;
    const plan = this.guard.planList(services, !resync);
    if (plan.guarded !== undefined) this.guarded(plan.guarded, revision, 're-list');
    this.guard.replaced(plan.services);
    this.safely(() => {
      for (const i of invalid) sink.invalidEntry(ETCD_SOURCE, i.key, i.reason);
      sink.replaceAll(ETCD_SOURCE, plan.services);
      if (resync) sink.countEvent(ETCD_SOURCE, 'resync');
      else sink.markSynced(ETCD_SOURCE);
    });
    const count = [...services.values()].reduce((n, l) => n + l.length, 0);
    this.log.info({ revision: String(revision), services: services.size, members: count, resync }, 'etcd prefix listed');
  }

  /** Watches from lastRevision + 1 until the stream ends; never rejects once the stream exists. */
  private async watch(): Promise<WatchEnd> {
    const client = this.requireClient();
    const stream = await withTimeout(client.watchClient.watch(), this.callTimeoutMs, 'etcd watch stream', (late) => late.cancel());
    const range = Range.prefix(this.watchedPrefix());
    return new Promise<WatchEnd>((resolve) => {
      let settled = false;
      const finish = (end: WatchEnd): void => {
        if (settled) return;
        settled = true;
        clearTimeout(createTimer);
        this.stopWatch = undefined;
        try {
          stream.cancel();
        } catch {
          // already gone
        }
        resolve(end);
      };
      this.stopWatch = () => finish({ relist: false, reason: 'closed' });
      const createTimer = setTimeout(
        () => finish({ relist: false, reason: `watch not created within ${this.callTimeoutMs} ms` }),
        this.callTimeoutMs,
      );
      stream.on('error', (err: Error) => {
        const cast = castGrpcError(err);
        finish({ relist: cast instanceof EtcdInvalidAuthTokenError, reason: cast.message });
      });
      stream.on('end', () => finish({ relist: false, reason: 'stream ended by the server' }));
      stream.on('data', (res: IWatchResponse) => {
        if (settled) return;
        // Created: the creation deadline no longer applies (the stream then lives as long as etcd does).
        if (res.created) clearTimeout(createTimer);
        try {
          const end = this.onWatchResponse(res);
          if (end !== undefined) finish(end);
        } catch (err) {
          // A bug in our handling must not leave the pools stale: start over from a full list.
          this.log.error({ err }, 'etcd watch handling failed; re-listing');
          finish({ relist: true, reason: errorMessage(err) });
        }
      });
      if (this.closed) return finish({ relist: false, reason: 'closed' });
      stream.write({
        create_request: {
          key: range.start,
          range_end: range.end,
          start_revision: String(this.lastRevision + 1n),
          progress_notify: true,
        },
      });
    });
  }

  /** Handles one watch response; returns how the session ends, or undefined to keep going. */
  private onWatchResponse(res: IWatchResponse): WatchEnd | undefined {
    if (res.canceled) {
      const compact = res.compact_revision !== undefined && res.compact_revision !== '0' && res.compact_revision !== '';
      return compact
        ? { relist: true, reason: `revision ${this.lastRevision + 1n} was compacted (oldest kept: ${res.compact_revision})` }
        : { relist: true, reason: `watch canceled by etcd: ${res.cancel_reason || 'no reason given'}` };
    }
    const backwards = this.wentBackwards(res.header);
    if (backwards !== undefined) return { relist: true, reason: backwards };
    if (res.created) {
      this.backoff.reset();
      this.setConnected(true);
      this.log.info({ from: String(this.lastRevision + 1n) }, 'etcd watch established');
      return undefined;
    }
    const events = res.events ?? [];
    if (events.length > 0) this.applyEvents(events);
    else this.onProgress();
    for (const ev of events) {
      const rev = BigInt(ev.kv.mod_revision);
      if (rev > this.lastRevision) this.lastRevision = rev;
    }
    // A response without events is a progress notification: everything up to its header
    // revision has been delivered. With events, resume after the last one only.
    if (events.length === 0) {
      const rev = BigInt(res.header.revision);
      if (rev > this.lastRevision) this.lastRevision = rev;
    }
    return undefined;
  }

  /**
   * The events of one watch response, in order. etcd delivers every event of one revision (a
   * transaction) in the same response, so a subclass that must apply a change whole can do it here.
   */
  protected applyEvents(events: readonly WatchEvent[]): void {
    const model = this.requireModel();
    const sink = this.requireSink();
    // etcd delivers every event of one revision in one response (a response may hold several
    // revisions when catching up): the guard judges each revision whole.
    let effects: ModelEffect[] = [];
    let revision: string | undefined;
    for (const ev of events) {
      if (revision !== undefined && ev.kv.mod_revision !== revision) {
        this.applyRevision(effects, BigInt(revision));
        effects = [];
      }
      revision = ev.kv.mod_revision;
      const key = ev.kv.key.toString('utf8');
      effects.push(...(ev.type === 'Delete' ? model.delete(key) : model.put(key, ev.kv.value.toString('utf8'))));
      this.safely(() => sink.countEvent(ETCD_SOURCE, ev.type === 'Delete' ? 'delete' : 'put'));
    }
    if (revision !== undefined) this.applyRevision(effects, BigInt(revision));
  }

  /** The effects of one etcd revision, through the mass-removal guard. */
  private applyRevision(effects: readonly ModelEffect[], revision: bigint): void {
    const sink = this.requireSink();
    const plan = this.guard.planEvents(effects);
    if (plan.guarded !== undefined) this.guarded(plan.guarded, revision, 'revision');
    for (const e of plan.apply) {
      this.safely(() => {
        if (e.type === 'put') {
          this.guard.put(e.service, e.member);
          sink.put(ETCD_SOURCE, e.service, e.member);
        } else if (e.type === 'delete') {
          this.guard.delete(e.service, e.id);
          sink.delete(ETCD_SOURCE, e.service, e.id);
        } else sink.invalidEntry(ETCD_SOURCE, e.key, e.reason);
      });
    }
    this.applyConfirmed(plan.confirm, 'a later revision');
  }

  /** A progress notification (no change for a while): held removals are confirmed. */
  protected onProgress(): void {
    this.applyConfirmed(this.guard.confirmHeld(), 'a progress notification');
  }

  private applyConfirmed(confirmed: readonly HeldMember[], by: string): void {
    if (confirmed.length === 0) return;
    const sink = this.requireSink();
    for (const h of confirmed) {
      this.guard.delete(h.service, h.member.id);
      this.safely(() => sink.delete(ETCD_SOURCE, h.service, h.member.id));
    }
    this.log.warn({ code: ErrorCodes.REGISTRY_GUARDED, removed: confirmed.length }, `held etcd removals confirmed by ${by}: applied`);
  }

  /** Logs (once per guarded revision or list) and counts a change the guard held back. */
  private guarded(g: { readonly removed: number; readonly total: number }, revision: bigint, what: string): void {
    this.log.warn(
      { code: ErrorCodes.REGISTRY_GUARDED, revision: String(revision), removed: g.removed, members: g.total, min_members_ratio: this.config.minMembersRatio },
      `etcd ${what} would remove ${g.removed} of ${g.total} members (fewer than min_members_ratio would remain): kept the last set; the removals apply once a later revision that puts none of them back confirms them`,
    );
    const sink = this.requireSink();
    this.safely(() => sink.guardedChange?.(ETCD_SOURCE));
  }

  /**
   * A store revision or raft term lower than one already seen means etcd was wiped or restored
   * from a backup: resume points are meaningless, so re-list. (A lagging member can trigger this
   * too; a re-list is harmless then.)
   */
  private wentBackwards(header: IResponseHeader | undefined): string | undefined {
    if (header === undefined) return undefined;
    const rev = BigInt(header.revision || '0');
    const term = BigInt(header.raft_term || '0');
    if (rev > 0n && rev < this.lastRevision) return `etcd revision went backwards (${rev} < ${this.lastRevision}): store was replaced`;
    if (term > 0n && term < this.highestTerm) return `etcd raft term went backwards (${term} < ${this.highestTerm}): store was replaced`;
    if (term > this.highestTerm) this.highestTerm = term;
    return undefined;
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    if (connected) this.warnedUnreachable = false;
    this.reportConnected(connected);
  }

  /** The connection went up or down (members: `drover_registry_connected{source="etcd"}`). */
  protected reportConnected(connected: boolean): void {
    const sink = this.sink;
    if (sink !== undefined) this.safely(() => sink.setConnected(ETCD_SOURCE, connected));
  }

  /** A throwing sink (or a subclass's handler) is a bug elsewhere; log it rather than let it stop the loop. */
  protected safely(fn: () => void): void {
    callSink(this.log, fn);
  }

  private requireClient(): Etcd3 {
    if (this.client === undefined) throw new Error('EtcdRegistry not started');
    return this.client;
  }

  private requireSink(): RegistrySink {
    if (this.sink === undefined) throw new Error('EtcdRegistry not started');
    return this.sink;
  }

  private requireModel(): KeyspaceModel {
    if (this.model === undefined) throw new Error('EtcdRegistry has not listed yet');
    return this.model;
  }
}
