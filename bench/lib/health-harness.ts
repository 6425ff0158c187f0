/**
 * Shared plumbing of the health benchmarks (`bench/hotspot.ts`, `bench/failover.ts`): backends
 * in child processes, the real `bin/drover` as a child process, the admin API, result files.
 * Everything listens on 127.0.0.1 only and every child is killed on exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs as dist/bench/lib/health-harness.js). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** Where results are written. */
export const RESULTS = path.join(ROOT, 'bench', 'results');

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => process.exit(130));
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** One benchmark backend. */
export interface BenchBackend {
  readonly name: string;
  readonly port: number;
  readonly url: string;
}

/** A process running one or more benchmark backends. */
export interface BackendProcess {
  readonly backends: BenchBackend[];
  readonly child: ChildProcess;
  /** kills the process (SIGKILL: a crash) and resolves when it is gone */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `lib/health-backends.js` with `specs` (`NAME:SERVICE_MS:WORKERS`) and waits for every
 * backend's port.
 */
export async function startBackends(specs: readonly string[]): Promise<BackendProcess> {
  const script = path.join(ROOT, 'dist', 'bench', 'lib', 'health-backends.js');
  const child = track(spawn(process.execPath, [script, ...specs], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const backends = await new Promise<BenchBackend[]>((resolve, reject) => {
    const out: BenchBackend[] = [];
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
      const line = JSON.parse(text) as { name: string; port: number };
      out.push({ name: line.name, port: line.port, url: `http://127.0.0.1:${line.port}` });
      if (out.length === specs.length) resolve(out);
    });
    void exited.then(() => reject(new Error('backend process exited before it was ready')));
  });
  return {
    backends,
    child,
    kill: async (signal: NodeJS.Signals = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** A running drover. */
export interface BenchDrover {
  readonly port: number;
  readonly adminPort: number;
  /** the drover process's id (memory and CPU are read from /proc/PID) */
  readonly pid: number;
  stop(): Promise<void>;
}

/** Starts `bin/drover start` on `yaml` (listen and admin on port 0) and waits for `ready`. */
export async function startDrover(yaml: string): Promise<BenchDrover> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-'));
  const file = path.join(dir, 'drover.yaml');
  fs.writeFileSync(file, yaml);
  const child = track(spawn(process.execPath, [path.join(ROOT, 'bin', 'drover'), 'start', '-c', file], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] }));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let buf = '';
    child.stdout?.setEncoding('utf8');
    const onData = (d: string): void => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (parsed['msg'] === 'ready') {
            child.stdout?.off('data', onData);
            child.stdout?.resume(); // keep draining the log so drover never blocks on it
            resolve(parsed);
          }
        } catch {
          // not a JSON line
        }
      }
    };
    child.stdout?.on('data', onData);
    void exited.then(() => reject(new Error('drover exited before it was ready')));
  });
  const listen = ready['listen'] as { port: number }[];
  const admin = ready['admin'] as { port: number };
  return {
    port: listen[0]?.port ?? 0,
    adminPort: admin.port,
    pid: child.pid ?? 0,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One backend as `GET /api/services` shows it (the fields the benchmarks read). */
export interface AdminBackend {
  readonly id: string;
  readonly state: string;
  readonly reason: string;
  readonly requests: number;
  readonly failures: number;
  /** requests in flight now */
  readonly inflight: number;
  readonly last_change: string | null;
  /** peak-EWMA latency to response headers, ms; null before the first answer */
  readonly latency_ewma_ms: number | null;
}

/** The backends of one service from the admin API. */
export function adminBackends(adminPort: number, service: string): Promise<AdminBackend[]> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: adminPort, path: '/api/services', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { services: { name: string; backends: AdminBackend[] }[] };
          resolve(body.services.find((s) => s.name === service)?.backends ?? []);
        } catch (err) {
          reject(err as Error);
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Writes `bench/results/<name>.json` and `.md`; returns the paths. */
export function writeResults(name: string, json: unknown, markdown: string): { json: string; md: string } {
  fs.mkdirSync(RESULTS, { recursive: true });
  const jsonPath = path.join(RESULTS, `${name}.json`);
  const mdPath = path.join(RESULTS, `${name}.md`);
  fs.writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  fs.writeFileSync(mdPath, markdown);
  return { json: jsonPath, md: mdPath };
}

/** Machine facts printed with every result (figures only compare within one run). */
export function machine(): { node: string; cpus: number; cpuModel: string; date: string } {
  return { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', date: new Date().toISOString() };
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The positive number after `flag` in `argv`, or `dflt` when absent or not a positive number. */
export function positiveFlag(argv: readonly string[], flag: string, dflt: number): number {
  const i = argv.indexOf(flag);
  const v = i === -1 ? undefined : Number(argv[i + 1]);
  return v === undefined || !Number.isFinite(v) || v <= 0 ? dflt : v;
}
