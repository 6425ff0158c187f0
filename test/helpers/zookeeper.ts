/**
 * Test harness: a real ZooKeeper server (Debian's `zookeeper` package, Java) on a free
 * 127.0.0.1 port in a fresh temp dir, and a client for test setup.
 *
 * - `startZooKeeper()` starts one standalone server (tickTime 200 ms, so sessions may be as short
 *   as 400 ms and expire quickly in tests); `kill()` / `restart()` keep the data dir and port.
 * - `describeZooKeeper(name, fn)` skips (with a notice) when java or zookeeper.jar is missing,
 *   EXCEPT under `CI=true`, where a missing server fails the suite (as etcd's helper does).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe } from 'vitest';
import { createClient, CreateMode, Exception, type Client } from 'node-zookeeper-client';
import { freePort } from './etcd.js';
import { waitFor } from './wait.js';

const JAR = process.env['ZOOKEEPER_JAR'] ?? '/usr/share/java/zookeeper.jar';
/** a logger for ZooKeeper's log file (its manifest names every other jar it needs) */
const SLF4J_SIMPLE = '/usr/share/java/slf4j-simple.jar';

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function java(): string | undefined {
  const dirs = ['/usr/bin', ...(process.env['PATH'] ?? '').split(':').filter((d) => d !== '')];
  return dirs.map((d) => path.join(d, 'java')).find(executable);
}

/** True when java and zookeeper.jar are installed. */
export function zookeeperAvailable(): boolean {
  try {
    accessSync(JAR, constants.R_OK);
  } catch {
    return false;
  }
  return java() !== undefined;
}

/** `describe` that needs ZooKeeper: skipped when missing, failing under `CI=true`. */
export function describeZooKeeper(name: string, fn: () => void): void {
  if (zookeeperAvailable()) {
    describe(name, fn);
    return;
  }
  if (process.env['CI'] === 'true') throw new Error(`ZooKeeper (java + ${JAR}) not found: "${name}" cannot be skipped under CI=true`);
  process.stderr.write(`\n[notice] ZooKeeper not found (java + ${JAR}): skipping "${name}"\n`);
  describe.skip(name, fn);
}

/** One running ZooKeeper server. */
export interface ZooKeeperServer {
  /** `127.0.0.1:PORT` */
  readonly servers: string;
  readonly port: number;
  /** A connected client for test setup (closed by stop()). */
  client(): Promise<Client>;
  /** SIGKILL, keeping data dir and port. */
  kill(): Promise<void>;
  /** Starts again on the same port with the same data. */
  start(): Promise<void>;
  /** Stops and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  logs(): string;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Sends a four-letter command (`srvr`, `ruok`...) and resolves with the answer ('' on failure). */
function fourLetter(port: number, cmd: string): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const s = net.connect({ host: '127.0.0.1', port }, () => s.end(cmd));
    s.setTimeout(1000, () => s.destroy());
    s.on('data', (d: Buffer) => (out += d.toString('utf8')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(out));
  });
}

/** Connects a client; rejects after `timeoutMs`. */
export function connectZk(servers: string, sessionTimeout = 4000, timeoutMs = 10_000): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = createClient(servers, { sessionTimeout, spinDelay: 100 });
    const t = setTimeout(() => {
      c.close();
      reject(new Error(`zookeeper ${servers}: no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    c.once('connected', () => {
      clearTimeout(t);
      resolve(c);
    });
    c.connect();
  });
}

/** Starts a standalone ZooKeeper in a temp dir; resolves once a client connects. */
export async function startZooKeeper(): Promise<ZooKeeperServer> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'drover-zk-'));
  const port = await freePort();
  const cfg = path.join(root, 'zoo.cfg');
  writeFileSync(
    cfg,
    [
      'tickTime=200',
      `dataDir=${path.join(root, 'data')}`,
      `clientPort=${port}`,
      'clientPortAddress=127.0.0.1',
      'admin.enableServer=false',
      'minSessionTimeout=400',
      'maxSessionTimeout=20000',
      '4lw.commands.whitelist=*',
      '',
    ].join('\n'),
  );
  const logFile = path.join(root, 'zk.log');
  const clients: Client[] = [];
  let child: ChildProcess | undefined;
  const servers = `127.0.0.1:${port}`;
  const spawnIt = (): void => {
    const out = createWriteStream(logFile, { flags: 'a' });
    const bin = java();
    if (bin === undefined) throw new Error('java not found');
    const c = spawn(bin, ['-Xmx128m', '-Dorg.slf4j.simpleLogger.defaultLogLevel=info', '-cp', `${root}:${JAR}:${SLF4J_SIMPLE}`, 'org.apache.zookeeper.server.ZooKeeperServerMain', cfg], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout?.pipe(out);
    c.stderr?.pipe(out);
    c.on('error', () => undefined);
    live.add(c);
    c.once('exit', () => live.delete(c));
    child = c;
  };
  // Ready once `srvr` reports a mode: the server accepts connections before its database is
  // loaded and drops them then ("ZooKeeperServer not running").
  const waitReady = async (): Promise<void> => {
    await waitFor(async () => (await fourLetter(port, 'srvr')).includes('Mode:'), { what: `zookeeper on ${port} to report a mode`, timeoutMs: 20_000, everyMs: 50, detail: () => server.logs() });
  };
  const server: ZooKeeperServer = {
    servers,
    port,
    async client() {
      const c = await connectZk(servers);
      clients.push(c);
      return c;
    },
    async kill() {
      const c = child;
      child = undefined;
      if (c === undefined) return;
      c.kill('SIGKILL');
      await exited(c);
    },
    async start() {
      spawnIt();
      await waitReady();
    },
    async stop() {
      for (const c of clients.splice(0)) c.close();
      await server.kill();
      rmSync(root, { recursive: true, force: true });
    },
    logs() {
      try {
        return readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n');
      } catch {
        return '';
      }
    },
  };
  try {
    await server.start();
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** A promise wrapper of the client calls tests use. */
export const zk = {
  mkdirp(c: Client, p: string): Promise<void> {
    return new Promise((resolve, reject) => c.mkdirp(p, (err) => (err ? reject(err as Error) : resolve())));
  },
  /** Creates (ephemeral by default) or, when it exists, sets `p` to `data`. */
  put(c: Client, p: string, data: string, mode: number = CreateMode.EPHEMERAL): Promise<string> {
    return new Promise((resolve, reject) =>
      c.create(p, Buffer.from(data), mode, (err, created) => {
        if (err === null || err === undefined) return resolve(created);
        if (err instanceof Exception && err.getCode() === Exception.NODE_EXISTS) {
          return c.setData(p, Buffer.from(data), (e) => (e ? reject(e as Error) : resolve(p)));
        }
        reject(err as Error);
      }),
    );
  },
  remove(c: Client, p: string): Promise<void> {
    return new Promise((resolve, reject) =>
      c.remove(p, (err) => (err === null || err === undefined || (err instanceof Exception && err.getCode() === Exception.NO_NODE) ? resolve() : reject(err as Error))),
    );
  },
  children(c: Client, p: string): Promise<string[]> {
    return new Promise((resolve, reject) =>
      c.getChildren(p, (err, ch) => (err === null || err === undefined ? resolve(ch) : err instanceof Exception && err.getCode() === Exception.NO_NODE ? resolve([]) : reject(err as Error))),
    );
  },
};
