/**
 * Hot spots, side by side: three backends, one of them the hot spot, under the same open-loop
 * load through each balancer in turn:
 * - drover `round_robin`, `least_conn`, `p2c`, `ewma` (a fresh real drover per run);
 * - NGINX `least_conn` (upstream keep-alive) and HAProxy `leastconn` (`http-reuse always`),
 *   started by the bench from generated configs in a temp dir, one worker / one thread, as
 *   drover runs one process.
 *
 * The cluster (see the README's "Balancing against hot spots" for why these figures):
 * - every backend models a service with `SLOTS` concurrent request slots (a worker pool) and a
 *   `SERVICE_MS` service time; beyond its slots a request waits in the backend's own FIFO queue;
 * - the offered load is `LOAD` of what three healthy backends can take;
 * - every backend is healthy during the warm-up; when the measured run starts the hot one turns
 *   into the scenario's hot spot: `slow` (10x the service time: a tenth of the capacity);
 *   `stalls` (a 200 ms stall every second, a stop-the-world GC pause or a CPU-throttled
 *   container: nothing in flight on it progresses during a stall); `degrading` (its service
 *   time grows steadily from 1x to 10x over the measured run).
 *
 * Load: `--rate` req/s at evenly spaced send times (`lib/health-load.ts`); latency is measured
 * from the scheduled send time, so a stalled backend cannot hide its queue (no coordinated
 * omission). Clients of a real hot spot do not slow down. Shares come from the bodies (each
 * backend names itself). Every scenario runs every balancer once per round, in an order rotated
 * each round, with fresh backends and a fresh proxy each time; the tables give the median over
 * the rounds of each figure.
 *
 * Run: `npm run build && node dist/bench/hotspot.js [--duration 10] [--rounds 3] [--rate R]
 *      [--scenarios slow,stalls,degrading] [--append FILE [--report]]`
 * With `--append FILE`, this invocation's runs are appended to FILE (JSON lines) and the results
 * are computed from every run in FILE: a long benchmark can be run as several short ones (one
 * scenario and round each) that still make one table; `--report` only writes that table. Writes bench/results/hotspot.json and
 * bench/results/hotspot.md. Loopback only; about rounds x scenarios x 6 x (duration + 12) s.
 * Needs `nginx` and `haproxy` on PATH (a missing one is reported and skipped).
 */
import fs from 'node:fs';
import { adminBackends, machine, sleep, startBackends, startDrover, positiveFlag, writeResults } from './lib/health-harness.js';
import { percentile, runLoad } from './lib/health-load.js';
import { startHaproxy, startNginx, type Peer } from './lib/peers.js';
import { median } from './lib/stats.js';

const DROVER_BALANCERS = ['round_robin', 'least_conn', 'p2c', 'ewma'] as const;
const TARGETS = [...DROVER_BALANCERS.map((b) => `drover ${b}`), 'nginx least_conn', 'haproxy leastconn'] as const;
type Target = (typeof TARGETS)[number];
const PEERS: readonly Target[] = ['nginx least_conn', 'haproxy leastconn'];

const SCENARIOS = ['slow', 'stalls', 'degrading'] as const;
type Scenario = (typeof SCENARIOS)[number];

/** Service time of a healthy backend, ms. */
const SERVICE_MS = 20;
/** Concurrent request slots of every backend. */
const SLOTS = 16;
/** The hot backend's service time in `slow`, and at the end of `degrading`, as a multiple. */
const SLOW_FACTOR = 10;
/** `stalls`: a `STALL_MS` stall every `STALL_PERIOD_MS`. */
const STALL_PERIOD_MS = 1000;
const STALL_MS = 200;
/** The default offered load, as a share of what three healthy backends can take. */
const LOAD = 0.6;
/** A request slower than this many ms counts as caught by the hot spot (in the tables). */
const SLOW_REQUEST_MS = 5 * SERVICE_MS;
/**
 * ms of load before each measured run, with every backend healthy; the hot spot appears when
 * the measured run starts. Every proxy (drover's JIT above all) is warm by then, and drover's
 * latency estimates have had one decay time constant (10 s) to forget its own start-up, as they
 * would have in production, where a hot spot appears in a pool that has run for a while.
 */
const WARMUP_MS = 10_000;
/** A measured request unanswered this long after its send time is given up (a client timeout). */
const GIVE_UP_MS = 10_000;

interface Options {
  /** s of measured load per balancer, scenario and round */
  readonly duration: number;
  /** rounds: every balancer runs every scenario once per round */
  readonly rounds: number;
  /** requests/s offered in all */
  readonly rate: number;
  readonly scenarios: readonly Scenario[];
  /** JSON-lines file the runs are appended to and the results computed from */
  readonly append: string | undefined;
  /** `--report`: run nothing, write the results of the runs in `append` */
  readonly reportOnly: boolean;
}

function parseArgs(argv: readonly string[]): Options {
  const get = (flag: string, dflt: number): number => positiveFlag(argv, flag, dflt);
  const str = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i === -1 ? undefined : argv[i + 1];
  };
  const capacity = (3 * SLOTS * 1000) / SERVICE_MS;
  const scenarios = (str('--scenarios') ?? SCENARIOS.join(',')).split(',');
  for (const s of scenarios) if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown scenario ${s}: ${SCENARIOS.join(', ')}`);
  return {
    duration: Math.min(get('--duration', 10), 60),
    rounds: Math.round(get('--rounds', 3)),
    rate: get('--rate', Math.round(LOAD * capacity)),
    scenarios: scenarios as Scenario[],
    append: str('--append'),
    reportOnly: argv.includes('--report'),
  };
}

/** The backend specs of a scenario (`lib/health-backends.ts`); the hot one is named `hot`. */
function specs(scenario: Scenario, opts: Options): string[] {
  const normal = [`a:${SERVICE_MS}:${SLOTS}`, `b:${SERVICE_MS}:${SLOTS}`];
  switch (scenario) {
    case 'slow':
      return [...normal, `hot:${SERVICE_MS}:${SLOTS}:slow=${SLOW_FACTOR}`];
    case 'stalls':
      return [...normal, `hot:${SERVICE_MS}:${SLOTS}:stall=${STALL_PERIOD_MS}/${STALL_MS}`];
    case 'degrading': {
      // from SERVICE_MS to SLOW_FACTOR x SERVICE_MS over the measured run
      const rate = ((SLOW_FACTOR - 1) * SERVICE_MS) / opts.duration;
      return [...normal, `hot:${SERVICE_MS}:${SLOTS}:degrade=${rate.toFixed(3)}`];
    }
  }
}

/** One balancer's run of one scenario in one round. */
interface Run {
  scenario: Scenario;
  target: Target;
  round: number;
  /** offered req/s and measured s (runs of different settings must not be mixed) */
  rate: number;
  duration: number;
  /** answers per backend, by name */
  answers: Record<string, number>;
  /** share of the hot backend, 0-1 */
  hotShare: number;
  sent: number;
  completed: number;
  failed: number;
  /** share of the requests slower than `SLOW_REQUEST_MS`, 0-1 */
  slowShare: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  /** drover only: each backend's `latency_ewma_ms` when the measured run starts and when it ends */
  ewmaMs?: { start: Record<string, number | null>; end: Record<string, number | null> };
  /** why the run did not happen (a peer not installed) */
  skipped?: string;
}

/** Each backend's `latency_ewma_ms` as drover's admin API shows it now. */
async function ewmaNow(adminPort: number): Promise<Record<string, number | null>> {
  const views = await adminBackends(adminPort, 'web');
  return Object.fromEntries(views.map((v) => [v.id, v.latency_ewma_ms]));
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

async function runOne(scenario: Scenario, target: Target, round: number, opts: Options): Promise<Run> {
  const base = { scenario, target, round, rate: opts.rate, duration: opts.duration };
  // Fresh backends for every run: a queue left on the hot one must not leak into the next, and
  // the degrading one starts again at 1x.
  const proc = await startBackends(specs(scenario, opts));
  const empty = { answers: {}, hotShare: 0, sent: 0, completed: 0, failed: 0, slowShare: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  let t: (Peer & { adminPort?: number }) | undefined;
  try {
    try {
      t = await startTarget(target, proc.backends);
    } catch (err) {
      return { ...base, ...empty, skipped: (err as Error).message };
    }
    const answers: Record<string, number> = {};
    const adminPort = t.adminPort;
    let ewmaStart: Promise<Record<string, number | null>> | undefined;
    const r = await runLoad({
      port: t.port,
      warmupMs: WARMUP_MS,
      durationMs: opts.duration * 1000,
      timeoutMs: GIVE_UP_MS,
      rate: opts.rate,
      onMeasureStart: () => {
        // the hot spot appears now, in a pool that was healthy until then
        proc.child.stdin?.write('go\n');
        if (adminPort !== undefined) ewmaStart = ewmaNow(adminPort);
      },
      onAnswer: (status, body) => {
        if (status === 200) answers[body] = (answers[body] ?? 0) + 1;
      },
    });
    const ewmaMs = adminPort === undefined || ewmaStart === undefined ? undefined : { start: await ewmaStart, end: await ewmaNow(adminPort) };
    const total = Object.values(answers).reduce((s, n) => s + n, 0);
    const slow = r.latencies.length - r.latencies.findIndex((ms) => ms > SLOW_REQUEST_MS);
    return {
      ...base,
      answers,
      hotShare: total === 0 ? 0 : (answers['hot'] ?? 0) / total,
      sent: r.sent,
      completed: r.latencies.length,
      failed: r.failedTotal,
      slowShare: r.latencies.length === 0 || slow > r.latencies.length ? 0 : slow / r.latencies.length,
      p50: percentile(r.latencies, 50),
      p90: percentile(r.latencies, 90),
      p99: percentile(r.latencies, 99),
      p999: percentile(r.latencies, 99.9),
      max: percentile(r.latencies, 100),
      ...(ewmaMs === undefined ? {} : { ewmaMs }),
    };
  } finally {
    await t?.stop();
    await proc.kill('SIGKILL');
  }
}

/** The figures of one scenario and balancer: medians over the rounds. */
interface Cell {
  rounds: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  hotShare: number;
  slowShare: number;
  sent: number;
  failed: number;
  /** each round's p99, ms, in round order */
  p99s: number[];
}

function cellOf(runs: readonly Run[], s: Scenario, t: Target): Cell | undefined {
  const rs = runs.filter((r) => r.scenario === s && r.target === t && r.skipped === undefined).sort((x, y) => x.round - y.round);
  if (rs.length === 0) return undefined;
  const m = (f: (r: Run) => number): number => median(rs.map(f));
  return {
    rounds: rs.length,
    p50: m((r) => r.p50),
    p99: m((r) => r.p99),
    p999: m((r) => r.p999),
    max: m((r) => r.max),
    hotShare: m((r) => r.hotShare),
    slowShare: m((r) => r.slowShare),
    sent: rs.reduce((n, r) => n + r.sent, 0),
    failed: rs.reduce((n, r) => n + r.failed, 0),
    p99s: rs.map((r) => r.p99),
  };
}

/** The issue's target: drover ewma's median p99 against the best peer's, per scenario. */
function verdict(runs: readonly Run[], s: Scenario): { ratio: number; target: number; met: boolean } | undefined {
  const ewma = cellOf(runs, s, 'drover ewma');
  const peers = PEERS.map((p) => cellOf(runs, s, p)).filter((c): c is Cell => c !== undefined);
  if (ewma === undefined || peers.length < PEERS.length) return undefined;
  const best = Math.min(...peers.map((c) => c.p99));
  const target = s === 'stalls' ? 0.5 : 1;
  const ratio = ewma.p99 / best;
  return { ratio, target, met: ratio <= target };
}

function report(runs: readonly Run[], opts: Options): string {
  const ms = (x: number): string => (x >= 100 ? Math.round(x).toString() : x.toFixed(1));
  const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
  const scenarios = SCENARIOS.filter((s) => runs.some((r) => r.scenario === s));
  const skipped = runs.filter((r) => r.skipped !== undefined);
  const cell = (s: Scenario, t: Target, f: (c: Cell) => string): string => {
    const c = cellOf(runs, s, t);
    return c === undefined ? '-' : f(c);
  };
  const rounds = Math.max(0, ...runs.map((r) => r.round));
  const capacity = (3 * SLOTS * 1000) / SERVICE_MS;
  return [
    `Hot spots: backends a, b and hot, ${SLOTS} slots x ${SERVICE_MS} ms each (${capacity} req/s for the three when healthy); ${opts.rate} req/s offered (${pct(opts.rate / capacity)} of that; open loop, latency from the scheduled send time), ${opts.duration} s measured after ${WARMUP_MS / 1000} s of warm-up with every backend healthy; the hot spot appears when the measured run starts; requests unanswered after ${GIVE_UP_MS / 1000} s are given up (failed, counted at ${GIVE_UP_MS / 1000} s); ${rounds} round(s), medians over the rounds.`,
    `Scenarios: slow = hot takes ${SERVICE_MS * SLOW_FACTOR} ms; stalls = hot stalls ${STALL_MS} ms every ${STALL_PERIOD_MS} ms (nothing in flight on it progresses); degrading = hot goes from ${SERVICE_MS} to ${SERVICE_MS * SLOW_FACTOR} ms over the measured run.`,
    '',
    '| balancer | ' + scenarios.map((s) => `${s} p50 / p99 ms | ${s} hot share`).join(' | ') + ' |',
    '|---|' + scenarios.map(() => '---|---|').join(''),
    ...TARGETS.map((t) => `| ${t} | ` + scenarios.map((s) => `${cell(s, t, (c) => `${ms(c.p50)} / ${ms(c.p99)}`)} | ${cell(s, t, (c) => pct(c.hotShare))}`).join(' | ') + ' |'),
    '',
    '| scenario | drover ewma p99 / best of NGINX and HAProxy p99 | target |',
    '|---|---|---|',
    ...scenarios.map((s) => {
      const v = verdict(runs, s);
      return v === undefined ? `| ${s} | n/a (a run is missing or skipped) | |` : `| ${s} | ${v.ratio.toFixed(2)} | <= ${v.target}: ${v.met ? 'met' : 'missed'} |`;
    }),
    '',
    `| scenario | balancer | p99 per round ms | p99.9 ms | max ms | > ${SLOW_REQUEST_MS} ms | sent | failed |`,
    '|---|---|---|---|---|---|---|---|',
    ...scenarios.flatMap((s) =>
      TARGETS.map((t) => {
        const c = cellOf(runs, s, t);
        return c === undefined
          ? `| ${s} | ${t} | - | | | | | |`
          : `| ${s} | ${t} | ${c.p99s.map(ms).join(', ')} | ${ms(c.p999)} | ${ms(c.max)} | ${pct(c.slowShare)} | ${c.sent} | ${c.failed} |`;
      }),
    ),
    ...(skipped.length === 0 ? [] : ['', ...skipped.map((r) => `skipped: ${r.scenario} / ${r.target} round ${r.round}: ${r.skipped ?? ''}`)]),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const earlier: Run[] =
    opts.append !== undefined && fs.existsSync(opts.append)
      ? fs
          .readFileSync(opts.append, 'utf8')
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as Run)
      : [];
  for (const r of earlier) {
    if (r.rate !== opts.rate || r.duration !== opts.duration) throw new Error(`${opts.append} holds runs at ${r.rate} req/s x ${r.duration} s: use the same --rate and --duration, or another file`);
  }
  if (opts.reportOnly && opts.append === undefined) throw new Error('--report needs --append FILE');
  const runs = [...earlier];
  for (let i = 0; i < (opts.reportOnly ? 0 : opts.rounds); i++) {
    for (const scenario of opts.scenarios) {
      // rounds are counted per scenario (the runs in FILE may hold other scenarios' rounds)
      const round = 1 + Math.max(0, ...runs.filter((r) => r.scenario === scenario).map((r) => r.round));
      // the order rotates every round, so no balancer always runs first (or last)
      const order = TARGETS.map((_, j) => TARGETS[(j + round - 1) % TARGETS.length]!);
      for (const target of order) {
        const run = await runOne(scenario, target, round, opts);
        runs.push(run);
        if (opts.append !== undefined) fs.appendFileSync(opts.append, `${JSON.stringify(run)}\n`);
        process.stderr.write(
          `round ${round} ${scenario} / ${target}: ${run.skipped ?? `p50 ${run.p50.toFixed(1)} ms, p99 ${run.p99.toFixed(1)} ms, max ${run.max.toFixed(0)} ms, hot share ${(run.hotShare * 100).toFixed(1)} %, failed ${run.failed}`}${run.ewmaMs === undefined ? '' : ` ewma ms at start ${JSON.stringify(run.ewmaMs.start)}, end ${JSON.stringify(run.ewmaMs.end)}`}\n`,
        );
        await sleep(300);
      }
    }
  }
  const md = report(runs, opts);
  const settings = {
    duration: opts.duration,
    rate: opts.rate,
    rounds: Math.max(0, ...runs.map((r) => r.round)),
    scenarios: SCENARIOS.filter((s) => runs.some((r) => r.scenario === s)),
  };
  const json = { machine: machine(), settings, serviceMs: SERVICE_MS, slots: SLOTS, slowFactor: SLOW_FACTOR, stall: { periodMs: STALL_PERIOD_MS, ms: STALL_MS }, warmupMs: WARMUP_MS, runs };
  const written = writeResults('hotspot', json, md);
  process.stdout.write(`${md}\nwritten: ${written.md}, ${written.json}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`hotspot failed: ${String(err)}\n`);
  process.exit(1);
});
