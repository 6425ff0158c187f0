/**
 * End-to-end: `workers: 2`. The real `bin/drover` primary forks two serving workers on one shared
 * listener; the primary keeps the file registry, health and admin API. Checks that the workers
 * serve, that the admin API and /metrics sum both workers, that a registry change reaches every
 * worker, and that a worker killed with SIGKILL under load is replaced while the listener stays
 * up (every request is counted; only requests on the killed worker's connections may fail).
 */
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { scrapeSum } from './helpers/metrics.js';
import { waitFor } from './helpers/wait.js';

let a: TestBackend;
let b: TestBackend;
let c: TestBackend;
let drover: DroverProcess;

function services(members: TestBackend[]): string {
  return `services:\n  web:\n    backends:\n${members.map((m) => `      - {url: ${m.url}, id: ${m.name}}`).join('\n')}\n`;
}

async function adminJson(p: string): Promise<unknown> {
  const r = await request(drover.adminPort, { path: p });
  return JSON.parse(r.body) as unknown;
}

interface BackendRow {
  id: string;
  requests: number;
}

async function adminRequests(): Promise<Map<string, number>> {
  const j = (await adminJson('/api/services')) as { services: { name: string; backends: BackendRow[] }[] };
  const web = j.services.find((s) => s.name === 'web');
  return new Map((web?.backends ?? []).map((x) => [x.id, x.requests]));
}

async function metricsRequests(): Promise<number> {
  return scrapeSum(drover.adminPort, 'drover_requests_total', { service: 'web' });
}

function workerPids(): number[] {
  return drover.logs.filter((l) => l['msg'] === 'worker listening').map((l) => l['pid'] as number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  a = await startBackend('a');
  b = await startBackend('b');
  c = await startBackend('c');
  drover = await startDrover(
    `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
workers: 2
shutdown_grace: 2s
registry: {file: services.yaml}
routes:
  - {match: {path_prefix: /}, service: web}
`,
    { files: { 'services.yaml': services([a, b]) } },
  );
}, 30_000);

afterAll(async () => {
  const pids = workerPids();
  const code = await drover?.stop();
  // a graceful stop takes the workers down too
  expect(code).toBe(0);
  for (const pid of pids) expect(alive(pid)).toBe(false);
  await Promise.all([a, b, c].map((x) => x?.close()));
});

describe('workers: 2', () => {
  it('starts two serving workers besides the primary and says so in the ready line', () => {
    const ready = drover.logs.find((l) => l['msg'] === 'ready');
    expect(ready?.['workers']).toBe(2);
    const pids = workerPids();
    expect(new Set(pids).size).toBe(2);
    expect(pids).not.toContain(drover.child.pid);
    for (const pid of pids) expect(alive(pid)).toBe(true);
  });

  it('serves from both workers, and the admin API and /metrics sum them', async () => {
    const n = 60;
    const bodies: string[] = [];
    // fresh connections: node:cluster hands them to the workers in turn
    for (let i = 0; i < n; i++) bodies.push((await request(drover.port)).body);
    expect(bodies.filter((x) => x !== 'a' && x !== 'b')).toEqual([]);
    // each worker round-robins on its own: both backends are used
    expect(bodies.filter((x) => x === 'a').length).toBeGreaterThan(10);
    expect(bodies.filter((x) => x === 'b').length).toBeGreaterThan(10);
    // both workers served: each backend's own count shows it was reached from both processes
    // (one worker alone would alternate a b a b; the admin sums must equal what the backends saw)
    const counts = await waitFor(
      async () => {
        const m = await adminRequests();
        return (m.get('a') ?? 0) + (m.get('b') ?? 0) === n && m;
      },
      { what: `the admin API's request counts to sum to ${n}`, timeoutMs: 5_000 },
    );
    expect(counts.get('a')).toBe(a.seen.length);
    expect(counts.get('b')).toBe(b.seen.length);
    expect((counts.get('a') ?? 0) + (counts.get('b') ?? 0)).toBe(n);
    await waitFor(async () => (await metricsRequests()) === n, { what: `/metrics to count ${n} requests`, timeoutMs: 5_000 });
    expect(await metricsRequests()).toBe(n);
  });

  it('keep-alive requests are served on the fast path in the workers (connections arrive as bare handles from the primary)', async () => {
    const fastServed = (): Promise<number> => scrapeSum(drover.adminPort, 'drover_fast_path_requests_total');
    const before = await fastServed();
    const bodies: string[] = [];
    // four connections (node:cluster deals them to the workers in turn), five requests on each
    for (let c = 0; c < 4; c++) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      for (let i = 0; i < 5; i++) bodies.push((await request(drover.port, { agent })).body);
      agent.destroy();
    }
    expect(bodies.filter((x) => x !== 'a' && x !== 'b')).toEqual([]);
    await waitFor(async () => (await fastServed()) === before + 20, { what: '20 more requests served on the fast path', timeoutMs: 5_000 });
    expect(await fastServed()).toBe(before + 20);
  });

  it('applies a registry file change in every worker', async () => {
    fs.writeFileSync(path.join(drover.dir, 'services.yaml.tmp'), services([c]));
    fs.renameSync(path.join(drover.dir, 'services.yaml.tmp'), path.join(drover.dir, 'services.yaml'));
    // each worker applies the primary's update on its own: wait until four fresh connections in a
    // row (dealt to the two workers in turn) all see it, then it must hold for every request
    await waitFor(
      async () => {
        const four: string[] = [];
        for (let i = 0; i < 4; i++) four.push((await request(drover.port)).body);
        return four.every((b) => b === 'c');
      },
      { what: 'four fresh connections in a row answered by c', timeoutMs: 5_000 },
    );
    const bodies: string[] = [];
    for (let i = 0; i < 30; i++) bodies.push((await request(drover.port)).body);
    expect(bodies).toEqual(Array.from({ length: 30 }, () => 'c'));
  });

  it('replaces a worker killed with SIGKILL under load; the listener stays up', async () => {
    const before = workerPids();
    const victim = before[0] as number;
    const concurrency = 8;
    let sent = 0;
    let ok = 0;
    const failures: string[] = [];
    let okAfterReplacement = 0;
    let replaced = false;
    // load runs until 500 ms after the replacement listens (at most 20 s)
    let stopAt = Date.now() + 25_000;
    const client = async (): Promise<void> => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      while (Date.now() < stopAt) {
        sent++;
        try {
          // A connection the primary was handing to the worker at the instant it died is never
          // answered (node:cluster's round-robin hand-off): bounded here, counted as failed.
          const r = await request(drover.port, { agent, timeoutMs: 5_000 });
          if (r.status === 200) {
            ok++;
            if (replaced) okAfterReplacement++;
          } else failures.push(`status ${r.status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
      agent.destroy();
    };
    const load = Promise.all(Array.from({ length: concurrency }, () => client()));
    await new Promise((r) => setTimeout(r, 700));
    process.kill(victim, 'SIGKILL');
    await drover.waitForLog((l) => l['msg'] === 'worker died: starting a replacement', 20_000);
    await drover.waitForLog((l) => l['msg'] === 'worker listening' && !before.includes(l['pid'] as number), 20_000);
    replaced = true;
    stopAt = Math.min(stopAt, Date.now() + 500);
    await load;
    // Every request is accounted for; the only ones allowed to fail were on the killed
    // worker's connections (at most one in flight per client connection).
    console.log(`kill -9 under load: sent ${sent}, ok ${ok}, failed ${failures.length} (${[...new Set(failures)].join('; ')})`);
    expect(ok + failures.length).toBe(sent);
    expect(failures.length).toBeLessThanOrEqual(concurrency);
    expect(okAfterReplacement).toBeGreaterThan(0);
    const after = workerPids().filter(alive);
    expect(after.length).toBe(2);
    expect(after).not.toContain(victim);
    // new connections are served by both workers (the replacement included) after the kill
    const bodies: string[] = [];
    for (let i = 0; i < 10; i++) bodies.push((await request(drover.port)).body);
    expect(bodies).toEqual(Array.from({ length: 10 }, () => 'c'));
  }, 55_000);
});
