/**
 * Starts and stops what the benchmark measures, all on 127.0.0.1: the NGINX backends (or Node
 * ones when NGINX is absent), and the targets (drover, the Node baselines, NGINX and HAProxy as
 * proxies). Every child is tracked and killed by `stopAll`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const children: ChildProcess[] = [];

/** True when `cmd` is on PATH. */
export function installed(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** A port free right now on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const addr = s.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Waits until `GET url` answers 200 (at most `timeoutMs`). */
export async function waitHttp(url: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(url, { agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200));
      });
      req.on('error', () => resolve(false));
      req.setTimeout(1000, () => req.destroy());
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function track(child: ChildProcess, name: string): ChildProcess {
  children.push(child);
  child.on('error', (err) => process.stderr.write(`${name}: ${err.message}\n`));
  child.stdout?.resume();
  child.stderr?.on('data', (d: Buffer) => {
    const s = d.toString().trim();
    if (s !== '') process.stderr.write(`[${name}] ${s.slice(0, 300)}\n`);
  });
  return child;
}

/** Kills every child started here (SIGTERM, then SIGKILL after 2 s). */
export async function stopAll(): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const t = setTimeout(() => c.kill('SIGKILL'), 2_000);
          c.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
}

/** A running target or backend set. */
export interface Running {
  readonly name: string;
  /** the process whose tree is measured */
  readonly pid: number;
  readonly url: string;
}

const NGINX_COMMON = `worker_processes 1;
worker_rlimit_nofile 20000;
pid nginx.pid;
error_log error.log crit;
events { worker_connections 20000; multi_accept on; }
`;
const NGINX_HTTP_COMMON = `  access_log off;
  client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
`;

function nginxPrefix(tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `drover-bench-${tag}-`));
  fs.mkdirSync(path.join(dir, 'tmp'));
  return dir;
}

function startNginx(name: string, dir: string, conf: string): ChildProcess {
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  return track(spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] }), name);
}

/** 1 MiB of bytes, the body of `/1m`. */
export const ONE_MIB = 1024 * 1024;

/** Two fast backends: NGINX `return 200` when installed, otherwise a small Node server. */
export async function startBackends(): Promise<{ kind: string; ports: [number, number]; running: Running; accepts?: () => Promise<number> }> {
  const ports: [number, number] = [await freePort(), await freePort()];
  if (installed('nginx')) {
    const statusPort = await freePort();
    const dir = nginxPrefix('backends');
    fs.writeFileSync(path.join(dir, '1m.bin'), Buffer.alloc(ONE_MIB, 120));
    const child = startNginx(
      'backends',
      dir,
      `${NGINX_COMMON}http {
${NGINX_HTTP_COMMON}  default_type text/plain;
  server {
    listen 127.0.0.1:${ports[0]};
    listen 127.0.0.1:${ports[1]};
    location / { return 200 "ok\\n"; }
    location = /1m { alias ${dir}/1m.bin; }
  }
  server {
    listen 127.0.0.1:${statusPort};
    location / { stub_status; }
  }
}
`,
    );
    await waitHttp(`http://127.0.0.1:${ports[0]}/`);
    await waitHttp(`http://127.0.0.1:${ports[1]}/`);
    // Connections the backends accepted so far, read from stub_status. Each read is a connection
    // of its own (agent: false): those are not counted.
    let reads = 0;
    const accepts = async (): Promise<number> => {
      reads++;
      const text = await new Promise<string>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: statusPort, path: '/', agent: false }, (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve(body));
          })
          .on('error', reject);
      });
      const m = /server accepts handled requests\s+(\d+)/.exec(text);
      return m === null ? NaN : Number(m[1]) - reads;
    };
    return { kind: 'nginx (1 worker, return 200)', ports, running: { name: 'backends', pid: child.pid ?? 0, url: `http://127.0.0.1:${ports[0]}` }, accepts };
  }
  const script = `const http=require('http');const big=Buffer.alloc(${ONE_MIB},120);for(const p of [${ports[0]},${ports[1]}])http.createServer((q,r)=>{if(q.url==='/1m'){r.writeHead(200,{'content-length':big.length});r.end(big);}else{r.writeHead(200,{'content-type':'text/plain','content-length':3});r.end('ok\\n');}}).listen(p,'127.0.0.1');`;
  const child = track(spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] }), 'backends');
  await waitHttp(`http://127.0.0.1:${ports[0]}/`);
  await waitHttp(`http://127.0.0.1:${ports[1]}/`);
  return { kind: 'node (http.createServer)', ports, running: { name: 'backends', pid: child.pid ?? 0, url: `http://127.0.0.1:${ports[0]}` } };
}

/**
 * `drover start` with round_robin over the backends, access log off, defaults otherwise; `env`
 * is added to this process's environment (e.g. `DROVER_UPSTREAM: 'undici'`).
 */
export async function startDrover(root: string, name: string, backends: readonly number[], workers: number, nodeFlags: readonly string[] = [], env: Readonly<Record<string, string>> = {}): Promise<Running> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-drover-'));
  const file = path.join(dir, 'drover.yaml');
  fs.writeFileSync(
    file,
    `listen: [{address: 127.0.0.1:${port}}]
admin: {address: 127.0.0.1:0}
access_log: off
workers: ${workers}
services:
  bench:
    balancer: round_robin
    backends:
${backends.map((p, i) => `      - {url: http://127.0.0.1:${p}, id: b${i + 1}}`).join('\n')}
routes:
  - {match: {path_prefix: /}, service: bench}
`,
  );
  const child = track(spawn(process.execPath, [...nodeFlags, path.join(root, 'bin', 'drover'), 'start', '-c', file], { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }), name);
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/`, 30_000);
  return { name, pid: child.pid ?? 0, url };
}

/** A Node baseline from dist/bench/targets/<script>.js; `flags` go before the port. */
export async function startNodeTarget(root: string, name: string, script: string, backends: readonly number[], flags: readonly string[] = []): Promise<Running> {
  const port = await freePort();
  const child = track(
    spawn(process.execPath, [path.join(root, 'dist', 'bench', 'targets', `${script}.js`), ...flags, String(port), ...backends.map((p) => `http://127.0.0.1:${p}`)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
    name,
  );
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/`);
  return { name, pid: child.pid ?? 0, url };
}

/** NGINX as a proxy: one worker, upstream keepalive. */
export async function startNginxProxy(backends: readonly number[]): Promise<Running> {
  const port = await freePort();
  const dir = nginxPrefix('proxy');
  const child = startNginx(
    'nginx',
    dir,
    `${NGINX_COMMON}http {
${NGINX_HTTP_COMMON}  upstream be {
${backends.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive 64;
    # NGINX closes an upstream keep-alive connection after 1 000 requests by default: at
    # 25 000 req/s that is 25 new upstream connections a second, which is not what is compared
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
}
`,
  );
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/`);
  return { name: 'nginx', pid: child.pid ?? 0, url };
}

/** HAProxy: one thread, http-reuse always. */
export async function startHaproxy(backends: readonly number[]): Promise<Running> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(
    cfg,
    `global
  nbthread 1
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  balance roundrobin
  http-reuse always
${backends.map((p, i) => `  server s${i + 1} 127.0.0.1:${p}`).join('\n')}
`,
  );
  const child = track(spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] }), 'haproxy');
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/`);
  return { name: 'haproxy', pid: child.pid ?? 0, url };
}
