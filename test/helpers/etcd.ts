/**
 * Test harness: real etcd servers on free 127.0.0.1 ports, each in a fresh temp dir.
 *
 * - `startEtcd()` one member; `startEtcdCluster(3)` a cluster with `stopMember(i)`.
 * - `describeEtcd(name, fn)`: a describe block that is skipped (with a printed notice) when the
 *   etcd binary is missing, EXCEPT under `CI=true`, where a missing etcd throws so the suite fails.
 * - Every process is stopped and every temp dir removed by `stop()`; a process-exit hook kills
 *   anything a crashed test left behind.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, createWriteStream, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { createEtcdClient } from '../../src/registry/etcd-client.js';
import { waitFor } from './wait.js';

/**
 * Path of the etcd binary: `$ETCD_BIN` when set (and only that), else /usr/bin/etcd, else the
 * first `etcd` on PATH.
 */
export function etcdBinary(): string | undefined {
  const fromEnv = process.env['ETCD_BIN'];
  const candidates =
    fromEnv !== undefined && fromEnv !== ''
      ? [fromEnv]
      : ['/usr/bin/etcd', ...(process.env['PATH'] ?? '').split(':').filter((d) => d !== '').map((d) => path.join(d, 'etcd'))];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

/** True when an etcd binary is available. */
export function etcdAvailable(): boolean {
  return etcdBinary() !== undefined;
}

/**
 * `describe` that needs etcd: skipped with a notice when etcd is missing, but failing (throws)
 * under `CI=true`: a CI run must never pass by skipping the etcd suites.
 */
export function describeEtcd(name: string, fn: () => void): void {
  if (etcdAvailable()) {
    describe(name, fn);
    return;
  }
  if (process.env['CI'] === 'true') {
    throw new Error(`etcd binary not found (set ETCD_BIN or install etcd-server): "${name}" cannot be skipped under CI=true`);
  }
  process.stderr.write(`\n[notice] etcd binary not found: skipping "${name}" (install etcd-server or set ETCD_BIN)\n`);
  describe.skip(name, fn);
}

/** A free TCP port on 127.0.0.1 (the OS picks it; released before returning). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** TLS material for an etcd started with `tls: true` (PEM file paths). */
export interface EtcdTlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** a client certificate signed by the same CA */
  readonly clientCert: string;
  readonly clientKey: string;
}

/** Generates a CA and server/client certificates for 127.0.0.1 with openssl into `dir`. */
export function generateTls(dir: string): EtcdTlsFiles {
  const f = (n: string): string => path.join(dir, n);
  const ssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'pipe' });
  };
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=drover-test-ca', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  for (const [name, cn] of [['server', '127.0.0.1'], ['client', 'root']] as const) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('ext.cnf'), '-out', f(`${name}.pem`));
  }
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

/** Options of one etcd member. */
export interface EtcdOptions {
  /** serve clients over TLS with generated certificates (client certs optional) */
  readonly tls?: boolean;
  /** extra etcd flags */
  readonly args?: readonly string[];
  /** ms to wait for the member to answer; default 15000 */
  readonly readyTimeoutMs?: number;
}

interface MemberPlan {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
}

/** One running etcd member. */
export interface EtcdServer {
  readonly name: string;
  /** `http(s)://127.0.0.1:PORT` */
  readonly endpoints: string[];
  readonly clientPort: number;
  /** the member's data directory (inside `root`) */
  readonly dataDir: string;
  /** temp dir holding data, logs and certificates; removed by stop() */
  readonly root: string;
  readonly tls?: EtcdTlsFiles | undefined;
  readonly pid: number | undefined;
  /** A client for test setup (put/delete/compact); closed by stop(). */
  client(): Etcd3;
  /** Sends `signal` (default SIGKILL) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the process freezes with its sockets open. */
  pause(): void;
  /** SIGCONT */
  resume(): void;
  /** Stops (SIGTERM) and starts again on the same ports; `wipe` starts from an empty data dir. */
  restart(opts?: { wipe?: boolean }): Promise<void>;
  /** Stops the process (if running) without removing files. */
  halt(): Promise<void>;
  /** Stops the process, closes clients and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** The member's log so far (for failure messages). */
  logs(): string;
}

class EtcdMember implements EtcdServer {
  readonly endpoints: string[];
  readonly dataDir: string;
  private child: ChildProcess | undefined;
  private clients: Etcd3[] = [];
  private stopped = false;
  private readonly logFile: string;

  constructor(
    private readonly plan: MemberPlan,
    readonly root: string,
    private readonly initialCluster: string,
    private readonly clusterState: 'new' | 'existing',
    private readonly options: EtcdOptions,
    readonly tls: EtcdTlsFiles | undefined,
  ) {
    const scheme = tls !== undefined ? 'https' : 'http';
    this.endpoints = [`${scheme}://127.0.0.1:${plan.clientPort}`];
    this.dataDir = path.join(root, `${plan.name}.data`);
    this.logFile = path.join(root, `${plan.name}.log`);
  }

  get name(): string {
    return this.plan.name;
  }
  get clientPort(): number {
    return this.plan.clientPort;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }

  spawn(): void {
    const bin = etcdBinary();
    if (bin === undefined) throw new Error('etcd binary not found');
    const client = this.endpoints[0] as string;
    const peer = `http://127.0.0.1:${this.plan.peerPort}`;
    const args = [
      '--name', this.plan.name,
      '--data-dir', this.dataDir,
      '--listen-client-urls', client,
      '--advertise-client-urls', client,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', this.initialCluster,
      '--initial-cluster-state', this.clusterState,
      '--initial-cluster-token', `drover-test-${path.basename(this.root)}`,
      // Tests use short gRPC keepalives; let etcd accept them instead of answering GOAWAY.
      '--grpc-keepalive-min-time', '200ms',
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--log-level', 'warn',
      '--logger', 'zap',
      ...(this.tls !== undefined ? ['--cert-file', this.tls.cert, '--key-file', this.tls.key, '--trusted-ca-file', this.tls.ca] : []),
      ...(this.options.args ?? []),
    ];
    const out = createWriteStream(this.logFile, { flags: 'a' });
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    child.on('error', () => undefined);
    track(child);
    this.child = child;
  }

  client(): Etcd3 {
    const c = createEtcdClient({
      endpoints: this.endpoints,
      callTimeoutMs: 3000,
      hostRetryMs: 100,
      ...(this.tls !== undefined
        ? { tls: { ca: readFileSync(this.tls.ca), cert: readFileSync(this.tls.clientCert), key: readFileSync(this.tls.clientKey) } }
        : {}),
    });
    this.clients.push(c);
    return c;
  }

  async waitReady(): Promise<void> {
    const c = this.client();
    try {
      await waitFor(async () => (await c.get('drover-harness-probe').string(), true), {
        what: `etcd ${this.name} to answer`,
        timeoutMs: this.options.readyTimeoutMs ?? 15_000,
        everyMs: 100,
        detail: () => this.logs(),
        giveUp: () => (this.child !== undefined && this.child.exitCode !== null ? `etcd ${this.name} exited with ${this.child.exitCode}:\n${this.logs()}` : undefined),
      });
    } finally {
      c.close();
      this.clients = this.clients.filter((x) => x !== c);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    if (child.signalCode === 'SIGSTOP') child.kill('SIGCONT');
    child.kill(signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM' || signal === 'SIGINT') {
      await waitExit(child, 10_000);
      this.child = undefined;
    }
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  async halt(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    if (!(await waitExit(child, 5000))) {
      child.kill('SIGKILL');
      await waitExit(child, 5000);
    }
    this.child = undefined;
  }

  async restart(opts: { wipe?: boolean } = {}): Promise<void> {
    await this.halt();
    if (opts.wipe === true) rmSync(this.dataDir, { recursive: true, force: true });
    this.spawn();
    await this.waitReady();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const c of this.clients) c.close();
    this.clients = [];
    await this.halt();
  }

  logs(): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '';
    }
  }
}

/** Starts a single-member etcd in a fresh temp dir and waits until it answers. */
export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdServer> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'drover-etcd-'));
  try {
    const tls = options.tls === true ? generateTls(root) : undefined;
    const plan: MemberPlan = { name: 'm0', clientPort: await freePort(), peerPort: await freePort() };
    const member = new EtcdMember(plan, root, `m0=http://127.0.0.1:${plan.peerPort}`, 'new', options, tls);
    const stop = member.stop.bind(member);
    // The temp dir belongs to the single member: remove it with the member.
    member.stop = async () => {
      await stop();
      rmSync(root, { recursive: true, force: true });
    };
    member.spawn();
    try {
      await member.waitReady();
    } catch (err) {
      await member.stop();
      throw err;
    }
    return member;
  } catch (err) {
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
}

/** A running multi-member cluster. */
export interface EtcdCluster {
  /** every member's client URL */
  readonly endpoints: string[];
  readonly members: readonly EtcdServer[];
  /** Stops member `i` (SIGTERM), keeping its data. */
  stopMember(i: number): Promise<void>;
  /** Starts member `i` again with its data. */
  startMember(i: number): Promise<void>;
  /** Stops every member and removes the temp dir. */
  stop(): Promise<void>;
}

/** Starts an `n`-member cluster on 127.0.0.1 and waits until every member answers. */
export async function startEtcdCluster(n = 3, options: EtcdOptions = {}): Promise<EtcdCluster> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'drover-etcd-cluster-'));
  const members: EtcdMember[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(members.map((m) => m.stop()));
    rmSync(root, { recursive: true, force: true });
  };
  try {
    const plans: MemberPlan[] = [];
    for (let i = 0; i < n; i++) plans.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort() });
    const initial = plans.map((p) => `${p.name}=http://127.0.0.1:${p.peerPort}`).join(',');
    mkdirSync(root, { recursive: true });
    for (const p of plans) members.push(new EtcdMember(p, root, initial, 'new', options, undefined));
    for (const m of members) m.spawn();
    await Promise.all(members.map((m) => m.waitReady()));
  } catch (err) {
    await stopAll();
    throw err;
  }
  const at = (i: number): EtcdMember => {
    const m = members[i];
    if (m === undefined) throw new Error(`no member ${i}`);
    return m;
  };
  return {
    endpoints: members.flatMap((m) => m.endpoints),
    members,
    stopMember: (i) => at(i).halt(),
    startMember: async (i) => {
      at(i).spawn();
      await at(i).waitReady();
    },
    stop: stopAll,
  };
}

/**
 * Turns on etcd auth with a `root` user (password `password`) through the client API (etcdctl
 * is not always installed). Returns nothing; later clients need the credentials.
 */
export async function enableAuth(client: Etcd3, password: string): Promise<void> {
  await client.role('root').create();
  await client.user('root').create(password);
  await client.user('root').addRole('root');
  await client.auth.authEnable();
}

/** One etcd member shared by the tests of a describe block, with a client to it. */
export interface SharedEtcd {
  /** the member; set once `beforeAll` has run */
  readonly etcd: EtcdServer;
  /** a client to it (closed with the member) */
  readonly kv: Etcd3;
}

/**
 * Starts one etcd member before the tests of the calling describe block and stops it after
 * them. Read `etcd` and `kv` inside tests, not at collection time (they are set by `beforeAll`).
 */
export function useSharedEtcd(): SharedEtcd {
  let etcd: EtcdServer | undefined;
  let kv: Etcd3 | undefined;
  beforeAll(async () => {
    etcd = await startEtcd();
    kv = etcd.client();
  });
  afterAll(async () => {
    await etcd?.stop();
  });
  const unset = (): never => {
    throw new Error('useSharedEtcd: read inside a test, after beforeAll');
  };
  return {
    get etcd(): EtcdServer {
      return etcd ?? unset();
    },
    get kv(): Etcd3 {
      return kv ?? unset();
    },
  };
}
