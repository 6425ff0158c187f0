/**
 * Service-churn soak (issue 12; not part of CI): `npm run soak:services -- --services 10000 --minutes 3`.
 *
 * Runs the real `bin/drover` watching a real etcd, and creates and removes `--services` services
 * through etcd over `--minutes`: each service gets one instance key, lives while `--window` newer
 * ones are created, then its key is deleted (so about `--window` services exist at any time, as
 * with registrator and short-lived deploys). drover must retire every service that leaves: its
 * pool, health records, timers, metric series and admin entry. Every 5 s it samples drover's RSS,
 * heap, its live timers (counted by a preloaded probe, bench/lib/timer-probe.ts), active handles,
 * the `drover_` series in /metrics and the services in /api/services, and writes the first sample
 * after warm-up and the last one to bench/results/service-churn.md. Target: RSS, series, timers and
 * services flat (each within 10 % of the warm-up sample, or a few units), no service left over at
 * the end.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createEtcdClient } from '../src/registry/etcd-client.js';
import { startSoakEtcd } from './lib/soak-etcd.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i === -1 ? undefined : Number(process.argv[i + 1]);
  return v === undefined || !Number.isFinite(v) ? def : v;
}

const SERVICES = arg('services', 10_000);
const MINUTES = arg('minutes', 3);
const WINDOW = arg('window', 200);
const PREFIX = '/drover/services/';

interface Sample {
  readonly at: number;
  readonly created: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly timers: number;
  readonly handles: number;
  readonly series: number;
  readonly services: number;
}

function lastProbe(file: string): { timers: number; handles: number; rss: number; heapUsed: number } {
  const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n') : [];
  const last = lines[lines.length - 1];
  return last === undefined || last === '' ? { timers: -1, handles: -1, rss: 0, heapUsed: 0 } : (JSON.parse(last) as { timers: number; handles: number; rss: number; heapUsed: number });
}

async function sample(adminPort: number, probe: string, t0: number, created: number): Promise<Sample> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const series = text.split('\n').filter((l) => l.startsWith('drover_')).length;
  const body = (await (await fetch(`http://127.0.0.1:${adminPort}/api/services`)).json()) as { services: unknown[] };
  const p = lastProbe(probe);
  return { at: Math.round((Date.now() - t0) / 100) / 10, created, rss: p.rss, heapUsed: p.heapUsed, timers: p.timers, handles: p.handles, series, services: body.services.length };
}

const mib = (b: number): string => (b / 1048576).toFixed(1);

function row(s: Sample): string {
  return `| ${s.at} | ${s.created} | ${mib(s.rss)} | ${mib(s.heapUsed)} | ${s.timers} | ${s.handles} | ${s.series} | ${s.services} |`;
}

async function main(): Promise<void> {
  const etcd = await startSoakEtcd();
  const backend = http.createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const backendPort = (backend.address() as { port: number }).port;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-service-churn-'));
  const probe = path.join(dir, 'probe.jsonl');
  const file = path.join(dir, 'drover.yaml');
  fs.writeFileSync(
    file,
    `listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  etcd: {endpoints: [${etcd.url}], prefix: ${PREFIX}}
routes: [{match: {path_prefix: /}, service: svc-0}]
`,
  );
  const child = spawn(process.execPath, ['--import', path.join(ROOT, 'dist', 'bench', 'lib', 'timer-probe.js'), path.join(ROOT, 'bin', 'drover'), 'start', '-c', file], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, DROVER_TIMER_PROBE: probe, LOG_LEVEL: 'warn' },
  });
  const adminPort = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const l = JSON.parse(line) as { msg?: string; admin?: { port: number } };
        if (l.msg === 'ready' && l.admin !== undefined) resolve(l.admin.port);
      } catch {
        // not JSON
      }
    });
    child.once('exit', (code) => reject(new Error(`drover exited with ${code}`)));
  });

  const client = createEtcdClient({ endpoints: [etcd.url], callTimeoutMs: 10_000 });
  const t0 = Date.now();
  const durationMs = MINUTES * 60_000;
  const perService = durationMs / SERVICES;
  const samples: Sample[] = [];
  let created = 0;
  let errors = 0;
  let sampling = false;
  const timer = setInterval(() => {
    if (sampling) return;
    sampling = true;
    void sample(adminPort, probe, t0, created)
      .then((s) => {
        samples.push(s);
        console.log(row(s));
      })
      .catch(() => undefined)
      .finally(() => {
        sampling = false;
      });
  }, 5000);
  console.log(`service churn: ${SERVICES} services over ${MINUTES} min, window ${WINDOW}, one etcd put and one delete every ${perService.toFixed(1)} ms`);
  console.log('| s | created | RSS MiB | heap MiB | timers | handles | drover_ series | services |\n|---|---|---|---|---|---|---|---|');
  for (let i = 0; i < SERVICES; i++) {
    const due = t0 + i * perService;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    try {
      await client.put(`${PREFIX}svc-${i}/i1`).value(JSON.stringify({ url: `http://127.0.0.1:${backendPort}` }));
      if (i >= WINDOW) await client.delete().key(`${PREFIX}svc-${i - WINDOW}/i1`);
    } catch {
      errors++;
    }
    created = i + 1;
  }
  // every service leaves: drover must end with none of them
  for (let i = Math.max(0, SERVICES - WINDOW); i < SERVICES; i++) {
    try {
      await client.delete().key(`${PREFIX}svc-${i}/i1`);
    } catch {
      errors++;
    }
  }
  await new Promise((r) => setTimeout(r, 6000));
  clearInterval(timer);
  const end = await sample(adminPort, probe, t0, created);
  samples.push(end);
  console.log(row(end));

  const warm = samples.find((s) => s.created >= WINDOW * 2) ?? samples[0] ?? end;
  const peak = samples.reduce((a, s) => (s.rss > a.rss ? s : a), warm);
  const text = [
    `# Service churn soak (${new Date().toISOString()})`,
    '',
    `\`npm run soak:services -- --services ${SERVICES} --minutes ${MINUTES} --window ${WINDOW}\`: ${SERVICES} services created and removed through etcd`,
    `(about ${WINDOW} alive at a time), ${errors} etcd errors. Machine: ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the end`,
    '(a shared, loaded machine unless that says otherwise: read the shape, not the absolute numbers).',
    '',
    '| s | created | RSS MiB | heap MiB | timers | handles | drover_ series | services |',
    '|---|---|---|---|---|---|---|---|',
    ...samples.map(row),
    '',
    `Warm-up sample (${warm.created} created) -> end (all removed): RSS ${mib(warm.rss)} -> ${mib(end.rss)} MiB (peak ${mib(peak.rss)}),`,
    `timers ${warm.timers} -> ${end.timers}, handles ${warm.handles} -> ${end.handles}, drover_ series ${warm.series} -> ${end.series}, services ${warm.services} -> ${end.services}.`,
    '',
  ].join('\n');
  fs.mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
  fs.writeFileSync(path.join(ROOT, 'bench', 'results', 'service-churn.md'), text);
  console.log(text);

  client.close();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  backend.close();
  await etcd.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
