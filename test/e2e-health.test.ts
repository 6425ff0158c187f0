/**
 * End-to-end health and resilience: the real `bin/drover` in front of real backends on
 * 127.0.0.1. Every backend names itself in its body and records what it saw, so each assertion
 * is about who answered (and who did not).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, startBackend, type Answer, type TestBackend } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { eventually, waitFor } from './helpers/wait.js';

const TOKEN = 'test-token-4';
const AUTH = { authorization: `Bearer ${TOKEN}` };

interface BackendView {
  id: string;
  url: string;
  weight: number;
  state: string;
  reason: string;
  last_change: string | null;
  inflight: number;
  requests: number;
  failures: number;
}
interface ServiceView {
  name: string;
  panic?: boolean;
  backends: BackendView[];
}

/**
 * A test backend with a switchable `/healthz` and a switchable answer for everything else.
 * `app` lists the non-health requests it saw, `probes` the health checks (with the status given).
 */
interface Node {
  readonly name: string;
  readonly url: string;
  readonly backend: TestBackend;
  health: number;
  mode: 'ok' | '500' | '404' | 'reset' | 'slow';
  readonly app: { url: string; method: string; body: string; at: number }[];
  readonly probes: { status: number; at: number }[];
}

async function node(name: string): Promise<Node> {
  const backend = await startBackend(name);
  const n: Node = { name, url: backend.url, backend, health: 200, mode: 'ok', app: [], probes: [] };
  backend.behave((req, res, body) => {
    if (req.url === '/healthz') {
      n.probes.push({ status: n.health, at: Date.now() });
      res.writeHead(n.health, { 'content-type': 'text/plain' });
      res.end(name);
      return;
    }
    n.app.push({ url: req.url ?? '', method: req.method ?? '', body, at: Date.now() });
    switch (n.mode) {
      case 'reset':
        req.socket.destroy();
        return;
      case '500':
      case '404':
        res.writeHead(Number(n.mode), { 'content-type': 'text/plain' });
        res.end(name);
        return;
      case 'slow':
        setTimeout(() => res.end(name), 2000); // long enough for the drain and its checks while it is held
        return;
      default:
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(name);
    }
  });
  return n;
}

async function services(d: DroverProcess): Promise<ServiceView[]> {
  const a = await request(d.adminPort, { path: '/api/services' });
  expect(a.status).toBe(200);
  return (JSON.parse(a.body) as { services: ServiceView[] }).services;
}

async function service(d: DroverProcess, name: string): Promise<ServiceView> {
  const s = (await services(d)).find((x) => x.name === name);
  if (s === undefined) throw new Error(`no service ${name}`);
  return s;
}

async function backendView(d: DroverProcess, svc: string, id: string): Promise<BackendView> {
  const b = (await service(d, svc)).backends.find((x) => x.id === id);
  if (b === undefined) throw new Error(`no backend ${svc}/${id}`);
  return b;
}

async function waitState(d: DroverProcess, svc: string, id: string, state: string, timeoutMs = 10_000): Promise<BackendView> {
  return waitFor(async () => {
    const b = await backendView(d, svc, id);
    return b.state === state ? b : undefined;
  }, { what: `${svc}/${id} to be ${state}`, timeoutMs: timeoutMs });
}

/** `n` sequential GETs; the bodies (backend names) in order. */
async function bodies(port: number, p: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await request(port, { path: p })).body);
  return out;
}

function admin(d: DroverProcess, p: string, headers: http.OutgoingHttpHeaders = AUTH): Promise<Answer> {
  return request(d.adminPort, { method: 'POST', path: p, headers });
}

describe('health and resilience (one drover, many services)', () => {
  let d: DroverProcess;
  const n: Record<string, Node> = {};
  const names = ['a1', 'a2', 'never', 'r1', 'r2', 'p1', 'p2', 'q1', 'q2', 'q3', 'z1', 'd1', 'd2', 'k1', 'k2', 'k3', 'k4', 'f1'];

  function yaml(k4Weight: number): string {
    const list = (...ids: string[]): string => `[${ids.map((id) => `{url: ${n[id]?.url}, id: ${id}}`).join(', ')}]`;
    return `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry: {file: services.yaml}
services:
  act:
    panic_threshold: 0
    health:
      active: {path: /healthz, interval: 100ms, timeout: 2s, rise: 2, fall: 3}
    backends: ${list('a1', 'a2', 'never')}
  resets:
    retries: 2
    health: {passive: {consecutive_failures: 1000, max_ejected_percent: 0}}
    backends: ${list('r1', 'r2')}
  passive:
    health: {passive: {consecutive_failures: 3, ejection: 1s, max_ejected_percent: 50}}
    backends: ${list('p1', 'p2')}
  panic:
    panic_threshold: 50
    health:
      active: {path: /healthz, interval: 100ms, timeout: 2s, rise: 1, fall: 1}
    backends: ${list('q1', 'q2', 'q3')}
  panic0:
    panic_threshold: 0
    health:
      active: {path: /healthz, interval: 100ms, timeout: 2s, rise: 1, fall: 1}
    backends: ${list('z1')}
  drain:
    backends: ${list('d1', 'd2')}
  keep:
    panic_threshold: 0
    health:
      active: {path: /healthz, interval: 100ms, timeout: 2s, rise: 1, fall: 3}
      passive: {consecutive_failures: 3, ejection: 60s, max_ejected_percent: 50}
    backends: [{url: ${n['k1']?.url}, id: k1}, {url: ${n['k2']?.url}, id: k2}, {url: ${n['k3']?.url}, id: k3}, {url: ${n['k4']?.url}, id: k4, weight: ${k4Weight}}]
  filed:
    health:
      active: {path: /healthz, interval: 100ms, timeout: 2s, rise: 1, fall: 3}
routes:
  - {match: {path_prefix: /act}, service: act}
  - {match: {path_prefix: /resets}, service: resets}
  - {match: {path_prefix: /passive}, service: passive}
  - {match: {path_prefix: /panic0}, service: panic0}
  - {match: {path_prefix: /panic}, service: panic}
  - {match: {path_prefix: /drain}, service: drain}
  - {match: {path_prefix: /keep}, service: keep}
  - {match: {path_prefix: /filed}, service: filed}
`;
  }
  const registryFile = (weight: number): string => `services:\n  filed:\n    backends: [{url: ${n['f1']?.url}, id: f1, weight: ${weight}}]\n`;

  beforeAll(async () => {
    for (const name of names) n[name] = await node(name);
    // Fail from the very first probe: these must never be seen as healthy.
    for (const id of ['never', 'q2', 'q3', 'z1', 'k1']) (n[id] as Node).health = 500;
    d = await startDrover(yaml(1), { env: { DROVER_ADMIN_TOKEN: TOKEN }, files: { 'services.yaml': registryFile(1) } });
  });

  afterAll(async () => {
    await d?.stop();
    await Promise.all(Object.values(n).map((x) => x.backend.close()));
  });

  it('a backend that never passes its checks never gets a request; a failing one leaves within fall x interval and returns after rise', async () => {
    const a1 = n['a1'] as Node;
    const never = n['never'] as Node;
    await waitState(d, 'act', 'a1', 'healthy');
    await waitState(d, 'act', 'a2', 'healthy');
    expect(await bodies(d.port, '/act', 8)).toEqual(expect.arrayContaining(['a1', 'a2']));
    expect((await bodies(d.port, '/act', 12)).filter((b) => b !== 'a1' && b !== 'a2')).toEqual([]);
    // Its first failed check is its verdict; its checks run on their own jittered schedule, so
    // wait until it has seen 3 probes: no request reached it all along.
    const neverView = await waitFor(async () => {
      const b = await backendView(d, 'act', 'never');
      return never.probes.length >= 3 ? b : undefined;
    }, { what: 'act/never to have been probed 3 times' });
    expect(neverView).toMatchObject({ state: 'unhealthy', reason: 'first check failed: status 500' });
    expect(never.probes.every((p) => p.status === 500)).toBe(true);
    expect(never.app).toEqual([]);

    // /healthz turns 500: out after exactly `fall` (3) failed checks
    const flippedAt = Date.now();
    a1.health = 500;
    const down = await waitState(d, 'act', 'a1', 'unhealthy');
    const downAt = Date.parse(down.last_change ?? '');
    expect(down.reason).toBe('3 failed checks: status 500');
    const failed = a1.probes.filter((p) => p.status === 500);
    expect(failed.length).toBeGreaterThanOrEqual(3);
    // the third failed probe took it out (not a later one): fall x interval, with ±10% jitter
    expect(downAt).toBeGreaterThanOrEqual((failed[2] as { at: number }).at - 5);
    if (failed[3] !== undefined) expect(downAt).toBeLessThan(failed[3].at);
    expect(downAt - flippedAt).toBeLessThan(3 * 100 * 1.1 + 2000); // slack for a loaded CI machine; the probe order above is the exact check
    expect(new Set(await bodies(d.port, '/act', 10))).toEqual(new Set(['a2']));

    // recovers after `rise` (2) passes
    a1.health = 200;
    const up = await waitState(d, 'act', 'a1', 'healthy');
    expect(up.reason).toBe('2 passed checks');
    const passedAfter = a1.probes.filter((p) => p.status === 200 && p.at > downAt);
    expect(passedAfter.length).toBeGreaterThanOrEqual(2);
    expect(Date.parse(up.last_change ?? '')).toBeGreaterThanOrEqual((passedAfter[1] as { at: number }).at - 5);
    expect(new Set(await bodies(d.port, '/act', 10))).toEqual(new Set(['a1', 'a2']));
    expect(never.app).toEqual([]);
  });

  it('a POST whose body was sent to a resetting backend reaches it exactly once and gets 502; a GET is retried elsewhere', async () => {
    const r1 = n['r1'] as Node;
    const r2 = n['r2'] as Node;
    r1.mode = 'reset';
    r2.mode = 'reset';
    const post = await request(d.port, { method: 'POST', path: '/resets/order', body: 'pay-once', headers: { 'content-type': 'text/plain' } });
    expect(post.status).toBe(502);
    expect(JSON.parse(post.body)).toEqual({ error: 'bad_gateway', service: 'resets' });
    expect([...r1.app, ...r2.app].map((s) => `${s.method} ${s.url} ${s.body}`)).toEqual(['POST /resets/order pay-once']);

    // an idempotent body-less request that was reset is retried on the other backend
    const get = await request(d.port, { path: '/resets/read' });
    expect(get.status).toBe(502);
    expect(r1.app.filter((s) => s.method === 'GET').length).toBe(1);
    expect(r2.app.filter((s) => s.method === 'GET').length).toBe(1);
    r2.mode = 'ok';
    for (let i = 0; i < 4; i++) {
      const g = await request(d.port, { path: '/resets/again' });
      expect(g).toMatchObject({ status: 200, body: 'r2' });
    }
    const metrics = (await request(d.adminPort, { path: '/metrics' })).body;
    expect(metrics).toMatch(/drover_retries_total\{service="resets"\} [1-9]/);
  });

  it('consecutive 5xx (not 4xx) eject a backend; it returns after the ejection time', async () => {
    const p1 = n['p1'] as Node;
    p1.mode = '404';
    for (let i = 0; i < 12; i++) await request(d.port, { path: '/passive' });
    expect(p1.app.length).toBe(6);
    expect((await backendView(d, 'passive', 'p1')).state).toBe('unknown');

    p1.mode = '500';
    const before = p1.app.length;
    await waitFor(async () => {
      const b = await backendView(d, 'passive', 'p1');
      if (b.state === 'ejected') return b;
      await request(d.port, { path: '/passive' });
      return undefined;
    }, { what: 'p1 ejected' });
    expect(p1.app.length - before).toBe(3);
    const ejected = await backendView(d, 'passive', 'p1');
    expect(ejected.reason).toBe('ejected: 3 consecutive 500 (for 1s)');
    const ejectedAt = Date.parse(ejected.last_change ?? '');
    expect(new Set(await bodies(d.port, '/passive', 10))).toEqual(new Set(['p2']));
    p1.mode = 'ok';
    const back = await waitState(d, 'passive', 'p1', 'unknown', 5000);
    expect(back.reason).toBe('ejection ended after 1s');
    expect(Date.parse(back.last_change ?? '') - ejectedAt).toBeGreaterThanOrEqual(990);
    expect(new Set(await bodies(d.port, '/passive', 10))).toEqual(new Set(['p1', 'p2']));
  });

  it('panic mode: below the threshold every backend is used; with threshold 0 the answer is 503', async () => {
    await waitState(d, 'panic', 'q1', 'healthy');
    await waitState(d, 'panic', 'q2', 'unhealthy');
    await waitState(d, 'panic', 'q3', 'unhealthy');
    expect((await service(d, 'panic')).panic).toBe(true);
    expect(new Set(await bodies(d.port, '/panic', 9))).toEqual(new Set(['q1', 'q2', 'q3']));
    // one more healthy: 2 of 3 is above 50 %, panic ends and only healthy backends serve
    (n['q2'] as Node).health = 200;
    await waitState(d, 'panic', 'q2', 'healthy');
    expect((await service(d, 'panic')).panic).toBe(false);
    expect(new Set(await bodies(d.port, '/panic', 9))).toEqual(new Set(['q1', 'q2']));

    await waitState(d, 'panic0', 'z1', 'unhealthy');
    const a = await request(d.port, { path: '/panic0' });
    expect(a.status).toBe(503);
    expect(JSON.parse(a.body)).toEqual({ error: 'no_available_backend', service: 'panic0' });
    expect((n['z1'] as Node).app).toEqual([]);
  });

  it('drain: the in-flight request completes, new requests go elsewhere; undrain; the token is required', async () => {
    const d1 = n['d1'] as Node;
    const d2 = n['d2'] as Node;
    d1.mode = 'slow';
    d2.mode = 'slow';
    const slow = request(d.port, { path: '/drain/slow' });
    const holder = await waitFor(() => (d1.app.length > 0 ? d1 : d2.app.length > 0 ? d2 : undefined), { what: 'the slow request to arrive' });
    const other = holder === d1 ? d2 : d1;
    holder.mode = 'ok';
    other.mode = 'ok';

    expect((await admin(d, `/api/services/drain/backends/${holder.name}/drain`, {})).status).toBe(401);
    expect((await admin(d, `/api/services/drain/backends/${holder.name}/drain`, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await backendView(d, 'drain', holder.name)).state).toBe('unknown');
    const drained = await admin(d, `/api/services/drain/backends/${holder.name}/drain`);
    expect(drained.status).toBe(200);
    expect(JSON.parse(drained.body)).toMatchObject({ id: holder.name, state: 'draining', inflight: 1 });
    expect((await admin(d, '/api/services/drain/backends/nope/drain')).status).toBe(404);

    const seenBefore = holder.app.length;
    expect(new Set(await bodies(d.port, '/drain/new', 8))).toEqual(new Set([other.name]));
    expect(holder.app.length).toBe(seenBefore);
    const answer = await slow;
    expect(answer).toMatchObject({ status: 200, body: holder.name });
    expect((await backendView(d, 'drain', holder.name)).inflight).toBe(0);

    expect((await admin(d, `/api/services/drain/backends/${holder.name}/undrain`, {})).status).toBe(401);
    const undrained = await admin(d, `/api/services/drain/backends/${holder.name}/undrain`);
    expect(undrained.status).toBe(200);
    expect(JSON.parse(undrained.body)).toMatchObject({ id: holder.name, state: 'unknown', reason: 'undrained through the admin API' });
    expect(new Set(await bodies(d.port, '/drain/back', 8))).toEqual(new Set(['d1', 'd2']));
  });

  it('healthy, unhealthy, ejected and drained states survive SIGHUP and registry value updates', async () => {
    const k2 = n['k2'] as Node;
    await waitState(d, 'keep', 'k1', 'unhealthy');
    for (const id of ['k2', 'k3', 'k4']) await waitState(d, 'keep', id, 'healthy');
    await waitState(d, 'filed', 'f1', 'healthy');
    k2.mode = '500';
    await waitFor(async () => {
      if ((await backendView(d, 'keep', 'k2')).state === 'ejected') return true;
      await request(d.port, { path: '/keep' });
      return undefined;
    }, { what: 'k2 ejected' });
    expect((await admin(d, '/api/services/keep/backends/k3/drain')).status).toBe(200);
    const before = await service(d, 'keep');
    const filedBefore = await backendView(d, 'filed', 'f1');
    expect(before.backends.map((b) => [b.id, b.state])).toEqual([
      ['k1', 'unhealthy'],
      ['k2', 'ejected'],
      ['k3', 'draining'],
      ['k4', 'healthy'],
    ]);

    const keepTransition = (l: Record<string, unknown>): boolean => l['msg'] === 'health transition' && (l['service'] === 'keep' || l['service'] === 'filed');
    // the log is read from the child's stdout and may trail the admin API: count from once the
    // lines of the states just reached (k2 ejected, k3 draining) are in
    for (const [id, to] of [['k2', 'ejected'], ['k3', 'draining']] as const) {
      await d.waitForLog((l) => keepTransition(l) && l['service'] === 'keep' && l['backend'] === id && l['to'] === to);
    }
    const transitionsBefore = d.logs.filter(keepTransition).length;
    // a config change through SIGHUP (k4's weight), and a weight change in the registry file
    fs.writeFileSync(d.configFile, yaml(3));
    const reloads = d.logs.filter((l) => l['msg'] === 'config reloaded').length;
    d.child.kill('SIGHUP');
    await waitFor(() => (d.logs.filter((l) => l['msg'] === 'config reloaded').length > reloads ? true : undefined), { what: 'the reload' });
    const file = path.join(d.dir, 'services.yaml');
    fs.writeFileSync(`${file}.tmp`, registryFile(5));
    fs.renameSync(`${file}.tmp`, file);
    const filedAfter = await waitFor(async () => {
      const b = await backendView(d, 'filed', 'f1');
      return b.weight === 5 ? b : undefined;
    }, { what: 'the registry weight' });
    const after = await waitFor(async () => {
      const s = await service(d, 'keep');
      return s.backends.find((b) => b.id === 'k4')?.weight === 3 ? s : undefined;
    }, { what: 'k4 weight 3' });
    const strip = (b: BackendView): unknown => [b.id, b.state, b.reason, b.last_change];
    expect(after.backends.map(strip)).toEqual(before.backends.map(strip));
    expect(strip(filedAfter)).toEqual(strip(filedBefore));
    expect(filedAfter.state).toBe('healthy');
    // and the data path agrees: only k4 serves /keep, f1 serves /filed
    expect(new Set(await bodies(d.port, '/keep', 8))).toEqual(new Set(['k4']));
    expect((await request(d.port, { path: '/filed' })).body).toBe('f1');
    // no transition was logged for these backends by the reload or the registry update (the
    // checks here allow 2 s and 3 misses, so a loaded CI machine does not flap a healthy one)
    expect(d.logs.filter(keepTransition).length).toBe(transitionsBefore);
  });
});

/** A backend in its own process, so it can be killed with SIGKILL. Prints its port, answers its name. */
const CHILD_BACKEND = `
const http = require('node:http');
const name = process.argv[1];
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => { res.writeHead(200, {'content-type': 'text/plain'}); res.end(name); });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({port: server.address().port}) + '\\n'));
`;

async function childBackend(name: string): Promise<{ name: string; url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['-e', CHILD_BACKEND, name], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl !== -1) resolve((JSON.parse(buf.slice(0, nl)) as { port: number }).port);
    });
    child.once('exit', () => reject(new Error(`${name} exited`)));
  });
  return { name, url: `http://127.0.0.1:${port}`, child };
}

describe('kill -9 under load', () => {
  let d: DroverProcess | undefined;
  const kids: { name: string; url: string; child: ChildProcess }[] = [];

  afterAll(async () => {
    await d?.stop();
    for (const k of kids) if (k.child.exitCode === null && k.child.signalCode === null) k.child.kill('SIGKILL');
  });

  it('one of three backends killed with SIGKILL under GET load: zero failed requests', async () => {
    for (const name of ['c1', 'c2', 'c3']) kids.push(await childBackend(name));
    d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  web:
    retries: 2
    health: {passive: {consecutive_failures: 3, ejection: 30s}}
    backends: [${kids.map((k) => `{url: ${k.url}, id: ${k.name}}`).join(', ')}]
routes: [{match: {path_prefix: /}, service: web}]
`);
    const port = d.port;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const counts = { sent: 0, ok: 0, failed: [] as string[] };
    const byBackend = new Map<string, number>();
    const victim = kids[1] as { name: string; child: ChildProcess };
    // Load runs until 2 s after the kill; the kill comes once the victim has served its share
    // (at least 1 s and 15 requests: on a busy CI machine a second may hold few requests).
    let deadline = Infinity;
    const worker = async (): Promise<void> => {
      while (Date.now() < deadline) {
        counts.sent++;
        try {
          const a = await request(port, { path: '/item', agent });
          if (a.status === 200) {
            counts.ok++;
            byBackend.set(a.body, (byBackend.get(a.body) ?? 0) + 1);
          } else counts.failed.push(`${a.status} ${a.body}`);
        } catch (err) {
          counts.failed.push(String(err));
        }
      }
    };
    const killer = (async () => {
      await new Promise((r) => setTimeout(r, 1000));
      // killed after 10 s at the latest, whether or not it served 15 by then
      await eventually(() => (byBackend.get(victim.name) ?? 0) >= 15, { timeoutMs: 10_000, everyMs: 10 });
      victim.child.kill('SIGKILL');
      deadline = Date.now() + 2000;
    })();
    await Promise.all([killer, ...Array.from({ length: 16 }, () => worker())]);
    agent.destroy();
    expect(counts.failed).toEqual([]);
    expect(counts.ok).toBe(counts.sent);
    expect(counts.sent).toBeGreaterThan(300);
    expect(byBackend.get(victim.name) ?? 0).toBeGreaterThan(10); // it served before it died
    expect((byBackend.get('c1') ?? 0) + (byBackend.get('c3') ?? 0)).toBeGreaterThan(counts.sent / 2);
    const v = (JSON.parse((await request(d.adminPort, { path: '/api/services' })).body) as { services: ServiceView[] }).services[0]?.backends.find(
      (b) => b.id === victim.name,
    );
    expect(v?.state).toBe('ejected');
    expect(v?.reason).toMatch(/^ejected: 3 consecutive /);
  });
});
