/**
 * Hot spot: three backends, one ten times slower (a tenth of the capacity: same number of
 * request slots, ten times the service time). Each balancer in turn gets the same load through a
 * fresh real drover; we report each backend's share of the requests and the latency percentiles
 * the client saw. A balancer that watches load (least_conn, p2c) should route around the slow
 * backend; round_robin keeps sending it a third and its queue grows.
 *
 * Two loads, both measured for every balancer in the same run:
 * - open loop (`lib/health-load.ts`): `--rate` req/s at evenly spaced send times, latency from
 *   the scheduled send time. Clients of a real hot spot do not slow down, and round_robin sends
 *   the slow backend more than it can serve (rate / 3 > its capacity), so its queue grows.
 * - closed loop (autocannon, `--connections`): each connection waits for its answer, which caps
 *   every queue at the connection count; here the best an in-flight-based balancer can do is
 *   bounded (it equalises in-flight counts, so p99 is the slow backend's latency at a third of
 *   the connections, against all of them under round_robin: a ratio of at most about 3).
 *
 * Run: `npm run build && node dist/bench/hotspot.js [--duration 5] [--rate 450] [--connections 48]`
 * Writes bench/results/hotspot.json and bench/results/hotspot.md. Loopback only; bounded by
 * `duration` per balancer (about 3 x (duration + 2) s in all).
 */
import autocannon from 'autocannon';
import { adminBackends, machine, sleep, startBackends, startDrover, positiveFlag, writeResults } from './lib/health-harness.js';
import { percentile, runLoad } from './lib/health-load.js';

const BALANCERS = ['round_robin', 'least_conn', 'p2c'] as const;
type Balancer = (typeof BALANCERS)[number];

/** Service time in ms of a fast backend; the slow one takes ten times as long. */
const FAST_MS = 4;
const SLOW_MS = FAST_MS * 10;
/** request slots of every backend */
const WORKERS = 4;

interface Options {
  /** s of measured load per balancer */
  readonly duration: number;
  /** requests/s offered in all (open loop) */
  readonly rate: number;
  /** autocannon connections (closed loop) */
  readonly connections: number;
}

function parseArgs(argv: readonly string[]): Options {
  const get = (flag: string, dflt: number): number => positiveFlag(argv, flag, dflt);
  return { duration: Math.min(get('--duration', 5), 60), rate: get('--rate', 450), connections: get('--connections', 48) };
}

type Mode = 'open' | 'closed';

interface Row {
  balancer: Balancer;
  mode: Mode;
  /** requests each backend received, by name (from the admin API) */
  requests: Record<string, number>;
  /** share of the slow backend, 0-1 */
  slowShare: number;
  sent: number;
  completed: number;
  non2xx: number;
  errors: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

async function runOne(balancer: Balancer, mode: Mode, opts: Options): Promise<Row> {
  // Fresh backends for every run: a queue left on the slow one must not leak into the next.
  const proc = await startBackends([`fast1:${FAST_MS}:${WORKERS}`, `fast2:${FAST_MS}:${WORKERS}`, `slow:${SLOW_MS}:${WORKERS}`]);
  const urls: Record<string, string> = {};
  for (const b of proc.backends) urls[b.name] = b.url;
  const drover = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    balancer: ${balancer}
    backends: [${Object.entries(urls).map(([name, url]) => `{url: ${url}, id: ${name}}`).join(', ')}]
routes: [{match: {path_prefix: /}, service: web}]
`);
  try {
    let load: Pick<Row, 'sent' | 'completed' | 'non2xx' | 'errors' | 'rps' | 'p50' | 'p90' | 'p99' | 'max'>;
    if (mode === 'open') {
      const r = await runLoad({ port: drover.port, durationMs: opts.duration * 1000, rate: opts.rate });
      const non2xx = Object.entries(r.failed).filter(([k]) => /^\d+$/.test(k)).reduce((n, [, v]) => n + v, 0);
      load = {
        sent: r.sent,
        completed: r.latencies.length,
        non2xx,
        errors: r.failedTotal - non2xx,
        rps: (r.latencies.length * 1000) / r.elapsedMs,
        p50: Math.round(percentile(r.latencies, 50)),
        p90: Math.round(percentile(r.latencies, 90)),
        p99: Math.round(percentile(r.latencies, 99)),
        max: Math.round(percentile(r.latencies, 100)),
      };
    } else {
      const r = await autocannon({ url: `http://127.0.0.1:${drover.port}/`, connections: opts.connections, duration: opts.duration });
      load = {
        sent: r.requests.sent,
        completed: r.requests.total,
        non2xx: r.non2xx,
        errors: r.errors,
        rps: r.requests.average,
        p50: r.latency.p50,
        p90: r.latency.p90,
        p99: r.latency.p99,
        max: r.latency.max,
      };
    }
    const backends = await adminBackends(drover.adminPort, 'web');
    const requests: Record<string, number> = {};
    let total = 0;
    for (const b of backends) {
      requests[b.id] = b.requests;
      total += b.requests;
    }
    return { balancer, mode, requests, slowShare: total === 0 ? 0 : (requests['slow'] ?? 0) / total, ...load };
  } finally {
    await drover.stop();
    await proc.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const rows: Row[] = [];
  for (const mode of ['open', 'closed'] as const) {
    for (const balancer of BALANCERS) {
      rows.push(await runOne(balancer, mode, opts));
      await sleep(500);
    }
  }
  const table = (mode: Mode, title: string): string[] => {
    const rr = rows.find((r) => r.balancer === 'round_robin' && r.mode === mode) as Row;
    const verdict = (r: Row): string =>
      r.balancer === 'round_robin' ? '—' : `${(r.p99 / rr.p99).toFixed(2)} ${r.p99 * 3 <= rr.p99 ? '(target ≤ 0.33 met)' : '(target ≤ 0.33 missed)'}`;
    return [
      `### ${title}`,
      '',
      '| balancer | fast1 | fast2 | slow | slow share | sent | completed | non-2xx | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | p99 / round_robin p99 |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
      ...rows
        .filter((r) => r.mode === mode)
        .map(
          (r) =>
            `| ${r.balancer} | ${r.requests['fast1'] ?? 0} | ${r.requests['fast2'] ?? 0} | ${r.requests['slow'] ?? 0} | ${(r.slowShare * 100).toFixed(1)} % | ${r.sent} | ${r.completed} | ${r.non2xx} | ${r.errors} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p90} | ${r.p99} | ${r.max} | ${verdict(r)} |`,
        ),
      '',
    ];
  };
  const lines = [
    `Hot spot: fast1, fast2 (${WORKERS} slots x ${FAST_MS} ms) and slow (${WORKERS} slots x ${SLOW_MS} ms: a tenth of the capacity), ${opts.duration} s per balancer and load.`,
    '',
    ...table('open', `Open loop: ${opts.rate} req/s offered (latency from the scheduled send time)`),
    ...table('closed', `Closed loop: autocannon, ${opts.connections} connections`),
  ];
  const md = lines.join('\n');
  const written = writeResults('hotspot', { machine: machine(), options: opts, fastMs: FAST_MS, slowMs: SLOW_MS, workers: WORKERS, rows }, md);
  process.stdout.write(`${md}\nwritten: ${written.md}, ${written.json}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`hotspot failed: ${String(err)}\n`);
  process.exit(1);
});
