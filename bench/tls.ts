/**
 * TLS and HTTP/2 side by side: drover vs NGINX (1 worker) vs HAProxy (1 thread), the same ECDSA
 * P-256 certificate, the same HTTP/1.1 backend (a child process answering `200 ok`).
 *
 * Per target: HTTPS keep-alive req/s (wrk), new TLS handshakes/s (wrk with `Connection: close`),
 * HTTP/2 req/s (h2load, NGINX's keepalive_requests raised so it does not cap streams per
 * connection), each with user and system CPU per request of the target's processes (from
 * /proc/PID/stat, children included).
 *
 * A "new handshake" is a full one for every target: wrk keeps its last TLS session and offers it
 * on reconnect, so each target would resume as many as its ticket policy allows (NGINX nearly
 * all, Node every other one: it sends no new ticket on a resumed TLS 1.3 connection). wrk runs
 * with `bench/lib/wrk-new-session.c` preloaded (built here with gcc), which starts every
 * connection without a session and counts, from the client's side, full and resumed handshakes
 * and what each negotiated; the run fails when any was resumed or when the targets negotiated
 * different versions, ciphers, groups or signature types.
 *
 * Targets run in turn, several short rounds (medians reported), so a neighbour's load lands on
 * all of them alike. `--floors` adds two handshake-only references: a bare Node `tls.Server`
 * answering each connection itself (no HTTP, no upstream: what Node costs per TLS connection
 * before drover does anything) and NGINX answering `return 200` (its own floor). `--profile`
 * records drover with `perf record -g` (node `--perf-basic-prof`) during one more handshake run
 * and writes the summary to `bench/results/tls-profile.json`.
 *
 *   npm run build && node dist/bench/tls.js [--seconds 5] [--rounds 3] [--connections 32]
 *     [--warmup 3] [--runs keepalive,handshakes,h2] [--targets drover,nginx,haproxy]
 *     [--floors] [--profile] [--node /path/to/node] [--node-flags '--max-semi-space-size=64']
 *     [--out NAME (bench/results/NAME.json; default tls)]
 *
 * Figures from a shared or loaded machine are not results: run it on a quiet one.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort, hostInfo, nginxPreamble, ROOT, runBench, table, tempDir, track, waitFor, writeResult } from './lib/etcd-env.js';
import { processTree, treeCpuSplitMicros } from './lib/perf-proc.js';
import { recordProfile } from './lib/tls-profile.js';

const BIN = path.join(ROOT, 'bin', 'drover');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
}

function strArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

const RUNS = ['keepalive', 'handshakes', 'h2'] as const;
type Run = (typeof RUNS)[number];

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
  /** the runs it takes part in (floors: handshakes only) */
  readonly runs: readonly Run[];
}

/** A child process that prints `{"port":N}` once listening. */
async function startPrinter(args: readonly string[], node = process.execPath): Promise<{ port: number; pid: number }> {
  const child = track(spawn(node, args, { stdio: ['pipe', 'pipe', 'inherit'] }));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${args[0] ?? ''} exited (${String(code)})`)));
    child.stdout?.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port));
  });
  return { port, pid: child.pid ?? 0 };
}

async function startDrover(dir: string, cert: string, key: string, backend: number, node: string, flags: readonly string[]): Promise<Target> {
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
  const child = track(spawn(node, [...flags, BIN, 'start', '-c', cfg], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor(() => listening(port), 'drover to listen', 15_000);
  return { name: 'drover', port, pid: child.pid ?? 0, runs: RUNS };
}

async function startNginx(dir: string, cert: string, key: string, backend: number, floor: boolean): Promise<{ proxy: Target; floor: Target | undefined } | undefined> {
  if (!existsSync('/usr/sbin/nginx')) return undefined;
  const prefix = path.join(dir, 'nginx');
  mkdirSync(path.join(prefix, 'logs'), { recursive: true });
  const port = await freePort();
  const floorPort = await freePort();
  const conf = path.join(prefix, 'nginx.conf');
  const tls = `ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ssl_protocols TLSv1.2 TLSv1.3;`;
  writeFileSync(
    conf,
    `${nginxPreamble(prefix)}
  keepalive_requests 10000000;
  upstream backends { server 127.0.0.1:${backend}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} ssl http2;
    ${tls}
    location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${floorPort} ssl;
    ${tls}
    location / { return 200 "ok"; }
  }
}
`,
  );
  const child = track(spawn('/usr/sbin/nginx', ['-p', prefix, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor(() => listening(port), 'nginx to listen', 10_000);
  const pid = child.pid ?? 0;
  return { proxy: { name: 'nginx', port, pid, runs: RUNS }, floor: floor ? { name: 'nginx-return', port: floorPort, pid, runs: ['handshakes'] } : undefined };
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
  return { name: 'haproxy', port, pid: child.pid ?? 0, runs: RUNS };
}

/** What the preloaded shim saw: handshakes by kind, from the client's side. */
interface HandshakeCount {
  readonly full: number;
  readonly resumed: number;
  /** "version cipher group signature-type" -> handshakes */
  readonly negotiated: Record<string, number>;
}

interface Figure {
  readonly rps: number;
  readonly requests: number;
  /** CPU µs per request of the target's processes, user + system */
  readonly cpuUs: number;
  readonly userUs: number;
  readonly systemUs: number;
  readonly handshakes?: HandshakeCount | undefined;
  /** what h2load reports it negotiated */
  readonly tls?: string | undefined;
}

/** Runs `cmd` under the target's CPU accounting; `parse` reads req/s and the request count from its output. */
function measure(t: Target, cmd: string, args: readonly string[], parse: (out: string) => { rps: number; requests: number }, env?: NodeJS.ProcessEnv): Figure {
  const pids = processTree(t.pid);
  const before = treeCpuSplitMicros(pids);
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20, env: env ?? process.env });
  const after = treeCpuSplitMicros(pids);
  const out = r.stdout ?? '';
  const { rps, requests } = parse(out);
  const per = (us: number): number => (requests > 0 ? us / requests : Number.NaN);
  const user = after.user - before.user;
  const system = after.system - before.system;
  const shim = /\{"full".*\}/.exec(r.stderr ?? '')?.[0];
  const tlsInfo = /TLS Protocol: (\S+)\nCipher: (\S+)\nServer Temp Key: (\S+)/.exec(out);
  return {
    rps,
    requests,
    cpuUs: per(user + system),
    userUs: per(user),
    systemUs: per(system),
    handshakes: shim === undefined ? undefined : (JSON.parse(shim) as HandshakeCount),
    tls: tlsInfo === null ? undefined : `${tlsInfo[1] ?? ''} ${tlsInfo[2] ?? ''} ${tlsInfo[3] ?? ''}`,
  };
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

/** Builds the wrk shim that makes every connection a full handshake. */
function buildShim(dir: string): string {
  const out = path.join(dir, 'wrk-new-session.so');
  try {
    execFileSync('gcc', ['-O2', '-shared', '-fPIC', '-o', out, path.join(ROOT, 'bench', 'lib', 'wrk-new-session.c'), '-ldl'], { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (err) {
    throw new Error(`building bench/lib/wrk-new-session.c failed (gcc is needed: apt-get install gcc): ${(err as Error).message}`);
  }
  return out;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** The median of each figure over the rounds (each figure on its own). */
function summarise(runs: readonly Figure[]): Figure & { readonly rounds: readonly Figure[] } {
  const m = (f: (x: Figure) => number): number => median(runs.map(f));
  const handshakes = runs.every((r) => r.handshakes !== undefined)
    ? runs.reduce<HandshakeCount>(
        (acc, r) => {
          const h = r.handshakes as HandshakeCount;
          const negotiated = { ...acc.negotiated };
          for (const [k, n] of Object.entries(h.negotiated)) negotiated[k] = (negotiated[k] ?? 0) + n;
          return { full: acc.full + h.full, resumed: acc.resumed + h.resumed, negotiated };
        },
        { full: 0, resumed: 0, negotiated: {} },
      )
    : undefined;
  return { rps: m((x) => x.rps), requests: m((x) => x.requests), cpuUs: m((x) => x.cpuUs), userUs: m((x) => x.userUs), systemUs: m((x) => x.systemUs), handshakes, tls: runs[0]?.tls, rounds: runs };
}

async function main(): Promise<void> {
  const seconds = arg('seconds', 5);
  const rounds = arg('rounds', 3);
  const connections = arg('connections', 32);
  const warmup = arg('warmup', 3);
  const runs = (strArg('runs')?.split(',') ?? [...RUNS]) as Run[];
  const only = strArg('targets')?.split(',');
  const floors = process.argv.includes('--floors');
  const profiling = process.argv.includes('--profile');
  const node = strArg('node') ?? process.execPath;
  // --perf-basic-prof names JIT frames for perf; it only writes a line per compiled function
  const nodeFlags = [...(profiling ? ['--perf-basic-prof'] : []), ...(strArg('node-flags')?.split(' ').filter((f) => f !== '') ?? [])];
  const nodeVersion = execFileSync(node, ['-p', 'process.version + " (OpenSSL " + process.versions.openssl + ")"'], { encoding: 'utf8' }).trim();
  for (const r of runs) if (!RUNS.includes(r)) throw new Error(`--runs: unknown run ${r}`);

  const dir = tempDir('drover-bench-tls-');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const pem = path.join(dir, 'haproxy.pem');
  writeFileSync(pem, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'));
  const shim = buildShim(dir);
  const shimEnv = { ...process.env, LD_PRELOAD: shim };

  const backend = (await startPrinter([path.join(ROOT, 'dist', 'bench', 'lib', 'obs-backend.js')])).port;
  const all: Target[] = [await startDrover(dir, cert, key, backend, node, nodeFlags)];
  const nginx = await startNginx(dir, cert, key, backend, floors);
  if (nginx !== undefined) all.push(nginx.proxy);
  const haproxy = await startHaproxy(dir, pem, backend);
  if (haproxy !== undefined) all.push(haproxy);
  if (floors) {
    const f = await startPrinter([path.join(ROOT, 'dist', 'bench', 'lib', 'tls-floor.js'), cert, key], node);
    all.push({ name: 'node-tls', port: f.port, pid: f.pid, runs: ['handshakes'] });
    if (nginx?.floor !== undefined) all.push(nginx.floor);
  }
  const targets = all.filter((t) => only === undefined || only.includes(t.name));

  const wrkArgs = (t: Target, secs: number, close: boolean): string[] => ['-t1', `-c${connections}`, `-d${secs}s`, ...(close ? ['-H', 'Connection: close'] : []), `https://127.0.0.1:${t.port}/`];
  const h2Args = (t: Target, secs: number, clients: number): string[] => [`-c${clients}`, '-m10', '-D', String(secs), `https://127.0.0.1:${t.port}/`];
  const once = (t: Target, run: Run, secs: number): Figure => {
    if (run === 'keepalive') return measure(t, 'wrk', wrkArgs(t, secs, false), wrkParse);
    if (run === 'handshakes') return measure(t, 'wrk', wrkArgs(t, secs, true), wrkParse, shimEnv);
    return measure(t, 'h2load', h2Args(t, secs, 20), h2loadParse);
  };

  // Warm-up, not measured: a fresh Node process runs its first thousands of requests through
  // V8's interpreter and compilers (and undici's llhttp wasm tier-up), at several times the
  // steady-state CPU per request. NGINX and HAProxy need none but get the same.
  if (warmup > 0) for (const t of targets) for (const run of runs) if (t.runs.includes(run)) once(t, run, warmup);

  const figures = new Map<string, Figure[]>();
  for (let round = 0; round < rounds; round++) {
    for (const run of runs) {
      for (const t of targets) {
        if (!t.runs.includes(run)) continue;
        const f = once(t, run, seconds);
        const k = `${t.name}/${run}`;
        figures.set(k, [...(figures.get(k) ?? []), f]);
        const h = f.handshakes;
        if (run === 'handshakes' && (h === undefined || h.resumed > 0 || h.full < f.requests)) {
          throw new Error(`${t.name}: not every connection was a full handshake (${JSON.stringify(h)}, ${f.requests} requests): the figure would not compare like with like`);
        }
      }
    }
  }

  // like for like: every target negotiated the same thing on its new connections
  const kinds = new Set<string>();
  for (const [k, list] of figures) if (k.endsWith('/handshakes')) for (const f of list) for (const kind of Object.keys(f.handshakes?.negotiated ?? {})) kinds.add(kind);
  if (kinds.size > 1) throw new Error(`targets negotiated different TLS parameters: ${[...kinds].join(' | ')}`);

  let profile;
  const drover = targets.find((t) => t.name === 'drover');
  if (profiling && drover !== undefined) {
    const rec = recordProfile(drover.pid, dir);
    if (rec === undefined) console.log('perf is not available: no profile');
    else {
      const f = once(drover, 'handshakes', seconds);
      const p = await rec.stop();
      profile = p === undefined ? undefined : { ...p, rps: f.rps, requests: f.requests, seconds, cpuUs: f.cpuUs };
    }
  }

  const results: Record<string, unknown>[] = [];
  const rows: (string | number)[][] = [];
  const cell = (f: Figure | undefined): string => (f === undefined ? '' : `${Math.round(f.rps)} (${Math.round(f.userUs)} + ${Math.round(f.systemUs)} µs)`);
  for (const t of targets) {
    const byRun: Record<string, Figure & { rounds: readonly Figure[] }> = {};
    for (const run of runs) {
      const list = figures.get(`${t.name}/${run}`);
      if (list !== undefined) byRun[run] = summarise(list);
    }
    results.push({ target: t.name, ...byRun });
    rows.push([t.name, cell(byRun['keepalive']), cell(byRun['handshakes']), cell(byRun['h2'])]);
  }
  const ratio = (run: Run, a: string, b: string): string => {
    const fa = results.find((r) => r['target'] === a)?.[run] as Figure | undefined;
    const fb = results.find((r) => r['target'] === b)?.[run] as Figure | undefined;
    return fa === undefined || fb === undefined ? 'n/a' : `${(fa.rps / fb.rps).toFixed(2)}x req/s, ${(fa.cpuUs / fb.cpuUs).toFixed(2)}x CPU/req`;
  };
  const info = hostInfo();
  console.log(`TLS bench ${info.date}, drover on Node ${nodeVersion}${nodeFlags.length > 0 ? ` ${nodeFlags.join(' ')}` : ''}, ${info.cpus} CPUs (${info.cpuModel}), load ${info.loadavg1m.toFixed(2)}, median of ${rounds} rounds of ${seconds}s after ${warmup}s of warm-up, ${connections} connections`);
  console.log(`new connections negotiated: ${[...kinds].join(' | ') || 'n/a'} (full handshakes only, checked from the client's side)`);
  console.log(table(['target', 'HTTPS keep-alive req/s (user + sys CPU/req)', 'new handshakes/s (user + sys CPU/req)', 'HTTP/2 req/s (user + sys CPU/req)'], rows));
  for (const run of runs) console.log(`drover / nginx ${run}: ${ratio(run, 'drover', 'nginx')}`);
  if (floors) console.log(`floors, handshakes: node-tls / nginx-return ${ratio('handshakes', 'node-tls', 'nginx-return')}; drover / node-tls ${ratio('handshakes', 'drover', 'node-tls')}`);
  const common = { ...info, droverNode: nodeVersion, droverNodeFlags: nodeFlags, seconds, rounds, warmup, connections, negotiated: [...kinds] };
  console.log(`written to ${writeResult(strArg('out') ?? 'tls', { ...common, results })}`);
  if (profile !== undefined) {
    console.log(`drover profile (${profile.samples} samples, ${Math.round(profile.rps)} handshakes/s) by phase:`);
    for (const p of profile.byPhase) console.log(`  ${p.percent.toFixed(1).padStart(5)}%  ${p.name}`);
    console.log(`written to ${writeResult(`${strArg('out') ?? 'tls'}-profile`, { ...common, profile })}`);
  }
}

runBench(main);
