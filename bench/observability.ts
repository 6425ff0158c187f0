/**
 * The cost of observability (issue 5), two figures:
 *
 * 1. Throughput through drover with the access log on (JSON lines to a file) as a ratio to the
 *    same setup with it off: two real drovers side by side in front of the same backend, driven
 *    by autocannon in interleaved rounds (the order alternates every round, so drift of the
 *    machine hits both alike); we report the median of each and the median of the per-round
 *    ratios. Target: under 15 % lost.
 * 2. The share of CPU spent in metrics code on the proxy path: a third drover (access log off,
 *    so nothing else dilutes the share) runs under `node --cpu-prof` while autocannon loads it;
 *    its `.cpuprofile` is parsed and the self time of functions in prom-client and
 *    src/observability/metrics.ts is divided by all non-idle time. No scrape happens during the profile.
 *    Target: under 5 %.
 *
 * Run: `npm run build && node dist/bench/observability.js [--rounds 5] [--seconds 4]
 * [--connections 50] [--profile-seconds 8]`. Loopback only; bounded (about
 * 2 x rounds x seconds + profile-seconds + 15 s). Writes bench/results/observability.md and
 * bench/results/observability.json. Every request is counted: autocannon's sent and completed,
 * non-2xx and errors, and the access log's line count against the requests it was sent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { summariseFile, type ProfileSummary } from './lib/obs-profile.js';
import { median } from './lib/stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(ROOT, 'bin', 'drover');
const RESULTS = path.join(ROOT, 'bench', 'results');

interface Options {
  readonly rounds: number;
  /** s per autocannon run */
  readonly seconds: number;
  readonly connections: number;
  /** s of load while profiling */
  readonly profileSeconds: number;
}

function parseArgs(argv: readonly string[]): Options {
  const get = (flag: string, dflt: number, max: number): number => {
    const i = argv.indexOf(flag);
    const v = i === -1 ? undefined : Number(argv[i + 1]);
    return v === undefined || !Number.isFinite(v) || v <= 0 ? dflt : Math.min(v, max);
  };
  return {
    rounds: Math.round(get('--rounds', 5, 20)),
    seconds: get('--seconds', 4, 30),
    connections: Math.round(get('--connections', 50, 500)),
    profileSeconds: get('--profile-seconds', 8, 60),
  };
}

// ---- child processes -----------------------------------------------------------------------

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Resolves with the first stdout line `pick` accepts (JSON-parsed), or rejects after `ms`. */
function firstLine<T>(child: ChildProcess, pick: (v: Record<string, unknown>) => T | undefined, ms = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`child did not get ready in ${ms} ms: ${err}`)), ms);
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const onData = (d: Buffer): void => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let v: Record<string, unknown>;
        try {
          v = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        const got = pick(v);
        if (got !== undefined) {
          clearTimeout(timer);
          // keep draining stdout so the child never blocks on a full pipe
          child.stdout?.off('data', onData);
          child.stdout?.resume();
          resolve(got);
          return;
        }
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited (${code}) before it was ready: ${err}`));
    });
  });
}

async function startBackend(): Promise<{ port: number; child: ChildProcess }> {
  const child = track(spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'lib', 'obs-backend.js')], { stdio: ['pipe', 'pipe', 'pipe'] }));
  const port = await firstLine(child, (v) => (typeof v['port'] === 'number' ? v['port'] : undefined));
  return { port, child };
}

interface Drover {
  readonly port: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

async function startDrover(dir: string, name: string, backendPort: number, accessLog: string, nodeFlags: string[] = []): Promise<Drover> {
  const cfg = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(
    cfg,
    `listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: ${accessLog}
shutdown_grace: 2s
services:
  app:
    backends: [{url: http://127.0.0.1:${backendPort}, id: app-1}]
routes:
  - match: {path_prefix: /}
    service: app
`,
  );
  const child = track(spawn(process.execPath, [...nodeFlags, BIN, 'start', '-c', cfg], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }));
  const port = await firstLine(child, (v) => (v['msg'] === 'ready' ? ((v['listen'] as { port: number }[])[0]?.port ?? 0) : undefined)).catch(async () => {
    throw new Error(`drover ${name} did not start`);
  });
  return {
    port,
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---- load ------------------------------------------------------------------------------------

interface Run {
  /** completed responses per second */
  readonly rps: number;
  /** CPU time of the drover process per completed response, µs (from /proc: user + system) */
  readonly cpuUsPerReq: number;
  readonly sent: number;
  readonly completed: number;
  readonly non2xx: number;
  readonly errors: number;
}

/** utime + stime of `pid` in µs (Linux /proc; clock ticks of 10 ms). */
function cpuUs(pid: number | undefined): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid ?? 0}/stat`, 'latin1');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * 10_000;
  } catch {
    return Number.NaN;
  }
}

async function load(target: Drover, seconds: number, connections: number): Promise<Run> {
  const cpu0 = cpuUs(target.child.pid);
  const r = await autocannon({ url: `http://127.0.0.1:${target.port}/bench`, connections, duration: seconds, pipelining: 1 });
  const cpu = cpuUs(target.child.pid) - cpu0;
  return {
    rps: r.requests.total / r.duration,
    cpuUsPerReq: cpu / Math.max(1, r.requests.total),
    sent: r.requests.sent,
    completed: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
  };
}

function countLines(file: string): number {
  if (!fs.existsSync(file)) return 0;
  const buf = fs.readFileSync(file);
  let n = 0;
  for (const byte of buf) if (byte === 10) n++;
  return n;
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-obs-bench-'));
  const accessFile = path.join(dir, 'access.log');
  const backend = await startBackend();
  console.log(`backend on 127.0.0.1:${backend.port}; ${opts.rounds} rounds x ${opts.seconds}s x 2, ${opts.connections} connections`);

  // 1. access log on vs off
  const on = await startDrover(dir, 'on', backend.port, accessFile);
  const off = await startDrover(dir, 'off', backend.port, 'off');
  let onSent = 0;
  let onCompleted = 0;
  const account = (r: Run): Run => {
    onSent += r.sent;
    onCompleted += r.completed;
    return r;
  };
  // warm-up (JIT, connection pools), not measured
  account(await load(on, 2, opts.connections));
  await load(off, 2, opts.connections);
  const rows: { round: number; on: Run; off: Run; ratio: number }[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    let onRun: Run;
    let offRun: Run;
    if (round % 2 === 0) {
      onRun = account(await load(on, opts.seconds, opts.connections));
      offRun = await load(off, opts.seconds, opts.connections);
    } else {
      offRun = await load(off, opts.seconds, opts.connections);
      onRun = account(await load(on, opts.seconds, opts.connections));
    }
    const ratio = onRun.rps / offRun.rps;
    rows.push({ round: round + 1, on: onRun, off: offRun, ratio });
    console.log(
      `round ${round + 1}: on ${onRun.rps.toFixed(0)} req/s (${onRun.cpuUsPerReq.toFixed(0)} µs CPU/req), off ${offRun.rps.toFixed(0)} req/s (${offRun.cpuUsPerReq.toFixed(0)} µs CPU/req), ratio ${ratio.toFixed(3)}`,
    );
  }
  await on.stop(); // flushes the access log
  await off.stop();
  const logLines = countLines(accessFile);
  const medOn = median(rows.map((r) => r.on.rps));
  const medOff = median(rows.map((r) => r.off.rps));
  const medRatio = median(rows.map((r) => r.ratio));
  const cpuRatio = median(rows.map((r) => r.on.cpuUsPerReq / r.off.cpuUsPerReq));
  const bad = rows.reduce((n, r) => n + r.on.non2xx + r.on.errors + r.off.non2xx + r.off.errors, 0);

  // 2. CPU profile under load, access log off
  const profDir = path.join(dir, 'prof');
  fs.mkdirSync(profDir);
  const spawnedAt = performance.now();
  const prof = await startDrover(dir, 'prof', backend.port, 'off', ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
  await load(prof, 2, opts.connections); // warm-up
  // Samples before this point (start-up, warm-up) are left out of the summary; the profile
  // starts a little after the spawn, so this also drops the first moments of the measured load.
  const skipUs = (performance.now() - spawnedAt) * 1000;
  const profRun = await load(prof, opts.profileSeconds, opts.connections);
  await prof.stop();
  const files = fs.readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error('no .cpuprofile written');
  // the drover process itself is the only node process started with --cpu-prof
  const summary = summariseFile(path.join(profDir, files[0] ?? ''), 15, skipUs);
  const share = summary.metricsUs / summary.busyUs;

  backend.child.stdin?.end();
  backend.child.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });

  const lostPct = (1 - medRatio) * 100;
  const load1 = os.loadavg()[0] ?? 0;
  const report = renderReport(opts, rows, { medOn, medOff, medRatio, cpuRatio, lostPct, bad, onSent, onCompleted, logLines, load1 }, profRun, summary, share);
  fs.mkdirSync(RESULTS, { recursive: true });
  fs.writeFileSync(path.join(RESULTS, 'observability.md'), report);
  fs.writeFileSync(
    path.join(RESULTS, 'observability.json'),
    `${JSON.stringify({ options: opts, rounds: rows, medianOn: medOn, medianOff: medOff, medianRatio: medRatio, medianCpuPerRequestRatio: cpuRatio, loadAverage1m: load1, lostPct, accessLogLines: logLines, onSent, onCompleted, profile: { run: profRun, ...summary, metricsShare: share } }, null, 2)}\n`,
  );
  console.log(report);
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function renderReport(
  opts: Options,
  rows: readonly { round: number; on: Run; off: Run; ratio: number }[],
  t: { medOn: number; medOff: number; medRatio: number; cpuRatio: number; lostPct: number; bad: number; onSent: number; onCompleted: number; logLines: number; load1: number },
  profRun: Run,
  s: ProfileSummary,
  share: number,
): string {
  const cpus = os.cpus();
  const out: string[] = [];
  out.push('# Observability cost');
  out.push('');
  out.push(`Command: \`npm run build && node dist/bench/observability.js --rounds ${opts.rounds} --seconds ${opts.seconds} --connections ${opts.connections} --profile-seconds ${opts.profileSeconds}\``);
  out.push('');
  out.push(`Machine: ${cpus.length} x ${cpus[0]?.model ?? 'unknown CPU'}, Node ${process.version}, ${new Date().toISOString()}. Loopback only; drover, the backend (a Node HTTP server in its own process) and autocannon share the machine. 1-minute load average at the end of the run: ${t.load1.toFixed(1)} (anything above the core count means other work competed for the CPUs, and the throughput figures are noisier).`);
  out.push('');
  out.push('## 1. Access log on (JSON lines to a file) vs off');
  out.push('');
  out.push(`Two drovers side by side, same backend, ${opts.connections} keep-alive connections, ${opts.seconds} s per run, rounds interleaved (order alternates).`);
  out.push('');
  out.push('| round | on (req/s) | off (req/s) | on / off | on CPU µs/req | off CPU µs/req |');
  out.push('|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) out.push(`| ${r.round} | ${fmt(r.on.rps)} | ${fmt(r.off.rps)} | ${r.ratio.toFixed(3)} | ${fmt(r.on.cpuUsPerReq)} | ${fmt(r.off.cpuUsPerReq)} |`);
  out.push(`| **median** | **${fmt(t.medOn)}** | **${fmt(t.medOff)}** | **${t.medRatio.toFixed(3)}** | | |`);
  out.push('');
  out.push(`Throughput lost to the access log: **${t.lostPct.toFixed(1)} %** (median of per-round ratios; target under 15 %: ${t.lostPct < 15 ? 'met' : 'NOT met'}).`);
  out.push('');
  out.push(`CPU per request of the drover process (from /proc, less sensitive to other load on the machine), median of per-round on/off ratios: **${t.cpuRatio.toFixed(3)}** (${((t.cpuRatio - 1) * 100).toFixed(1)} % more CPU per request with the access log on).`);
  out.push('');
  out.push(`Accounting: non-2xx + errors + timeouts over all measured runs: ${t.bad}. The access-logged drover was sent ${fmt(t.onSent)} requests (warm-up included), autocannon counted ${fmt(t.onCompleted)} responses, and its access log holds ${fmt(t.logLines)} lines (responses still in flight when autocannon stopped counting are logged too).`);
  out.push('');
  out.push('## 2. Share of CPU in metrics code on the proxy path');
  out.push('');
  out.push(`\`node --cpu-prof\` on a drover with the access log off, ${opts.profileSeconds} s of autocannon load (${fmt(profRun.rps)} req/s, ${fmt(profRun.completed)} responses, ${profRun.non2xx + profRun.errors} bad) after a 2 s warm-up; start-up and warm-up samples are left out; no scrape of /metrics meanwhile.`);
  out.push('');
  out.push(`- CPU time in the profile (non-idle samples): ${fmt(s.busyUs / 1000)} ms (GC ${fmt(s.gcUs / 1000)} ms, unattributed native \`(program)\` ${fmt(s.programUs / 1000)} ms)`);
  out.push(`- self time in prom-client + src/observability/metrics.ts: ${fmt(s.metricsUs / 1000, 1)} ms`);
  out.push(`- **share: ${(share * 100).toFixed(2)} %** (target under 5 %: ${share < 0.05 ? 'met' : 'NOT met'}); of the JS-attributed time only (excluding GC and \`(program)\`): ${((s.metricsUs / Math.max(1, s.busyUs - s.gcUs - s.programUs)) * 100).toFixed(2)} %`);
  out.push('');
  out.push('Metrics functions by self time:');
  out.push('');
  out.push('| function | where | self ms |');
  out.push('|---|---|---:|');
  for (const f of s.metricsTop) out.push(`| ${f.name} | ${f.where} | ${fmt(f.selfUs / 1000, 1)} |`);
  out.push('');
  out.push('Top functions overall by self time (for context):');
  out.push('');
  out.push('| function | where | self ms | share |');
  out.push('|---|---|---:|---:|');
  for (const f of s.top) out.push(`| ${f.name} | ${f.where} | ${fmt(f.selfUs / 1000, 1)} | ${((f.selfUs / s.busyUs) * 100).toFixed(1)} % |`);
  out.push('');
  return `${out.join('\n')}\n`;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
