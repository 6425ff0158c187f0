/**
 * Failover: three backends, each in its own process; under GET load through a real drover one
 * of them is killed with SIGKILL. Every request is counted by the client (no request may be
 * lost: the target is 0 failed), and the admin API is polled to see when the dead backend stops
 * being tried (its attempt counter stops moving) and when it is marked out.
 *
 * Scenarios (same run): passive checks only (the defaults: 5 consecutive failures eject), and
 * active TCP checks every 500 ms with passive checks.
 *
 * Run: `npm run build && node dist/bench/failover.js [--duration 6] [--concurrency 32]`
 * Writes bench/results/failover.json and bench/results/failover.md. Loopback only; about
 * 2 x (duration + 2) s in all.
 */
import { adminBackends, machine, sleep, startBackends, startDrover, positiveFlag, writeResults, type BackendProcess } from './lib/health-harness.js';
import { percentile, runLoad } from './lib/health-load.js';

interface Options {
  /** s of load per scenario; the kill happens after a third of it */
  readonly duration: number;
  /** closed-loop client workers */
  readonly concurrency: number;
}

function parseArgs(argv: readonly string[]): Options {
  const get = (flag: string, dflt: number): number => positiveFlag(argv, flag, dflt);
  return { duration: Math.min(get('--duration', 6), 60), concurrency: Math.min(get('--concurrency', 32), 512) };
}

interface Scenario {
  readonly name: string;
  /** YAML under `services.web` besides `backends` */
  readonly health: string;
}

const SCENARIOS: readonly Scenario[] = [
  { name: 'passive only (defaults)', health: 'retries: 2' },
  {
    name: 'active tcp 500ms + passive',
    health: 'retries: 2\n    health: {active: {tcp: true, interval: 500ms, timeout: 250ms, rise: 2, fall: 2}}',
  },
];

interface Row {
  scenario: string;
  sent: number;
  ok: number;
  failed: number;
  failedBy: Record<string, number>;
  rps: number;
  p50: number;
  p99: number;
  max: number;
  /** ms from the kill to the last attempt drover made on the dead backend */
  lastAttemptMs: number | null;
  /** attempts on the dead backend after the kill (each one retried elsewhere) */
  attemptsAfterKill: number;
  /** ms from the kill to the backend's state change (ejected / unhealthy) */
  markedOutMs: number | null;
  state: string;
  reason: string;
  retries: number | null;
}

async function scrapeRetries(adminPort: number): Promise<number | null> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  const text = await res.text();
  const m = /^drover_retries_total\{service="web"\} (\d+)/m.exec(text);
  return m === null ? null : Number(m[1]);
}

async function runScenario(sc: Scenario, opts: Options): Promise<Row> {
  const procs: BackendProcess[] = [];
  for (const name of ['b1', 'b2', 'b3']) procs.push(await startBackends([`${name}:1:64`]));
  const backends = procs.map((p) => p.backends[0] as { name: string; url: string });
  const drover = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    ${sc.health}
    backends: [${backends.map((b) => `{url: ${b.url}, id: ${b.name}}`).join(', ')}]
routes: [{match: {path_prefix: /}, service: web}]
`);
  const victim = 'b2';
  try {
    // wait until every backend serves (active checks need `rise` passes)
    const serving = sc.health.includes('active') ? ['healthy'] : ['healthy', 'unknown'];
    for (let i = 0; i < 200; i++) {
      const bs = await adminBackends(drover.adminPort, 'web');
      if (bs.length === 3 && bs.every((b) => serving.includes(b.state))) break;
      await sleep(25);
    }
    let killedAt = 0;
    let killedWallAt = 0;
    let countAtKill = 0;
    let lastCount = 0;
    let lastChangeAt = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const v = (await adminBackends(drover.adminPort, 'web')).find((b) => b.id === victim);
        const now = performance.now();
        if (v !== undefined && killedAt > 0) {
          if (v.requests !== lastCount) {
            lastCount = v.requests;
            lastChangeAt = now;
          }
        } else if (v !== undefined) {
          lastCount = v.requests;
        }
        await sleep(10);
      }
    })();
    const killer = (async () => {
      await sleep((opts.duration * 1000) / 3);
      const v = (await adminBackends(drover.adminPort, 'web')).find((b) => b.id === victim);
      countAtKill = v?.requests ?? 0;
      killedAt = performance.now();
      killedWallAt = Date.now();
      lastChangeAt = killedAt;
      await procs[1]?.kill('SIGKILL');
    })();
    const load = await runLoad({ port: drover.port, durationMs: opts.duration * 1000, concurrency: opts.concurrency });
    await killer;
    polling = false;
    await poller;
    const final = (await adminBackends(drover.adminPort, 'web')).find((b) => b.id === victim);
    const changedAt = final?.last_change === null || final?.last_change === undefined ? undefined : Date.parse(final.last_change);
    const markedOut = final !== undefined && (final.state === 'ejected' || final.state === 'unhealthy') && changedAt !== undefined ? changedAt - killedWallAt : null;
    return {
      scenario: sc.name,
      sent: load.sent,
      ok: load.ok,
      failed: load.failedTotal,
      failedBy: load.failed,
      rps: (load.sent * 1000) / load.elapsedMs,
      p50: Math.round(percentile(load.latencies, 50) * 10) / 10,
      p99: Math.round(percentile(load.latencies, 99) * 10) / 10,
      max: Math.round(percentile(load.latencies, 100)),
      lastAttemptMs: Math.round(lastChangeAt - killedAt),
      attemptsAfterKill: (final?.requests ?? lastCount) - countAtKill,
      markedOutMs: markedOut,
      state: final?.state ?? 'gone',
      reason: final?.reason ?? '',
      retries: await scrapeRetries(drover.adminPort),
    };
  } finally {
    await drover.stop();
    for (const p of procs) await p.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const rows: Row[] = [];
  for (const sc of SCENARIOS) {
    rows.push(await runScenario(sc, opts));
    await sleep(500);
  }
  const lines = [
    `Failover: b1, b2, b3 (each its own process), b2 killed with SIGKILL after ${((opts.duration * 1000) / 3 / 1000).toFixed(1)} s of ${opts.duration} s of closed-loop GET load (${opts.concurrency} workers), every request counted by the client.`,
    '',
    '| scenario | sent | ok | failed (target 0) | req/s | p50 ms | p99 ms | max ms | attempts on b2 after the kill | last attempt on b2 after the kill | b2 marked out after | b2 state, reason | retries |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.scenario} | ${r.sent} | ${r.ok} | ${r.failed}${r.failed > 0 ? ` ${JSON.stringify(r.failedBy)}` : ''} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.max} | ${r.attemptsAfterKill} | ${r.lastAttemptMs ?? '—'} ms | ${r.markedOutMs ?? '—'} ms | ${r.state} (${r.reason}) | ${r.retries ?? '—'} |`,
    ),
    '',
  ];
  const md = lines.join('\n');
  const written = writeResults('failover', { machine: machine(), options: opts, rows }, md);
  process.stdout.write(`${md}\nwritten: ${written.md}, ${written.json}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`failover failed: ${String(err)}\n`);
  process.exit(1);
});
