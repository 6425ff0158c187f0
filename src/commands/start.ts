/**
 * `drover start [-c FILE]`: runs the proxy until SIGTERM/SIGINT. SIGHUP, or a change to the
 * config file, reloads the config in place (an invalid one is refused and the old one keeps
 * serving); SIGUSR1 reopens the access log.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { openAccessLog, type AccessLog } from '../observability/access-log.js';
import { loadConfigFile } from '../config/load.js';
import type { DroverConfig } from '../config/types.js';
import { startDemoBackend, type DemoBackend } from '../app/demo.js';
import { ConfigError, formatIssue } from '../core/errors.js';
import { watchFile } from '../core/file-watch.js';
import { createLogger, type Logger } from '../observability/log.js';
import { Metrics } from '../observability/metrics.js';
import { probeFastPath } from '../proxy/internals.js';
import { Runtime } from '../app/runtime.js';
import { ClusterPrimary, workerCount } from '../app/cluster/primary.js';
import { mergeSharedConfig } from '../config/shared.js';
import { SharedConfigSource } from '../app/shared-config.js';

/**
 * ms `start` waits for the first read of the shared config (etcd) before it binds: long enough
 * for a reachable etcd to answer, short enough that an outage does not hold up the local config.
 */
const SHARED_FIRST_READ_MS = 3000;

export interface StartOptions {
  readonly config: string;
  readonly demo?: boolean;
}

/** Adds `start` to the program. */
export function addStartCommand(program: Command): void {
  program
    .command('start')
    .description('run the proxy (JSON logs on stdout)')
    .option('-c, --config <file>', 'config file', './drover.yaml')
    .option('--demo', 'also start two demo backends on 127.0.0.1:9001 and :9002 (what `npm start` uses)', false)
    .action(async (opts: StartOptions) => {
      const code = await runStart(opts);
      process.exitCode = code;
      // Whatever handle a library left open (a gRPC channel, a keep-alive socket) must not keep
      // a stopped proxy alive: exit once the event loop had a moment to flush.
      if (code === 0) setTimeout(() => process.exit(code), 500).unref();
    });
}

/** Guards the process: an unhandled rejection or exception is logged, never fatal. */
function installSafetyNets(logger: Logger): void {
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection (ignored)'));
  process.on('uncaughtException', (err) => logger.error({ err }, 'uncaught exception (ignored)'));
}

/** Runs until a stop signal; resolves with the exit code. */
export async function runStart(opts: StartOptions): Promise<number> {
  const file = path.resolve(opts.config);
  const logger = createLogger();
  let config: DroverConfig;
  try {
    config = await loadConfigFile(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const issue of err.issues) process.stderr.write(`${formatIssue(issue)}\n`);
      return 1;
    }
    throw err;
  }
  installSafetyNets(logger);
  const metrics = new Metrics();
  // Shared config in etcd (registry.etcd.config_prefix): merged after the file's routes and services.
  let local = config;
  let started = false;
  let reload: (trigger: string) => void = () => undefined;
  const sharedLog = logger.child({ component: 'shared-config' });
  const shared = new SharedConfigSource(sharedLog, {
    changed: () => {
      if (started) reload('etcd');
    },
    refused: (revision, issues) => {
      metrics.configReload('failure');
      sharedLog.error(
        { trigger: 'etcd', revision, issues: issues.map(formatIssue), code: issues[0]?.code ?? 'E_CONFIG_INVALID' },
        'shared config from etcd refused: the last good config keeps serving',
      );
      if (started) runtime.noteReload(false, `trigger: etcd revision ${revision}: ${issues.map(formatIssue).join('; ')}`);
    },
    skipped: (revision, issues) => {
      sharedLog.error({ revision, issues: issues.map(formatIssue), code: 'E_REGISTRY_INVALID_ENTRY' }, 'traefik routers skipped: the other routers apply');
    },
  });
  const merge = (base: DroverConfig): DroverConfig => {
    const r = mergeSharedConfig(base, shared.current());
    for (const name of r.shadowed) sharedLog.warn({ service: name }, `service "${name}" is defined in the file and in etcd: the file's settings win`);
    return shared.followedPrefix() === undefined ? base : r.config;
  };
  await shared.sync(local);
  if (!(await shared.waitFirst(SHARED_FIRST_READ_MS))) {
    sharedLog.warn(
      { code: 'E_REGISTRY_UNREACHABLE', prefix: shared.followedPrefix(), endpoints: local.registry.etcd?.endpoints, localRoutes: local.routes.length },
      local.routes.length > 0
        ? "shared config not read from etcd yet (unreachable?): serving the local file's routes; /readyz answers 503 until etcd answers"
        : 'shared config not read from etcd yet (unreachable?): no routes until it is; /readyz answers 503 until etcd answers',
    );
  }
  config = merge(local);
  const startupShared = shared.current();
  const demos: DemoBackend[] = [];
  if (opts.demo === true) {
    for (const [name, port] of [
      ['demo-1', 9001],
      ['demo-2', 9002],
    ] as const) {
      demos.push(await startDemoBackend(name, '127.0.0.1', port));
    }
    logger.info({ backends: demos.map((d) => `${d.name}@127.0.0.1:${d.port}`) }, 'demo backends started');
  }
  let accessLog: AccessLog | undefined = openAccessLog(config.accessLog);
  let runtime: Runtime;
  // workers > 1: this process keeps registries, health and admin; workers serve (src/app/cluster/).
  const workers = workerCount(config.workers);
  let cluster: ClusterPrimary | undefined;
  try {
    runtime = await Runtime.start(config, {
      logger,
      metrics,
      accessLog: accessLog?.write,
      waitingFor: () => shared.waitingFor(),
      // the admin's /metrics and queue depths sum every process (the primary's own until the
      // workers run: each worker queues on its own)
      ...(workers > 1
        ? {
            serve: false,
            onPoolChange: () => cluster?.poolsChanged(),
            metricsText: () => cluster?.metricsText() ?? metrics.metricsText(),
            queueDepths: (service: string) => cluster?.queueDepth(service),
          }
        : {}),
    });
    if (workers > 1) {
      const rt = runtime;
      cluster = await ClusterPrimary.start({ runtime: rt, config, workers, logger, metrics }).catch(async (err: unknown) => {
        await rt.shutdown(0);
        throw err;
      });
      // the workers serve the plain listeners now: http-01 challenges can be answered
      rt.startAcme();
    }
  } catch (err) {
    logger.fatal({ err, code: 'E_LISTEN_FAILED' }, 'could not start');
    process.stderr.write(`drover: could not start: ${(err as Error).message}\n`);
    await Promise.all(demos.map((d) => d.close()));
    await shared.close();
    return 1;
  }
  logger.info({ listen: cluster?.listenAddresses() ?? runtime.listenAddresses(), admin: runtime.adminAddress(), config: file, workers, fastPath: await probeFastPath() }, 'ready');

  let reloading: Promise<void> = Promise.resolve();
  // One path for every change, wherever it comes from (file, SIGHUP, etcd): the merged config is
  // validated whole, then swapped in by Runtime.reload (pools, health and connections survive).
  reload = (trigger: string): void => {
    reloading = reloading.then(async () => {
      try {
        const nextLocal = trigger === 'etcd' ? local : await loadConfigFile(file);
        if (nextLocal !== local) await shared.sync(nextLocal);
        const next = merge(nextLocal);
        if (next.accessLog !== config.accessLog) {
          accessLog?.flush();
          accessLog = openAccessLog(next.accessLog);
          runtime.setAccessLog(accessLog?.write);
        }
        await runtime.reload(next);
        cluster?.reload(next);
        config = next;
        local = nextLocal;
        metrics.configReload('success');
        runtime.noteReload(true, `trigger: ${trigger}`);
        logger.info({ trigger, ...(next.origin?.etcd === undefined ? {} : { etcdRevision: next.origin.etcd.revision }) }, 'config reloaded');
      } catch (err) {
        metrics.configReload('failure');
        const issues = err instanceof ConfigError ? err.issues.map(formatIssue) : [String(err)];
        runtime.noteReload(false, `trigger: ${trigger}: ${issues.join('; ')}`);
        logger.error({ trigger, issues, code: err instanceof ConfigError ? err.code : 'E_CONFIG_INVALID' }, 'config reload refused: the old config keeps serving');
      }
    });
  };
  started = true;
  // A shared config that arrived while the listeners were being bound is applied now.
  if (shared.current() !== startupShared) reload('etcd');
  const watcher = watchFile(file, () => reload('file'));
  process.on('SIGHUP', () => reload('SIGHUP'));
  process.on('SIGUSR1', () => {
    accessLog?.reopen();
    cluster?.reopenAccessLog();
    logger.info('access log reopened');
  });

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  // A second signal during the grace period stops at once.
  const hurry = (): void => process.exit(1);
  process.once('SIGTERM', hurry);
  process.once('SIGINT', hurry);
  logger.info({ signal, graceMs: config.shutdownGrace }, 'shutting down');
  watcher.close();
  await reloading;
  await shared.close();
  await cluster?.shutdown(config.shutdownGrace);
  await runtime.shutdown(config.shutdownGrace);
  await Promise.all(demos.map((d) => d.close()));
  accessLog?.flush();
  logger.info('stopped');
  logger.flush();
  return 0;
}
