/**
 * `npm run bench`: drover side by side with the proxies people compare it with, on loopback.
 *
 *   node dist/bench/run.js [--rounds 5] [--wrk-duration 6] [--duration 4] [--quick]
 *                          [--paired-rounds 7] [--paired-rate 2500] [--trace-duration 3]
 *                          [--targets direct,drover,...] [--idle 10000] [--out bench/results]
 *
 * Two fast backends (NGINX `return 200`, or Node when NGINX is absent), then every target on the
 * same backends: `direct` (no proxy), `drover` (workers: 1), `drover-2w` (workers: 2),
 * `http-proxy`, `undici-bare`, and `nginx` / `haproxy` when installed. Only when named in
 * --targets: `drover-undici` (drover with `DROVER_UPSTREAM=undici`: every backend on undici
 * instead of its own HTTP/1.1 upstream, so the run shows what that upstream gains; also paired
 * with drover in the CPU comparison), `undici-fwd` (bare undici plus the contract's forwarding headers), `raw-undici`
 * (an experiment: undici behind a minimal raw-socket HTTP front end instead of node:http) and
 * `tcp-pipe` (not a proxy: bytes relayed to the first backend, the latency floor of a Node
 * process). Rounds are interleaved
 * (A B C ... A B C ...) and medians reported. Each round runs wrk first (C, one thread, 50
 * connections: the primary generator, since autocannon is JavaScript and saturates before NGINX
 * does) and reads, over that run: requests/s, p50/p99, user and system CPU microseconds per
 * request of the target's whole process tree (from /proc/PID/stat), and the connections the
 * backends accepted (NGINX stub_status) while the load was steady (a proxy that keeps its
 * upstream connections alive opens none) and, apart, when wrk stopped with requests in flight.
 * Then autocannon, as a second column, since users run it: requests/s,
 * p50/p99, CPU per request, peak RSS. After the rounds: system calls per request of each proxy
 * (`strace -c` over a short wrk run) and, with `perf` installed, where drover's CPU goes (`perf
 * record -g` of a drover started with `--perf-basic-prof`, so JIT frames are named) by shared
 * object and symbol. Then: latency added at a
 * low rate (200 requests/s, minus direct's), RSS per idle keep-alive connection, and 1 MiB
 * responses. Then the paired CPU comparison: drover and one peer loaded at the same time, each at
 * the same fixed rate, CPU per request of both read over the same seconds; the per-round
 * ratios' median. Host noise on a shared VM moves both sides alike, so this ratio varies far
 * less than one taken from runs made at different moments.
 * Writes bench/results/<date>.json and .svg and prints a markdown table.
 * Loopback only; the load generator shares the machine's cores with the targets.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './lib/stats.js';
import { idleConnections, lowLoadLatency, runAutocannon, runFixedRate, runWrk, type LoadResult, type WrkResult } from './lib/perf-load.js';
import { processTree, rssPeakSampler, treeCpuMicros, treeCpuSplitMicros, treeRssBytes } from './lib/perf-proc.js';
import { countSyscalls, profile, type ProfileSummary } from './lib/perf-trace.js';
import { installed, ONE_MIB, startBackends, startDrover, startHaproxy, startNginxProxy, startNodeTarget, stopAll, type Running } from './lib/perf-servers.js';
import { renderChart, type Panel } from './lib/perf-svg.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Options {
  rounds: number;
  /** s of the wrk run under strace and under perf (0: neither) */
  traceDuration: number;
  /** s per autocannon run */
  duration: number;
  /** s per wrk run; 0: no wrk */
  wrkDuration: number;
  /** s of the low-rate latency run */
  /** s per low-load sample; `lowRounds` interleaved rounds of them */
  lowDuration: number;
  lowRounds: number;
  /** s of the 1 MiB run */
  bigDuration: number;
  /** rounds of the paired CPU comparison (0: off) */
  pairedRounds: number;
  /** s per paired round */
  pairedDuration: number;
  /** requests/s offered to each of the pair */
  pairedRate: number;
  idle: number;
  targets: string[] | undefined;
  out: string;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { rounds: 5, traceDuration: 3, duration: 4, wrkDuration: 6, lowDuration: 2, lowRounds: 3, bigDuration: 4, pairedRounds: 7, pairedDuration: 4, pairedRate: 2500, idle: 10_000, targets: undefined, out: path.join(ROOT, 'bench', 'results') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    switch (a) {
      case '--rounds':
        o.rounds = Math.max(1, Number(v()));
        break;
      case '--duration':
        o.duration = Math.max(1, Number(v()));
        break;
      case '--wrk-duration':
        o.wrkDuration = Math.max(0, Number(v()));
        break;
      case '--paired-rounds':
        o.pairedRounds = Math.max(0, Number(v()));
        break;
      case '--trace-duration':
        o.traceDuration = Math.max(0, Number(v()));
        break;
      case '--paired-rate':
        o.pairedRate = Math.max(100, Number(v()));
        break;
      case '--low-rounds':
        o.lowRounds = Math.max(1, Number(v()));
        break;
      case '--idle':
        o.idle = Math.max(0, Number(v()));
        break;
      case '--targets':
        o.targets = v().split(',');
        break;
      case '--out':
        o.out = path.resolve(v());
        break;
      case '--quick':
        Object.assign(o, { rounds: 3, duration: 2, wrkDuration: 2, traceDuration: 2, lowDuration: 1, lowRounds: 2, bigDuration: 2, pairedRounds: 3, pairedDuration: 2, idle: 2_000 });
        break;
      case '--help':
      case '-h':
        process.stdout.write('usage: node dist/bench/run.js [--rounds N] [--wrk-duration S (0: off)] [--duration S (autocannon)] [--trace-duration S (0: no strace/perf)] [--paired-rounds N (0: off)] [--paired-rate R] [--low-rounds N] [--idle N] [--targets a,b] [--quick] [--out DIR]\n');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown flag ${a}`);
    }
  }
  return o;
}

interface RunFigures extends LoadResult {
  /** CPU microseconds of the target's process tree per request */
  readonly cpuPerReq: number;
  /** bytes */
  readonly rssPeak: number;
}

/** One wrk run of a target, with the CPU and upstream connections read over the same seconds. */
interface WrkFigures extends WrkResult {
  /** user-space CPU microseconds of the target's process tree per request */
  readonly userPerReq: number;
  /** kernel CPU microseconds of the target's process tree per request */
  readonly systemPerReq: number;
  /**
   * connections the backends accepted while the load was steady (from 1 s into the run until
   * just before wrk stopped); undefined: backends cannot tell
   */
  readonly upstreamOpened: number | undefined;
  /**
   * connections the backends accepted from just before wrk stopped until 0.5 s after: wrk closes
   * its connections with requests in flight, and a proxy that aborts those upstream requests
   * must close their connections (HTTP/1.1 has no other way to cancel); one that then opens new
   * ones nobody asked for shows it here
   */
  readonly upstreamOpenedAtStop: number | undefined;
}

interface TargetSummary {
  name: string;
  runs: RunFigures[];
  wrk: WrkFigures[];
  rps: number;
  p50: number;
  p99: number;
  cpuPerReq: number;
  rssPeak: number;
  wrkRps?: number;
  wrkP50?: number;
  wrkP99?: number;
  /** medians over the wrk runs, µs per request */
  userPerReq?: number;
  systemPerReq?: number;
  /** summed over the wrk runs */
  upstreamOpened?: number;
  upstreamOpenedAtStop?: number;
  /** system calls per request (strace -c over a short wrk run), most frequent first */
  syscallsPerReq?: { name: string; perReq: number }[];
  lowP50?: number;
  lowP99?: number;
  addedP50?: number;
  addedP99?: number;
  idlePerConn?: number;
  idleOpen?: number;
  bigRps?: number;
  bigMiBps?: number;
  /** drover's CPU per request / this target's, loaded at the same time (median of rounds) */
  pairedCpuRatio?: number;
  pairedCpuRatios?: number[];
  lost: number;
}

function fmt(n: number | undefined, digits = 0): string {
  return n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits);
}

class Progress {
  private readonly start = Date.now();
  private done = 0;
  constructor(private readonly total: number) {}
  step(seconds: number, label: string): void {
    const elapsed = (Date.now() - this.start) / 1000;
    const left = Math.max(0, this.total - this.done);
    const mm = (s: number): string => `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, '0')}`;
    process.stdout.write(`[${mm(elapsed)} elapsed, ~${mm(left)} left] ${label}\n`);
    this.done += seconds;
  }
}

async function measure(t: Running, seconds: number): Promise<RunFigures> {
  const pids = processTree(t.pid);
  const cpu0 = treeCpuMicros(pids);
  const rss = rssPeakSampler(pids);
  const r = await runAutocannon(`${t.url}/`, seconds);
  const cpu1 = treeCpuMicros(processTree(t.pid));
  return { ...r, cpuPerReq: r.total > 0 ? (cpu1 - cpu0) / r.total : NaN, rssPeak: rss.stop() };
}

async function measureWrk(t: Running, seconds: number, accepts: (() => Promise<number>) | undefined): Promise<WrkFigures | undefined> {
  // 1 s of the same load first: the other targets' runs left this one idle long enough for its
  // upstream keep-alive connections to time out, and JIT and pools warm up
  await runWrk(`${t.url}/`, 1);
  const pids = processTree(t.pid);
  const cpu0 = treeCpuSplitMicros(pids);
  const started = Date.now();
  const running = runWrk(`${t.url}/`, seconds);
  const at = (ms: number): Promise<unknown> => new Promise((r) => setTimeout(r, Math.max(0, started + ms - Date.now())));
  // Upstream connections are counted from 1 s into the run (when the warm-up's wrk stopped, it
  // closed its connections with requests in flight, and a proxy must close an upstream
  // connection whose request it abandons; reopening those is not steady state) until shortly
  // before wrk stops (its own stop abandons requests again: counted apart, after the run).
  await at(Math.min(1_000, (seconds * 1000) / 4));
  const a0 = accepts === undefined ? undefined : await accepts();
  await at(seconds * 1000 - Math.min(500, (seconds * 1000) / 8));
  const a1 = accepts === undefined ? undefined : await accepts();
  const w = await running;
  const cpu1 = treeCpuSplitMicros(processTree(t.pid));
  await new Promise((r) => setTimeout(r, 500));
  const a2 = accepts === undefined ? undefined : await accepts();
  if (w === undefined) return undefined;
  const per = (us: number): number => (w.requests > 0 ? us / w.requests : NaN);
  // `direct` is the backends themselves: their accepts are the load generator's connections
  const counted = a0 !== undefined && a1 !== undefined && a2 !== undefined && t.name !== 'direct';
  return {
    ...w,
    userPerReq: per(cpu1.user - cpu0.user),
    systemPerReq: per(cpu1.system - cpu0.system),
    upstreamOpened: counted ? a1 - a0 : undefined,
    upstreamOpenedAtStop: counted ? a2 - a1 : undefined,
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = new Date();
  const be = await startBackends();
  process.stdout.write(`backends: ${be.kind} on 127.0.0.1:${be.ports[0]} and :${be.ports[1]}\n`);
  const wanted = (name: string): boolean => o.targets === undefined || o.targets.includes(name);
  const targets: Running[] = [];
  try {
    if (wanted('direct')) targets.push({ name: 'direct', pid: be.running.pid, url: `http://127.0.0.1:${be.ports[0]}` });
    if (wanted('drover')) targets.push(await startDrover(ROOT, 'drover', be.ports, 1));
    if (wanted('drover-2w')) targets.push(await startDrover(ROOT, 'drover-2w', be.ports, 2));
    // only when asked for by name: the same drover on undici for every backend (A/B of the upstream)
    if (o.targets?.includes('drover-undici') === true) targets.push(await startDrover(ROOT, 'drover-undici', be.ports, 1, [], { DROVER_UPSTREAM: 'undici' }));
    if (wanted('http-proxy')) targets.push(await startNodeTarget(ROOT, 'http-proxy', 'http-proxy', be.ports));
    if (wanted('undici-bare')) targets.push(await startNodeTarget(ROOT, 'undici-bare', 'undici-bare', be.ports));
    // only when asked for by name: bare undici plus the contract's forwarding headers
    if (o.targets?.includes('undici-fwd') === true) targets.push(await startNodeTarget(ROOT, 'undici-fwd', 'undici-bare', be.ports, ['--forwarding']));
    // only when asked for by name: the experiment measuring node:http's server-side cost
    if (o.targets?.includes('raw-undici') === true) targets.push(await startNodeTarget(ROOT, 'raw-undici', 'raw-undici', be.ports));
    // only when asked for by name: not a proxy, a byte relay (the latency floor of a Node process)
    if (o.targets?.includes('tcp-pipe') === true) targets.push(await startNodeTarget(ROOT, 'tcp-pipe', 'tcp-pipe', be.ports));
    if (wanted('nginx') && installed('nginx')) targets.push(await startNginxProxy(be.ports));
    if (wanted('haproxy') && installed('haproxy')) targets.push(await startHaproxy(be.ports));
    process.stdout.write(`targets: ${targets.map((t) => t.name).join(', ')}; ${o.rounds} interleaved rounds of ${o.wrkDuration > 0 && installed('wrk') ? `${o.wrkDuration} s wrk + ` : ''}${o.duration} s autocannon, 50 connections\n`);
    const useWrk = o.wrkDuration > 0 && installed('wrk');
    const idleTargets = targets.filter((t) => ['drover', 'nginx', 'undici-bare', 'haproxy'].includes(t.name));
    const perRun = o.duration + (useWrk ? o.wrkDuration + 1.5 : 0) + 1;
    const traced = useWrk && o.traceDuration > 0 ? targets.filter((t) => t.name !== 'direct') : [];
    const droverTarget = targets.find((t) => t.name === 'drover');
    const peers = droverTarget === undefined ? [] : targets.filter((t) => ['drover-undici', 'undici-bare', 'undici-fwd', 'raw-undici', 'http-proxy', 'nginx', 'haproxy'].includes(t.name));
    const total =
      targets.length * 2 + o.rounds * targets.length * perRun + traced.length * (o.traceDuration + 1) + (traced.length > 0 ? o.traceDuration + 6 : 0) + targets.length * (o.lowRounds * (o.lowDuration + 0.5) + o.bigDuration + 0.5) + peers.length * o.pairedRounds * (o.pairedDuration + 0.2) + idleTargets.length * 8;
    const progress = new Progress(total);
    const sums = new Map<string, TargetSummary>(targets.map((t) => [t.name, { name: t.name, runs: [], wrk: [], rps: 0, p50: 0, p99: 0, cpuPerReq: 0, rssPeak: 0, lost: 0 }]));

    for (const [k, t] of targets.entries()) {
      progress.step(2, `warm-up ${k + 1}/${targets.length}: ${t.name}`);
      await runAutocannon(`${t.url}/`, 2);
    }
    for (let round = 1; round <= o.rounds; round++) {
      for (const [k, t] of targets.entries()) {
        progress.step(perRun, `round ${round}/${o.rounds}, target ${k + 1}/${targets.length}: ${t.name}`);
        const s = sums.get(t.name) as TargetSummary;
        if (useWrk) {
          const w = await measureWrk(t, o.wrkDuration, be.accepts);
          if (w !== undefined) {
            s.wrk.push(w);
            s.lost += w.errors;
          }
        }
        const f = await measure(t, o.duration);
        s.runs.push(f);
        // autocannon stops with one request in flight per connection: those are not lost
        s.lost += Math.max(0, f.sent - f.total - 50) + f.bad;
      }
    }
    for (const s of sums.values()) {
      s.rps = median(s.runs.map((r) => r.rps));
      s.p50 = median(s.runs.map((r) => r.p50));
      s.p99 = median(s.runs.map((r) => r.p99));
      s.cpuPerReq = median(s.runs.map((r) => r.cpuPerReq));
      s.rssPeak = Math.max(...s.runs.map((r) => r.rssPeak));
      if (s.wrk.length > 0) {
        s.wrkRps = median(s.wrk.map((w) => w.rps));
        s.wrkP50 = median(s.wrk.map((w) => w.p50));
        s.wrkP99 = median(s.wrk.map((w) => w.p99));
        s.userPerReq = median(s.wrk.map((w) => w.userPerReq));
        s.systemPerReq = median(s.wrk.map((w) => w.systemPerReq));
        const opened = s.wrk.map((w) => w.upstreamOpened);
        if (opened.every((x) => x !== undefined)) s.upstreamOpened = opened.reduce((a: number, x) => a + (x as number), 0);
        const atStop = s.wrk.map((w) => w.upstreamOpenedAtStop);
        if (atStop.every((x) => x !== undefined)) s.upstreamOpenedAtStop = atStop.reduce((a: number, x) => a + (x as number), 0);
      }
    }

    // System calls per request: a short wrk run with strace attached to the target's processes
    for (const [k, t] of traced.entries()) {
      progress.step(o.traceDuration + 1, `strace -c ${k + 1}/${traced.length}: ${t.name}`);
      const r = await countSyscalls(processTree(t.pid), () => runWrk(`${t.url}/`, o.traceDuration));
      const requests = r?.result?.requests ?? 0;
      if (r === undefined || requests === 0) continue;
      (sums.get(t.name) as TargetSummary).syscallsPerReq = r.counts.slice(0, 8).map((c) => ({ name: c.name, perReq: c.calls / requests }));
    }

    // Where drover's CPU goes: perf record of a drover started with --perf-basic-prof (its own
    // process, so the flag's map-file writes do not touch the measured one)
    let droverProfile: ProfileSummary | undefined;
    if (traced.length > 0 && droverTarget !== undefined && installed('perf')) {
      progress.step(o.traceDuration + 6, `perf record -g: drover with --perf-basic-prof`);
      const p = await startDrover(ROOT, 'drover-perf', be.ports, 1, ['--perf-basic-prof']);
      await runWrk(`${p.url}/`, 2); // warm-up: JIT
      droverProfile = (await profile(p.pid, () => runWrk(`${p.url}/`, o.traceDuration)))?.summary;
    }

    // Latency added at a low rate, in interleaved rounds: each round measures direct and every
    // target one after the other, and the added latency is the median of the per-round
    // differences (one 4 s sample per target moved by 0.5 ms between runs on this VM).
    const low = new Map<string, { p50: number[]; p99: number[] }>(targets.map((t) => [t.name, { p50: [], p99: [] }]));
    for (let round = 0; round < o.lowRounds; round++) {
      for (const [k, t] of targets.entries()) {
        progress.step(o.lowDuration + 0.5, `low load (200 req/s) round ${round + 1}/${o.lowRounds}, ${k + 1}/${targets.length}: ${t.name}`);
        const l = await lowLoadLatency(`${t.url}/`, 200, o.lowDuration);
        const m = low.get(t.name) as { p50: number[]; p99: number[] };
        m.p50.push(l.p50);
        m.p99.push(l.p99);
      }
    }
    const directLow = low.get('direct');
    for (const s of sums.values()) {
      const m = low.get(s.name) as { p50: number[]; p99: number[] };
      s.lowP50 = median(m.p50);
      s.lowP99 = median(m.p99);
      if (directLow !== undefined) {
        s.addedP50 = median(m.p50.map((x, i) => x - (directLow.p50[i] ?? NaN)));
        s.addedP99 = median(m.p99.map((x, i) => x - (directLow.p99[i] ?? NaN)));
      }
    }

    // 1 MiB responses
    for (const [k, t] of targets.entries()) {
      progress.step(o.bigDuration + 0.5, `1 MiB responses ${k + 1}/${targets.length}: ${t.name}`);
      const r = await runAutocannon(`${t.url}/1m`, o.bigDuration, 10);
      const s = sums.get(t.name) as TargetSummary;
      s.bigRps = r.rps;
      s.bigMiBps = r.bytesPerSec / ONE_MIB;
    }

    // Paired CPU: drover and one peer at the same fixed rate, at the same time
    for (const [k, peer] of peers.entries()) {
      const d = droverTarget as Running;
      const ratios: number[] = [];
      for (let round = 1; round <= o.pairedRounds; round++) {
        progress.step(o.pairedDuration + 0.2, `paired CPU ${k + 1}/${peers.length}: drover + ${peer.name} at ${o.pairedRate} req/s each, round ${round}/${o.pairedRounds}`);
        const dPids = processTree(d.pid);
        const pPids = processTree(peer.pid);
        const d0 = treeCpuMicros(dPids);
        const p0 = treeCpuMicros(pPids);
        const [rd, rp] = await Promise.all([runFixedRate(`${d.url}/`, o.pairedRate, o.pairedDuration), runFixedRate(`${peer.url}/`, o.pairedRate, o.pairedDuration)]);
        const dUs = treeCpuMicros(dPids) - d0;
        const pUs = treeCpuMicros(pPids) - p0;
        // Under `overallRate` autocannon's `sent` runs ahead of what it wrote (measured: +2 500
        // over 2 s at 2 500/s against NGINX directly, nothing lost), so only failures count here.
        for (const [t, r] of [[d, rd], [peer, rp]] as const) (sums.get(t.name) as TargetSummary).lost += r.bad;
        if (rd.total > 0 && rp.total > 0 && pUs > 0) ratios.push(dUs / rd.total / (pUs / rp.total));
      }
      (sums.get(peer.name) as TargetSummary).pairedCpuRatio = ratios.length > 0 ? median(ratios) : undefined;
      (sums.get(peer.name) as TargetSummary).pairedCpuRatios = ratios;
    }

    // RSS per idle keep-alive connection
    for (const [k, t] of idleTargets.entries()) {
      if (o.idle === 0) break;
      progress.step(8, `${o.idle} idle connections ${k + 1}/${idleTargets.length}: ${t.name}`);
      const pids = processTree(t.pid);
      await new Promise((r) => setTimeout(r, 1_000));
      const before = treeRssBytes(pids);
      const idle = await idleConnections(t.url, o.idle);
      await new Promise((r) => setTimeout(r, 1_500));
      const after = treeRssBytes(processTree(t.pid));
      idle.close();
      const s = sums.get(t.name) as TargetSummary;
      s.idleOpen = idle.open;
      s.idlePerConn = idle.open > 0 ? (after - before) / idle.open : NaN;
      await new Promise((r) => setTimeout(r, 1_000));
    }

    report(o, started, be.kind, [...sums.values()], droverProfile);
  } finally {
    await stopAll();
  }
}

/**
 * The performance issue's targets (ratios from wrk in this run) as a table: what is wanted, the
 * figure, met or not. A ratio whose peer was not measured reads `-` and counts as not met.
 */
function issueTargets(drover: TargetSummary, wrkRatios: Readonly<Record<string, { rpsPerRound: number; cpuPerReq: number }>>, lost: number): string[] {
  const row = (what: string, want: string, value: number | undefined, digits: number, unit: string, met: (v: number) => boolean): string =>
    `| ${what} | ${want} | ${value === undefined || !Number.isFinite(value) ? '-' : `${fmt(value, digits)}${unit}`} | ${value !== undefined && Number.isFinite(value) && met(value) ? 'met' : 'not met'} |`;
  return [
    '| target (wrk) | wanted | this run | |',
    '|---|---|---:|---|',
    row('drover user CPU per request', '<= 12 µs', drover.userPerReq, 1, ' µs', (v) => v <= 12),
    row('total CPU per request / NGINX 1 worker', '<= 1.6x', wrkRatios['nginx']?.cpuPerReq, 2, 'x', (v) => v <= 1.6),
    row('req/s / NGINX 1 worker (median of per-round ratios)', '>= 0.65x', wrkRatios['nginx']?.rpsPerRound, 2, 'x', (v) => v >= 0.65),
    row('req/s / http-proxy (median of per-round ratios)', '>= 2x', wrkRatios['http-proxy']?.rpsPerRound, 2, 'x', (v) => v >= 2),
    row('total CPU per request / bare undici', '<= 0.8x', wrkRatios['undici-bare']?.cpuPerReq, 2, 'x', (v) => v <= 0.8),
    row('upstream connections opened at steady state (all wrk rounds)', '0', drover.upstreamOpened, 0, '', (v) => v === 0),
    row('failed requests (all targets, all runs)', '0', lost, 0, '', (v) => v === 0),
  ];
}

function report(o: Options, started: Date, backendKind: string, all: TargetSummary[], droverProfile: ProfileSummary | undefined): void {
  const get = (n: string): TargetSummary | undefined => all.find((s) => s.name === n);
  const drover = get('drover');
  const wrkLines: string[] = [];
  wrkLines.push(`| target (wrk -t1 -c50) | req/s | p50 ms | p99 ms | user µs/req | system µs/req | CPU µs/req | upstream conns opened, steady / at stop | syscalls/req (top) |`);
  wrkLines.push(`|---|---:|---:|---:|---:|---:|---:|---:|---|`);
  for (const s of all) {
    const sys = s.syscallsPerReq === undefined ? '-' : `${fmt(s.syscallsPerReq.reduce((a, c) => a + c.perReq, 0), 1)}: ${s.syscallsPerReq.filter((c) => c.perReq >= 0.05).map((c) => `${c.name} ${fmt(c.perReq, 2)}`).join(', ')}`;
    wrkLines.push(
      `| ${s.name} | ${fmt(s.wrkRps)} | ${fmt(s.wrkP50, 2)} | ${fmt(s.wrkP99, 2)} | ${fmt(s.userPerReq, 1)} | ${fmt(s.systemPerReq, 1)} | ${fmt((s.userPerReq ?? NaN) + (s.systemPerReq ?? NaN), 1)} | ${s.name === 'direct' ? '-' : `${fmt(s.upstreamOpened)} / ${fmt(s.upstreamOpenedAtStop)}`} | ${sys} |`,
    );
  }
  const lines: string[] = [];
  lines.push(`| target (autocannon, 50 conns) | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | added p50 / p99 ms @200 req/s | RSS/idle conn KiB | 1 MiB req/s |`);
  lines.push(`|---|---:|---:|---:|---:|---:|---:|---:|---:|`);
  for (const s of all) {
    lines.push(
      `| ${s.name} | ${fmt(s.rps)} | ${fmt(s.p50, 2)} | ${fmt(s.p99, 2)} | ${fmt(s.cpuPerReq, 1)} | ${fmt(s.rssPeak / ONE_MIB, 1)} | ${s.name === 'direct' ? `(${fmt(s.lowP50, 3)} / ${fmt(s.lowP99, 3)} abs)` : `${fmt(s.addedP50, 3)} / ${fmt(s.addedP99, 3)}`} | ${fmt(s.idlePerConn === undefined ? undefined : s.idlePerConn / 1024, 1)} | ${fmt(s.bigRps)} |`,
    );
  }
  const wrkRatioLines: string[] = [];
  const wrkRatios: Record<string, { rpsPerRound: number; cpuPerReq: number; userPerReq: number }> = {};
  if (drover !== undefined && drover.wrk.length > 0) {
    for (const s of all) {
      if (s.name === 'drover' || s.name === 'direct' || s.wrk.length === 0) continue;
      const perRound = drover.wrk.map((d, i) => d.rps / (s.wrk[i]?.rps ?? NaN)).filter(Number.isFinite);
      const cpu = (x: TargetSummary): number => (x.userPerReq ?? NaN) + (x.systemPerReq ?? NaN);
      const r = { rpsPerRound: median(perRound), cpuPerReq: cpu(drover) / cpu(s), userPerReq: (drover.userPerReq ?? NaN) / (s.userPerReq ?? NaN) };
      wrkRatios[s.name] = r;
      wrkRatioLines.push(`| drover / ${s.name} | ${fmt(r.rpsPerRound, 2)}x (${perRound.map((x) => x.toFixed(2)).join(' ')}) | ${fmt(r.cpuPerReq, 2)}x | ${fmt(r.userPerReq, 2)}x |`);
    }
  }
  const profileLines: string[] = [];
  if (droverProfile !== undefined) {
    profileLines.push(`drover's CPU by profile (\`perf record -g\`, ${droverProfile.samples} samples during ${o.traceDuration} s of wrk, self time): by shared object ${droverProfile.byObject.slice(0, 6).map((x) => `${x.name} ${fmt(x.percent, 1)} %`).join(', ')}`, '', '| symbol (top, self) | % |', '|---|---:|', ...droverProfile.bySymbol.slice(0, 15).map((x) => `| \`${x.name.replace(/\|/g, '\\|').slice(0, 110)}\` | ${fmt(x.percent, 1)} |`));
  }
  const ratios: Record<string, { rps: number; rpsPerRound: number; cpuPerReq: number; pairedCpuPerReq?: number; idlePerConn?: number }> = {};
  const ratioLines: string[] = [];
  if (drover !== undefined) {
    for (const s of all) {
      if (s.name === 'drover' || s.name === 'direct') continue;
      // Rounds are interleaved, so drover's slot and the peer's slot of one round are close in
      // time: the median of per-round ratios moves less with this VM's drift than the ratio of
      // medians taken at different moments.
      const perRound = drover.runs.map((d, i) => d.rps / (s.runs[i]?.rps ?? NaN)).filter(Number.isFinite);
      const r = {
        rps: drover.rps / s.rps,
        rpsPerRound: median(perRound),
        cpuPerReq: drover.cpuPerReq / s.cpuPerReq,
        ...(s.pairedCpuRatio !== undefined ? { pairedCpuPerReq: s.pairedCpuRatio } : {}),
        ...(drover.idlePerConn !== undefined && s.idlePerConn !== undefined ? { idlePerConn: drover.idlePerConn / s.idlePerConn } : {}) };
      ratios[s.name] = r;
      const paired = r.pairedCpuPerReq === undefined ? '-' : `${fmt(r.pairedCpuPerReq, 2)}x (${(s.pairedCpuRatios ?? []).map((x) => x.toFixed(2)).join(' ')})`;
      ratioLines.push(`| drover / ${s.name} | ${fmt(r.rps, 2)}x | ${fmt(r.rpsPerRound, 2)}x (${perRound.map((x) => x.toFixed(2)).join(' ')}) | ${fmt(r.cpuPerReq, 2)}x | ${paired} | ${r.idlePerConn === undefined ? '-' : `${fmt(r.idlePerConn, 2)}x`} |`);
    }
  }
  const lost = all.reduce((a, s) => a + s.lost, 0);
  const verdictLines = drover === undefined ? [] : issueTargets(drover, wrkRatios, lost);
  const cmd = `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim();
  const header = `${started.toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · Node ${process.version} · backends: ${backendKind} · ${o.rounds} interleaved rounds, ${o.duration} s each, 50 connections, medians`;
  const md = [`### drover benchmark`, '', `\`${cmd}\` — ${header}`, '', ...wrkLines, '', '| ratio (wrk) | req/s (median of per-round ratios) | CPU/req | user CPU/req |', '|---|---:|---:|---:|', ...wrkRatioLines, '', ...verdictLines, ...(verdictLines.length > 0 ? [''] : []), ...profileLines, '', ...lines, '', `| ratio | req/s (of medians) | req/s (median of per-round ratios) | CPU/req | CPU/req paired (${o.pairedRate} req/s each, same seconds; median of rounds) | RSS/idle conn |`, '|---|---:|---:|---:|---:|---:|', ...ratioLines, '', `requests lost or not answered 2xx (all targets, all runs; sent - answered - 50 in flight at the stop, plus non-2xx and errors): ${lost}`].join('\n');
  process.stdout.write(`\n${md}\n`);
  fs.mkdirSync(o.out, { recursive: true });
  const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\..*$/, '');
  const json = path.join(o.out, `${stamp}.json`);
  fs.writeFileSync(json, `${JSON.stringify({ command: cmd, started: started.toISOString(), machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version }, backends: backendKind, options: o, targets: all, ratios, wrkRatios, droverProfile, markdown: md }, null, 2)}\n`);
  const panels: Panel[] = [
    { title: 'requests/s (wrk -t1 -c50, median)', format: (v) => v.toFixed(0), values: all.map((s) => ({ label: s.name, value: s.wrkRps ?? 0 })) },
    { title: 'user + system CPU µs per request (wrk)', format: (v) => v.toFixed(1), values: all.filter((s) => s.name !== 'direct').map((s) => ({ label: s.name, value: (s.userPerReq ?? 0) + (s.systemPerReq ?? 0) })) },
    { title: 'requests/s (autocannon, 50 conns, median)', format: (v) => v.toFixed(0), values: all.map((s) => ({ label: s.name, value: s.rps })) },
    { title: 'p99 latency ms under load', format: (v) => v.toFixed(2), values: all.map((s) => ({ label: s.name, value: s.p99 })) },
    { title: 'added p50 latency ms at 200 req/s', format: (v) => v.toFixed(3), values: all.filter((s) => s.name !== 'direct').map((s) => ({ label: s.name, value: Math.max(0, s.addedP50 ?? 0) })) },
    { title: 'peak RSS MiB under load', format: (v) => v.toFixed(1), values: all.filter((s) => s.name !== 'direct').map((s) => ({ label: s.name, value: s.rssPeak / ONE_MIB })) },
    { title: '1 MiB responses/s (10 conns)', format: (v) => v.toFixed(0), values: all.map((s) => ({ label: s.name, value: s.bigRps ?? 0 })) },
  ];
  const svg = path.join(o.out, `${stamp}.svg`);
  fs.writeFileSync(svg, renderChart('drover vs. peers on loopback', `${cmd} · ${header}`.slice(0, 150), panels));
  process.stdout.write(`\nwrote ${path.relative(ROOT, json)} and ${path.relative(ROOT, svg)}\n`);
}

main().catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  await stopAll();
  process.exit(1);
});
