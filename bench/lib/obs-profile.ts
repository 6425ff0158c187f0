/**
 * Reads a V8 `.cpuprofile` (what `node --cpu-prof` writes) and attributes self time to
 * categories of code, for the observability benchmark's "share of CPU in metrics code".
 *
 * Self time of a node = the sum of the `timeDeltas` of the samples that landed on it (µs): the
 * time the CPU spent in that function itself, not in its callees. `(idle)` is the event loop
 * waiting, not CPU, and is left out of the total.
 */
import fs from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** One function's self time. */
export interface FunctionTime {
  readonly name: string;
  /** script URL, shortened to the part after `drover/` or `node_modules/` when present */
  readonly where: string;
  /** µs */
  readonly selfUs: number;
}

/** What a profile says. */
export interface ProfileSummary {
  /** µs of CPU (every sample except `(idle)`) */
  readonly busyUs: number;
  /** µs of self time in functions `isMetrics` accepts */
  readonly metricsUs: number;
  /** µs in `(garbage collector)` */
  readonly gcUs: number;
  /** µs in `(program)` (native code V8 could not attribute to a JS function) */
  readonly programUs: number;
  /** the functions with the most self time, largest first */
  readonly top: readonly FunctionTime[];
  /** the metrics functions with their self time, largest first */
  readonly metricsTop: readonly FunctionTime[];
}

/** Metrics code: prom-client, and drover's own `src/observability/metrics.ts` (compiled to dist/src/observability/metrics.js). */
export function isMetricsFrame(url: string): boolean {
  return url.includes('/node_modules/prom-client/') || /\/dist\/src\/observability\/metrics\.js$/.test(url) || /\/src\/observability\/metrics\.ts$/.test(url);
}

function shorten(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) return url.slice(nm + '/node_modules/'.length);
  const d = url.indexOf('/dist/');
  if (d !== -1) return url.slice(d + 1);
  return url.replace(/^file:\/\//, '');
}

/**
 * Summarises one profile. `fromUs`: samples taken in the first `fromUs` µs of the profile are
 * left out (process start-up and warm-up are not the proxy path).
 */
export function summarise(profile: CpuProfile, topN = 15, fromUs = 0): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    at += dt;
    if (at < fromUs) continue;
    const id = profile.samples[i] ?? -1;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  // The same function appears as many nodes (one per call path): merge by name + location.
  const merged = new Map<string, FunctionTime & { metrics: boolean }>();
  let busyUs = 0;
  let metricsUs = 0;
  let gcUs = 0;
  let programUs = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') continue;
    busyUs += us;
    if (functionName === '(garbage collector)') gcUs += us;
    if (functionName === '(program)') programUs += us;
    const metrics = isMetricsFrame(url);
    if (metrics) metricsUs += us;
    const key = `${functionName}\u0000${url}\u0000${lineNumber}`;
    const prev = merged.get(key);
    merged.set(key, { name: functionName === '' ? '(anonymous)' : functionName, where: url === '' ? '' : `${shorten(url)}:${lineNumber + 1}`, selfUs: (prev?.selfUs ?? 0) + us, metrics });
  }
  const all = [...merged.values()].sort((a, b) => b.selfUs - a.selfUs);
  const strip = ({ name, where, selfUs }: FunctionTime): FunctionTime => ({ name, where, selfUs });
  return {
    busyUs,
    metricsUs,
    gcUs,
    programUs,
    top: all.slice(0, topN).map(strip),
    metricsTop: all.filter((f) => f.metrics).slice(0, topN).map(strip),
  };
}

/** Reads and summarises the `.cpuprofile` file at `file`. */
export function summariseFile(file: string, topN = 15, fromUs = 0): ProfileSummary {
  return summarise(JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile, topN, fromUs);
}
