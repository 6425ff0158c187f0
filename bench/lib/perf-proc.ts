/**
 * Process-tree accounting from /proc (Linux): CPU time (utime + stime of a process and all its
 * descendants) and resident memory, so a proxy made of several processes (NGINX master and
 * worker, drover's cluster) is measured whole.
 */
import fs from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`; 100 on Linux). */
export const CLK_TCK = 100;

interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  /** utime + stime, in clock ticks */
  readonly ticks: number;
  /** utime (user space), in clock ticks */
  readonly user: number;
  /** stime (kernel, on the process's behalf), in clock ticks */
  readonly system: number;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // the command name is in parentheses and may contain spaces: parse after the last ')'
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const user = Number(rest[11]);
    const system = Number(rest[12]);
    return { pid, ppid: Number(rest[1]), ticks: user + system, user, system };
  } catch {
    return undefined;
  }
}

/** `pid` and every descendant alive now. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    const p = Number(name);
    if (!Number.isInteger(p)) continue;
    const st = readStat(p);
    if (st === undefined) continue;
    const list = children.get(st.ppid);
    if (list === undefined) children.set(st.ppid, [p]);
    else list.push(p);
  }
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0 && out.length < 10_000) {
    const p = stack.pop() as number;
    out.push(p);
    for (const c of children.get(p) ?? []) stack.push(c);
  }
  return out;
}

/** CPU time of the tree, in microseconds. */
export function treeCpuMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const p of pids) ticks += readStat(p)?.ticks ?? 0;
  return (ticks * 1e6) / CLK_TCK;
}

/** CPU time of the tree split into user space and kernel, in microseconds. */
export function treeCpuSplitMicros(pids: readonly number[]): { user: number; system: number } {
  let user = 0;
  let system = 0;
  for (const p of pids) {
    const st = readStat(p);
    user += st?.user ?? 0;
    system += st?.system ?? 0;
  }
  return { user: (user * 1e6) / CLK_TCK, system: (system * 1e6) / CLK_TCK };
}

/** Resident set size of the tree, in bytes (VmRSS summed). */
export function treeRssBytes(pids: readonly number[]): number {
  let kb = 0;
  for (const p of pids) {
    try {
      const s = fs.readFileSync(`/proc/${p}/status`, 'latin1');
      const m = /VmRSS:\s+(\d+) kB/.exec(s);
      if (m !== null) kb += Number(m[1]);
    } catch {
      // the process is gone
    }
  }
  return kb * 1024;
}

/** Samples a tree's RSS every `everyMs` while running; `stop()` returns the peak in bytes. */
export function rssPeakSampler(pids: readonly number[], everyMs = 200): { stop(): number } {
  let peak = treeRssBytes(pids);
  const t = setInterval(() => {
    peak = Math.max(peak, treeRssBytes(pids));
  }, everyMs);
  return {
    stop: () => {
      clearInterval(t);
      return Math.max(peak, treeRssBytes(pids));
    },
  };
}
