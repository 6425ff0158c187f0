/**
 * Reading Prometheus text exposition in tests: one parser for every test that looks at
 * `/metrics` or `Metrics.metricsText()`.
 */

/** One sample: metric name, its labels, its value. */
export interface Series {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** Parses the text format (as prom-client writes it: one space before the value). */
export function parseMetrics(text: string): Series[] {
  const out: Series[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The one series of `name` with exactly these labels (undefined when absent). */
export function findSeries(series: readonly Series[], name: string, labels: Record<string, string>): Series | undefined {
  const want = Object.entries(labels);
  return series.find((s) => s.name === name && Object.keys(s.labels).length === want.length && want.every(([k, v]) => s.labels[k] === v));
}

/** The value of the one series of `name` with exactly these labels (undefined when absent). */
export function seriesValue(series: readonly Series[], name: string, labels: Record<string, string>): number | undefined {
  return findSeries(series, name, labels)?.value;
}

/** The sum of every series of `name` whose labels include `labels` (0 when none). */
export function sumSeries(series: readonly Series[], name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels);
  return series.filter((s) => s.name === name && want.every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

/** Scrapes `/metrics` on an admin port and sums the series of `name` whose labels include `labels`. */
export async function scrapeSum(adminPort: number, name: string, labels: Record<string, string> = {}): Promise<number> {
  return sumSeries(parseMetrics(await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()), name, labels);
}
