/**
 * Soak run (issue 6; not part of CI): `npm run soak -- --minutes 10`.
 *
 * Runs the real `bin/drover` against three in-process backends registered in a real etcd, and
 * for the whole run: steady load (GET, counted request by request), one backend flapping
 * (down/up every few seconds), an etcd put every 100 ms, client aborts mid-request every
 * second, and a config reload every 30 s. Prints RSS, open fds, metric series count and event
 * loop lag at the start (after warm-up) and at the end, and writes them to
 * bench/results/soak.md. Target: each within 10 % of its start value, zero failed requests.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { Agent, request } from 'undici';
import { startSoakEtcd } from './lib/soak-etcd.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i === -1 ? undefined : Number(process.argv[i + 1]);
  return v === undefined || !Number.isFinite(v) ? def : v;
}

const MINUTES = arg('minutes', 10);
const RATE = arg('rate', 600); // requests per second, total
const LOOPS = 12;
const FLAP_MS = 4000;
const PUT_MS = 100;
const RELOAD_MS = 30_000;
const ABORTS_PER_S = 20;

interface Backend {
  readonly name: string;
  readonly port: number;
  up(): Promise<void>;
  down(): Promise<void>;
}

async function startBackend(name: string): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    req.resume();
    if (req.url === '/slow') {
      const t = setTimeout(() => res.end(name), 300);
      res.on('close', () => clearTimeout(t));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(name);
  };
  let server = http.createServer(handler);
  const listen = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
    });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listen(0);
  return {
    name,
    port,
    up: async () => {
      server = http.createServer(handler);
      server.on('connection', (s: net.Socket) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      await listen(port);
    },
    down: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

interface Sample {
  readonly at: number;
  readonly rss: number;
  readonly fds: number;
  /** drover's own series (`drover_*`): what must not grow with churn */
  readonly series: number;
  /** every series, prom-client's process metrics included (GC kinds appear as they first occur) */
  readonly allSeries: number;
  readonly lagMean: number;
  readonly lagP99: number;
}

async function sample(pid: number, adminPort: number, t0: number): Promise<Sample> {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0) * 1024;
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  const metric = (name: string): number => Number(lines.find((l) => l.startsWith(`${name} `))?.split(' ')[1] ?? NaN);
  return { at: (Date.now() - t0) / 1000, rss, fds, series: lines.filter((l) => l.startsWith('drover_')).length, allSeries: lines.length, lagMean: metric('nodejs_eventloop_lag_mean_seconds'), lagP99: metric('nodejs_eventloop_lag_p99_seconds') };
}

function config(etcdUrl: string, generation: number): string {
  return `listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  etcd: {endpoints: [${etcdUrl}]}
services:
  web:
    retries: 2
    health:
      active: {path: /, interval: 500ms, timeout: 300ms, rise: 1, fall: 1}
      passive: {consecutive_failures: 3, ejection: 2s}
routes:
  - match: {path_prefix: /}
    service: web
    request_headers: {set: {X-Soak-Generation: "${generation}"}}
`;
}

async function main(): Promise<void> {
  const etcd = await startSoakEtcd();
  const client = new Etcd3({ hosts: etcd.url });
  const backends = [await startBackend('a'), await startBackend('b'), await startBackend('c')];
  const flappy = backends[2] as Backend;
  const key = (b: Backend): string => `/drover/services/web/${b.name}`;
  for (const b of backends) await client.put(key(b)).value(JSON.stringify({ url: `http://127.0.0.1:${b.port}`, weight: 1 }));

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-soak-'));
  const file = path.join(dir, 'drover.yaml');
  fs.writeFileSync(file, config(etcd.url, 0));
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'drover'), 'start', '-c', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let reloadsOk = 0;
  let reloadsFailed = 0;
  const ready = await new Promise<{ port: number; admin: number }>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const j = JSON.parse(line) as { msg?: string; listen?: { port: number }[]; admin?: { port: number } };
        if (j.msg === 'ready') resolve({ port: j.listen?.[0]?.port ?? 0, admin: j.admin?.port ?? 0 });
        if (j.msg === 'config reloaded') reloadsOk++;
        if (j.msg?.startsWith('config reload refused') === true) reloadsFailed++;
      } catch {
        // not JSON
      }
    });
    child.once('exit', () => reject(new Error('drover exited')));
  });
  const pid = child.pid ?? 0;
  // Load starts once drover is ready (etcd listed, pools built), as a load balancer in front
  // of it would wait for /readyz: before that, 503 is the right answer.
  for (let i = 0; i < 200; i++) {
    const r = await fetch(`http://127.0.0.1:${ready.admin}/readyz`).catch(() => undefined);
    if (r?.status === 200) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  const t0 = Date.now();
  const end = t0 + MINUTES * 60_000;
  const warmupEnd = t0 + Math.min(30_000, MINUTES * 6_000);
  process.stdout.write(`soak: ${MINUTES} min, ${RATE} req/s, drover pid ${pid} on :${ready.port}, admin :${ready.admin}, etcd ${etcd.url}\n`);

  // ---- load, counted request by request
  const agent = new Agent({ connections: LOOPS, keepAliveTimeout: 10_000 });
  let sent = 0;
  let ok = 0;
  const failures = new Map<string, number>();
  const fail = (why: string): void => {
    failures.set(why, (failures.get(why) ?? 0) + 1);
  };
  const perLoopGap = (1000 * LOOPS) / RATE;
  const loops = Array.from({ length: LOOPS }, async () => {
    while (Date.now() < end) {
      const started = Date.now();
      sent++;
      try {
        const r = await request(`http://127.0.0.1:${ready.port}/`, { dispatcher: agent });
        const body = await r.body.text();
        if (r.statusCode === 200 && body.length === 1) ok++;
        else fail(`status ${r.statusCode}`);
      } catch (err) {
        fail(`error ${(err as { code?: string }).code ?? (err as Error).message}`);
      }
      const wait = perLoopGap - (Date.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  });

  // ---- a backend flapping
  let flaps = 0;
  let flappyUp = true;
  const flapTimer = setInterval(() => {
    flaps++;
    flappyUp = !flappyUp;
    void (flappyUp ? flappy.up() : flappy.down()).catch(() => undefined);
  }, FLAP_MS);

  // ---- an etcd put every 100 ms (the weight of `a` alternates: every put is a real change)
  let puts = 0;
  let putErrors = 0;
  const a = backends[0] as Backend;
  const putTimer = setInterval(() => {
    puts++;
    client
      .put(key(a))
      .value(JSON.stringify({ url: `http://127.0.0.1:${a.port}`, weight: 1 + (puts % 2) }))
      .catch(() => putErrors++);
  }, PUT_MS);

  // ---- client aborts mid-request (on a slow path)
  let aborts = 0;
  const abortTimer = setInterval(() => {
    for (let i = 0; i < ABORTS_PER_S; i++) {
      const s = net.connect(ready.port, '127.0.0.1');
      s.on('error', () => undefined);
      s.write('GET /slow HTTP/1.1\r\nHost: soak\r\n\r\n');
      setTimeout(() => {
        s.destroy();
        aborts++;
      }, 50 + i * 5);
    }
  }, 1000);

  // ---- a config reload every 30 s
  let generation = 0;
  const reloadTimer = setInterval(() => {
    generation++;
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, config(etcd.url, generation));
    fs.renameSync(tmp, file);
  }, RELOAD_MS);

  // ---- samples
  const samples: Sample[] = [];
  await new Promise((r) => setTimeout(r, warmupEnd - Date.now()));
  samples.push(await sample(pid, ready.admin, t0));
  process.stdout.write(`start sample: ${JSON.stringify(samples[0])}\n`);
  const sampleTimer = setInterval(() => {
    void sample(pid, ready.admin, t0).then((s) => {
      samples.push(s);
      process.stdout.write(`t=${s.at.toFixed(0)}s rss=${(s.rss / 2 ** 20).toFixed(1)}MiB fds=${s.fds} series=${s.series} (all ${s.allSeries}) lag_p99=${(s.lagP99 * 1000).toFixed(2)}ms sent=${sent} ok=${ok}\n`);
    });
  }, 60_000);

  await Promise.all(loops);
  clearInterval(flapTimer);
  clearInterval(putTimer);
  clearInterval(abortTimer);
  clearInterval(reloadTimer);
  clearInterval(sampleTimer);
  // let the last aborts and reload settle, so the end sample is comparable to the start one
  await new Promise((r) => setTimeout(r, 2000));
  const last = await sample(pid, ready.admin, t0);
  samples.push(last);
  const first = samples[0] as Sample;

  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await agent.close();
  client.close();
  if (!flappyUp) await flappy.up().catch(() => undefined);
  for (const b of backends) await b.down();
  await etcd.stop();
  fs.rmSync(dir, { recursive: true, force: true });

  const pct = (x: number, y: number): string => `${(((y - x) / x) * 100).toFixed(1)} %`;
  const within = (x: number, y: number): boolean => Math.abs(y - x) <= Math.abs(x) * 0.1;
  const failed = sent - ok;
  const rows = [
    ['RSS (MiB)', (first.rss / 2 ** 20).toFixed(1), (last.rss / 2 ** 20).toFixed(1), pct(first.rss, last.rss), within(first.rss, last.rss)],
    ['open fds', String(first.fds), String(last.fds), pct(first.fds, last.fds), within(first.fds, last.fds)],
    ['drover_* metric series', String(first.series), String(last.series), pct(first.series, last.series), within(first.series, last.series)],
    ['all metric series (incl. process metrics)', String(first.allSeries), String(last.allSeries), pct(first.allSeries, last.allSeries), within(first.allSeries, last.allSeries)],
    ['event loop lag mean (ms)', (first.lagMean * 1000).toFixed(2), (last.lagMean * 1000).toFixed(2), pct(first.lagMean, last.lagMean), within(first.lagMean, last.lagMean)],
    ['event loop lag p99 (ms)', (first.lagP99 * 1000).toFixed(2), (last.lagP99 * 1000).toFixed(2), pct(first.lagP99, last.lagP99), within(first.lagP99, last.lagP99)],
  ] as const;
  const table = [
    '| figure | start (after warm-up) | end | change | within 10 % |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r[0]} | ${r[1]} | ${r[2]} | ${r[3]} | ${r[4] ? 'yes' : 'no'} |`),
  ].join('\n');
  const counts = [
    `- requests sent ${sent}, answered 200 ${ok}, failed ${failed}${failures.size > 0 ? ` (${[...failures].map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}`,
    `- backend flaps ${flaps} (every ${FLAP_MS / 1000} s), etcd puts ${puts} (${putErrors} failed), client aborts ${aborts}, config reloads ${reloadsOk} ok / ${reloadsFailed} refused`,
    `- samples every 60 s (t, RSS MiB, fds, series, lag p99 ms): ${samples.map((s) => `${s.at.toFixed(0)}s ${(s.rss / 2 ** 20).toFixed(1)} ${s.fds} ${s.series} ${(s.lagP99 * 1000).toFixed(2)}`).join('; ')}`,
  ].join('\n');
  const report = `${table}\n\n${counts}\n`;
  process.stdout.write(`\n${report}`);
  const out = path.join(ROOT, 'bench', 'results', 'soak.md');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    `# Soak run\n\nCommand: \`npm run soak -- --minutes ${MINUTES}\` (${RATE} req/s of GET over ${LOOPS} keep-alive connections; node ${process.version}, ${os.cpus().length} CPUs, ${new Date().toISOString().slice(0, 10)}).\n\n` +
      `While it ran: backend \`c\` went down and up every ${FLAP_MS / 1000} s, an etcd put every ${PUT_MS} ms changed backend \`a\`'s weight, ${ABORTS_PER_S} clients a second aborted mid-request, and the config file was rewritten every ${RELOAD_MS / 1000} s.\n\n${report}`,
  );
  process.stdout.write(`wrote ${out}\n`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`soak failed: ${String(err)}\n`);
  process.exit(2);
});
