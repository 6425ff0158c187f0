/**
 * The work behind `drover register --zookeeper`: keeps one ephemeral znode
 * `<prefix>/<service>/<id>` holding the member value (the JSON form of README "Registry keys"), tied to this
 * process's ZooKeeper session. If the process dies, the session expires (after `--ttl`, asked for
 * as the session timeout; the server clamps it) and ZooKeeper removes the znode. SIGINT/SIGTERM
 * delete it and close the session at once. With `--health` the znode exists only while the check
 * passes. After a session expiry a new session re-creates it; a znode left by an older session
 * of the same id (a restart before the old session expired) is replaced.
 */
import { createClient, CreateMode, Exception, type Client } from 'node-zookeeper-client';
import type { Logger } from '../../observability/log.js';
import { ErrorCodes } from '../../core/errors.js';
import { HealthGate } from './health-gate.js';
import { discard } from '../zookeeper.js';
import { memberValue, type RegisterOptions } from './options.js';

function call<T>(fn: (cb: (err: unknown, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => (err !== null && err !== undefined ? reject(err) : resolve(value))));
}

function code(err: unknown): number | undefined {
  return err instanceof Exception ? err.getCode() : undefined;
}

/** Keeps one ephemeral znode; `start()` connects, `stop()` removes it and closes the session. */
export class ZkRegistrar {
  readonly path: string;
  private readonly value: Buffer;
  private client: Client | undefined;
  private readonly health: HealthGate;
  private registered = false;
  private stopping = false;
  private busy: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: RegisterOptions & { readonly zookeeper: string },
    private readonly log: Logger,
  ) {
    const prefix = options.prefix.replace(/\/+$/, '');
    this.path = `${prefix}/${options.service}/${options.id}`;
    this.value = Buffer.from(memberValue(options));
    this.health = new HealthGate(options.healthUrl, options.healthIntervalMs, options.healthThreshold, log, () => this.kick());
  }

  start(): void {
    this.connect();
    this.health.start();
    // Reconcile now and then too: someone may have deleted the znode by hand.
    this.timer = setInterval(() => this.kick(), Math.max(1000, (this.options.ttlSeconds * 1000) / 3));
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.timer);
    this.health.stop();
    await this.busy;
    const client = this.client;
    if (client !== undefined && this.registered) {
      try {
        await call<void>((cb) => client.remove(this.path, -1, (e) => cb(e, undefined)));
        this.log.info({ path: this.path }, 'deregistered: znode removed');
      } catch (err) {
        if (code(err) !== Exception.NO_NODE) this.log.warn({ path: this.path, err: String(err), code: ErrorCodes.REGISTRY_UNREACHABLE }, 'could not remove the znode; it goes with the session');
      }
    }
    if (client !== undefined) discard(client);
  }

  private connect(): void {
    const client = createClient(this.options.zookeeper, { sessionTimeout: this.options.ttlSeconds * 1000, spinDelay: 500 });
    this.client = client;
    this.registered = false;
    client.on('connected', () => {
      if (this.client !== client) return;
      this.log.info({ servers: this.options.zookeeper, sessionTimeoutMs: client.getSessionTimeout() }, 'zookeeper connected');
      this.kick();
    });
    client.on('disconnected', () => this.client === client && this.log.warn({ code: ErrorCodes.REGISTRY_UNREACHABLE }, 'zookeeper disconnected'));
    client.on('expired', () => {
      if (this.client !== client || this.stopping) return;
      this.log.warn({ path: this.path }, 'zookeeper session expired (the znode went with it): new session');
      discard(client);
      this.connect();
    });
    client.connect();
  }

  private kick(): void {
    this.busy = this.busy.then(() => this.reconcile()).catch((err: unknown) => {
      this.log.warn({ path: this.path, err: String(err), code: ErrorCodes.REGISTRY_UNREACHABLE }, 'zookeeper registration failed; retrying');
    });
  }

  private async reconcile(): Promise<void> {
    const client = this.client;
    if (this.stopping || client === undefined || client.getState().name !== 'SYNC_CONNECTED') return;
    if (!this.health.healthy) {
      if (this.registered) {
        await call<void>((cb) => client.remove(this.path, -1, (e) => cb(code(e) === Exception.NO_NODE ? null : e, undefined)));
        this.registered = false;
        this.log.info({ path: this.path }, 'deregistered: health check failing');
      }
      return;
    }
    const stat = await call<{ ephemeralOwner: Buffer } | null>((cb) => client.exists(this.path, (e, s) => cb(e, s ?? null)));
    if (stat !== null && stat.ephemeralOwner.equals(client.getSessionId())) {
      this.registered = true;
      return;
    }
    if (stat !== null) {
      // A znode of an older session (or someone else's): ours replaces it.
      await call<void>((cb) => client.remove(this.path, -1, (e) => cb(code(e) === Exception.NO_NODE ? null : e, undefined)));
    }
    const parent = this.path.slice(0, this.path.lastIndexOf('/'));
    await call<string>((cb) => client.mkdirp(parent, cb));
    await call<string>((cb) => client.create(this.path, this.value, CreateMode.EPHEMERAL, cb));
    this.registered = true;
    this.log.info({ path: this.path, value: this.value.toString('utf8'), sessionTimeoutMs: client.getSessionTimeout() }, 'registered');
  }
}
