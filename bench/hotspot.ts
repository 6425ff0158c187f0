/**
 * Hot spots, side by side: three backends, one of them the hot spot, under the same open-loop
 * load through each balancer in turn, in one run:
 * - drover `round_robin`, `least_conn`, `p2c`, `ewma` (a fresh real drover per run);
 * - NGINX `least_conn` and HAProxy `leastconn` (started by the bench from generated configs in a
 *   temp dir, one worker / one thread, as drover runs one process).
 *
 * Scenarios (every backend has `WORKERS` request slots and queues beyond them):
 * - `slow`: the hot backend takes ten times as long (a tenth of the capacity);
 * - `stalls`: the hot backend stalls for 200 ms every second (a GC pause): requests that would
 *   finish during a stall finish when it ends;
 * - `degrading`: the hot backend's service time grows steadily, from 1x to 10x over the run.
 *
 * Load: `--rate` req/s at evenly spaced send times (`lib/health-load.ts`); latency is measured
 * from the scheduled send time, so a stalled backend cannot hide its queue. Clients of a real hot
 * spot do not slow down. Shares come from the bodies (each backend names itself).
 *
 * Run: `npm run build && node dist/bench/hotspot.js [--duration 5] [--rate 450]`
 * Writes bench/results/hotspot.json and bench/results/hotspot.md. Loopback only; about
 * 3 scenarios x 6 balancers x (duration + 2) s in all. Needs `nginx` and `haproxy` on PATH (a
 * missing one is reported and skipped).
 */
import { adminBackends, machine, sleep, startBackends, startDrover, positiveFlag, writeResults } from './lib/health-harness.js';
import { percentile, runLoad } from './lib/health-load.js';
import { startHaproxy, startNginx, type Peer } from './lib/peers.js';

const DROVER_BALANCERS = ['round_robin', 'least_conn', 'p2c', 'ewma'] as const;
const TARGETS = [...DROVER_BALANCERS.map((b) => `drover ${b}`), 'nginx least_conn', 'haproxy leastconn'] as const;
type Target = (typeof TARGETS)[number];
const PEERS: readonly Target[] = ['nginx least_conn', 'haproxy leastconn'];

const SCENARIOS = ['slow', 'stalls', 'degrading'] as const;
type Scenario = (typeof SCENARIOS)[number];

/** Service time in ms of a normal backend. */
const FAST_MS = 4;
/** request slots of every backend */
const WORKERS = 4;
/** `stalls`: a 200 ms stall every this many ms */
const STALL_PERIOD_MS = 1000;
const STALL_MS = 200;
/**
 * ms of unmeasured load at the same rate before each measured run: every proxy (drover's JIT
 * above all) starts warm, and the latency-aware balancer has seen some answers, as it would have
 * in production. The backends start with the warm-up, so the degrading one is near 1x by then.
 */
const WARMUP_MS = 1000;

interface Options {
  /** s of measured load per balancer and scenario */
  readonly duration: number;
  /** requests/s offered in all */
  readonly rate: number;
}

function parseArgs(argv: readonly string[]): Options {
  const get = (flag: string, dflt: number): number => positiveFlag(argv, flag, dflt);
  return { duration: Math.min(get('--duration', 5), 60), rate: get('--rate', 450) };
}

/** The backend specs of a scenario (`lib/health-backends.ts`); the hot one is named `hot`. */
function specs(scenario: Scenario, opts: Options): string[] {
  const normal = [`a:${FAST_MS}:${WORKERS}`, `b:${FAST_MS}:${WORKERS}`];
  switch (scenario) {
    case 'slow':
      return [...normal, `hot:${FAST_MS * 10}:${WORKERS}`];
    case 'stalls':
      return [...normal, `hot:${FAST_MS}:${WORKERS}:stall=${STALL_PERIOD_MS}/${STALL_MS}`];
    case 'degrading': {
      // from FAST_MS to 10 x FAST_MS over warm-up and measured run
      const rate = (9 * FAST_MS) / (opts.duration + WARMUP_MS / 1000);
      return [...normal, `hot:${FAST_MS}:${WORKERS}:degrade=${rate.toFixed(3)}`];
    }
  }
}

interface Row {
  scenario: Scenario;
  target: Target;
  /** answers per backend, by name */
  answers: Record<string, number>;
  /** share of the hot backend, 0-1 */
  hotShare: number;
  sent: number;
  completed: number;
  failed: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** why the run did not happen (a peer not installed) */
  skipped?: string;
}

async function startTarget(target: Target, upstreams: readonly { name: string; url: string }[]): Promise<Peer & { adminPort?: number }> {
  const hostPorts = upstreams.map((u) => u.url.replace('http://', ''));
  if (target === 'nginx least_conn') return startNginx(hostPorts);
  if (target === 'haproxy leastconn') return startHaproxy(hostPorts);
  const balancer = target.slice('drover '.length);
  const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    balancer: ${balancer}
    backends: [${upstreams.map((u) => `{url: ${u.url}, id: ${u.name}}`).join(', ')}]
routes: [{match: {path_prefix: /}, service: web}]
`);
  return { port: d.port, adminPort: d.adminPort, stop: () => d.stop() };
}

async function runOne(scenario: Scenario, target: Target, opts: Options): Promise<Row> {
  // Fresh backends for every run: a queue left on the hot one must not leak into the next, and
  // the degrading one starts again at 1x.
  const proc = await startBackends(specs(scenario, opts));
  const empty = { answers: {}, hotShare: 0, sent: 0, completed: 0, failed: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  let t: (Peer & { adminPort?: number }) | undefined;
  try {
    try {
      t = await startTarget(target, proc.backends);
    } catch (err) {
      return { scenario, target, ...empty, skipped: (err as Error).message };
    }
    await runLoad({ port: t.port, durationMs: WARMUP_MS, rate: opts.rate });
    const answers: Record<string, number> = {};
    const r = await runLoad({
      port: t.port,
      durationMs: opts.duration * 1000,
      rate: opts.rate,
      onAnswer: (status, body) => {
        if (status === 200) answers[body] = (answers[body] ?? 0) + 1;
      },
    });
    if (t.adminPort !== undefined) await adminBackends(t.adminPort, 'web'); // drover still up: no crash hid in the run
    const total = Object.values(answers).reduce((s, n) => s + n, 0);
    return {
      scenario,
      target,
      answers,
      hotShare: total === 0 ? 0 : (answers['hot'] ?? 0) / total,
      sent: r.sent,
      completed: r.latencies.length,
      failed: r.failedTotal,
      p50: Math.round(percentile(r.latencies, 50)),
      p90: Math.round(percentile(r.latencies, 90)),
      p99: Math.round(percentile(r.latencies, 99)),
      max: Math.round(percentile(r.latencies, 100)),
    };
  } finally {
    await t?.stop();
    await proc.kill('SIGKILL');
  }
}

/** The issue's target for drover ewma against the best peer's p99 in `scenario`. */
function verdict(rows: readonly Row[], scenario: Scenario): string {
  const ran = rows.filter((r) => r.scenario === scenario && r.skipped === undefined);
  const ewma = ran.find((r) => r.target === 'drover ewma');
  const peers = ran.filter((r) => PEERS.includes(r.target));
  if (ewma === undefined || peers.length === 0) return 'n/a (a run was skipped)';
  const best = Math.min(...peers.map((r) => r.p99));
  const factor = scenario === 'stalls' ? 0.5 : 1;
  const ratio = best === 0 ? Infinity : ewma.p99 / best;
  return `${ratio.toFixed(2)} x best peer (target <= ${factor}: ${ewma.p99 <= best * factor ? 'met' : 'missed'})`;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const rows: Row[] = [];
  for (const scenario of SCENARIOS) {
    for (const target of TARGETS) {
      const row = await runOne(scenario, target, opts);
      rows.push(row);
      process.stderr.write(`${scenario} / ${target}: ${row.skipped ?? `p50 ${row.p50} ms, p99 ${row.p99} ms, hot share ${(row.hotShare * 100).toFixed(1)} %`}\n`);
      await sleep(300);
    }
  }
  const cell = (r: Row | undefined, f: (r: Row) => string): string => (r === undefined ? '-' : r.skipped !== undefined ? 'skipped' : f(r));
  const find = (s: Scenario, t: Target): Row | undefined => rows.find((r) => r.scenario === s && r.target === t);
  const lines = [
    `Hot spots: backends a, b (${WORKERS} slots x ${FAST_MS} ms) and hot; ${opts.rate} req/s offered (open loop, latency from the scheduled send time), ${opts.duration} s per balancer and scenario.`,
    `Scenarios: slow = hot takes ${FAST_MS * 10} ms; stalls = hot stalls ${STALL_MS} ms every ${STALL_PERIOD_MS} ms; degrading = hot goes from ${FAST_MS} to ${FAST_MS * 10} ms over the run.`,
    '',
    '| balancer | ' + SCENARIOS.map((s) => `${s} p50 / p99 ms | ${s} hot share`).join(' | ') + ' |',
    '|---|' + SCENARIOS.map(() => '---|---|').join(''),
    ...TARGETS.map(
      (t) =>
        `| ${t} | ` +
        SCENARIOS.map((s) => `${cell(find(s, t), (r) => `${r.p50} / ${r.p99}`)} | ${cell(find(s, t), (r) => `${(r.hotShare * 100).toFixed(1)} %`)}`).join(' | ') +
        ' |',
    ),
    '',
    '| scenario | drover ewma p99 vs best of NGINX / HAProxy |',
    '|---|---|',
    ...SCENARIOS.map((s) => `| ${s} | ${verdict(rows, s)} |`),
    '',
    '| scenario | balancer | a | b | hot | sent | completed | failed | p90 ms | max ms |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) =>
      r.skipped !== undefined
        ? `| ${r.scenario} | ${r.target} | skipped: ${r.skipped.replace(/\|/g, '/').slice(0, 80)} | | | | | | | |`
        : `| ${r.scenario} | ${r.target} | ${r.answers['a'] ?? 0} | ${r.answers['b'] ?? 0} | ${r.answers['hot'] ?? 0} | ${r.sent} | ${r.completed} | ${r.failed} | ${r.p90} | ${r.max} |`,
    ),
    '',
  ];
  const md = lines.join('\n');
  const written = writeResults('hotspot', { machine: machine(), options: opts, fastMs: FAST_MS, workers: WORKERS, stall: { periodMs: STALL_PERIOD_MS, ms: STALL_MS }, rows }, md);
  process.stdout.write(`${md}\nwritten: ${written.md}, ${written.json}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`hotspot failed: ${String(err)}\n`);
  process.exit(1);
});
