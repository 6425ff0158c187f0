/**
 * Small end-to-end helpers over a running drover's admin API and proxy (pool views, metrics,
 * sequential request bodies), shared by the registry end-to-end tests.
 */
import { request } from './backends.js';
import type { DroverProcess } from './drover.js';
import { parseMetrics, seriesValue } from './metrics.js';

export interface PoolEntry {
  id: string;
  url: string;
  source: string;
  state: string;
  inflight: number;
}

export async function pool(d: DroverProcess, service: string): Promise<PoolEntry[] | undefined> {
  const res = await request(d.adminPort, { path: '/api/services' });
  const body = JSON.parse(res.body) as { services: { name: string; backends: PoolEntry[] }[] };
  return body.services.find((s) => s.name === service)?.backends;
}

export async function poolIds(d: DroverProcess, service: string): Promise<string> {
  return ((await pool(d, service)) ?? []).map((b) => `${b.id}:${b.state}`).sort().join(',');
}

/** The value of one sample in `/metrics` (0 when absent). */
export async function metric(d: DroverProcess, name: string, labels: Record<string, string>): Promise<number> {
  const res = await request(d.adminPort, { path: '/metrics' });
  return seriesValue(parseMetrics(res.body), name, labels) ?? 0;
}

/** Bodies of `n` sequential requests, each on a fresh connection. */
export async function bodies(port: number, path: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await request(port, { path });
    out.push(r.status === 200 ? r.body : `${r.status}:${r.body}`);
  }
  return out;
}

export const uniq = (xs: readonly string[]): string[] => [...new Set(xs)].sort();

