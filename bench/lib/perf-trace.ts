/**
 * Where a target's time goes, measured from outside the process: system calls per request
 * (`strace -c`) and a `perf record -g` profile summarised by shared object and by symbol. Both
 * attach to running processes by pid for the length of one load run, so the target is the same
 * process the throughput runs measured. Linux only; each returns undefined when its tool is
 * missing or refuses (perf needs perf_event_open, which some VMs do not offer).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** One row of `strace -c`: how often a system call ran during the traced run. */
export interface SyscallCount {
  readonly name: string;
  readonly calls: number;
}

/** True when `cmd` runs (`cmd --version` exits 0). */
function runs(cmd: string): boolean {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

/** Starts a tracer attached to `pids`; `stop()` ends it (SIGINT, as ^C would) and resolves with its exit. */
export function attach(cmd: string, args: readonly string[]): { stop(): Promise<void> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.resume();
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  return {
    stop: async () => {
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Parses the table `strace -c` writes: `% time seconds usecs/call calls [errors] syscall`. */
export function parseStraceSummary(text: string): SyscallCount[] {
  const out: SyscallCount[] = [];
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5 || !/^\d+(\.\d+)?$/.test(cols[0] ?? '')) continue;
    const name = cols[cols.length - 1] as string;
    if (name === 'total') continue;
    const calls = Number(cols[3]);
    if (Number.isFinite(calls)) out.push({ name, calls });
  }
  return out.sort((a, b) => b.calls - a.calls);
}

/**
 * Counts the system calls of `pids` (and threads they start) while `load()` runs; undefined
 * without strace. strace slows the traced process several times over, so use its counts per
 * request, never its run's throughput.
 */
export async function countSyscalls<T>(pids: readonly number[], load: () => Promise<T>): Promise<{ counts: SyscallCount[]; result: T } | undefined> {
  if (!runs('strace')) return undefined;
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-strace-')), 'summary.txt');
  const tracer = attach('strace', ['-c', '-f', '-o', file, ...pids.flatMap((p) => ['-p', String(p)])]);
  await new Promise((r) => setTimeout(r, 500)); // attached before the load starts
  const result = await load();
  await tracer.stop();
  try {
    return { counts: parseStraceSummary(fs.readFileSync(file, 'utf8')), result };
  } catch {
    return undefined;
  }
}

/** One line of a `perf report` summary: a share of the samples. */
export interface ProfileShare {
  readonly name: string;
  /** % of all samples (self time) */
  readonly percent: number;
}

/** A `perf record` profile summarised by shared object and by symbol. */
export interface ProfileSummary {
  readonly samples: number;
  readonly byObject: readonly ProfileShare[];
  readonly bySymbol: readonly ProfileShare[];
}

/** Parses `perf report --stdio --no-children --sort KEY` lines: `  12.34%  name...`. */
export function parsePerfReport(text: string, limit: number): ProfileShare[] {
  const out: ProfileShare[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s+([\d.]+)%\s+(.+?)\s*$/.exec(line);
    if (m === null) continue;
    // `--sort dso,sym` pads the object's column: one space, and the `[.]`/`[k]` marks dropped
    const name = (m[2] as string).replace(/(^|\s)\[[.k]\]\s+/g, '$1').replace(/\s{2,}/g, ' ').replace(/file:\/\/\S*?\/dist\//g, 'dist/');
    out.push({ percent: Number(m[1]), name });
    if (out.length >= limit) break;
  }
  return out;
}

/**
 * Samples `pid` with `perf record -g` while `load()` runs and summarises where its CPU went. Run
 * node with `--perf-basic-prof` so JIT-compiled JavaScript frames are named (V8 writes
 * /tmp/perf-PID.map); without it they show as addresses in `[JIT] tid`.
 */
export async function profile<T>(pid: number, load: () => Promise<T>, limit = 20): Promise<{ summary: ProfileSummary; result: T } | undefined> {
  if (spawnSync('perf', ['--version'], { stdio: 'ignore' }).status !== 0) return undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-perf-'));
  const data = path.join(dir, 'perf.data');
  const recorder = attach('perf', ['record', '-g', '-F', '999', '-o', data, '-p', String(pid)]);
  await new Promise((r) => setTimeout(r, 500));
  const result = await load();
  await recorder.stop();
  if (!fs.existsSync(data)) return undefined;
  const report = (sort: string): string =>
    spawnSync('perf', ['report', '-i', data, '--stdio', '--no-children', '-g', 'none', '--sort', sort, '--percent-limit', '0.5'], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 }).stdout ?? '';
  const byObjectText = report('dso');
  // `# Samples: 6K of event 'cpu-clock'`: perf abbreviates with K and M
  const m = /# Samples: ([\d.]+)([KM]?)/.exec(byObjectText);
  const samples = m === null ? NaN : Math.round(Number(m[1]) * (m[2] === 'K' ? 1e3 : m[2] === 'M' ? 1e6 : 1));
  return { summary: { samples, byObject: parsePerfReport(byObjectText, limit), bySymbol: parsePerfReport(report('dso,sym'), limit) }, result };
}
