/**
 * TLS and HTTP/2 side by side: drover vs NGINX (1 worker) vs HAProxy (1 thread), the same ECDSA
 * P-256 certificate, the same HTTP/1.1 backend (a child process answering `200 ok`).
 *
 * Per target: HTTPS keep-alive req/s (wrk), new TLS handshakes/s (wrk with `Connection: close`:
 * one full handshake per request), HTTP/2 req/s (h2load, NGINX's keepalive_requests raised so it
 * does not cap streams per connection), each with user+system CPU per request of the target's
 * processes (from /proc/PID/stat, children included).
 *
 *   npm run build && node dist/bench/tls.js [--seconds 10] [--connections 32] [--warmup 3]
 *
 * Figures from a shared or loaded machine are not results: run it on a quiet one.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort, hostInfo, nginxPreamble, ROOT, runBench, table, tempDir, waitFor, writeResult } from './lib/etcd-env.js';

const BIN = path.join(ROOT, 'bin', 'drover');
const children: ChildProcess[] = [];

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
}

function track(child: ChildProcess): ChildProcess {
  children.push(child);
  child.on('error', () => undefined);
  return child;
}

/** utime + stime of `pid` and its children (threads and worker processes), in seconds. */
function treeCpu(pid: number): number {
  let total = 0;
  const visit = (p: number): void => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) / 100;
      for (const task of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/)) if (task !== '') visit(Number(task));
    } catch {
      // gone
    }
  };
  visit(pid);
  return total;
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

interface Target {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
}

async function startBackend(): Promise<number> {
  const child = track(spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'lib', 'obs-backend.js')], { stdio: ['pipe', 'pipe', 'inherit'] }));
  return new Promise((resolve) => {
    child.stdout?.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port));
  });
}

async function startDrover(dir: string, cert: string, key: string, backend: number): Promise<Target> {
  const port = await freePort();
  const cfg = path.join(dir, 'drover.yaml');
  writeFileSync(
    cfg,
    `listen:
  - address: 127.0.0.1:${port}
    tls: {cert: ${cert}, key: ${key}}
admin: {address: 127.0.0.1:0}
access_log: off
services:
  app:
    backends: [{url: http://127.0.0.1:${backend}}]
routes:
  - match: {path_prefix: /}
    service: app
`,
  );
  const child = track(spawn(process.execPath, [BIN, 'start', '-c', cfg], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor(() => listening(port), 'drover to listen', 15_000);
  return { name: 'drover', port, pid: child.pid ?? 0 };
}

async function startNginx(dir: string, cert: string, key: string, backend: number): Promise<Target | undefined> {
  if (!existsSync('/usr/sbin/nginx')) return undefined;
  const prefix = path.join(dir, 'nginx');
  mkdirSync(path.join(prefix, 'logs'), { recursive: true });
  const port = await freePort();
  const conf = path.join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `${nginxPreamble(prefix)}
  keepalive_requests 10000000;
  upstream backends { server 127.0.0.1:${backend}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`,
  );
  const child = track(spawn('/usr/sbin/nginx', ['-p', prefix, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor(() => listening(port), 'nginx to listen', 10_000);
  return { name: 'nginx', port, pid: child.pid ?? 0 };
}

async function startHaproxy(dir: string, pem: string, backend: number): Promise<Target | undefined> {
  if (!existsSync('/usr/sbin/haproxy')) return undefined;
  const port = await freePort();
  const conf = path.join(dir, 'haproxy.cfg');
  writeFileSync(
    conf,
    `global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port} ssl crt ${pem} alpn h2,http/1.1
  default_backend be
backend be
  http-reuse always
  server b1 127.0.0.1:${backend}
`,
  );
  const child = track(spawn('/usr/sbin/haproxy', ['-f', conf, '-db'], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor(() => listening(port), 'haproxy to listen', 10_000);
  return { name: 'haproxy', port, pid: child.pid ?? 0 };
}

interface Figure {
  readonly rps: number;
  /** CPU µs per request of the target (user + system) */
  readonly cpuUs: number;
}

/** Runs `cmd` under the target's CPU accounting; `parse` reads req/s and the request count from its output. */
function measure(t: Target, cmd: string, args: readonly string[], parse: (out: string) => { rps: number; requests: number }): Figure {
  const cpu0 = treeCpu(t.pid);
  let out = '';
  try {
    out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 << 20 });
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? '');
  }
  const cpu = treeCpu(t.pid) - cpu0;
  const { rps, requests } = parse(out);
  return { rps, cpuUs: requests > 0 ? (cpu * 1e6) / requests : Number.NaN };
}

function wrkParse(out: string): { rps: number; requests: number } {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  return { rps, requests };
}

function h2loadParse(out: string): { rps: number; requests: number } {
  const rps = Number(/finished in [^,]+, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const requests = Number(/requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded/.exec(out)?.[1] ?? 0);
  return { rps, requests };
}

async function main(): Promise<void> {
  const seconds = arg('seconds', 10);
  const connections = arg('connections', 32);
  const warmup = arg('warmup', 3);
  const dir = tempDir('drover-bench-tls-');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const pem = path.join(dir, 'haproxy.pem');
  writeFileSync(pem, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'));
  const backend = await startBackend();
  const targets = [await startDrover(dir, cert, key, backend), await startNginx(dir, cert, key, backend), await startHaproxy(dir, pem, backend)].filter((t): t is Target => t !== undefined);
  const rows: (string | number)[][] = [];
  const results: Record<string, unknown>[] = [];
  for (const t of targets) {
    const url = `https://127.0.0.1:${t.port}/`;
    // Warm-up, not measured: a fresh Node process runs its first thousands of requests through
    // V8's interpreter and compilers (and undici's llhttp wasm tier-up), at several times the
    // steady-state CPU per request. On a loaded machine a short run never leaves that phase and
    // measured drover's start-up, not its proxying; NGINX and HAProxy need none but get the same.
    if (warmup > 0) {
      measure(t, 'wrk', ['-t1', `-c${connections}`, `-d${warmup}s`, url], wrkParse);
      measure(t, 'h2load', ['-c4', '-m10', '-D', String(warmup), url], h2loadParse);
    }
    const keepAlive = measure(t, 'wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, url], wrkParse);
    const handshakes = measure(t, 'wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '-H', 'Connection: close', url], wrkParse);
    const h2 = measure(t, 'h2load', ['-c20', '-m10', '-D', String(seconds), url], h2loadParse);
    results.push({ target: t.name, keepAlive, handshakes, h2 });
    const f = (x: Figure): string => `${Math.round(x.rps)} (${Math.round(x.cpuUs)} µs)`;
    rows.push([t.name, f(keepAlive), f(handshakes), f(h2)]);
  }
  const info = hostInfo();
  console.log(`TLS bench ${info.date}, ${info.cpus} CPUs (${info.cpuModel}), load ${info.loadavg1m.toFixed(2)}, ${seconds}s per run after ${warmup}s of warm-up, ${connections} connections`);
  console.log(table(['target', 'HTTPS keep-alive req/s (CPU/req)', 'new handshakes/s (CPU/req)', 'HTTP/2 req/s (CPU/req)'], rows));
  console.log(`written to ${writeResult('tls', { ...info, seconds, warmup, connections, results })}`);
}

process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});
runBench(main);
