/**
 * End-to-end lifecycle of the real `bin/drover` process: start-up errors, hot reload (SIGHUP and
 * file change) under load without a failed request, a refused invalid reload, the file registry
 * applying changes in place, graceful SIGTERM.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { BIN, ROOT, startDrover, tempDir, type DroverProcess } from './helpers/drover.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();

async function backends(...names: string[]): Promise<TestBackend[]> {
  const out = await Promise.all(names.map((n) => startBackend(n)));
  later(() => Promise.all(out.map((b) => b.close())));
  return out;
}

async function drover(yaml: string, files?: Record<string, string>): Promise<DroverProcess> {
  const d = await startDrover(yaml, { files });
  later(() => d.stop());
  return d;
}

const head = `listen: [{address: 127.0.0.1:0}]\nadmin: {address: 127.0.0.1:0}\naccess_log: off\nshutdown_grace: 5s\n`;

/**
 * Keeps `concurrency` keep-alive clients requesting `path` until stopped; counts every request
 * and every failure (status other than 200, or a socket error) itself.
 */
interface Traffic {
  /** requests answered so far (any outcome) */
  answered(): number;
  /** resolves once `n` more requests than now have been answered (throws after 20 s) */
  more(n: number): Promise<void>;
  stop(): Promise<{ ok: number; failed: string[]; bodies: Map<string, number> }>;
}

function load(port: number, pathName: string, concurrency = 8): Traffic {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let running = true;
  let ok = 0;
  const failed: string[] = [];
  const bodies = new Map<string, number>();
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: pathName, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode === 200) ok++;
          else failed.push(`${res.statusCode}: ${body}`);
          bodies.set(body, (bodies.get(body) ?? 0) + 1);
          resolve();
        });
        res.on('error', (e) => {
          failed.push(String(e));
          resolve();
        });
      });
      req.on('error', (e) => {
        failed.push(String(e));
        resolve();
      });
    });
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) await one();
  });
  const answered = (): number => ok + failed.length;
  return {
    answered,
    // Waits on a count, not a clock: a busy CI machine may answer few requests per 100 ms.
    more: async (n: number) => {
      const target = answered() + n;
      await waitFor(() => answered() >= target, { what: `${target} requests answered`, timeoutMs: 20_000, everyMs: 5, detail: () => `traffic: ${answered()} answered` });
    },
    stop: async () => {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return { ok, failed, bodies };
    },
  };
}

describe('start-up', () => {
  it('exits 1 with every config error located on stderr', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'listen:\n  - address: 127.0.0.1:8080\nshutdown_grace: soon\nservices:\n  web:\n    balancer: fastest\n');
    const child = spawn(process.execPath, [BIN, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:\\d+: shutdown_grace: `));
    expect(lines[1]).toMatch(/:6:\d+: services\.web\.balancer: /);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves /healthz and /readyz on the admin address', async () => {
    const [a] = await backends('alpha');
    const d = await drover(`${head}services:\n  web: {backends: [{url: ${a?.url}}]}\nroutes: [{match: {path_prefix: /}, service: web}]\n`);
    expect((await request(d.adminPort, { path: '/healthz' })).status).toBe(200);
    expect((await request(d.adminPort, { path: '/readyz' })).status).toBe(200);
    expect((await request(d.port, { path: '/' })).body).toBe('alpha');
  });
});

describe('hot reload', () => {
  it('SIGHUP swaps routes and backends under load with zero failed requests', async () => {
    const [a, b] = await backends('alpha', 'beta');
    const v1 = `${head}services:\n  web: {backends: [{url: ${a?.url}, id: a}]}\nroutes: [{match: {path_prefix: /}, service: web}]\n`;
    const v2 = `${head}services:\n  web: {backends: [{url: ${b?.url}, id: b}]}\n  other: {backends: [{url: ${a?.url}, id: a}]}\nroutes:\n  - {match: {path_prefix: /other}, service: other}\n  - {match: {path_prefix: /}, service: web}\n`;
    const d = await drover(v1);
    const traffic = load(d.port, '/x');
    await traffic.more(40);
    fs.writeFileSync(d.configFile, v2);
    d.child.kill('SIGHUP');
    await d.waitForLog((l) => l['msg'] === 'config reloaded');
    await traffic.more(40);
    const result = await traffic.stop();
    expect(result.failed).toEqual([]);
    expect(result.ok).toBeGreaterThanOrEqual(80);
    // both backends answered: alpha before the reload, beta after
    expect([...result.bodies.keys()].sort()).toEqual(['alpha', 'beta']);
    expect((await request(d.port, { path: '/x' })).body).toBe('beta');
    expect((await request(d.port, { path: '/other' })).body).toBe('alpha');
  });

  it('a file change reloads; an invalid config is refused, logged and counted, the old one keeps serving', async () => {
    const [a, b] = await backends('alpha', 'beta');
    const d = await drover(`${head}services:\n  web: {backends: [{url: ${a?.url}}]}\nroutes: [{match: {path_prefix: /}, service: web}]\n`);
    const traffic = load(d.port, '/');
    d.writeConfig(`${head}services:\n  web: {backends: [{url: ${a?.url}}]}\n  broken: {balancer: nope}\nroutes: [{match: {path_prefix: /}, service: nowhere}]\n`);
    const refused = await d.waitForLog((l) => l['msg'] === 'config reload refused: the old config keeps serving');
    const issues = refused['issues'] as string[];
    expect(issues.some((i) => /:7:\d+: services\.broken\.balancer: /.test(i))).toBe(true);
    expect(issues.some((i) => /routes\.0\.service: /.test(i))).toBe(true);
    expect((await request(d.port, { path: '/' })).body).toBe('alpha');
    d.writeConfig(`${head}services:\n  web: {backends: [{url: ${b?.url}}]}\nroutes: [{match: {path_prefix: /}, service: web}]\n`);
    await d.waitForLog((l) => l['msg'] === 'config reloaded' && l['trigger'] === 'file');
    expect((await request(d.port, { path: '/' })).body).toBe('beta');
    const result = await traffic.stop();
    expect(result.failed).toEqual([]);
    const metrics = (await request(d.adminPort, { path: '/metrics' })).body;
    expect(metrics).toMatch(/drover_config_reloads_total\{result="failure"\} 1\b/);
    expect(metrics).toMatch(/drover_config_reloads_total\{result="success"\} 1\b/);
  });
});

describe('file registry', () => {
  it('adds and removes members in place; a removed member finishes its in-flight request', async () => {
    const [a, b, c] = await backends('alpha', 'beta', 'gamma');
    const reg = (ms: (TestBackend | undefined)[]): string => `services:\n  web:\n    backends:\n${ms.map((m) => `      - {url: ${m?.url}, id: ${m?.name}}`).join('\n')}\n`;
    const d = await drover(`${head}registry: {file: services.yaml}\nroutes: [{match: {path_prefix: /}, service: web}]\n`, { 'services.yaml': reg([a, b]) });
    const first: string[] = [];
    for (let i = 0; i < 4; i++) first.push((await request(d.port)).body);
    expect(first).toEqual(['alpha', 'beta', 'alpha', 'beta']);

    // a slow request in flight on beta while beta is removed
    b?.behave((_req, res) => setTimeout(() => res.end('beta-slow'), 800));
    // round robin is in step (a b a b above): the next request goes to alpha, the one after to beta
    expect((await request(d.port)).body).toBe('alpha');
    const slow = request(d.port).then((r) => r.body);
    await waitFor(() => b?.seen.length === 3);
    const file = path.join(d.dir, 'services.yaml');
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, reg([a, c]));
    fs.renameSync(tmp, file);
    await d.waitForLog((l) => l['msg'] === 'pool changed' && JSON.stringify(l['removed']) === '["beta"]');
    const after: string[] = [];
    for (let i = 0; i < 4; i++) after.push((await request(d.port)).body);
    expect(after.sort()).toEqual(['alpha', 'alpha', 'gamma', 'gamma']);
    expect(await slow).toBe('beta-slow');
  });

  it('a half-written registry file changes nothing', async () => {
    const [a] = await backends('alpha');
    const d = await drover(`${head}registry: {file: services.yaml}\nroutes: [{match: {path_prefix: /}, service: web}]\n`, {
      'services.yaml': `services:\n  web:\n    backends: [{url: ${a?.url}}]\n`,
    });
    fs.writeFileSync(path.join(d.dir, 'services.yaml'), 'services:\n  web:\n    backends: [{url: ');
    await d.waitForLog((l) => l['msg'] === 'registry file invalid: keeping the last members');
    expect((await request(d.port)).body).toBe('alpha');
  });
});

describe('graceful shutdown', () => {
  it('SIGTERM stops accepting, lets the in-flight request finish, exits 0', async () => {
    const [a] = await backends('alpha');
    a?.behave((_req, res) => setTimeout(() => res.end('finished'), 1000));
    const d = await drover(`${head}services:\n  web: {backends: [{url: ${a?.url}}]}\nroutes: [{match: {path_prefix: /}, service: web}]\n`);
    const inflight = request(d.port);
    await waitFor(() => a?.seen.length === 1); // in flight at the backend
    d.child.kill('SIGTERM');
    await d.waitForLog((l) => l['msg'] === 'listeners closed');
    // new connections are refused while the old request finishes
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(d.port, '127.0.0.1');
      s.on('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', () => resolve(true));
    });
    expect(refused).toBe(true);
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(r.body).toBe('finished');
    expect(await d.exited).toBe(0);
  });
});

/** A backend that answers every upgrade 101 and echoes what comes through the tunnel. */
async function echoTunnelBackend(): Promise<number> {
  const server = await startBackend('echo-tunnel', {
    upgrade: (_req, socket) => {
      socket.on('error', () => undefined);
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.on('data', (d: Buffer) => socket.write(`echo:${d.toString()}`));
      socket.on('end', () => socket.end());
    },
  });
  later(() => server.close());
  return server.port;
}

/** Opens a WebSocket tunnel through drover; resolves with the socket once the 101 arrived. */
function openTunnel(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () =>
      s.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'),
    );
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      if (head.startsWith('HTTP/1.1 101')) resolve(s);
      else reject(new Error(`no upgrade: ${head}`));
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

/** The next chunk the tunnel delivers, as text. */
const nextChunk = (s: net.Socket): Promise<string> => new Promise((resolve) => s.once('data', (d: Buffer) => resolve(d.toString())));

describe('graceful shutdown with an open WebSocket tunnel', () => {
  it('SIGTERM waits for the tunnel (which still relays) and exits 0 once it closes', async () => {
    const port = await echoTunnelBackend();
    const d = await drover(`${head.replace('shutdown_grace: 5s', 'shutdown_grace: 20s')}services:\n  ws: {backends: [{url: http://127.0.0.1:${port}}]}\nroutes: [{match: {path_prefix: /}, service: ws}]\n`);
    const tunnel = await openTunnel(d.port);
    d.child.kill('SIGTERM');
    await d.waitForLog((l) => l['msg'] === 'listeners closed');
    const echoed = nextChunk(tunnel);
    tunnel.write('still-there');
    expect(await echoed).toBe('echo:still-there');
    // the listener is closed, the tunnel is not: drover waits for it (a drover that did not would
    // be through its shutdown and gone within 0.5 s, see start's exit timer)
    const early = await Promise.race([d.exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('running'), 1500))]);
    expect(early).toBe('running');
    expect(d.logs.some((l) => l['msg'] === 'stopped')).toBe(false);
    tunnel.end();
    expect(await d.exited).toBe(0);
    expect(d.logs.some((l) => l['msg'] === 'shutdown grace expired: closing remaining connections')).toBe(false);
  });

  it('a tunnel still open when shutdown_grace ends is closed by drover, which exits 0', async () => {
    const port = await echoTunnelBackend();
    const d = await drover(`${head.replace('shutdown_grace: 5s', 'shutdown_grace: 300ms')}services:\n  ws: {backends: [{url: http://127.0.0.1:${port}}]}\nroutes: [{match: {path_prefix: /}, service: ws}]\n`);
    const tunnel = await openTunnel(d.port);
    const closed = new Promise<void>((r) => tunnel.once('close', () => r()));
    tunnel.on('error', () => undefined);
    d.child.kill('SIGTERM');
    await closed;
    expect(await d.exited).toBe(0);
    expect(d.logs.some((l) => l['msg'] === 'shutdown grace expired: closing remaining connections')).toBe(true);
  });
});

describe('npm start (the newcomer path)', () => {
  it('serves 127.0.0.1:8080 over the two demo backends with the admin page on 9901', async () => {
    const busy = await Promise.all(
      [8080, 9901, 9001, 9002].map(
        (port) =>
          new Promise<number | undefined>((resolve) => {
            const s = net.connect(port, '127.0.0.1');
            s.on('connect', () => {
              s.destroy();
              resolve(port);
            });
            s.on('error', () => resolve(undefined));
          }),
      ),
    );
    const taken = busy.filter((p) => p !== undefined);
    expect(taken, `ports already in use on this machine: ${taken.join(', ')}`).toEqual([]);
    const child = spawn(process.execPath, [BIN, 'start', '-c', path.join(ROOT, 'config', 'drover.yaml'), '--demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    later(async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready line: ${out}`)), 10_000);
      child.stdout.on('data', (d: string) => {
        out += d;
        if (out.includes('"msg":"ready"')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    // the demo service has active checks (rise 1): wait until both backends passed one
    const names = new Set<string>();
    await waitFor(
      async () => {
        const r = await request(8080, { path: '/hello' });
        if (r.status === 200) names.add((JSON.parse(r.body) as { backend: string }).backend);
        return names.size >= 2;
      },
      { what: 'both demo backends answering', timeoutMs: 5000, everyMs: 100 },
    );
    expect([...names].sort()).toEqual(['demo-1', 'demo-2']);
    const page = await request(9901, { path: '/' });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
