/**
 * `drover register`: the sidecar that announces one instance in etcd (what Nerve/registrator
 * did). It puts `<prefix><service>/<id>` = JSON member value on a lease of `--ttl`, keeps the
 * lease alive, and re-creates key and lease whenever they are gone (lease expired while etcd was
 * unreachable, etcd wiped, key deleted by hand). With `--health` the key exists only while the
 * check passes (removed after 2 consecutive failures, put back after 2 passes). SIGINT/SIGTERM
 * revoke the lease, so the key disappears at once, and exit 0. With `--zookeeper` the same member
 * value goes into an ephemeral znode `<prefix>/<service>/<id>` instead (src/registry/registrar/zookeeper.ts).
 */
import os from 'node:os';
import type { Command } from 'commander';
import { createLogger } from '../observability/log.js';
import { ErrorCodes } from '../core/errors.js';
import { isBackendId, parseBackendUrl, parseEtcdEndpoints, parseServerList, parseTtlSeconds, parseWeight } from '../config/values.js';
import type { RegisterOptions } from '../registry/registrar/options.js';
import { fail, ok, type Result } from '../core/result.js';

/** Raw flag values as commander hands them over. */
export interface RegisterFlags {
  etcd?: string;
  zookeeper?: string;
  service: string;
  url: string;
  id?: string;
  ttl?: string;
  weight?: string;
  zone?: string;
  health?: string;
  prefix?: string;
}

/**
 * The default instance id: `<hostname>-<port of --url>`, stable across restarts of one instance.
 * @param port the port of the parsed `--url` (explicit there: `https://h:443` gives 443)
 */
export function defaultInstanceId(port: number, hostname: string = os.hostname()): string {
  return `${hostname}-${port}`.replace(/[^A-Za-z0-9._-]/g, '-');
}

/** Validates the flags; returns the settings or the list of problems. */
export function resolveRegisterFlags(flags: RegisterFlags): Result<RegisterOptions, string[]> {
  const errors: string[] = [];
  let endpoints: string[] = [];
  let zookeeper: string | undefined;
  if (flags.zookeeper !== undefined && flags.etcd !== undefined) errors.push('--etcd/--zookeeper: give one of them, not both');
  else if (flags.zookeeper !== undefined) {
    const servers = parseServerList(flags.zookeeper);
    if (servers.ok) zookeeper = servers.value;
    else errors.push(`--zookeeper: ${servers.reason}`);
  } else {
    const etcd = parseEtcdEndpoints(flags.etcd ?? '');
    if (etcd.ok) endpoints = etcd.value;
    else errors.push(`--etcd: ${etcd.reason}${flags.etcd === undefined || flags.etcd.trim() === '' ? ' (or --zookeeper SERVERS)' : ''}`);
  }
  const backend = parseBackendUrl(flags.url);
  if (!backend.ok) errors.push(`--url: ${backend.reason}`);
  const url = backend.ok ? backend.value.url : undefined;
  const port = backend.ok ? backend.value.port : undefined;
  let prefix = flags.prefix ?? '/drover/services/';
  if (!prefix.endsWith('/')) prefix += '/';
  const ttl = parseTtlSeconds(flags.ttl ?? '10s');
  if (!ttl.ok) errors.push(`--ttl: ${ttl.reason} (a duration of at least 1s, as in the config: 10s, 1m30s)`);
  let weight = 1;
  if (flags.weight !== undefined) {
    const w = parseWeight(flags.weight);
    if (w.ok) weight = w.value;
    else errors.push(`--weight: ${w.reason}`);
  }
  let healthUrl: string | undefined;
  if (flags.health !== undefined && url !== undefined) {
    if (flags.health.startsWith('/')) healthUrl = url + flags.health;
    else if (/^https?:\/\//.test(flags.health)) healthUrl = flags.health;
    else errors.push('--health: expected a path starting with / or an http(s):// URL');
  }
  const id = flags.id ?? (port !== undefined ? defaultInstanceId(port) : '');
  if (url !== undefined) {
    // the two segments of its registry key (`<prefix><service>/<id>`), checked as keys are read
    if (!isBackendId(flags.service) || !isBackendId(id)) errors.push(`--service/--id: ${JSON.stringify(flags.service)} and ${JSON.stringify(id)} must be non-empty, without / or spaces`);
  }
  if (errors.length > 0 || url === undefined || !ttl.ok) return fail(errors);
  return ok({
    endpoints,
    ...(flags.zookeeper !== undefined ? { zookeeper } : {}),
    service: flags.service,
    url,
    id,
    ttlSeconds: ttl.value,
    weight,
    zone: flags.zone !== undefined && flags.zone !== '' ? flags.zone : undefined,
    healthUrl,
    prefix,
    healthIntervalMs: 1000,
    healthThreshold: 2,
  });
}

/** Adds `drover register` to the program (README "Commands"). */
export function addRegisterCommand(program: Command): void {
  program
    .command('register')
    .description('announce one instance in etcd on a lease, or in ZooKeeper as an ephemeral znode (sidecar); it goes away when this process stops')
    .option('--etcd <urls>', 'etcd endpoints, comma-separated (http://127.0.0.1:2379)')
    .option('--zookeeper <servers>', 'ZooKeeper servers, comma-separated host:port: writes the ephemeral znode <prefix>/<service>/<id> instead (--ttl is the session timeout)')
    .requiredOption('--service <name>', 'service name')
    .requiredOption('--url <url>', 'this instance: host:port, or http://, https:// or h2c:// host:port (as in the config)')
    .option('--id <id>', 'instance id (default: <hostname>-<port of --url>)')
    .option('--ttl <duration>', 'lease TTL, a duration as in the config (10s, 1m30s; at least 1s); the key vanishes this long after the process dies', '10s')
    .option('--weight <n>', 'balancing weight, a number > 0 and at most 1000000 (as in the config)', '1')
    .option('--zone <zone>', 'zone label')
    .option('--health <path-or-url>', 'keep the key only while GET of this path (on --url) or URL answers 2xx/3xx; checked every 1s, 2 results flip it')
    .option('--prefix <prefix>', 'etcd key prefix', '/drover/services/')
    .action(async (flags: RegisterFlags, cmd: Command) => {
      const resolved = resolveRegisterFlags(flags);
      if (!resolved.ok) cmd.error(resolved.reason.map((e) => `error: ${e}`).join('\n'), { exitCode: 1, code: ErrorCodes.CLI_USAGE });
      const log = createLogger().child({ component: 'register' });
      const opts = resolved.value;
      let registrar: { start(): void; stop(): Promise<void> };
      if (opts.zookeeper !== undefined) {
        const { ZkRegistrar } = await import('../registry/registrar/zookeeper.js');
        const zk = new ZkRegistrar({ ...opts, zookeeper: opts.zookeeper }, log);
        log.info({ path: zk.path, zookeeper: opts.zookeeper, ttl: opts.ttlSeconds, health: opts.healthUrl }, 'starting');
        registrar = zk;
      } else {
        // Loaded on use: the etcd client (gRPC, protobufs) costs most of the CLI's start-up time.
        const { Registrar } = await import('../registry/registrar/etcd.js');
        const etcd = new Registrar(opts, log);
        log.info({ key: etcd.key, endpoints: opts.endpoints, ttl: opts.ttlSeconds, health: opts.healthUrl }, 'starting');
        registrar = etcd;
      }
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
