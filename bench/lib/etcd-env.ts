/**
 * Shared pieces of the etcd benchmarks (bench/registry-latency.ts, churn.ts, scale.ts): a real
 * etcd in a temp dir, the real `bin/drover`, Debian's nginx run as a non-daemon in a temp
 * prefix, a backend child process, and small statistics helpers. Loopback only; every process
 * started here is tracked and killed by `cleanup()` (also on exit).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { createEtcdClient } from '../../src/registry/etcd-client.js';
import type { Etcd3 } from 'etcd3';

/** Repository root (dist/bench/lib -> ../../..). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** Where results are written. */
export const RESULTS_DIR = path.join(ROOT, 'bench', 'results');

const children = new Set<ChildProcess>();
const dirs = new Set<string>();

/** Kills `child` with the others when the benchmark ends. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.on('error', () => undefined);
  return child;
}

/**
 * Stops every child started here and removes temp dirs. SIGTERM first: an nginx master killed
 * with SIGKILL leaves its workers running (seen: orphaned workers after `bench/tls.js`); SIGKILL
 * for whatever is still there after 2 s.
 */
export async function cleanup(): Promise<void> {
  for (const c of children) c.kill('SIGTERM');
  const soft = Date.now() + 2000;
  while (children.size > 0 && Date.now() < soft) await sleep(20);
  for (const c of children) c.kill('SIGKILL');
  const deadline = Date.now() + 3000;
  while (children.size > 0 && Date.now() < deadline) await sleep(20);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Runs a benchmark's `main`: a failure is printed and exits 1; children and temp dirs are cleaned up either way. */
export function runBench(main: () => Promise<void>): void {
  main()
    .catch((err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    })
    .finally(() => cleanup().then(() => process.exit()));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function tempDir(prefix: string): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.add(d);
  return d;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `fn` every `everyMs` until it returns a value other than undefined/false. */
export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 30_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch {
      // not yet
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// ---- etcd ------------------------------------------------------------------------------------

export interface BenchEtcd {
  readonly endpoint: string;
  readonly client: Etcd3;
  readonly pid: number;
}

/** One etcd member on free loopback ports, data in a temp dir. */
export async function startEtcd(): Promise<BenchEtcd> {
  const dir = tempDir('drover-bench-etcd-');
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = track(
    spawn(
      'etcd',
      [
        '--name', 'bench', '--data-dir', path.join(dir, 'data'),
        '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
        '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `bench=${peer}`, '--log-level', 'error', '--logger', 'zap',
        '--quota-backend-bytes', String(4 * 1024 * 1024 * 1024),
      ],
      { stdio: 'ignore' },
    ),
  );
  const client = createEtcdClient({ endpoints: [endpoint], callTimeoutMs: 10_000 });
  await waitFor(
    async () => {
      await client.get('probe').string();
      return true;
    },
    'etcd to answer',
    20_000,
    100,
  );
  return { endpoint, client, pid: child.pid ?? 0 };
}

/** A running etcd cluster. */
export interface BenchEtcdCluster {
  /** every member's client URL, member 0 first */
  readonly endpoints: readonly string[];
  /** a client over every member */
  readonly client: Etcd3;
  readonly pids: readonly number[];
}

/**
 * `n` etcd members forming one cluster on free loopback ports, with etcd's default heartbeat
 * (100 ms) and election timeout (1 s), as a production cluster runs; waits until every member
 * answers.
 */
export async function startEtcdCluster(n = 3): Promise<BenchEtcdCluster> {
  const dir = tempDir('drover-bench-etcd-cluster-');
  const plans: { name: string; client: string; peer: string }[] = [];
  for (let i = 0; i < n; i++) plans.push({ name: `m${i}`, client: `http://127.0.0.1:${await freePort()}`, peer: `http://127.0.0.1:${await freePort()}` });
  const initial = plans.map((p) => `${p.name}=${p.peer}`).join(',');
  const pids: number[] = [];
  for (const p of plans) {
    const child = track(
      spawn(
        'etcd',
        [
          '--name', p.name, '--data-dir', path.join(dir, p.name),
          '--listen-client-urls', p.client, '--advertise-client-urls', p.client,
          '--listen-peer-urls', p.peer, '--initial-advertise-peer-urls', p.peer,
          '--initial-cluster', initial, '--initial-cluster-state', 'new',
          '--initial-cluster-token', `drover-bench-${path.basename(dir)}`,
          '--log-level', 'error', '--logger', 'zap',
        ],
        { stdio: 'ignore' },
      ),
    );
    pids.push(child.pid ?? 0);
  }
  const endpoints = plans.map((p) => p.client);
  for (const endpoint of endpoints) {
    const probe = createEtcdClient({ endpoints: [endpoint], callTimeoutMs: 5000 });
    try {
      await waitFor(
        async () => {
          await probe.get('probe').string();
          return true;
        },
        `etcd ${endpoint} to answer`,
        30_000,
        100,
      );
    } finally {
      probe.close();
    }
  }
  return { endpoints, client: createEtcdClient({ endpoints, callTimeoutMs: 10_000 }), pids };
}

// ---- backends (child process) ----------------------------------------------------------------

/** Backends living in a child process (see bench/lib/etcd-backends.ts). */
export interface BackendFarm {
  start(names: readonly string[]): Promise<number[]>;
  /** closes one backend gracefully (idle keep-alive connections close at once) */
  stop(port: number): void;
  readonly pid: number;
}

export function startBackendFarm(): BackendFarm {
  const child = track(spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'lib', 'etcd-backends.js')], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const starts: ((ports: number[]) => void)[] = [];
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  rl.on('line', (line) => {
    const msg = JSON.parse(line) as { ports?: number[] };
    if (msg.ports !== undefined) starts.shift()?.(msg.ports);
  });
  return {
    pid: child.pid ?? 0,
    start: (names) =>
      new Promise((resolve) => {
        starts.push(resolve);
        child.stdin?.write(`${JSON.stringify({ op: 'start', names })}\n`);
      }),
    stop: (port) => {
      child.stdin?.write(`${JSON.stringify({ op: 'stop', port })}\n`);
    },
  };
}

// ---- drover ----------------------------------------------------------------------------------

export interface BenchDrover {
  readonly port: number;
  readonly adminPort: number;
  readonly pid: number;
  /** ms from spawn to the `ready` log line */
  readonly readyLogMs: number;
  readonly spawnedAt: number;
  stop(): Promise<void>;
}

/** Spawns `bin/drover start` with `yaml` (listen/admin on port 0) and waits for its `ready` line. */
export async function startDrover(yaml: string): Promise<BenchDrover> {
  const dir = tempDir('drover-bench-');
  const file = path.join(dir, 'drover.yaml');
  writeFileSync(file, yaml);
  const spawnedAt = Date.now();
  const child = track(spawn(process.execPath, [path.join(ROOT, 'bin', 'drover'), 'start', '-c', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`drover did not log ready; stderr: ${stderr}`)), 60_000);
    rl.on('line', (line) => {
      try {
        const l = JSON.parse(line) as Record<string, unknown>;
        if (l['msg'] === 'ready') {
          clearTimeout(timer);
          resolve(l);
        }
      } catch {
        // not JSON
      }
    });
    child.once('exit', (code) => reject(new Error(`drover exited (${code}); stderr: ${stderr}`)));
  });
  const readyLogMs = Date.now() - spawnedAt;
  // keep draining stdout; DROVER_LOG=1 echoes drover's log lines to stderr (debugging a run)
  rl.on('line', (l) => {
    if (process.env['DROVER_LOG'] === '1') process.stderr.write(`${l}\n`);
  });
  const port = (ready['listen'] as { port: number }[])[0]?.port ?? 0;
  const adminPort = (ready['admin'] as { port: number }).port;
  return {
    port,
    adminPort,
    pid: child.pid ?? 0,
    readyLogMs,
    spawnedAt,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    },
  };
}

/**
 * `startDrover` with etcd as the only registry and one catch-all route to `service`, waiting
 * until `/readyz` is 200 (the first list of the prefix has been applied).
 */
export async function startEtcdDrover(etcd: BenchEtcd, prefix: string, service: string): Promise<BenchDrover> {
  const drover = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  etcd: {endpoints: [${etcd.endpoint}], prefix: ${prefix}}
routes:
  - match: {path_prefix: /}
    service: ${service}
`);
  await waitFor(async () => (await getBody(drover.adminPort, '/readyz')).status === 200, 'drover ready');
  return drover;
}

// ---- nginx -----------------------------------------------------------------------------------

export interface BenchNginx {
  readonly port: number;
  readonly pid: number;
  /** rewrites the upstream file with these `host:port` servers and sends SIGHUP (nginx -s reload) */
  reload(servers: readonly string[]): void;
  stop(): Promise<void>;
}

/** True when Debian's nginx is installed. */
export function nginxAvailable(): boolean {
  return existsSync('/usr/sbin/nginx');
}

/**
 * nginx in a temp prefix, master not daemonised, on a loopback port, proxying `/` to the
 * upstream `backends` (keep-alive to the upstreams, as drover does). `workers` worker processes.
 */
/**
 * The start of an nginx.conf that runs unprivileged in `prefix`: processes, logs, pid, and the
 * opening of `http {` with every temp path inside `prefix` (the caller adds upstreams and servers
 * and closes the block).
 */
export function nginxPreamble(prefix: string, workers = 1): string {
  return `worker_processes ${workers};
error_log ${prefix}/logs/error.log warn;
pid ${prefix}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;`;
}

export async function startNginx(servers: readonly string[], workers = 1): Promise<BenchNginx> {
  const prefix = tempDir('drover-bench-nginx-');
  mkdirSync(path.join(prefix, 'logs'));
  const port = await freePort();
  const upstreamFile = path.join(prefix, 'upstream.conf');
  const writeUpstream = (list: readonly string[]): void => {
    const tmp = `${upstreamFile}.tmp`;
    writeFileSync(tmp, `upstream backends {\n${list.map((s) => `  server ${s};\n`).join('')}  keepalive 64;\n}\n`);
    renameSync(tmp, upstreamFile); // nginx never reads a half-written file
  };
  writeUpstream(servers);
  const conf = path.join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `${nginxPreamble(prefix, workers)}
  include ${upstreamFile};
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  const child = track(spawn('/usr/sbin/nginx', ['-p', prefix, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitListening(port, 'nginx');
  return {
    port,
    pid: child.pid ?? 0,
    reload: (list) => {
      writeUpstream(list);
      child.kill('SIGHUP');
    },
    stop: async () => {
      child.kill('SIGQUIT');
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    },
  };
}

/** Waits (up to 10 s) until something accepts TCP connections on 127.0.0.1:`port`. */
export async function waitListening(port: number, what: string): Promise<void> {
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      }),
    `${what} to listen`,
    10_000,
  );
}

// ---- measuring -------------------------------------------------------------------------------

/** One GET (a fresh connection unless `agent` is given); resolves with the body ('' and status 0 on error). */
export function getBody(port: number, pathName = '/', agent: http.Agent | false = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathName, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
}

/** The p-th percentile (0..100) of `xs` (nearest rank). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Latency samples of one side of a comparison, in ms, rounded to 0.1. */
export interface LatencySummary {
  readonly label: string;
  readonly trials: number;
  readonly failed: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/** Summarises `samples` (ms) of the trials that succeeded; `failed` trials count in `trials`. */
export function summariseLatency(label: string, samples: readonly number[], failed: number): LatencySummary {
  const r = (x: number): number => Math.round(x * 10) / 10;
  return { label, trials: samples.length + failed, failed, p50: r(percentile(samples, 50)), p90: r(percentile(samples, 90)), p99: r(percentile(samples, 99)), max: r(Math.max(...samples)) };
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
  return ticks / 100; // USER_HZ is 100 on Linux
}

/** Resident set size of a process in MiB, from /proc. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m === null ? NaN : Number(m[1]) / 1024;
}

/** Writes `bench/results/<name>.json` and returns its path. */
export function writeResult(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** A markdown table. */
export function table(head: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const line = (cells: readonly (string | number)[]): string => `| ${cells.map(String).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Host facts printed with every result. */
export function hostInfo(): { node: string; cpus: number; cpuModel: string; date: string; loadavg1m: number } {
  // The 1-minute load average tells a reader whether other work shared the machine during the run.
  return { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', date: new Date().toISOString(), loadavg1m: os.loadavg()[0] ?? 0 };
}

// ---- load ------------------------------------------------------------------------------------

/** What one autocannon run saw, counted request by request. */
export interface LoadCount {
  /** requests written (autocannon's `requests.sent`) */
  readonly sent: number;
  /** responses with status 2xx, counted from 'response' events */
  readonly ok: number;
  /** responses with any other status */
  readonly non2xx: number;
  /** request errors (reset, refused, timeout), counted from 'reqError' events */
  readonly errors: number;
  /** sent but neither answered nor failed when the run stopped (at most `connections`: cut off by the end of the run) */
  readonly unanswered: number;
  readonly latencyP50: number;
  readonly latencyP99: number;
  readonly rps: number;
}

/** Runs autocannon against `http://127.0.0.1:port/` for `seconds` with keep-alive connections. */
export function runLoad(port: number, seconds: number, connections = 32): Promise<LoadCount> {
  return new Promise((resolve, reject) => {
    let ok = 0;
    let non2xx = 0;
    let errors = 0;
    const inst = autocannon({ url: `http://127.0.0.1:${port}/`, connections, duration: seconds, timeout: 10 }, (err: unknown, result: autocannon.Result) => {
      if (err !== null && err !== undefined) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      const sent = result.requests.sent;
      resolve({
        sent,
        ok,
        non2xx,
        errors,
        unanswered: sent - ok - non2xx - errors,
        latencyP50: result.latency.p50,
        latencyP99: result.latency.p99,
        rps: Math.round(result.requests.average),
      });
    });
    inst.on('response', (_c: unknown, status: number) => {
      if (status >= 200 && status < 300) ok++;
      else non2xx++;
    });
    inst.on('reqError', () => {
      errors++;
    });
  });
}
