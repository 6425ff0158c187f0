/**
 * Registry-to-traffic latency: from the moment a new member is announced to the first request
 * the proxy answers from it. Side by side in one run:
 *
 * - drover: `etcd put <prefix>lat/<id>` (clock starts before the put is sent);
 * - nginx, the reload way: rewrite the upstream file and `nginx -s reload` (SIGHUP to the
 *   master; clock starts before the file is written).
 *
 * Each trial adds a fresh backend next to a fixed one and polls the proxy with one request at a
 * time on fresh connections until the new backend's name comes back. 100 trials each (override
 * with TRIALS=n). Run: `npm run build && node dist/bench/registry-latency.js`.
 */
import http from 'node:http';
import os from 'node:os';
import { getBody, hostInfo, nginxAvailable, runBench, sleep, startBackendFarm, startEtcd, startEtcdDrover, startNginx, summariseLatency as summarise, table, waitFor, writeResult, type LatencySummary as Summary } from './lib/etcd-env.js';

const TRIALS = Number(process.env['TRIALS'] ?? 100);
/** Longest a single trial may take before it counts as failed (ms). */
const TRIAL_TIMEOUT_MS = 5000;
/** Pause between trials, ms. */
const GAP_MS = 50;

async function main(): Promise<void> {
  // One keep-alive connection for polling: cheap enough not to slow the proxy it measures.
  // (After an nginx reload the old worker closes it; the next poll reconnects to a new worker.)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const loadBefore = os.loadavg()[0] ?? 0;
  const farm = startBackendFarm();
  const etcd = await startEtcd();
  const prefix = '/bench/lat/';
  await etcd.client.delete().prefix(prefix);
  const [basePort] = await farm.start(['base']);
  const trialNames = Array.from({ length: TRIALS }, (_, i) => `t${i}`);
  const drPorts = await farm.start(trialNames);
  const ngPorts = await farm.start(trialNames);
  await etcd.client.put(`${prefix}lat/base`).value(`127.0.0.1:${basePort}`);

  // ---- drover
  const drover = await startEtcdDrover(etcd, prefix, 'lat');
  await waitFor(async () => (await getBody(drover.port)).body === 'base', 'drover serving base');
  const drSamples: number[] = [];
  const commitSamples: number[] = [];
  let drFailed = 0;
  for (let i = 0; i < TRIALS; i++) {
    const name = trialNames[i] as string;
    const start = performance.now();
    // exec() sends now: etcd3 builders are lazy and would only send when awaited.
    const put = etcd.client
      .put(`${prefix}lat/${name}`)
      .value(`127.0.0.1:${drPorts[i]}`)
      .exec()
      .then(() => commitSamples.push(performance.now() - start));
    let got: number | undefined;
    while (performance.now() - start < TRIAL_TIMEOUT_MS) {
      const r = await getBody(drover.port, '/', agent);
      if (r.body === name) {
        got = performance.now() - start;
        break;
      }
    }
    await put;
    if (got === undefined) drFailed++;
    else drSamples.push(got);
    await etcd.client.delete().key(`${prefix}lat/${name}`);
    await sleep(GAP_MS);
  }
  await drover.stop();

  // ---- nginx, reload per change
  let ngSummary: Summary | undefined;
  if (nginxAvailable()) {
    const base = `127.0.0.1:${basePort}`;
    const nginx = await startNginx([base]);
    await waitFor(async () => (await getBody(nginx.port)).body === 'base', 'nginx serving base');
    const ngSamples: number[] = [];
    let ngFailed = 0;
    for (let i = 0; i < TRIALS; i++) {
      const name = trialNames[i] as string;
      const start = performance.now();
      nginx.reload([base, `127.0.0.1:${ngPorts[i]}`]);
      let got: number | undefined;
      while (performance.now() - start < TRIAL_TIMEOUT_MS) {
        const r = await getBody(nginx.port, '/', agent);
        if (r.body === name) {
          got = performance.now() - start;
          break;
        }
      }
      if (got === undefined) ngFailed++;
      else ngSamples.push(got);
      await sleep(GAP_MS);
    }
    agent.destroy();
    await nginx.stop();
    ngSummary = summarise('nginx 1.22 (upstream file + reload)', ngSamples, ngFailed);
  }

  const rows = [
    summarise('drover (etcd put, watch)', drSamples, drFailed),
    summarise('(of which: etcd put acknowledged)', commitSamples, 0),
    ...(ngSummary !== undefined ? [ngSummary] : []),
  ];
  const md = [
    `### Registry-to-traffic latency (${TRIALS} trials each, ms from announce to first answer by the new member)`,
    '',
    table(['proxy', 'trials', 'failed', 'p50', 'p90', 'p99', 'max'], rows.map((r) => [r.label, r.trials, r.failed, r.p50, r.p90, r.p99, r.max])),
    '',
  ].join('\n');
  process.stdout.write(`${md}\n`);
  const host = hostInfo();
  const file = writeResult('etcd-registry-latency', { host, loadavg1mBefore: loadBefore, trials: TRIALS, results: rows });
  process.stdout.write(`load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${host.loadavg1m.toFixed(2)} on ${host.cpus} CPUs\n`);
  process.stdout.write(`results: ${file}\n`);
}

runBench(main);
