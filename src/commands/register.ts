/**
 * `drover register`: the sidecar that announces one instance in etcd (what Nerve/registrator
 * did). It puts `<prefix><service>/<id>` = JSON member value on a lease of `--ttl`, keeps the
 * lease alive, and re-creates key and lease whenever they are gone (lease expired while etcd was
 * unreachable, etcd wiped, key deleted by hand). With `--health` the key exists only while the
 * check passes (removed after 2 consecutive failures, put back after 2 passes). SIGINT/SIGTERM
 * revoke the lease, so the key disappears at once, and exit 0.
 */
import os from 'node:os';
import type { Command } from 'commander';
import { EtcdLeaseInvalidError, castGrpcError, type Etcd3 } from 'etcd3';
import { createLogger, type Logger } from '../log.js';
import { ErrorCodes } from '../errors.js';
import { createEtcdClient } from '../registry/etcd.js';
import { normaliseOrigin, parseDroverKey, parseWeight } from '../registry/etcd-values.js';
import { sleep } from '../registry/backoff.js';

/** Resolved `drover register` settings. */
export interface RegisterOptions {
  readonly endpoints: readonly string[];
  readonly service: string;
  /** normalised origin `http://host:port` */
  readonly url: string;
  readonly id: string;
  /** seconds, lease TTL; default 10 */
  readonly ttlSeconds: number;
  /** > 0, default 1 */
  readonly weight: number;
  readonly zone?: string | undefined;
  /** full URL probed with GET; absent = no health check (always registered) */
  readonly healthUrl?: string | undefined;
  /** ends with `/`; default `/drover/services/` */
  readonly prefix: string;
  /** ms between health probes; default 1000 */
  readonly healthIntervalMs: number;
  /** consecutive results that flip the health state; default 2 */
  readonly healthThreshold: number;
}

/** Raw flag values as commander hands them over. */
export interface RegisterFlags {
  etcd: string;
  service: string;
  url: string;
  id?: string;
  ttl?: string;
  weight?: string;
  zone?: string;
  health?: string;
  prefix?: string;
}

/** Parses `250ms`, `10s`, `2m`, `1h` (or bare seconds) into ms; undefined when malformed. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (m === null) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  return n * factor;
}

/** The default instance id: `<hostname>-<port of --url>`, stable across restarts of one instance. */
export function defaultInstanceId(url: string, hostname: string = os.hostname()): string {
  const port = new URL(url).port || '80';
  return `${hostname}-${port}`.replace(/[^A-Za-z0-9._-]/g, '-');
}

/** Validates the flags; returns the settings or the list of problems. */
export function resolveRegisterFlags(flags: RegisterFlags): { ok: true; value: RegisterOptions } | { ok: false; errors: string[] } {
  const errors: string[] = [];
  const endpoints = flags.etcd.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (endpoints.length === 0) errors.push('--etcd: at least one endpoint is required');
  const origin = normaliseOrigin(flags.url);
  if (!origin.ok) errors.push(`--url: ${origin.reason}`);
  let prefix = flags.prefix ?? '/drover/services/';
  if (!prefix.endsWith('/')) prefix += '/';
  const ttlMs = parseDurationMs(flags.ttl ?? '10s');
  if (ttlMs === undefined || ttlMs < 1000) errors.push(`--ttl: expected a duration of at least 1s, got ${JSON.stringify(flags.ttl)}`);
  let weight = 1;
  if (flags.weight !== undefined) {
    const w = parseWeight(flags.weight);
    if (w.ok) weight = w.value;
    else errors.push(`--weight: ${w.reason}`);
  }
  let healthUrl: string | undefined;
  if (flags.health !== undefined && origin.ok) {
    if (flags.health.startsWith('/')) healthUrl = origin.value + flags.health;
    else if (/^https?:\/\//.test(flags.health)) healthUrl = flags.health;
    else errors.push('--health: expected a path starting with / or an http(s):// URL');
  }
  const id = flags.id ?? (origin.ok ? defaultInstanceId(origin.value) : '');
  if (origin.ok) {
    const key = parseDroverKey(prefix, `${prefix}${flags.service}/${id}`);
    if (!key.ok) errors.push(`--service/--id: ${JSON.stringify(flags.service)} and ${JSON.stringify(id)} must be non-empty, without / or spaces`);
  }
  if (errors.length > 0 || !origin.ok || ttlMs === undefined) return { ok: false, errors };
  return {
    ok: true,
    value: {
      endpoints,
      service: flags.service,
      url: origin.value,
      id,
      ttlSeconds: Math.ceil(ttlMs / 1000),
      weight,
      zone: flags.zone !== undefined && flags.zone !== '' ? flags.zone : undefined,
      healthUrl,
      prefix,
      healthIntervalMs: 1000,
      healthThreshold: 2,
    },
  };
}

/** The value written for this instance (contract section 3, JSON form). */
export function memberValue(o: RegisterOptions): string {
  return JSON.stringify({ url: o.url, weight: o.weight, ...(o.zone !== undefined ? { zone: o.zone } : {}), draining: false, meta: {} });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Keeps one instance key in etcd. `start()` begins the loops; `stop()` revokes the lease.
 * Reconciles every TTL/3 (at least 500 ms): keepalive, and re-put when the key or lease is gone.
 */
export class Registrar {
  readonly key: string;
  private readonly value: string;
  private readonly client: Etcd3;
  private leaseId: string | undefined;
  private healthy: boolean;
  private passes = 0;
  private failures = 0;
  private stopping = false;
  private busy: Promise<void> = Promise.resolve();
  private pending = false;
  private lastError: string | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly abort = new AbortController();

  constructor(
    private readonly options: RegisterOptions,
    private readonly log: Logger,
    client?: Etcd3,
  ) {
    this.key = `${options.prefix}${options.service}/${options.id}`;
    this.value = memberValue(options);
    this.client = client ?? createEtcdClient({ endpoints: options.endpoints, callTimeoutMs: 3000 });
    this.healthy = options.healthUrl === undefined;
  }

  /** Starts health probing (if any) and the reconcile loop; returns at once. */
  start(): void {
    const tickMs = Math.max(500, Math.floor((this.options.ttlSeconds * 1000) / 3));
    this.timers.push(setInterval(() => this.kick(), tickMs));
    if (this.options.healthUrl !== undefined) {
      void this.probeLoop();
    } else {
      this.kick();
    }
  }

  /** Stops the loops, revokes the lease (the key goes at once) and closes the client. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.abort.abort();
    for (const t of this.timers) clearInterval(t);
    await this.busy;
    if (this.leaseId !== undefined) {
      try {
        await this.revoke(this.leaseId);
        this.log.info({ key: this.key }, 'deregistered: lease revoked');
      } catch (err) {
        this.log.warn({ key: this.key, err: message(err), code: ErrorCodes.REGISTRY_UNREACHABLE }, 'could not revoke the lease; the key expires with its TTL');
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
        const msg = message(err);
        // Log the first failure of an outage, not every retry.
        if (this.lastError === undefined) this.log.warn({ key: this.key, err: msg, code: ErrorCodes.REGISTRY_UNREACHABLE }, 'etcd unreachable; retrying');
        this.lastError = msg;
      }
    });
  }

  private async reconcile(): Promise<void> {
    if (!this.healthy) {
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

  private async probeLoop(): Promise<void> {
    const url = this.options.healthUrl as string;
    while (!this.stopping) {
      const ok = await this.probe(url);
      if (this.stopping) break;
      if (ok) {
        this.passes++;
        this.failures = 0;
      } else {
        this.failures++;
        this.passes = 0;
      }
      const t = this.options.healthThreshold;
      if (!this.healthy && this.passes >= t) {
        this.healthy = true;
        this.log.info({ url }, 'health check passing');
        this.kick();
      } else if (this.healthy && this.failures >= t) {
        this.healthy = false;
        this.log.warn({ url }, 'health check failing');
        this.kick();
      }
      await sleep(this.options.healthIntervalMs, this.abort.signal);
    }
  }

  private async probe(url: string): Promise<boolean> {
    try {
      const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(Math.max(200, this.options.healthIntervalMs)) });
      await res.body?.cancel();
      return res.status >= 200 && res.status < 400;
    } catch {
      return false;
    }
  }
}

/** Adds `drover register` to the program (contract section 1). */
export function addRegisterCommand(program: Command): void {
  program
    .command('register')
    .description('announce one instance in etcd on a lease (sidecar); the key goes away when this process stops')
    .requiredOption('--etcd <urls>', 'etcd endpoints, comma-separated (http://127.0.0.1:2379)')
    .requiredOption('--service <name>', 'service name')
    .requiredOption('--url <url>', 'this instance, http://host:port or host:port')
    .option('--id <id>', 'instance id (default: <hostname>-<port of --url>)')
    .option('--ttl <duration>', 'lease TTL, e.g. 10s; the key vanishes this long after the process dies', '10s')
    .option('--weight <n>', 'balancing weight (> 0)', '1')
    .option('--zone <zone>', 'zone label')
    .option('--health <path-or-url>', 'keep the key only while GET of this path (on --url) or URL answers 2xx/3xx; checked every 1s, 2 results flip it')
    .option('--prefix <prefix>', 'etcd key prefix', '/drover/services/')
    .action(async (flags: RegisterFlags, cmd: Command) => {
      const resolved = resolveRegisterFlags(flags);
      if (!resolved.ok) cmd.error(resolved.errors.map((e) => `error: ${e}`).join('\n'), { exitCode: 1, code: ErrorCodes.CLI_USAGE });
      const log = createLogger().child({ component: 'register' });
      const registrar = new Registrar(resolved.value, log);
      log.info({ key: registrar.key, endpoints: resolved.value.endpoints, ttl: resolved.value.ttlSeconds, health: resolved.value.healthUrl }, 'starting');
      await new Promise<void>((resolve) => {
        const onSignal = (signal: NodeJS.Signals): void => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          log.info({ signal }, 'stopping');
          registrar.stop().then(resolve, (err: unknown) => {
            log.error({ err }, 'stop failed');
            resolve();
          });
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        registrar.start();
      });
      process.exitCode = 0;
      // gRPC and fetch keep-alive sockets may linger; the work is done, so do not wait for them.
      setTimeout(() => process.exit(0), 500).unref();
    });
}
