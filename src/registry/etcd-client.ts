/**
 * How drover reaches etcd: one etcd3 client with deadlines, keepalive and a per-endpoint skip
 * policy (`createEtcdClient`), and the config's `registry.etcd` turned into connection options
 * (`resolveEtcdConnection`). Shared by the registry's watch loop (./etcd.ts), the shared config
 * follower, the `drover register` sidecar and the `drover config` commands.
 */
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { Etcd3, GRPCCancelledError, castGrpcError, isRecoverableError, type IOptions } from 'etcd3';
import type { EtcdRegistryConfig } from '../config/types.js';
import { DroverError, ErrorCodes } from '../core/errors.js';

/** How to reach etcd: what `createEtcdClient` needs. */
export interface EtcdConnectionOptions {
  /** `http://host:port`, `https://host:port` or `host:port` */
  readonly endpoints: readonly string[];
  readonly auth?: { readonly username: string; readonly password: string } | undefined;
  /** PEM contents; a missing `ca` means the system roots */
  readonly tls?: { readonly ca?: Buffer | undefined; readonly cert?: Buffer | undefined; readonly key?: Buffer | undefined } | undefined;
  /** ms, deadline of every unary call (range, put, lease grant, auth); default 5000 */
  readonly callTimeoutMs?: number;
  /**
   * ms between gRPC keepalive pings; default 10000. etcd refuses pings more frequent than its
   * `--grpc-keepalive-min-time` (default 5s) with GOAWAY, so stay above that in production.
   */
  readonly keepaliveTimeMs?: number;
  /** ms without a ping answer before the connection is declared dead; default 5000 */
  readonly keepaliveTimeoutMs?: number;
  /** ms a failed endpoint is skipped before it is tried again; default 1000 */
  readonly hostRetryMs?: number;
}

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;
type PolicyContext = Parameters<Parameters<HostPolicy['execute']>[0]>[0];

const noopDisposable = { dispose(): void {} };

/**
 * Per-endpoint policy: skip an endpoint for `retryMs` after a connection-level failure. etcd3's
 * default breaker needs 3 failures and then waits 5 s, which delays recovery of a single-node
 * etcd; our own loops already back off, so a short skip is all that is needed to fail over.
 */
class HostSkipPolicy {
  declare readonly _altReturn: never;
  private downUntil = 0;
  private lastFailure = '';
  readonly onSuccess = (): typeof noopDisposable => noopDisposable;
  readonly onFailure = (): typeof noopDisposable => noopDisposable;
  constructor(
    private readonly host: string,
    private readonly retryMs: number,
  ) {}

  async execute<T>(fn: (context: PolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    if (Date.now() < this.downUntil) throw new Error(`${this.host}: ${this.lastFailure} (endpoint skipped for ${this.retryMs} ms)`);
    try {
      const result = await fn({ signal: signal ?? new AbortController().signal });
      this.downUntil = 0;
      return result;
    } catch (err) {
      const cast = err instanceof Error ? castGrpcError(err) : undefined;
      // A call we cancelled ourselves (a watch stream we ended) says nothing about the endpoint.
      if (cast !== undefined && !(cast instanceof GRPCCancelledError) && isRecoverableError(cast)) {
        this.downUntil = Date.now() + this.retryMs;
        this.lastFailure = cast.message;
      }
      throw err;
    }
  }
}

/**
 * Creates an etcd3 client with deadlines on every unary call, gRPC keepalive, fast channel
 * reconnects and a short per-endpoint skip policy. The caller closes it.
 */
export function createEtcdClient(options: EtcdConnectionOptions): Etcd3 {
  const callTimeoutMs = options.callTimeoutMs ?? 5000;
  const retryMs = options.hostRetryMs ?? 1000;
  const deadline = (): { deadline: number } => ({ deadline: Date.now() + callTimeoutMs });
  const opts: IOptions = {
    hosts: [...options.endpoints],
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : deadline()),
    grpcOptions: {
      'grpc.keepalive_time_ms': options.keepaliveTimeMs ?? 10_000,
      'grpc.keepalive_timeout_ms': options.keepaliveTimeoutMs ?? 5000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
    },
    faultHandling: { host: (host: string) => new HostSkipPolicy(host, retryMs) as unknown as HostPolicy },
  };
  if (options.auth !== undefined) {
    opts.auth = { username: options.auth.username, password: options.auth.password, callOptions: () => deadline() };
  }
  if (options.tls !== undefined) {
    opts.credentials = {
      rootCertificate: options.tls.ca ?? Buffer.from(rootCertificates.join('\n')),
      privateKey: options.tls.key,
      certChain: options.tls.cert,
    };
  }
  return new Etcd3(opts);
}

/**
 * Turns the config's `registry.etcd` into connection options: reads the TLS files and the
 * credentials from the environment variables the config names. A named variable that is unset
 * means "no auth" (logged by the caller). Rejects with E_CONFIG_MISSING_FILE for unreadable files.
 */
export async function resolveEtcdConnection(
  config: EtcdRegistryConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ endpoints: readonly string[]; auth?: { username: string; password: string }; tls?: EtcdConnectionOptions['tls']; warnings: string[] }> {
  const warnings: string[] = [];
  let auth: { username: string; password: string } | undefined;
  if (config.usernameEnv !== undefined) {
    const username = env[config.usernameEnv];
    const password = config.passwordEnv !== undefined ? env[config.passwordEnv] : undefined;
    if (username === undefined || username === '') warnings.push(`${config.usernameEnv} is not set: connecting without auth`);
    else auth = { username, password: password ?? '' };
  }
  let tls: EtcdConnectionOptions['tls'];
  if (config.tls !== undefined) {
    const read = async (file: string | undefined): Promise<Buffer | undefined> => {
      if (file === undefined) return undefined;
      try {
        return await readFile(file);
      } catch (err) {
        throw new DroverError(ErrorCodes.CONFIG_MISSING_FILE, `registry.etcd.tls: cannot read ${file}: ${(err as Error).message}`, { cause: err });
      }
    };
    tls = { ca: await read(config.tls.ca), cert: await read(config.tls.cert), key: await read(config.tls.key) };
  }
  return { endpoints: config.endpoints, ...(auth !== undefined ? { auth } : {}), ...(tls !== undefined ? { tls } : {}), warnings };
}
