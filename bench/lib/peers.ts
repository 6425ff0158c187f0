/**
 * Peer load balancers for side-by-side benchmarks: NGINX and HAProxy, started from configs
 * generated into a fresh temp dir, one worker/thread each (drover runs one process too), in the
 * foreground, killed when the run ends. Both must be installed (`nginx`, `haproxy` on PATH).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** A running peer proxy. */
export interface Peer {
  readonly port: number;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bound and released: a small race that is fine on a bench box). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once `GET /` through `port` answers (any status), or rejects after `ms`. */
async function answering(port: number, child: ChildProcess, name: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(true));
      });
      req.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`${name} did not answer on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Peers still running, killed (with their process groups) if the bench exits early. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) killGroup(c);
});
process.on('SIGPIPE', () => process.exit(141));

/**
 * Kills `child` and everything in its process group: NGINX's master forks its worker, and a
 * SIGKILL to the master alone would leave the worker running, orphaned.
 */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}

async function run(name: string, cmd: string, args: string[], dir: string, port: number): Promise<Peer> {
  // its own process group (detached), so the stop below takes the workers with the master
  const child = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let err = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (e) => {
    err += String(e);
  });
  try {
    await answering(port, child, name);
  } catch (e) {
    killGroup(child);
    throw new Error(`${(e as Error).message}: ${err.replace(/\s+/g, ' ').trim()}`);
  }
  return {
    port,
    stop: async () => {
      killGroup(child);
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** NGINX with `least_conn` over `upstreams` (`host:port`), upstream keep-alive on. */
export async function startNginx(upstreams: readonly string[]): Promise<Peer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-nginx-'));
  const port = await freePort();
  const conf = `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream web {
    least_conn;
${upstreams.map((u) => `    server ${u} max_fails=0;`).join('\n')}
    keepalive 256;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://web;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 30s;
    }
  }
}
`;
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  return run('nginx', 'nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], dir, port);
}

/** HAProxy with `balance leastconn` over `upstreams` (`host:port`), one thread, keep-alive on. */
export async function startHaproxy(upstreams: readonly string[]): Promise<Peer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-haproxy-'));
  const port = await freePort();
  const conf = `global
  nbthread 1
  # fits an FD limit of 20000 (HAProxy wants about 2 x maxconn descriptors)
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  balance leastconn
  http-reuse always
${upstreams.map((u, i) => `  server s${i} ${u}`).join('\n')}
`;
  fs.writeFileSync(path.join(dir, 'haproxy.cfg'), conf);
  return run('haproxy', 'haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')], dir, port);
}
