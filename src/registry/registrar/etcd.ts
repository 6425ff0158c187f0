/**
 * The work behind `drover register` (see src/commands/register.ts): keeps one instance key on an
 * etcd lease, re-creates it when lost, and follows the instance's health check. Kept apart from
 * the command so the CLI loads the etcd client only when this command runs.
 */
import { EtcdLeaseInvalidError, castGrpcError, type Etcd3 } from 'etcd3';
import type { Logger } from '../../observability/log.js';
import { ErrorCodes, errorMessage } from '../../core/errors.js';
import { createEtcdClient } from '../etcd-client.js';
import { HealthGate } from './health-gate.js';
import { memberValue, type RegisterOptions } from './options.js';

/**
 * Keeps one instance key in etcd. `start()` begins the loops; `stop()` revokes the lease.
 * Reconciles every TTL/3 (at least 500 ms): keepalive, and re-put when the key or lease is gone.
 */
export class Registrar {
  readonly key: string;
  private readonly value: string;
  private readonly client: Etcd3;
  private leaseId: string | undefined;
  private readonly health: HealthGate;
  private stopping = false;
  private busy: Promise<void> = Promise.resolve();
  private pending = false;
  private lastError: string | undefined;
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly options: RegisterOptions,
    private readonly log: Logger,
    client?: Etcd3,
  ) {
    this.key = `${options.prefix}${options.service}/${options.id}`;
    this.value = memberValue(options);
    this.client = client ?? createEtcdClient({ endpoints: options.endpoints, callTimeoutMs: 3000 });
    this.health = new HealthGate(options.healthUrl, options.healthIntervalMs, options.healthThreshold, log, () => this.kick());
  }

  /** Starts health probing (if any) and the reconcile loop; returns at once. */
  start(): void {
    const tickMs = Math.max(500, Math.floor((this.options.ttlSeconds * 1000) / 3));
    this.timers.push(setInterval(() => this.kick(), tickMs));
    this.health.start();
    if (this.options.healthUrl === undefined) this.kick();
  }

  /** Stops the loops, revokes the lease (the key goes at once) and closes the client. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.health.stop();
    for (const t of this.timers) clearInterval(t);
    await this.busy;
    if (this.leaseId !== undefined) {
      try {
        await this.revoke(this.leaseId);
        this.log.info({ key: this.key }, 'deregistered: lease revoked');
      } catch (err) {
        this.log.warn({ key: this.key, err: errorMessage(err), code: ErrorCodes.REGISTRY_UNREACHABLE }, 'could not revoke the lease; the key expires with its TTL');
      }
    }
    this.client.close();
  }

  /** Schedules one reconcile; at most one runs and one waits. */
  private kick(): void {
    if (this.stopping || this.pending) return;
    this.pending = true;
    this.busy = this.busy.then(async () => {
      this.pending = false;
      if (this.stopping) return;
      try {
        await this.reconcile();
        if (this.lastError !== undefined) this.log.info({ key: this.key }, 'etcd reachable again');
        this.lastError = undefined;
      } catch (err) {
        const msg = errorMessage(err);
        // Log the first failure of an outage, not every retry.
        if (this.lastError === undefined) this.log.warn({ key: this.key, err: msg, code: ErrorCodes.REGISTRY_UNREACHABLE }, 'etcd unreachable; retrying');
        this.lastError = msg;
      }
    });
  }

  private async reconcile(): Promise<void> {
    if (!this.health.healthy) {
      if (this.leaseId !== undefined) {
        await this.revoke(this.leaseId);
        this.leaseId = undefined;
        this.log.info({ key: this.key }, 'deregistered: health check failing');
      }
      return;
    }
    if (this.leaseId !== undefined) {
      const ttl = await this.keepAliveOnce(this.leaseId);
      if (ttl <= 0) {
        this.log.warn({ key: this.key, lease: this.leaseId }, 'lease lost (expired or revoked); re-creating');
        this.leaseId = undefined;
      } else {
        const got = await this.client.get(this.key).exec();
        const kv = got.kvs[0];
        if (kv !== undefined && kv.value.toString('utf8') === this.value && kv.lease === this.leaseId) return;
        await this.client.put(this.key).value(this.value).lease(this.leaseId).exec();
        this.log.warn({ key: this.key }, 'key was missing or changed; put it back');
        return;
      }
    }
    const grant = await this.client.leaseClient.leaseGrant({ TTL: this.options.ttlSeconds });
    if (this.stopping) {
      await this.revoke(grant.ID).catch(() => undefined);
      return;
    }
    this.leaseId = grant.ID;
    await this.client.put(this.key).value(this.value).lease(grant.ID).exec();
    this.log.info({ key: this.key, value: this.value, lease: grant.ID, ttl: this.options.ttlSeconds }, 'registered');
  }

  /** One keepalive round trip; resolves with the lease's new TTL in seconds (<= 0: gone). */
  private async keepAliveOnce(id: string): Promise<number> {
    const stream = await this.client.leaseClient.leaseKeepAlive();
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error('lease keepalive timed out')), 3000);
      const done = (err: Error | undefined, ttl?: number): void => {
        clearTimeout(timer);
        try {
          stream.end();
        } catch {
          // already closed
        }
        if (err !== undefined) reject(err);
        else resolve(ttl ?? 0);
      };
      stream.on('data', (res) => done(undefined, Number(res.TTL)));
      stream.on('error', (err) => done(castGrpcError(err)));
      stream.write({ ID: id });
    });
  }

  private async revoke(id: string): Promise<void> {
    try {
      await this.client.leaseClient.leaseRevoke({ ID: id });
    } catch (err) {
      if (!(err instanceof EtcdLeaseInvalidError)) throw err;
    }
  }
}
