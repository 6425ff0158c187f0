/**
 * Config-revision-to-fleet latency: from the moment a new route is written to etcd to the moment
 * EVERY instance of a fleet of three serves it. A real 3-member etcd cluster (etcd's default
 * heartbeat and election timeout), and side by side in one run:
 *
 * - drover: three `bin/drover` processes with `registry.etcd.config_prefix` (no routes of their
 *   own), each given the cluster's endpoints starting with a different member; a trial writes a
 *   file with one more route, checks it as `drover config push` does (`planPush`, not timed), then
 *   starts the clock and commits push's own transaction (`commitPush`: a read of the prefix and
 *   one txn) and polls all three until each answers the new path from the new backend;
 * - nginx, the confd way: three nginx masters, each with its own confd-like watcher (an etcd
 *   watch on the same key in this process, over its own client to a different member) that
 *   regenerates the `location` blocks from the value and sends SIGHUP (`nginx -s reload`); the
 *   clock starts before the put; polled the same way.
 *
 * Each instance is polled over one keep-alive connection, one request at a time. 100 trials each
 * (TRIALS=n to change). Run: `npm run build && node dist/bench/config-fleet.js`. Figures from a
 * loaded or shared machine are not results: rerun on a quiet one.
 */
import http from 'node:http';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { Etcd3 } from 'etcd3';
import { commitPush, planPush } from '../src/commands/config.js';
import { createEtcdClient } from '../src/registry/etcd-client.js';
import {
  freePort,
  getBody,
  hostInfo,
  nginxAvailable,
  nginxPreamble,
  runBench,
  sleep,
  startBackendFarm,
  startDrover,
  startEtcdCluster,
  summariseLatency as summarise,
  table,
  tempDir,
  waitFor,
  waitListening,
  writeResult,
  type BenchDrover,
} from './lib/etcd-env.js';

const TRIALS = Number(process.env['TRIALS'] ?? 100);
const INSTANCES = 3;
/** Longest a single trial may take before it counts as failed (ms). */
const TRIAL_TIMEOUT_MS = 5000;
/** Pause between trials, ms. */
const GAP_MS = 50;

/** One keep-alive connection per instance for polling: cheap enough not to slow what it measures. */
const agents = new Map<number, http.Agent>();
function agentFor(port: number): http.Agent {
  let a = agents.get(port);
  if (a === undefined) {
    a = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.set(port, a);
  }
  return a;
}

/**
 * Polls one instance until `urlPath` answers `want`: the `performance.now()` of that answer, or
 * undefined after TRIAL_TIMEOUT_MS. (A reloaded nginx worker closes its keep-alive connection;
 * the next poll reconnects to a new one.)
 */
async function servedAt(port: number, urlPath: string, want: string): Promise<number | undefined> {
  const start = performance.now();
  while (performance.now() - start < TRIAL_TIMEOUT_MS) {
    if ((await getBody(port, urlPath, agentFor(port))).body === want) return performance.now();
  }
  return undefined;
}

/**
 * Runs the trials against a fleet: `write(i)` announces route `/t<i>` and resolves the
 * `performance.now()` at which its timed part (the write to etcd) started; a trial's time runs
 * from there to the last instance answering the new route.
 */
async function trials(ports: readonly number[], write: (i: number) => Promise<number>): Promise<{ samples: number[]; failed: number }> {
  const samples: number[] = [];
  let failed = 0;
  for (let i = 0; i < TRIALS; i++) {
    const polls = Promise.all(ports.map((p) => servedAt(p, `/t${i}/x`, 'new')));
    const started = await write(i);
    const each = await polls;
    if (each.some((t) => t === undefined)) failed++;
    else samples.push(Math.max(...(each as number[])) - started);
    await sleep(GAP_MS);
  }
  return { samples, failed };
}

/**
 * The routes value for trial `i`, as `drover config push` writes it (JSON): /t0/../t<i>/ to
 * `fresh`, everything else to `base`.
 */
function routesValue(i: number): string {
  const routes: { match: { path_prefix: string }; service: string }[] = [];
  // `/t<t>/`, with the slash: a bare `/t1` prefix would already match trial 10's `/t10` (and
  // NGINX's `location /t1` too), making trials 10-19, 100-199... instant
  for (let t = 0; t <= i; t++) routes.push({ match: { path_prefix: `/t${t}/` }, service: 'fresh' });
  routes.push({ match: { path_prefix: '/' }, service: 'base' });
  return `${JSON.stringify(routes, null, 2)}\n`;
}

// ---- nginx with a confd-style regenerate + reload ----------------------------------------------

interface ConfdNginx {
  readonly port: number;
  stop(): void;
}

/** One nginx master and a watcher that regenerates its locations from the etcd key and reloads it. */
async function startConfdNginx(client: Etcd3, key: string, base: string, fresh: string): Promise<ConfdNginx> {
  const prefix = tempDir('drover-bench-confd-');
  mkdirSync(path.join(prefix, 'logs'));
  const port = await freePort();
  const routesFile = path.join(prefix, 'routes.conf');
  const render = (value: string): void => {
    // confd's template step: one location per route of the value (path_prefix -> service)
    const routes = value === '' ? [] : (JSON.parse(value) as { match: { path_prefix: string }; service: string }[]);
    const locations = routes.filter((r) => r.match.path_prefix !== '/').map((r) => `location ${r.match.path_prefix} { proxy_pass http://${r.service}; }\n`);
    const tmp = `${routesFile}.tmp`;
    writeFileSync(tmp, locations.join(''));
    renameSync(tmp, routesFile);
  };
  render('');
  const conf = path.join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `${nginxPreamble(prefix)}
  upstream base { server ${base}; }
  upstream fresh { server ${fresh}; }
  server {
    listen 127.0.0.1:${port};
    include ${routesFile};
    location / { proxy_pass http://base; }
  }
}
`,
  );
  const child = spawn('/usr/sbin/nginx', ['-p', prefix, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] });
  child.on('error', () => undefined);
  await waitListening(port, 'nginx');
  const watcher = await client.watch().key(key).create();
  watcher.on('put', (kv) => {
    render(kv.value.toString());
    child.kill('SIGHUP');
  });
  watcher.on('error', () => undefined);
  return {
    port,
    stop: () => {
      void watcher.cancel();
      child.kill('SIGKILL');
    },
  };
}

// ---- main -----------------------------------------------------------------------------------

/** The cluster's endpoints starting at member `i` (the instance's first choice), as YAML flow list items. */
function rotated(endpoints: readonly string[], i: number): string[] {
  return endpoints.map((_, k) => endpoints[(i + k) % endpoints.length] as string);
}

/** The file `config push` would be given for trial `i`: the two services and routes /t0/../t<i>/. */
function pushFile(dir: string, i: number, base: string, fresh: string): string {
  const file = path.join(dir, `push-${i}.yaml`);
  const routes = JSON.parse(routesValue(i)) as unknown[];
  writeFileSync(file, `${JSON.stringify({ services: { base: { backends: [{ url: `http://${base}` }] }, fresh: { backends: [{ url: `http://${fresh}` }] } }, routes })}\n`);
  return file;
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0] ?? 0;
  const farm = startBackendFarm();
  const etcd = await startEtcdCluster(INSTANCES);
  const [basePort, freshPort] = await farm.start(['base', 'new']);
  const base = `127.0.0.1:${basePort}`;
  const fresh = `127.0.0.1:${freshPort}`;
  const files = tempDir('drover-bench-fleet-files-');

  // ---- drover fleet
  const cfg = '/bench/fleet/config/';
  const push = async (i: number): Promise<number> => {
    const plan = await planPush(pushFile(files, i, base, fresh), cfg);
    if ('problems' in plan) throw new Error(`push of trial ${i} refused: ${plan.problems.join('; ')}`);
    const started = performance.now();
    const res = await commitPush(etcd.client, cfg, plan.desired);
    if (!res.succeeded) throw new Error(`push of trial ${i}: the prefix changed meanwhile`);
    return started;
  };
  await etcd.client.delete().prefix('/bench/fleet/');
  await push(-1);
  const drovers: BenchDrover[] = [];
  for (let i = 0; i < INSTANCES; i++) {
    drovers.push(
      await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  etcd: {endpoints: [${rotated(etcd.endpoints, i).join(', ')}], prefix: /bench/fleet/services/, config_prefix: ${cfg}}
`),
    );
  }
  for (const d of drovers) await waitFor(async () => (await getBody(d.port, '/')).body === 'base', 'drover serving base');
  const dr = await trials(
    drovers.map((d) => d.port),
    push,
  );
  await Promise.all(drovers.map((d) => d.stop()));
  const rows = [summarise(`drover x${INSTANCES} (config push to etcd config_prefix, watch)`, dr.samples, dr.failed)];

  // ---- nginx fleet, confd-style
  if (nginxAvailable()) {
    const key = '/bench/fleet/nginx/routes';
    await etcd.client.put(key).value(routesValue(-1));
    const fleet: ConfdNginx[] = [];
    for (let i = 0; i < INSTANCES; i++) fleet.push(await startConfdNginx(createEtcdClient({ endpoints: rotated(etcd.endpoints, i), callTimeoutMs: 10_000 }), key, base, fresh));
    for (const n of fleet) await waitFor(async () => (await getBody(n.port, '/')).body === 'base', 'nginx serving base');
    const ng = await trials(
      fleet.map((n) => n.port),
      async (i) => {
        const started = performance.now();
        await etcd.client.put(key).value(routesValue(i)).exec();
        return started;
      },
    );
    for (const n of fleet) n.stop();
    rows.push(summarise(`nginx x${INSTANCES} (confd-style regenerate + reload)`, ng.samples, ng.failed));
  }

  const md = [
    `### Config revision -> every instance serving it (${TRIALS} trials, ${etcd.endpoints.length}-member etcd cluster, ms from the write to the last of ${INSTANCES} instances answering the new route)`,
    '',
    table(['fleet', 'trials', 'failed', 'p50', 'p90', 'p99', 'max'], rows.map((r) => [r.label, r.trials, r.failed, r.p50, r.p90, r.p99, r.max])),
    '',
  ].join('\n');
  for (const a of agents.values()) a.destroy();
  process.stdout.write(`${md}\n`);
  const host = hostInfo();
  const file = writeResult('config-fleet', { host, loadavg1mBefore: loadBefore, trials: TRIALS, instances: INSTANCES, etcdMembers: etcd.endpoints.length, results: rows });
  process.stdout.write(`load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${host.loadavg1m.toFixed(2)} on ${host.cpus} CPUs\n`);
  process.stdout.write(`results: ${file}\n`);
}

runBench(main);
