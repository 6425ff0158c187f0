/**
 * The entry point of a serving worker (`cluster.fork()` runs this file). It waits for the
 * primary's `init`, builds its proxy state, binds the listeners (shared with the other workers
 * through node:cluster) and then only serves: no registry, no health checks, no admin API.
 * Counter deltas and passive-health outcomes go to the primary in batches.
 */
import process from 'node:process';
import { openAccessLog, type AccessLog } from '../../observability/access-log.js';
import type { DroverConfig } from '../../config/types.js';
import { createLogger } from '../../observability/log.js';
import { Metrics } from '../../observability/metrics.js';
import { SeriesDeltas } from '../../observability/series/deltas.js';
import { startListener, type Listener } from '../../proxy/listener.js';
import { drainListeners } from '../listeners.js';
import { isDroverMessage, type PrimaryMessage, type WorkerMessage } from './protocol.js';
import { WorkerProxy } from './worker-state.js';

/** ms between two `stats` messages (admin counters lag by at most this much). */
export const STATS_INTERVAL_MS = 250;

const logger = createLogger().child({ component: 'worker' });
// The dashboard's series are kept by the primary: a worker only counts each interval and sends it.
const seriesDeltas = new SeriesDeltas();
const metrics = new Metrics({ seriesSink: seriesDeltas });

let proxy: WorkerProxy | undefined;
let accessLog: AccessLog | undefined;
let accessTarget = '';
const listeners: Listener[] = [];
let stopping = false;
let flushQueued = false;

function send(m: WorkerMessage): void {
  if (process.connected) process.send?.(m, undefined, undefined, () => undefined);
}

function flush(): void {
  flushQueued = false;
  if (proxy === undefined) return;
  const backends = proxy.takeStats();
  const passive = proxy.takePassive();
  const series = seriesDeltas.take();
  const routes = proxy.takeRouteHits();
  const queues = proxy.takeQueues();
  if (backends.length + passive.length + series.length + routes.length + queues.length > 0) send({ drover: 'stats', backends, passive, series, routes, queues });
}

function queueFlush(): void {
  if (flushQueued) return;
  flushQueued = true;
  setImmediate(flush);
}

function openLog(config: DroverConfig): void {
  if (config.accessLog === accessTarget) return;
  accessLog?.flush();
  accessTarget = config.accessLog;
  accessLog = openAccessLog(config.accessLog);
}

async function init(config: DroverConfig, m: Extract<PrimaryMessage, { drover: 'init' }>): Promise<void> {
  openLog(config);
  proxy = new WorkerProxy(config, metrics, accessLog?.write);
  proxy.onFailureQueued = queueFlush;
  proxy.apply(m.snapshot);
  const p = proxy;
  for (const l of config.listen) listeners.push(await startListener(l, () => p.state, metrics.fastPath));
  setInterval(flush, STATS_INTERVAL_MS).unref();
  send({ drover: 'listening', listen: listeners.map((l) => ({ host: l.host, port: l.port })) });
}

/** Stops accepting, lets in-flight requests finish for up to `graceMs`, then exits. */
async function stop(graceMs: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await drainListeners(listeners, graceMs);
  flush();
  await proxy?.table.close();
  accessLog?.flush();
  process.exit(0);
}

process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection (ignored)'));
process.on('uncaughtException', (err) => logger.error({ err }, 'uncaught exception (ignored)'));
// The primary decides when workers stop; a terminal's Ctrl-C reaches the whole process group.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => void stop(30_000));
process.on('SIGHUP', () => undefined);
process.on('SIGUSR1', () => undefined);
// Orphaned (the primary died without stopping us): stop serving rather than linger.
process.on('disconnect', () => void stop(1_000));

process.on('message', (raw: unknown) => {
  if (!isDroverMessage(raw)) return;
  const m = raw as PrimaryMessage;
  switch (m.drover) {
    case 'init':
      if (proxy === undefined) {
        init(m.config, m).catch((err: unknown) => {
          logger.fatal({ err }, 'worker could not start');
          process.exit(1);
        });
      }
      break;
    case 'snapshot':
      proxy?.apply(m.snapshot);
      break;
    case 'config':
      openLog(m.config);
      proxy?.setAccessLog(accessLog?.write);
      proxy?.setConfig(m.config);
      proxy?.apply(m.snapshot);
      break;
    case 'metrics':
      metrics.registry
        .getMetricsAsJSON()
        .then((json) => send({ drover: 'metrics', id: m.id, metrics: json }))
        .catch(() => send({ drover: 'metrics', id: m.id, metrics: [] }));
      break;
    case 'reopen':
      accessLog?.reopen();
      break;
    case 'stop':
      void stop(m.graceMs);
      break;
  }
});

send({ drover: 'hello' });
