/**
 * Registry-to-traffic latency: from the moment a new member is announced to the first request
 * the proxy answers from it. Side by side in one run:
 *
 * - drover: `etcd put <prefix>lat/<id>` (clock starts before the put is sent);
 * - drover: ZooKeeper `create <prefix>/lat/<id>` (ephemeral znode; clock starts before the create);
 * - drover: a DNS SRV record added to an in-process server (record TTL 1 s, `refresh: 1s`: the
 *   latency is dominated by the re-resolution interval by design, half of it on average);
 * - nginx, the reload way: rewrite the upstream file and `nginx -s reload` (SIGHUP to the
 *   master; clock starts before the file is written).
 *
 * Each trial adds a fresh backend next to a fixed one and polls the proxy with one request at a
 * time on fresh connections until the new backend's name comes back. 100 trials each (override
 * with TRIALS=n). Run: `npm run build && node dist/bench/registry-latency.js`.
 */
import http from 'node:http';
import os from 'node:os';
import { CreateMode } from 'node-zookeeper-client';
import { getBody, hostInfo, nginxAvailable, runBench, sleep, startBackendFarm, startDrover, startEtcd, startEtcdDrover, startNginx, summariseLatency as summarise, table, waitFor, writeResult, type BenchDrover, type LatencySummary as Summary } from './lib/etcd-env.js';
import { startZooKeeper, zkCall, zookeeperAvailable } from './lib/zookeeper-env.js';
import { startDnsServer } from './lib/dns-server.js';

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
  const etcdRun = await measureTrials(drover.port, agent, trialNames, async (name, i) => {
    // exec() sends now: etcd3 builders are lazy and would only send when awaited.
    await etcd.client.put(`${prefix}lat/${name}`).value(`127.0.0.1:${drPorts[i]}`).exec();
  }, async (name) => {
    await etcd.client.delete().key(`${prefix}lat/${name}`);
  });
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
    await nginx.stop();
    ngSummary = summarise('nginx 1.22 (upstream file + reload)', ngSamples, ngFailed);
  }

  // ---- drover + ZooKeeper
  let zkSummary: Summary | undefined;
  if (zookeeperAvailable()) {
    const zk = await startZooKeeper();
    const zkPrefix = '/bench/lat';
    await zkCall<string>((cb) => zk.client.mkdirp(`${zkPrefix}/lat`, cb));
    await zkCall<string>((cb) => zk.client.create(`${zkPrefix}/lat/base`, Buffer.from(`127.0.0.1:${basePort}`), CreateMode.EPHEMERAL, cb));
    const zkDrover = await readyDrover(`registry:\n  zookeeper: {servers: "${zk.servers}", prefix: ${zkPrefix}}\n`);
    await waitFor(async () => (await getBody(zkDrover.port)).body === 'base', 'drover (zookeeper) serving base');
    const zkPorts = await farm.start(trialNames);
    const run = await measureTrials(zkDrover.port, agent, trialNames, async (name, i) => {
      await zkCall<string>((cb) => zk.client.create(`${zkPrefix}/lat/${name}`, Buffer.from(`127.0.0.1:${zkPorts[i]}`), CreateMode.EPHEMERAL, cb));
    }, async (name) => {
      await zkCall<void>((cb) => zk.client.remove(`${zkPrefix}/lat/${name}`, (e) => cb(e, undefined)));
    });
    await zkDrover.stop();
    zk.client.close();
    zkSummary = summarise('drover (ZooKeeper create, watch)', run.samples, run.failed);
  }

  // ---- drover + DNS (SRV, TTL 1 s, refresh 1 s)
  const dns = await startDnsServer();
  const srvName = '_lat._tcp.bench.test';
  const srvRecords = [{ target: '127.0.0.1', port: basePort as number, ttl: 1 }];
  dns.zones.set(srvName, { srv: srvRecords });
  const dnsDrover = await readyDrover(`registry:\n  dns: {servers: ["${dns.server}"], refresh: 1s}\nservices:\n  lat: {dns: {srv: ${srvName}}}\n`);
  await waitFor(async () => (await getBody(dnsDrover.port)).body === 'base', 'drover (dns) serving base');
  const dnsPorts = await farm.start(trialNames);
  const dnsRun = await measureTrials(dnsDrover.port, agent, trialNames, async (_name, i) => {
    dns.zones.set(srvName, { srv: [...srvRecords, { target: '127.0.0.1', port: dnsPorts[i] as number, ttl: 1 }] });
  }, async () => {
    dns.zones.set(srvName, { srv: srvRecords });
    await sleep(2100); // let drover see the removal (1 s TTL floor) before the next trial
  });
  await dnsDrover.stop();
  await dns.close();
  agent.destroy();

  const rows = [
    summarise('drover (etcd put, watch)', etcdRun.samples, etcdRun.failed),
    summarise('(of which: etcd put acknowledged)', etcdRun.committed, 0),
    ...(zkSummary !== undefined ? [zkSummary] : []),
    summarise('drover (DNS SRV, TTL 1 s, refresh 1 s)', dnsRun.samples, dnsRun.failed),
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
  process.stdout.write('(figures depend on the machine\'s load; run it on a quiet one)\n');
  const file = writeResult('etcd-registry-latency', { host, loadavg1mBefore: loadBefore, trials: TRIALS, results: rows });
  process.stdout.write(`load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${host.loadavg1m.toFixed(2)} on ${host.cpus} CPUs\n`);
  process.stdout.write(`results: ${file}\n`);
}

/** drover with `registry` (YAML lines) and one catch-all route to service `lat`, once ready. */
async function readyDrover(registry: string): Promise<BenchDrover> {
  const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
${registry}routes:
  - match: {path_prefix: /}
    service: lat
`);
  await waitFor(async () => (await getBody(d.adminPort, '/readyz')).status === 200, 'drover ready');
  return d;
}

/**
 * One trial per name: `announce` the i-th backend (the clock starts before it is sent), poll the
 * proxy until that backend's name comes back, then `withdraw` it. Returns ms per trial, the
 * announce acknowledgements (ms) and the trials that timed out.
 */
async function measureTrials(
  port: number,
  agent: http.Agent,
  names: readonly string[],
  announce: (name: string, i: number) => Promise<void>,
  withdraw: (name: string) => Promise<void>,
): Promise<{ samples: number[]; committed: number[]; failed: number }> {
  const samples: number[] = [];
  const committed: number[] = [];
  let failed = 0;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    const start = performance.now();
    const sent = announce(name, i).then(() => committed.push(performance.now() - start));
    let got: number | undefined;
    while (performance.now() - start < TRIAL_TIMEOUT_MS) {
      const r = await getBody(port, '/', agent);
      if (r.body === name) {
        got = performance.now() - start;
        break;
      }
    }
    await sent;
    if (got === undefined) failed++;
    else samples.push(got);
    await withdraw(name);
    await sleep(GAP_MS);
  }
  return { samples, committed, failed };
}

runBench(main);
