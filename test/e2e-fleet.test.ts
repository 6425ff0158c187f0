/**
 * A fleet on one etcd (contract section 9, issue 15), end to end: a real 3-member etcd cluster,
 * three real `bin/drover` child processes with no routes of their own, real backends that name
 * themselves, and the real `drover config push` CLI. Nothing on the path is mocked.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { describeEtcd, startEtcdCluster, type EtcdCluster } from './helpers/etcd.js';
import { request, startBackend, type TestBackend } from './helpers/backends.js';
import { BIN, startDrover, tempDir, type DroverProcess } from './helpers/drover.js';
import { scrapeSum } from './helpers/metrics.js';
import { waitFor } from './helpers/wait.js';

const BASE = `/fleet${process.pid}`;
const SERVICES = `${BASE}/services/`;
const CONFIG = `${BASE}/config/`;

interface Cli {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `bin/drover ARGS` to completion. */
function cli(args: readonly string[]): Promise<Cli> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The body a drover answers for `path` (`status:body`), or the error. */
async function answer(port: number, urlPath: string): Promise<string> {
  try {
    const r = await request(port, { path: urlPath, timeoutMs: 3000 });
    return `${r.status}:${r.body}`;
  } catch (err) {
    return `error:${(err as Error).message}`;
  }
}

async function configView(adminPort: number): Promise<{ sources: { etcd: { revision: string } | null }; routes: { service: string; source: string; match: { pathPrefix?: string } }[] }> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/api/config`);
  return ((await r.json()) as { config: Awaited<ReturnType<typeof configView>> }).config;
}

async function storeRevision(kv: Etcd3): Promise<string> {
  return String((await kv.getAll().prefix(CONFIG).exec()).header.revision);
}

describeEtcd('a fleet of drovers on one 3-member etcd cluster', () => {
  let cluster: EtcdCluster;
  let kv: Etcd3;
  let dir: string;
  const backends: Record<string, TestBackend> = {};
  const drovers: DroverProcess[] = [];
  const endpoints = (): string => cluster.endpoints.join(',');

  /** A drover whose file has no routes: everything comes from the shared config. */
  const droverYaml = (extra = ''): string =>
    [
      'listen: [{address: 127.0.0.1:0}]',
      'admin: {address: 127.0.0.1:0}',
      'access_log: off',
      'shutdown_grace: 1s',
      'registry:',
      `  etcd: {endpoints: [${cluster.endpoints.join(', ')}], prefix: ${SERVICES}, config_prefix: ${CONFIG}}`,
      extra,
    ].join('\n');

  /** Writes a config file to push: services `home` and `fresh` (static backends), and these routes. */
  const pushFile = (name: string, routes: string, extraServices = ''): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(
      file,
      [
        'services:',
        '  home:',
        `    backends: [{url: "${backends['home']?.url}"}]`,
        '    health: {active: {path: /, interval: 200ms, rise: 1, fall: 2}}',
        '  fresh:',
        `    backends: [{url: "${backends['fresh']?.url}"}]`,
        extraServices,
        'routes:',
        routes,
      ].join('\n'),
    );
    return file;
  };

  const push = (file: string): Promise<Cli> => cli(['config', 'push', '-c', file, '--etcd', endpoints(), '--config-prefix', CONFIG]);

  beforeAll(async () => {
    dir = tempDir('drover-fleet-');
    cluster = await startEtcdCluster(3);
    kv = cluster.members[0]!.client();
    for (const name of ['home', 'fresh', 'slow']) backends[name] = await startBackend(name);
    backends['slow']?.behave((_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('slow');
      }, 1500);
    });
    const first = await push(pushFile('base.yaml', '  - {match: {path_prefix: /}, service: home}'));
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    for (let i = 0; i < 3; i++) drovers.push(await startDrover(droverYaml()));
    for (const d of drovers) await waitFor(async () => (await answer(d.port, '/')) === '200:home', 15_000);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(drovers.map((d) => d.stop('SIGKILL')));
    await Promise.all(Object.values(backends).map((b) => b.close()));
    await cluster?.stop();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('`drover config push` of a new route: all three serve it, and /api/config names etcd and the revision', async () => {
    for (const d of drovers) expect(await answer(d.port, '/new')).toBe('200:home');
    const pushed = await push(pushFile('new.yaml', '  - {match: {path_prefix: /new}, service: fresh}\n  - {match: {path_prefix: /}, service: home}'));
    expect(pushed.code).toBe(0);
    const revision = /^revision (\d+)$/m.exec(pushed.stdout)?.[1];
    expect(revision).toBeDefined();
    for (const d of drovers) await waitFor(async () => (await answer(d.port, '/new')) === '200:fresh');
    for (const d of drovers) {
      const view = await configView(d.adminPort);
      expect(view.sources.etcd?.revision).toBe(revision);
      expect(view.routes.map((r) => [r.match.pathPrefix, r.service, r.source])).toEqual([
        ['/new', 'fresh', 'etcd'],
        ['/', 'home', 'etcd'],
      ]);
    }
    const routesApi = (await (await fetch(`http://127.0.0.1:${drovers[0]!.adminPort}/api/routes`)).json()) as { routes: { service: string; source: string }[] };
    expect(routesApi.routes.map((r) => [r.service, r.source])).toEqual([
      ['fresh', 'etcd'],
      ['home', 'etcd'],
    ]);
    // `config get` prints what is stored, as YAML
    const got = await cli(['config', 'get', '--etcd', endpoints(), '--config-prefix', CONFIG]);
    expect(got.code).toBe(0);
    expect(got.stdout).toBe(
      [
        `# shared config under ${CONFIG} at etcd revision ${revision}`,
        'routes:',
        '  - match:',
        '      path_prefix: /new',
        '    service: fresh',
        '  - match:',
        '      path_prefix: /',
        '    service: home',
        'services:',
        '  fresh:',
        '    backends:',
        `      - url: ${backends['fresh']?.url}`,
        '  home:',
        '    backends:',
        `      - url: ${backends['home']?.url}`,
        '    health:',
        '      active:',
        '        path: /',
        '        interval: 200ms',
        '        rise: 1',
        '        fall: 2',
        '',
      ].join('\n'),
    );
    // `config diff` of another file: what push would change (exit 1); of the same file: nothing (exit 0)
    const other = pushFile('other.yaml', '  - {match: {path_prefix: /}, service: home}');
    fs.writeFileSync(other, fs.readFileSync(other, 'utf8').replace(/  fresh:\n.*\n/, ''));
    const changes = await cli(['config', 'diff', '-c', other, '--etcd', endpoints(), '--config-prefix', CONFIG]);
    expect(changes.stdout).toBe(
      [
        `# ${other} vs ${CONFIG} at etcd revision ${revision}`,
        `~~~ ${CONFIG}routes`,
        '- - match:',
        '-     path_prefix: /new',
        '-   service: fresh',
        '  - match:',
        '      path_prefix: /',
        '    service: home',
        `--- ${CONFIG}services/fresh (deleted by push)`,
        '- backends:',
        `-   - url: ${backends['fresh']?.url}`,
        '',
      ].join('\n'),
    );
    expect(changes.code).toBe(1);
    // a changed line: the old one, then the new one (as diff(1) and git print it)
    const renamed = pushFile('renamed.yaml', '  - {match: {path_prefix: /newer}, service: fresh}\n  - {match: {path_prefix: /}, service: home}');
    const renames = await cli(['config', 'diff', '-c', renamed, '--etcd', endpoints(), '--config-prefix', CONFIG]);
    expect(renames.stdout).toBe(
      [
        `# ${renamed} vs ${CONFIG} at etcd revision ${revision}`,
        `~~~ ${CONFIG}routes`,
        '  - match:',
        '-     path_prefix: /new',
        '+     path_prefix: /newer',
        '    service: fresh',
        '  - match:',
        '      path_prefix: /',
        '    service: home',
        '',
      ].join('\n'),
    );
    expect(renames.code).toBe(1);
    // `config diff` of the same file: nothing left to push
    const diff = await cli(['config', 'diff', '-c', path.join(dir, 'new.yaml'), '--etcd', endpoints(), '--config-prefix', CONFIG]);
    expect(diff.stdout).toMatch(/^no changes/);
    expect(diff.code).toBe(0);
  });

  it('an invalid push is refused by check before anything is written (revision unchanged)', async () => {
    const before = await storeRevision(kv);
    const bad = pushFile('bad.yaml', '  - {match: {path_prefix: nope}, service: fresh}');
    const pushed = await push(bad);
    expect(pushed.code).toBe(1);
    expect(pushed.stderr).toBe(`${bad}:9:27: routes.0.match.path_prefix: "nope" must start with "/" (no spaces, query or fragment)\n${bad}: not pushed (nothing was written)\n`);
    expect(await storeRevision(kv)).toBe(before);
  });

  it('an invalid value written by hand is refused by all three, which keep serving the old routes', async () => {
    const failures = await Promise.all(drovers.map((d) => scrapeSum(d.adminPort, 'drover_config_reloads_total', { result: 'failure' })));
    await kv.put(`${CONFIG}routes`).value('- match: {path_prefix: /new}\n  service: fresh\n  strip_prefx: /new\n');
    for (const [i, d] of drovers.entries()) {
      await waitFor(async () => (await scrapeSum(d.adminPort, 'drover_config_reloads_total', { result: 'failure' })) === (failures[i] ?? 0) + 1);
      const refused = await d.waitForLog((l) => l['msg'] === 'shared config from etcd refused: the last good config keeps serving');
      expect(refused['issues']).toEqual([`${CONFIG}routes: routes.0.strip_prefx: unknown key "strip_prefx" (did you mean "strip_prefix"?)`]);
      expect(await answer(d.port, '/new')).toBe('200:fresh');
      expect(await answer(d.port, '/')).toBe('200:home');
      // the refusal is in the events list too
      const events = ((await (await fetch(`http://127.0.0.1:${d.adminPort}/api/events`)).json()) as { events: { kind?: string; reason?: string; to?: string }[] }).events;
      expect(events.some((e) => e.kind === 'reload' && JSON.stringify(e).includes('strip_prefx'))).toBe(true);
    }
    // Mended by a valid push: served again.
    const pushed = await push(path.join(dir, 'new.yaml'));
    expect(pushed.code).toBe(0);
    for (const d of drovers) await waitFor(async () => (await configView(d.adminPort)).sources.etcd?.revision === /^revision (\d+)$/m.exec(pushed.stdout)?.[1]);
  });

  it('a transaction changing several keys is applied as one reload at its revision', async () => {
    const routes = '- {match: {path_prefix: /pair}, service: pair}\n- {match: {path_prefix: /}, service: home}\n';
    const res = await kv
      .if(`${CONFIG}routes`, 'Version', '>', 0)
      .then(kv.put(`${CONFIG}routes`).value(routes), kv.put(`${CONFIG}services/pair`).value(JSON.stringify({ balancer: 'random', backends: [{ url: backends['fresh']?.url }] })))
      .commit();
    const revision = String(res.header.revision);
    for (const d of drovers) {
      await waitFor(async () => (await answer(d.port, '/pair')) === '200:fresh');
      // the log line is read from the child's stdout and may trail the first answer
      await d.waitForLog((l) => l['msg'] === 'config reloaded' && l['etcdRevision'] === revision);
      const reloads = d.logs.filter((l) => l['msg'] === 'config reloaded' && l['etcdRevision'] === revision);
      expect(reloads.length).toBe(1);
    }
  });

  it('50 config revisions pushed under load: 0 failed requests on all three; health and in-flight requests survive', async () => {
    const servicesBefore = await Promise.all(drovers.map(async (d) => ((await (await fetch(`http://127.0.0.1:${d.adminPort}/api/services`)).json()) as { services: { name: string; backends: { state: string; last_change: string | null }[] }[] }).services));
    const homeBefore = servicesBefore.map((s) => s.find((x) => x.name === 'home')?.backends[0]);
    for (const h of homeBefore) expect(h?.state).toBe('healthy');
    let stop = false;
    const counts = drovers.map(() => ({ ok: 0, failed: [] as string[] }));
    const agents = drovers.map(() => new http.Agent({ keepAlive: true, maxSockets: 4 }));
    const workers = drovers.flatMap((d, i) =>
      Array.from({ length: 3 }, async () => {
        while (!stop) {
          try {
            const r = await request(d.port, { path: '/', agent: agents[i] as http.Agent, timeoutMs: 5000 });
            if (r.status === 200 && r.body === 'home') (counts[i] as { ok: number }).ok++;
            else counts[i]?.failed.push(`${r.status}:${r.body}`);
          } catch (err) {
            counts[i]?.failed.push(`error:${(err as Error).message}`);
          }
        }
      }),
    );
    // In-flight requests to a slow route, started before the revisions and finishing after some.
    await kv.put(`${CONFIG}services/slowsvc`).value(`backends: [{url: "${backends['slow']?.url}"}]\n`);
    const slowRoute = '- {match: {path_prefix: /slow}, service: slowsvc}\n';
    await kv.put(`${CONFIG}routes`).value(`${slowRoute}- {match: {path_prefix: /}, service: home}\n`);
    for (const d of drovers) await waitFor(async () => (await configView(d.adminPort)).routes.some((r) => r.match.pathPrefix === '/slow'));
    const slow = drovers.map((d) => answer(d.port, '/slow'));
    let last = '';
    for (let n = 0; n < 50; n++) {
      // each revision changes the routes and a service's settings in one transaction
      const res = await kv
        .if(`${CONFIG}routes`, 'Version', '>', 0)
        .then(
          kv.put(`${CONFIG}routes`).value(`${slowRoute}- {match: {path_prefix: /rev-${n}}, service: fresh}\n- {match: {path_prefix: /}, service: home}\n`),
          kv.put(`${CONFIG}services/fresh`).value(`retries: ${n % 3}\nbackends: [{url: "${backends['fresh']?.url}"}]\n`),
        )
        .commit();
      last = String(res.header.revision);
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const d of drovers) await waitFor(async () => (await configView(d.adminPort)).sources.etcd?.revision === last, 15_000);
    for (const d of drovers) expect(await answer(d.port, '/rev-49')).toBe('200:fresh');
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(workers);
    for (const a of agents) a.destroy();
    expect(await Promise.all(slow)).toEqual(['200:slow', '200:slow', '200:slow']);
    for (const c of counts) {
      expect(c.failed).toEqual([]);
      expect(c.ok).toBeGreaterThan(0);
    }
    // The home backend's health record was never reset by 50 reloads: same state, same last change.
    for (const [i, d] of drovers.entries()) {
      const services = ((await (await fetch(`http://127.0.0.1:${d.adminPort}/api/services`)).json()) as { services: { name: string; config_source: string; backends: { state: string; last_change: string | null }[] }[] }).services;
      const home = services.find((x) => x.name === 'home');
      expect(home?.config_source).toBe('etcd');
      expect(home?.backends[0]).toMatchObject({ state: 'healthy', last_change: homeBefore[i]?.last_change });
    }
  }, 120_000);

  it('restarted while etcd is down: without local routes it is not ready (clear log) until etcd answers; with local routes it serves them', async () => {
    const last = await configView(drovers[0]!.adminPort);
    await Promise.all([0, 1, 2].map((i) => cluster.stopMember(i)));
    await drovers[2]!.stop('SIGTERM');
    // start-up waits up to 3 s for etcd before binding: allow for that on a loaded machine
    const restarted = await startDrover(droverYaml(), { readyTimeoutMs: 30_000 });
    drovers[2] = restarted;
    const local = await startDrover(
      droverYaml(`services:\n  own: {backends: [{url: "${backends['fresh']?.url}"}]}\nroutes:\n  - {match: {path_prefix: /}, service: own}\n`),
      { readyTimeoutMs: 30_000 },
    );
    try {
      const warned = await restarted.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('shared config not read from etcd yet'));
      expect(warned['msg']).toBe('shared config not read from etcd yet (unreachable?): no routes until it is; /readyz answers 503 until etcd answers');
      // /readyz says why, line by line
      expect(await answer(restarted.adminPort, '/readyz')).toBe(
        `503:not ready\n- registry etcd: unreachable, members not listed yet\n- shared config under ${CONFIG} not read from etcd yet\n`,
      );
      expect(await answer(restarted.port, '/')).toBe('404:{"error":"no_route"}');
      // with a local file providing routes: those are served meanwhile
      const localWarned = await local.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('shared config not read from etcd yet'));
      expect(localWarned['msg']).toContain("serving the local file's routes");
      expect(await answer(local.port, '/')).toBe('200:fresh');
      expect((await request(local.adminPort, { path: '/readyz' })).status).toBe(503);
      // the two that kept running keep the last good config
      for (const d of drovers.slice(0, 2)) expect(await answer(d.port, '/')).toBe('200:home');
      await Promise.all([0, 1, 2].map((i) => cluster.startMember(i)));
      await waitFor(async () => (await request(restarted.adminPort, { path: '/readyz' })).status === 200, 20_000);
      expect(await answer(restarted.port, '/')).toBe('200:home');
      expect((await configView(restarted.adminPort)).sources.etcd?.revision).toBe(last.sources.etcd?.revision);
      // the local drover: its own route first, the shared ones after it
      await waitFor(async () => (await configView(local.adminPort)).routes.length > 1, 20_000);
      expect((await configView(local.adminPort)).routes[0]).toMatchObject({ service: 'own', source: 'file' });
      expect(await answer(local.port, '/')).toBe('200:fresh');
    } finally {
      await local.stop('SIGKILL');
    }
  }, 120_000);
});
