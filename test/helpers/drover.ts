/**
 * Runs the real `bin/drover` as a child process for end-to-end tests: writes the config into a
 * fresh temp dir, waits for the `ready` log line that names the bound ports, and collects
 * every JSON log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'bin', 'drover');

export interface DroverProcess {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly configFile: string;
  /** first proxy listener's port */
  readonly port: number;
  readonly adminPort: number;
  /** parsed JSON log lines so far */
  readonly logs: Record<string, unknown>[];
  readonly stderr: () => string;
  /** resolves with the exit code */
  readonly exited: Promise<number | null>;
  /** writes the config file again (triggers a watched reload) */
  writeConfig(yaml: string): void;
  /** waits until a log line matches */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** A fresh temp dir for one test's files. */
export function tempDir(prefix = 'drover-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Starts drover with `yaml` as its config. Listen and admin addresses should use port 0; the
 * ports are read from the `ready` log line. Extra files (a registry file) go in `files`.
 */
export async function startDrover(
  yaml: string,
  options: { files?: Record<string, string>; env?: NodeJS.ProcessEnv; args?: string[]; /** ms to wait for `ready`; default 10000 */ readyTimeoutMs?: number } = {},
): Promise<DroverProcess> {
  const dir = tempDir();
  const configFile = path.join(dir, 'drover.yaml');
  fs.writeFileSync(configFile, yaml);
  for (const [name, text] of Object.entries(options.files ?? {})) fs.writeFileSync(path.join(dir, name), text);
  const child = spawn(process.execPath, [BIN, 'start', '-c', configFile, ...(options.args ?? [])], {
    cwd: dir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let err = '';
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    logs.push(parsed);
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i];
      if (w !== undefined && w.pred(parsed)) {
        waiters.splice(i, 1);
        w.resolve(parsed);
      }
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> => {
    const found = logs.find(pred);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a log line; stderr: ${err}\nlogs: ${JSON.stringify(logs.slice(-20))}`)), timeoutMs);
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`drover exited early; stderr: ${err}\nlogs: ${JSON.stringify(logs.slice(-20))}`));
      });
    });
  };
  const ready = await waitForLog((l) => l['msg'] === 'ready', options.readyTimeoutMs);
  const listeners = ready['listen'] as { port: number }[];
  const admin = ready['admin'] as { port: number };
  return {
    child,
    dir,
    configFile,
    port: listeners[0]?.port ?? 0,
    adminPort: admin.port,
    logs,
    stderr: () => err,
    exited,
    writeConfig: (text: string) => {
      // write-then-rename, as config tools do, so the watcher never reads a half-written file
      const tmp = `${configFile}.tmp`;
      fs.writeFileSync(tmp, text);
      fs.renameSync(tmp, configFile);
    },
    waitForLog,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await exited;
      fs.rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
