/**
 * The ZooKeeper registry (`registry.zookeeper`): members are the znodes
 * `<prefix>/<service>/<instance>` (ephemeral, so a dead registrant's session expiry removes
 * them), their data parsed like etcd values or as Nerve's JSON (src/registry/zookeeper-values.ts).
 *
 * ZooKeeper watches fire once. Every watch here is set by the very read that returns the state
 * it watches (getChildren / getData with a watcher), and a firing watch only triggers a new such
 * read: the read re-arms the watch and returns the state as of that moment, so no change made
 * between the firing and the re-arming is lost; the model is always diffed against the latest
 * read, never patched from the event itself (events carry no data anyway). Three levels:
 *
 *   getChildren(<prefix>, watch)            -> services added/removed
 *   getChildren(<prefix>/<svc>, watch)       -> instances added/removed
 *   getData(<prefix>/<svc>/<inst>, watch)    -> the member's value
 *
 * A child that vanishes between the list and its read (NO_NODE) is skipped. While ZooKeeper is
 * unreachable nothing is removed (the last members keep serving); node-zookeeper-client
 * reconnects on its own and re-sets the watches of the same session. A read that failed on a
 * lost connection, or a session that expired (its ephemeral znodes and watches are gone), makes
 * the registry walk the whole tree again once connected (a new client after expiry); the walk is
 * diffed against the model, so members that went away meanwhile are removed and new ones added.
 */
import { createClient, Exception, type Client, type Event } from 'node-zookeeper-client';
import type { ZooKeeperRegistryConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { callSink } from './sink-call.js';
import { ErrorCodes, errorMessage } from '../core/errors.js';
import type { MemberSpec } from '../../routing/types.js';
import type { Registry, RegistrySink } from './types.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { ZOOKEEPER_SOURCE, parseInstanceNode } from './zookeeper-values.js';

/** Tuning knobs; the defaults suit production, tests shorten them. */
export interface ZooKeeperRegistryOptions {
  /** retry delay after a failed walk while connected; default 100 ms doubling to 5 s */
  readonly backoff?: BackoffOptions;
  /** ms, longest random wait before retrying the server list (node-zookeeper-client spinDelay); default 1000 */
  readonly spinDelayMs?: number;
  /**
   * ms without a session after which the client is replaced by a new one (see
   * `armHandshakeWatchdog`); default the session timeout + 1000. Tests raise it to reach the
   * server's own expiry notice instead.
   */
  readonly noSessionReplaceMs?: number;
}

/**
 * Closes a client for good. `close()` only queues a close-session request, which a client that
 * is not connected never sends; its socket (possibly hung mid-handshake) is destroyed too.
 */
export function discard(client: Client): void {
  client.close();
  (client as unknown as { connectionManager?: { socket?: { destroy(): void } } }).connectionManager?.socket?.destroy();
}

/** A ZooKeeper error code, or undefined for other errors. */
function zkCode(err: unknown): number | undefined {
  return err instanceof Exception ? err.getCode() : undefined;
}

/** The ZooKeeper registry (README "Registries: ZooKeeper, DNS, SkyDNS"). `source` is `zookeeper`. */
export class ZooKeeperRegistry implements Registry {
  readonly source = ZOOKEEPER_SOURCE;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private sink: RegistrySink | undefined;
  private client: Client | undefined;
  /** bumped for every new client: callbacks of an older client are ignored */
  private gen = 0;
  /** service -> instance znode name -> last valid member (undefined: child known, no valid value yet) */
  private readonly model = new Map<string, Map<string, MemberSpec | undefined>>();
  /** reads in flight; when it drops to 0 during a walk, the walk is complete */
  private pending = 0;
  private walking = false;
  /** a read failed (connection loss, expiry): walk the tree again when connected */
  private needWalk = false;
  private synced = false;
  private connected: boolean | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** replaces a client that has had no session for longer than the session timeout */
  private handshakeTimer: NodeJS.Timeout | undefined;
  /** reads scheduled for the next turn, coalesced: `c:<path>` children, `d:<path>` data */
  private readonly scheduled = new Set<string>();

  constructor(
    private readonly config: ZooKeeperRegistryConfig,
    logger: Logger,
    private readonly options: ZooKeeperRegistryOptions = {},
  ) {
    this.log = logger.child({ component: 'registry', source: ZOOKEEPER_SOURCE });
    this.backoff = new Backoff(options.backoff);
  }

  /** Starts connecting; resolves at once (never rejects for an unreachable ZooKeeper: it retries). */
  async start(sink: RegistrySink): Promise<void> {
    if (this.sink !== undefined) throw new Error('ZooKeeperRegistry already started');
    this.sink = sink;
    this.setConnected(false);
    this.connect();
  }

  /** Closes the session and stops retrying. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.handshakeTimer);
    this.gen++;
    if (this.client !== undefined) discard(this.client);
    this.client = undefined;
  }

  /**
   * node-zookeeper-client has no deadline on the session handshake: a server that accepts the
   * TCP connection but never answers (one that is still loading its database after a restart)
   * hangs the client for good. Without a session for longer than the session timeout, that
   * session is dead on the server anyway, so a new client (new session, full re-walk) loses
   * nothing.
   */
  private armHandshakeWatchdog(): void {
    clearTimeout(this.handshakeTimer);
    const gen = this.gen;
    this.handshakeTimer = setTimeout(() => {
      if (gen !== this.gen || this.closed) return;
      this.log.warn({ code: ErrorCodes.REGISTRY_UNREACHABLE, servers: this.config.servers }, 'zookeeper: no session within the session timeout: starting a new one');
      this.needWalk = true;
      if (this.client !== undefined) discard(this.client);
      this.connect();
    }, this.options.noSessionReplaceMs ?? this.config.sessionTimeout + 1000);
    this.handshakeTimer.unref();
  }

  private connect(): void {
    const gen = ++this.gen;
    this.pending = 0; // the old client's reads never answer
    this.walking = false;
    const client = createClient(this.config.servers, {
      sessionTimeout: this.config.sessionTimeout,
      spinDelay: this.options.spinDelayMs ?? 1000,
    });
    this.client = client;
    client.on('state', (state) => this.log.debug({ state: String(state) }, 'zookeeper client state'));
    client.on('connected', () => {
      if (gen !== this.gen) return;
      clearTimeout(this.handshakeTimer);
      this.log.info({ servers: this.config.servers, sessionTimeoutMs: client.getSessionTimeout() }, 'zookeeper connected');
      this.setConnected(true);
      if (!this.synced || this.needWalk) this.walk();
    });
    client.on('disconnected', () => {
      if (gen !== this.gen) return;
      this.log.warn({ code: ErrorCodes.REGISTRY_UNREACHABLE, servers: this.config.servers }, 'zookeeper disconnected: keeping the last members');
      this.setConnected(false);
      this.armHandshakeWatchdog();
    });
    client.on('expired', () => {
      if (gen !== this.gen || this.closed) return;
      // The session's watches are gone: a new client (new session) walks the tree again.
      this.log.warn({ code: ErrorCodes.REGISTRY_UNREACHABLE }, 'zookeeper session expired: reconnecting and re-listing');
      this.setConnected(false);
      this.needWalk = true;
      discard(client);
      this.connect();
    });
    client.on('authenticationFailed', () => {
      if (gen !== this.gen) return;
      this.log.error({ code: ErrorCodes.REGISTRY_UNREACHABLE }, 'zookeeper authentication failed');
      this.setConnected(false);
    });
    client.connect();
    this.armHandshakeWatchdog();
  }

  /** Reads the whole tree again (first sync, after expiry or failed reads); diffs against the model. */
  private walk(): void {
    this.walking = true;
    this.needWalk = false;
    this.readRoot(true);
  }

  private path(...segs: string[]): string {
    return [this.config.prefix === '/' ? '' : this.config.prefix, ...segs].join('/');
  }

  /** One request started; `done` runs its callback only if its client is still current. */
  private track<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    const gen = this.gen;
    this.pending++;
    return (...args: A) => {
      if (gen !== this.gen) return;
      this.pending--;
      try {
        fn(...args);
      } catch (err) {
        this.log.error({ err }, 'zookeeper registry handling failed; re-listing');
        this.failed(err);
      }
      if (this.pending === 0 && this.walking) this.walkDone();
    };
  }

  /** A watcher for this client: a firing watch schedules one fresh read of the same path. */
  private watcher(kind: 'c' | 'd', path: string): (event: Event) => void {
    const gen = this.gen;
    return () => {
      if (gen !== this.gen || this.closed) return;
      const key = `${kind}:${path}`;
      if (this.scheduled.has(key)) return;
      this.scheduled.add(key);
      setImmediate(() => {
        this.scheduled.delete(key);
        if (gen !== this.gen || this.closed) return;
        if (path === this.config.prefix) this.readRoot(false);
        else if (kind === 'c') this.readService(path.slice(path.lastIndexOf('/') + 1), false);
        else {
          const parts = path.split('/');
          this.readInstance(parts[parts.length - 2] ?? '', parts[parts.length - 1] ?? '');
        }
      });
    };
  }

  private readRoot(walk: boolean): void {
    const client = this.client;
    if (client === undefined) return;
    const root = this.config.prefix;
    client.getChildren(
      root,
      this.watcher('c', root),
      this.track((err: unknown, children: string[]) => {
        if (err !== null && err !== undefined) {
          if (zkCode(err) !== Exception.NO_NODE) return this.failed(err);
          // No prefix yet: no services. Watch for its creation.
          this.watchCreation(client, root, () => this.readRoot(false));
          children = [];
        }
        const now = new Set(children);
        for (const service of [...this.model.keys()]) if (!now.has(service)) this.dropService(service);
        for (const service of children) {
          const known = this.model.has(service);
          if (!known) this.model.set(service, new Map());
          if (!known || walk) this.readService(service, walk);
        }
      }),
    );
  }

  /**
   * A listing found no znode at `path`, and a getChildren that finds none sets no watch: an
   * exists watch waits for its creation (its firing lists `path` again, as any children watch
   * does); `reread` runs at once if it was created in between.
   */
  private watchCreation(client: Client, path: string, reread: () => void): void {
    client.exists(
      path,
      this.watcher('c', path),
      this.track((e: unknown, stat: unknown) => {
        if (e !== null && e !== undefined) this.failed(e);
        else if (stat !== null && stat !== undefined) reread();
      }),
    );
  }

  private readService(service: string, walk: boolean): void {
    const client = this.client;
    if (client === undefined || !this.model.has(service)) return;
    const p = this.path(service);
    client.getChildren(
      p,
      this.watcher('c', p),
      this.track((err: unknown, children: string[]) => {
        const instances = this.model.get(service);
        if (instances === undefined) return; // removed meanwhile
        if (err !== null && err !== undefined) {
          if (zkCode(err) !== Exception.NO_NODE) return this.failed(err);
          // The service znode vanished: the root watch drops it too, unless it is created again
          // before the root is read (the service then looks unchanged there).
          this.watchCreation(client, p, () => this.readService(service, false));
          children = [];
        }
        const now = new Set(children);
        for (const name of [...instances.keys()]) if (!now.has(name)) this.dropInstance(service, name);
        for (const name of children) {
          const known = instances.has(name);
          if (!known) instances.set(name, undefined);
          if (!known || walk) this.readInstance(service, name);
        }
      }),
    );
  }

  private readInstance(service: string, name: string): void {
    const client = this.client;
    if (client === undefined || this.model.get(service)?.has(name) !== true) return;
    const p = this.path(service, name);
    client.getData(
      p,
      this.watcher('d', p),
      this.track((err: unknown, data: Buffer | undefined) => {
        const instances = this.model.get(service);
        if (instances === undefined || !instances.has(name)) return;
        if (err !== null && err !== undefined) {
          // Gone between the list and the read: skipped (the children watch has fired too).
          if (zkCode(err) === Exception.NO_NODE) return this.dropInstance(service, name);
          return this.failed(err);
        }
        const parsed = parseInstanceNode(this.config.layout, name, data?.toString('utf8') ?? '');
        const sink = this.requireSink();
        if (!parsed.ok) {
          // Keeps the last valid member of this znode, if any: a typo never empties a pool.
          this.safely(() => sink.invalidEntry(ZOOKEEPER_SOURCE, p, parsed.reason));
          return;
        }
        const prev = instances.get(name);
        instances.set(name, parsed.value);
        if (prev !== undefined && JSON.stringify(prev) === JSON.stringify(parsed.value)) return; // re-read, unchanged
        this.safely(() => {
          sink.countEvent(ZOOKEEPER_SOURCE, 'put');
          sink.put(ZOOKEEPER_SOURCE, service, parsed.value);
        });
      }),
    );
  }

  private dropInstance(service: string, name: string): void {
    const instances = this.model.get(service);
    if (instances === undefined || !instances.has(name)) return;
    const had = instances.get(name);
    instances.delete(name);
    if (had === undefined) return;
    const sink = this.requireSink();
    this.safely(() => {
      sink.countEvent(ZOOKEEPER_SOURCE, 'delete');
      sink.delete(ZOOKEEPER_SOURCE, service, had.id);
    });
  }

  private dropService(service: string): void {
    const instances = this.model.get(service);
    if (instances === undefined) return;
    for (const name of [...instances.keys()]) this.dropInstance(service, name);
    this.model.delete(service);
  }

  /** A read failed for another reason than NO_NODE: keep everything, walk again later. */
  private failed(err: unknown): void {
    this.needWalk = true;
    const code = zkCode(err);
    const lost = code === Exception.CONNECTION_LOSS || code === Exception.SESSION_EXPIRED;
    this.log[lost ? 'debug' : 'warn']({ code: ErrorCodes.REGISTRY_UNREACHABLE, err: errorMessage(err) }, 'zookeeper read failed: keeping the last members');
    // A lost connection walks on reconnect; any other failure retries after a backoff.
    if (!lost && this.retryTimer === undefined && !this.closed) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        if (this.needWalk && this.connected === true) this.walk();
      }, this.backoff.next());
      this.retryTimer.unref();
    }
  }

  private walkDone(): void {
    this.walking = false;
    if (this.needWalk) return; // part of it failed: the next connect or retry walks again
    this.backoff.reset();
    const sink = this.requireSink();
    const members = [...this.model.values()].reduce((n, m) => n + [...m.values()].filter((x) => x !== undefined).length, 0);
    this.log.info({ services: this.model.size, members, resync: this.synced }, 'zookeeper tree listed');
    this.safely(() => {
      // The whole view once more (the sink diffs it): after a config reload this registry is a new
      // instance, and members its predecessor reported that are gone now must go too.
      sink.replaceAll(ZOOKEEPER_SOURCE, this.snapshot());
      if (this.synced) sink.countEvent(ZOOKEEPER_SOURCE, 'resync');
      else sink.markSynced(ZOOKEEPER_SOURCE);
    });
    this.synced = true;
  }

  private snapshot(): Map<string, MemberSpec[]> {
    const out = new Map<string, MemberSpec[]>();
    for (const [service, instances] of this.model) {
      const list = [...instances.values()].filter((m): m is MemberSpec => m !== undefined);
      if (list.length > 0) out.set(service, list);
    }
    return out;
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    const sink = this.sink;
    if (sink !== undefined) this.safely(() => sink.setConnected(ZOOKEEPER_SOURCE, connected));
  }

  private safely(fn: () => void): void {
    callSink(this.log, fn);
  }

  private requireSink(): RegistrySink {
    if (this.sink === undefined) throw new Error('ZooKeeperRegistry not started');
    return this.sink;
  }
}
