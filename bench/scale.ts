/**
 * Scale: SERVICES x MEMBERS keys in etcd (default 1 000 x 10).
 *
 * 1. Time to first ready: from spawning `bin/drover start` to `/readyz` = 200 (every member
 *    listed and applied), and its RSS then, next to a drover whose prefix holds one service.
 * 2. Serving while the registry churns: autocannon against a service with 10 real backends for
 *    PHASE_SECONDS (default 30) with no registry traffic, then PHASE_SECONDS again while PUT_RATE (default
 *    500) puts/s change member weights across all services. Reports the proxy's p50/p99 latency,
 *    req/s and drover's CPU (user + system, from /proc) for both phases, side by side.
 * Run: `npm run build && node dist/bench/scale.js` (SERVICES, MEMBERS, PHASE_SECONDS, PUT_RATE).
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { Etcd3 } from 'etcd3';
import { cpuSeconds, getBody, hostInfo, ROOT, rssMiB, runBench, runLoad, sleep, startBackendFarm, startDrover, startEtcd, table, waitFor, writeResult, type BenchDrover, type LoadCount } from './lib/etcd-env.js';

const SERVICES = Number(process.env['SERVICES'] ?? 1000);
const MEMBERS = Number(process.env['MEMBERS'] ?? 10);
const SECONDS = Number(process.env['PHASE_SECONDS'] ?? 30);
const PUT_RATE = Number(process.env['PUT_RATE'] ?? 500);
const CONNECTIONS = Number(process.env['CONNECTIONS'] ?? 32);

/** Writes many keys quickly: 100 puts per transaction (etcd's default limit is 128 ops). */
async function putMany(client: Etcd3, kvs: readonly (readonly [string, string])[]): Promise<void> {
  const chunks: (readonly (readonly [string, string])[])[] = [];
  for (let i = 0; i < kvs.length; i += 100) chunks.push(kvs.slice(i, i + 100));
  for (let i = 0; i < chunks.length; i += 8) {
    await Promise.all(
      chunks.slice(i, i + 8).map((chunk) =>
        client
          .if('/bench/never-written', 'Version', '==', 0)
          .then(...chunk.map(([k, v]) => client.put(k).value(v)))
          .commit(),
      ),
    );
  }
}

function droverYaml(endpoint: string, prefix: string): string {
  return `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  etcd: {endpoints: [${endpoint}], prefix: ${prefix}}
routes:
  - match: {path_prefix: /}
    service: svc0
`;
}

async function timeToReady(endpoint: string, prefix: string): Promise<{ drover: BenchDrover; readyMs: number; rss: number }> {
  const drover = await startDrover(droverYaml(endpoint, prefix));
  await waitFor(async () => (await getBody(drover.adminPort, '/readyz')).status === 200, 'readyz', 120_000, 10);
  const readyMs = Date.now() - drover.spawnedAt;
  await sleep(2000); // let the pools settle before reading RSS
  return { drover, readyMs, rss: rssMiB(drover.pid) };
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0] ?? 0;
  const farm = startBackendFarm();
  const etcd = await startEtcd();
  const prefix = '/bench/scale/';
  const small = '/bench/scale-one/';
  const real = await farm.start(Array.from({ length: MEMBERS }, (_, i) => `svc0-m${i}`));
  const kvs: [string, string][] = [];
  for (let s = 0; s < SERVICES; s++) {
    for (let m = 0; m < MEMBERS; m++) {
      // svc0 is served by real backends; the others point at ports nothing listens on (never routed)
      const port = s === 0 ? (real[m] as number) : 20_000 + ((s * MEMBERS + m) % 40_000);
      kvs.push([`${prefix}svc${s}/m${m}`, JSON.stringify({ url: `http://127.0.0.1:${port}`, weight: 1 })]);
    }
  }
  const t0 = Date.now();
  await putMany(etcd.client, kvs);
  const writeMs = Date.now() - t0;
  await putMany(etcd.client, kvs.slice(0, MEMBERS).map(([k, v]) => [k.replace(prefix, small), v] as const));

  const one = await timeToReady(etcd.endpoint, small);
  await one.drover.stop();
  const big = await timeToReady(etcd.endpoint, prefix);
  const drover = big.drover;
  await waitFor(async () => (await getBody(drover.port)).status === 200, 'svc0 served');

  // Phase A: no churn.
  let cpu0 = cpuSeconds(drover.pid);
  let w0 = Date.now();
  const quiet = await runLoad(drover.port, SECONDS, CONNECTIONS);
  const quietCpu = ((cpuSeconds(drover.pid) - cpu0) / ((Date.now() - w0) / 1000)) * 100;

  // Phase B: PUT_RATE weight changes per second across every service while serving, written by a
  // child process (bench/lib/etcd-putter.ts) so its gRPC work does not slow autocannon down.
  const putter = spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'lib', 'etcd-putter.js'), etcd.endpoint, prefix, String(PUT_RATE), String(SERVICES), String(MEMBERS), JSON.stringify(real)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let putterOut = '';
  putter.stdout?.on('data', (d: Buffer) => {
    putterOut += d.toString();
  });
  const putterDone = new Promise((r) => putter.once('exit', r));
  process.once('exit', () => putter.kill('SIGKILL'));
  await sleep(500);
  cpu0 = cpuSeconds(drover.pid);
  w0 = Date.now();
  const busy = await runLoad(drover.port, SECONDS, CONNECTIONS);
  const busyWall = (Date.now() - w0) / 1000;
  const busyCpu = ((cpuSeconds(drover.pid) - cpu0) / busyWall) * 100;
  putter.kill('SIGTERM');
  await putterDone;
  const putStats = JSON.parse(putterOut.trim() || '{"puts":0,"errors":0,"seconds":1}') as { puts: number; errors: number; seconds: number };
  const putRate = Math.round(putStats.puts / putStats.seconds);
  const putErrors = putStats.errors;
  const poolUpdates = await getBody(drover.adminPort, '/metrics').then((r) =>
    r.body
      .split('\n')
      .filter((l) => l.startsWith('drover_pool_updates_total{'))
      .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0),
  );
  const rssAfter = rssMiB(drover.pid);
  await drover.stop();

  const r1 = (x: number): number => Math.round(x * 10) / 10;
  const md = [
    `### Scale: ${SERVICES} services x ${MEMBERS} members in etcd (${kvs.length} keys, written in ${writeMs} ms)`,
    '',
    table(
      ['drover with', 'spawn -> /readyz 200 (ms)', 'RSS at ready (MiB)'],
      [
        [`1 service x ${MEMBERS}`, one.readyMs, r1(one.rss)],
        [`${SERVICES} services x ${MEMBERS}`, big.readyMs, r1(big.rss)],
      ],
    ),
    '',
    `Serving svc0 (${MEMBERS} backends) with autocannon, ${CONNECTIONS} connections, ${SECONDS} s per phase:`,
    '',
    table(
      ['phase', 'req/s', 'p50 ms', 'p99 ms', 'failed', 'drover CPU %', 'registry puts/s'],
      [
        ['no registry churn', quiet.rps, quiet.latencyP50, quiet.latencyP99, quiet.non2xx + quiet.errors, r1(quietCpu), 0],
        [`${PUT_RATE} puts/s target`, busy.rps, busy.latencyP50, busy.latencyP99, busy.non2xx + busy.errors, r1(busyCpu), putRate],
      ],
    ),
    '',
    `Pool updates applied during the whole run (drover_pool_updates_total, all services): ${poolUpdates}; put errors: ${putErrors}; RSS after churn: ${r1(rssAfter)} MiB.`,
    '',
  ].join('\n');
  process.stdout.write(`${md}\n`);
  const host = hostInfo();
  const result = {
    host,
    loadavg1mBefore: loadBefore,
    services: SERVICES,
    members: MEMBERS,
    keys: kvs.length,
    writeMs,
    ready: { oneService: { ms: one.readyMs, rssMiB: r1(one.rss) }, all: { ms: big.readyMs, rssMiB: r1(big.rss) } },
    quiet: { ...quiet, cpuPercent: r1(quietCpu) } satisfies LoadCount & { cpuPercent: number },
    churn: { ...busy, cpuPercent: r1(busyCpu), putRate, putErrors },
    poolUpdates,
    rssAfterMiB: r1(rssAfter),
  };
  const file = writeResult('etcd-scale', result);
  process.stdout.write(`load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${host.loadavg1m.toFixed(2)} on ${host.cpus} CPUs\nresults: ${file}\n`);
}

runBench(main);
