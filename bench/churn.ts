/**
 * Churn: every PERIOD seconds, every member of the service is replaced (a rolling deploy done
 * all at once) while autocannon keeps the proxy busy. Each round: start N new backends,
 * announce them, 300 ms later withdraw the old ones, 500 ms later stop the old backends (they
 * close gracefully: in-progress requests finish, idle keep-alive connections close).
 *
 * - drover: announce = etcd put, withdraw = etcd delete (applied in place, no reload);
 * - nginx: announce and withdraw = rewrite the upstream file + `nginx -s reload` (2 reloads a round).
 *
 * Every request is counted: sent (autocannon's requests.sent) against 2xx / non-2xx responses
 * and request errors from autocannon's per-request events; "unanswered" are requests still in
 * flight when the run stopped (at most one per connection).
 * Run: `npm run build && node dist/bench/churn.js` (ROUNDS=8 PERIOD=2.5 MEMBERS=3 CONNECTIONS=32).
 */
import os from 'node:os';
import { getBody, hostInfo, nginxAvailable, runBench, runLoad, sleep, startBackendFarm, startEtcd, startEtcdDrover, startNginx, table, waitFor, writeResult, type BackendFarm, type LoadCount } from './lib/etcd-env.js';

const ROUNDS = Number(process.env['ROUNDS'] ?? 8);
const PERIOD_MS = Number(process.env['PERIOD'] ?? 2.5) * 1000;
const MEMBERS = Number(process.env['MEMBERS'] ?? 3);
const CONNECTIONS = Number(process.env['CONNECTIONS'] ?? 32);

/** How a proxy learns about members. */
interface Announcer {
  announce(ports: readonly number[], all: readonly number[]): Promise<void>;
  withdraw(ports: readonly number[], all: readonly number[]): Promise<void>;
}

/** Runs the churn schedule under load; returns the load counts. */
async function churnUnderLoad(port: number, farm: BackendFarm, first: number[], announcer: Announcer, tag: string): Promise<LoadCount> {
  const seconds = Math.ceil((ROUNDS * PERIOD_MS) / 1000) + 2;
  const load = runLoad(port, seconds, CONNECTIONS);
  let current = first;
  await sleep(1000);
  for (let r = 0; r < ROUNDS; r++) {
    const roundStart = Date.now();
    const fresh = await farm.start(Array.from({ length: MEMBERS }, (_, i) => `${tag}-r${r}-m${i}`));
    await announcer.announce(fresh, [...current, ...fresh]);
    await sleep(300);
    await announcer.withdraw(current, fresh);
    await sleep(500);
    for (const p of current) farm.stop(p);
    current = fresh;
    await sleep(Math.max(0, PERIOD_MS - (Date.now() - roundStart)));
  }
  return load;
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0] ?? 0;
  const farm = startBackendFarm();
  const etcd = await startEtcd();
  const prefix = '/bench/churn/';
  await etcd.client.delete().prefix(prefix);

  // ---- drover
  const first = await farm.start(Array.from({ length: MEMBERS }, (_, i) => `d-init-m${i}`));
  const key = (p: number): string => `${prefix}churn/m${p}`;
  for (const p of first) await etcd.client.put(key(p)).value(`127.0.0.1:${p}`);
  const drover = await startEtcdDrover(etcd, prefix, 'churn');
  const dr = await churnUnderLoad(drover.port, farm, first, {
    announce: async (ports) => {
      await Promise.all(ports.map((p) => etcd.client.put(key(p)).value(`127.0.0.1:${p}`).exec()));
    },
    withdraw: async (ports) => {
      await Promise.all(ports.map((p) => etcd.client.delete().key(key(p)).exec()));
    },
  }, 'd');
  await drover.stop();

  // ---- nginx, reload per change
  let ng: LoadCount | undefined;
  if (nginxAvailable()) {
    const firstN = await farm.start(Array.from({ length: MEMBERS }, (_, i) => `n-init-m${i}`));
    const addr = (ps: readonly number[]): string[] => ps.map((p) => `127.0.0.1:${p}`);
    const nginx = await startNginx(addr(firstN));
    await waitFor(async () => (await getBody(nginx.port)).status === 200, 'nginx serving');
    ng = await churnUnderLoad(nginx.port, farm, firstN, {
      announce: async (_ports, all) => nginx.reload(addr(all)),
      withdraw: async (_ports, remaining) => nginx.reload(addr(remaining)),
    }, 'n');
    await nginx.stop();
  }

  const row = (name: string, c: LoadCount): (string | number)[] => [name, c.sent, c.ok, c.non2xx, c.errors, c.non2xx + c.errors, c.unanswered, c.rps, c.latencyP99];
  const rows = [row('drover (etcd put/delete, no reload)', dr), ...(ng !== undefined ? [row('nginx 1.22 (upstream file + reload per change)', ng)] : [])];
  const md = [
    `### Churn: all ${MEMBERS} members replaced every ${PERIOD_MS / 1000} s, ${ROUNDS} rounds, autocannon ${CONNECTIONS} connections`,
    '',
    table(['proxy', 'sent', '2xx', 'non-2xx', 'errors', 'failed', 'unanswered at stop', 'req/s', 'p99 ms'], rows),
    '',
  ].join('\n');
  process.stdout.write(`${md}\n`);
  const host = hostInfo();
  const file = writeResult('etcd-churn', { host, loadavg1mBefore: loadBefore, rounds: ROUNDS, periodMs: PERIOD_MS, members: MEMBERS, connections: CONNECTIONS, drover: dr, nginx: ng ?? null });
  process.stdout.write(`load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${host.loadavg1m.toFixed(2)} on ${host.cpus} CPUs\nresults: ${file}\n`);
}

runBench(main);
