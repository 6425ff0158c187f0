/**
 * End to end through the real proxy: a real etcd (test/helpers/etcd.ts), the real `bin/drover`
 * child process, real backends that name themselves, and a TCP proxy between drover and etcd
 * that the tests cut and restore. Nothing on the path is mocked.
 */
import http from 'node:http';
import { expect, it } from 'vitest';
import { describeEtcd, useSharedEtcd } from './helpers/etcd.js';
import { startBackend, request, type TestBackend } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { bodies, metric, pool, poolIds, uniq } from './helpers/e2e.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();

let seq = 0;
function nextPrefix(): string {
  return `/e2e${process.pid}-${++seq}/services/`;
}

async function backend(name: string): Promise<TestBackend> {
  const b = await startBackend(name);
  later(() => b.close());
  return b;
}

/** Several backends at once, typed as a tuple. */
async function backends<const N extends readonly string[]>(...names: N): Promise<{ -readonly [K in keyof N]: TestBackend }> {
  return (await Promise.all(names.map(backend))) as { -readonly [K in keyof N]: TestBackend };
}

async function drover(yaml: string, files?: Record<string, string>): Promise<DroverProcess> {
  const d = await startDrover(yaml, files !== undefined ? { files } : {});
  later(() => d.stop('SIGKILL'));
  return d;
}

function baseYaml(endpoint: string, prefix: string, extra = ''): string {
  return `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
shutdown_grace: 1s
registry:
  etcd: {endpoints: [${endpoint}], prefix: ${prefix}}
${extra}`;
}

/** Starts a request to `path` that the backend `slowOne` holds; returns its pending answer. */
async function pendingOn(port: number, path: string, slowOne: TestBackend): Promise<Promise<{ status: number; body: string }>> {
  for (let i = 0; i < 20; i++) {
    const before = slowOne.seen.length;
    let answered = false;
    const p = request(port, { path }).finally(() => {
      answered = true;
    });
    // either another backend answers it or it reaches slowOne (which holds it): no fixed wait
    await waitFor(() => answered || slowOne.seen.length > before, { what: `a request to ${path} answered or held by ${slowOne.name}` });
    if (!answered) return p;
    await p;
  }
  throw new Error(`no request landed on ${slowOne.name}`);
}

describeEtcd('drover with etcd, end to end', () => {
  const shared = useSharedEtcd();

  it('merges static, file and etcd members; a registry-only service is routable; invalid values are counted and skipped', async () => {
    const prefix = nextPrefix();
    const [s1, f1, e1, e2, r1] = await backends('static-1', 'file-1', 'etcd-1', 'etcd-2', 'reg-1');
    await shared.kv.put(`${prefix}web/etcd-1`).value(JSON.stringify({ url: e1.url, weight: 1, zone: 'a', meta: { v: 1 } }));
    await shared.kv.put(`${prefix}regonly/r1`).value(r1.url.replace('http://', '')); // bare host:port
    const d = await drover(
      `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  file: services.yaml
  etcd: {endpoints: [${shared.etcd.endpoints[0]}], prefix: ${prefix}}
services:
  web:
    backends: [{url: ${s1.url}, id: static-1}]
routes:
  - match: {path_prefix: /reg}
    service: regonly
  - match: {path_prefix: /}
    service: web
`,
      { 'services.yaml': `services:\n  web:\n    backends: [{url: ${f1.url}, id: file-1}]\n` },
    );
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    expect(await poolIds(d, 'web')).toBe('etcd-1:unknown,file-1:unknown,static-1:unknown');
    expect(((await pool(d, 'web')) ?? []).map((b) => b.source).sort()).toEqual(['etcd', 'file', 'static']);
    expect(uniq(await bodies(d.port, '/', 9))).toEqual(['etcd-1', 'file-1', 'static-1']);
    expect(uniq(await bodies(d.port, '/reg', 3))).toEqual(['reg-1']);
    expect(await metric(d, 'drover_registry_connected', { source: 'etcd' })).toBe(1);

    // A watched put adds a member in place.
    await shared.kv.put(`${prefix}web/etcd-2`).value(e2.url);
    await waitFor(async () => (await poolIds(d, 'web')).includes('etcd-2'), { what: 'etcd-2 in the pool' });
    expect(uniq(await bodies(d.port, '/', 12))).toEqual(['etcd-1', 'etcd-2', 'file-1', 'static-1']);
    expect(await metric(d, 'drover_registry_events_total', { source: 'etcd', type: 'put' })).toBeGreaterThanOrEqual(1);

    // An invalid value: counted, skipped; an invalid update of a valid key keeps its last value.
    const invalidBefore = await metric(d, 'drover_registry_invalid_entries_total', { source: 'etcd' });
    await shared.kv.put(`${prefix}web/broken`).value('{"url": 12}');
    await shared.kv.put(`${prefix}web/etcd-2`).value('not a url at all');
    await waitFor(async () => (await metric(d, 'drover_registry_invalid_entries_total', { source: 'etcd' })) >= invalidBefore + 2, { what: 'invalid entries counted' });
    expect(await poolIds(d, 'web')).toBe('etcd-1:unknown,etcd-2:unknown,file-1:unknown,static-1:unknown');
    const after = await bodies(d.port, '/', 12);
    expect(uniq(after)).toEqual(['etcd-1', 'etcd-2', 'file-1', 'static-1']);
    // Deleting the etcd member of the registry-only service leaves it with no backend.
    await shared.kv.delete().key(`${prefix}regonly/r1`);
    await waitFor(async () => (await request(d.port, { path: '/reg' })).status === 503, { what: '503 once regonly is empty' });
    expect(JSON.parse((await request(d.port, { path: '/reg' })).body)).toEqual({ error: 'no_available_backend', service: 'regonly' });
    expect(await metric(d, 'drover_registry_events_total', { source: 'etcd', type: 'delete' })).toBe(1);
    // ... and, configured nowhere, it is retired: no admin entry, and its series go with it
    expect(await pool(d, 'regonly')).toBeUndefined();
    await waitFor(async () => !(await request(d.adminPort, { path: '/metrics' })).body.includes('service="regonly"'), { what: 'no series of regonly' });
  });

  it('a new member of a service with active checks is probed at once and gets traffic as soon as it passes, not before', async () => {
    const prefix = nextPrefix();
    const old = await backend('old');
    old.behave((req, res) => {
      res.writeHead(200);
      res.end(req.url === '/healthz' ? 'ok' : 'old');
    });
    await shared.kv.put(`${prefix}act/old`).value(old.url);
    const d = await drover(
      baseYaml(
        shared.etcd.endpoints[0] as string,
        prefix,
        `
services:
  act:
    health:
      active: {path: /healthz, interval: 5s, timeout: 2s, rise: 1, fall: 2}
routes:
  - match: {path_prefix: /}
    service: act
`,
      ),
    );
    await waitFor(async () => (await poolIds(d, 'act')) === 'old:healthy', { what: 'old healthy' });

    const fresh = await backend('fresh');
    const timeline: { what: 'probe' | 'probe-answered' | 'request'; at: number }[] = [];
    fresh.behave((req, res) => {
      if (req.url === '/healthz') {
        timeline.push({ what: 'probe', at: Date.now() });
        // The probe takes a while to pass: no request may reach this member meanwhile.
        setTimeout(() => {
          timeline.push({ what: 'probe-answered', at: Date.now() });
          res.writeHead(200);
          res.end('ok');
        }, 400);
        return;
      }
      timeline.push({ what: 'request', at: Date.now() });
      res.writeHead(200);
      res.end('fresh');
    });
    let stop = false;
    const seenByClient: string[] = [];
    const client = (async () => {
      while (!stop) seenByClient.push((await request(d.port, { path: '/x' })).body);
    })();
    await new Promise((r) => setTimeout(r, 100));
    const putAt = Date.now();
    await shared.kv.put(`${prefix}act/fresh`).value(fresh.url);
    await waitFor(() => timeline.some((t) => t.what === 'request'), { what: 'first request on the new member', timeoutMs: 4000 });
    stop = true;
    await client;
    const firstProbe = timeline.find((t) => t.what === 'probe');
    const answered = timeline.findIndex((t) => t.what === 'probe-answered');
    const firstRequest = timeline.findIndex((t) => t.what === 'request');
    expect(timeline[0]?.what).toBe('probe');
    expect(answered).toBeGreaterThan(0);
    expect(firstRequest).toBeGreaterThan(answered);
    // Probed at once (the interval is 5 s), and in the pool right after the pass.
    expect((firstProbe?.at ?? Infinity) - putAt).toBeLessThan(2000);
    expect((timeline[firstRequest]?.at ?? Infinity) - putAt).toBeLessThan(4000);
    expect(seenByClient.every((b) => b === 'old' || b === 'fresh')).toBe(true);
    expect(seenByClient.filter((b) => b === 'old').length).toBeGreaterThan(0);
  });

  it('deleted, lease-expired and draining members finish their in-flight request and get no new ones', async () => {
    const prefix = nextPrefix();
    const keep = await backend('keep');
    await shared.kv.put(`${prefix}svc/keep`).value(keep.url);
    const d = await drover(baseYaml(shared.etcd.endpoints[0] as string, prefix, `routes:\n  - match: {path_prefix: /}\n    service: svc\n`));
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });

    const cases: { name: string; holdMs: number; add: (url: string) => Promise<() => void>; remove: (release: () => void) => Promise<void>; gone: (ids: string) => boolean }[] = [
      {
        name: 'deleted',
        holdMs: 1200,
        add: async (url) => {
          await shared.kv.put(`${prefix}svc/victim`).value(url);
          return () => undefined;
        },
        remove: async () => {
          await shared.kv.delete().key(`${prefix}svc/victim`);
        },
        gone: (ids) => !ids.includes('victim'),
      },
      {
        name: 'lease-expired',
        holdMs: 4500,
        add: async (url) => {
          const lease = shared.kv.lease(2, { autoKeepAlive: false });
          lease.on('lost', () => undefined);
          await lease.put(`${prefix}svc/victim`).value(url);
          return () => lease.release();
        },
        remove: async () => {
          // nothing to do: the lease is not kept alive and expires on its own
        },
        gone: (ids) => !ids.includes('victim'),
      },
      {
        name: 'draining',
        holdMs: 1200,
        add: async (url) => {
          await shared.kv.put(`${prefix}svc/victim`).value(url);
          return () => undefined;
        },
        remove: async () => {
          await shared.kv.put(`${prefix}svc/victim`).value(JSON.stringify({ url: victimUrl, draining: true }));
        },
        gone: (ids) => ids.includes('victim:draining'),
      },
    ];
    let victimUrl = '';
    for (const c of cases) {
      const victim = await backend(`victim-${c.name}`);
      victimUrl = victim.url;
      victim.behave((req, res) => {
        if (req.url === '/slow') {
          setTimeout(() => {
            res.writeHead(200);
            res.end(`${victim.name}-slow-done`);
          }, c.holdMs);
          return;
        }
        res.writeHead(200);
        res.end(victim.name);
      });
      const release = await c.add(victim.url);
      await waitFor(async () => (await poolIds(d, 'svc')).includes('victim'), { what: `${c.name}: victim in the pool` });
      const inflight = await pendingOn(d.port, '/slow', victim);
      const seenAtRemoval = victim.seen.length;
      await c.remove(release);
      await waitFor(async () => c.gone(await poolIds(d, 'svc')), { what: `${c.name}: victim out of rotation`, timeoutMs: 8000 });
      // New requests go to `keep` only, while the slow one is still in flight on the victim.
      expect(uniq(await bodies(d.port, '/n', 10)), c.name).toEqual(['keep']);
      expect(victim.seen.length, `${c.name}: no new request on the victim`).toBe(seenAtRemoval);
      const answer = await inflight;
      expect({ status: answer.status, body: answer.body }, c.name).toEqual({ status: 200, body: `${victim.name}-slow-done` });
      release();
      await shared.kv.delete().key(`${prefix}svc/victim`);
      await waitFor(async () => !(await poolIds(d, 'svc')).includes('victim'), { what: `${c.name}: cleaned up` });
    }
  }, 60_000);

  it('etcd unreachable at start: static and file members serve, /readyz is 503 until etcd syncs, then 200', async () => {
    const prefix = nextPrefix();
    const [s1, f1, e1] = await backends('static-1', 'file-1', 'etcd-1');
    await shared.kv.put(`${prefix}web/etcd-1`).value(e1.url);
    const proxy = await startTcpProxy({ port: shared.etcd.clientPort });
    later(() => proxy.close());
    proxy.cut();
    const d = await drover(
      `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  file: services.yaml
  etcd: {endpoints: [${proxy.url}], prefix: ${prefix}}
services:
  web:
    backends: [{url: ${s1.url}, id: static-1}]
routes:
  - match: {path_prefix: /}
    service: web
`,
      { 'services.yaml': `services:\n  web:\n    backends: [{url: ${f1.url}, id: file-1}]\n` },
    );
    await waitFor(async () => (await poolIds(d, 'web')) === 'file-1:unknown,static-1:unknown', { what: 'file member loaded' });
    expect(uniq(await bodies(d.port, '/', 6))).toEqual(['file-1', 'static-1']);
    expect((await request(d.adminPort, { path: '/readyz' })).status).toBe(503);
    expect(await metric(d, 'drover_registry_connected', { source: 'etcd' })).toBe(0);
    await new Promise((r) => setTimeout(r, 1000));
    // Still serving, still not ready, process alive after a second of failed attempts.
    expect((await request(d.adminPort, { path: '/readyz' })).status).toBe(503);
    expect((await request(d.adminPort, { path: '/healthz' })).status).toBe(200);
    proxy.restore();
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz after etcd is back', timeoutMs: 15_000 });
    expect(await metric(d, 'drover_registry_connected', { source: 'etcd' })).toBe(1);
    expect(uniq(await bodies(d.port, '/', 9))).toEqual(['etcd-1', 'file-1', 'static-1']);
  }, 60_000);

  it('etcd lost while serving: the last known pool keeps serving; changes made meanwhile apply after reconnect', async () => {
    const prefix = nextPrefix();
    const [e1, e2, e3] = await backends('etcd-1', 'etcd-2', 'etcd-3');
    await shared.kv.put(`${prefix}web/etcd-1`).value(e1.url);
    await shared.kv.put(`${prefix}web/etcd-2`).value(e2.url);
    const proxy = await startTcpProxy({ port: shared.etcd.clientPort });
    later(() => proxy.close());
    const d = await drover(baseYaml(proxy.url, prefix, `routes:\n  - match: {path_prefix: /}\n    service: web\n`));
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    const before = await bodies(d.port, '/', 6);
    expect(uniq(before), JSON.stringify(before)).toEqual(['etcd-1', 'etcd-2']);

    proxy.cut();
    await waitFor(async () => (await metric(d, 'drover_registry_connected', { source: 'etcd' })) === 0, { what: 'connected=0 after the cut' });
    // Changes while drover cannot see them.
    await shared.kv.put(`${prefix}web/etcd-3`).value(e3.url);
    await shared.kv.delete().key(`${prefix}web/etcd-1`);
    await new Promise((r) => setTimeout(r, 500));
    // Untouched: both members keep serving, nothing emptied, nothing applied.
    expect(await poolIds(d, 'web')).toBe('etcd-1:unknown,etcd-2:unknown');
    const during = await bodies(d.port, '/', 10);
    expect(uniq(during), JSON.stringify(during)).toEqual(['etcd-1', 'etcd-2']);
    expect((await request(d.adminPort, { path: '/readyz' })).status).toBe(200);

    proxy.restore();
    let seenPool = '';
    await waitFor(async () => (seenPool = await poolIds(d, 'web')) === 'etcd-2:unknown,etcd-3:unknown', { what: 'changes applied after reconnect', timeoutMs: 20_000 }).catch((err: Error) => {
      throw new Error(`${err.message}; pool: ${seenPool}; drover log: ${JSON.stringify(d.logs.filter((l) => l['component'] === 'registry').slice(-8))}`);
    });
    expect(await metric(d, 'drover_registry_connected', { source: 'etcd' })).toBe(1);
    expect(uniq(await bodies(d.port, '/', 8))).toEqual(['etcd-2', 'etcd-3']);
  }, 60_000);

  it('rolling replacement of every member through etcd under load: zero failed requests', async () => {
    const prefix = nextPrefix();
    const olds = await backends('old-0', 'old-1', 'old-2');
    for (const [i, b] of olds.entries()) await shared.kv.put(`${prefix}roll/m${i}`).value(b.url);
    const d = await drover(baseYaml(shared.etcd.endpoints[0] as string, prefix, `services:\n  roll: {retries: 2}\nroutes:\n  - match: {path_prefix: /}\n    service: roll\n`));
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    await waitFor(async () => (await poolIds(d, 'roll')).split(',').length === 3, { what: 'three members' });

    // Load: 16 keep-alive workers; every request is counted by the test itself.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    later(() => agent.destroy());
    let stop = false;
    const counts = { sent: 0, ok: 0, failed: 0 };
    const failures: string[] = [];
    const servedBy = new Map<string, number>();
    const worker = async (): Promise<void> => {
      while (!stop) {
        counts.sent++;
        try {
          const r = await request(d.port, { path: '/', agent });
          if (r.status === 200) {
            counts.ok++;
            servedBy.set(r.body, (servedBy.get(r.body) ?? 0) + 1);
          } else {
            counts.failed++;
            failures.push(`${r.status} ${r.body}`);
          }
        } catch (err) {
          counts.failed++;
          failures.push(String(err));
        }
      }
    };
    const workers = Array.from({ length: 16 }, () => worker());
    await new Promise((r) => setTimeout(r, 300));
    const news: TestBackend[] = [];
    for (let i = 0; i < olds.length; i++) {
      const fresh = await backend(`new-${i}`);
      news.push(fresh);
      await shared.kv.put(`${prefix}roll/n${i}`).value(fresh.url); // new instance registers
      await new Promise((r) => setTimeout(r, 200));
      await shared.kv.delete().key(`${prefix}roll/m${i}`); // old one deregisters...
      await new Promise((r) => setTimeout(r, 300));
      await (olds[i] as TestBackend).close(); // ...and then stops, as a deploy does
    }
    const beforeEnd = counts.ok;
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(workers);
    expect(failures.slice(0, 5)).toEqual([]);
    expect(counts.failed).toBe(0);
    expect(counts.ok).toBe(counts.sent);
    expect(counts.sent).toBeGreaterThan(200);
    expect(counts.ok).toBeGreaterThan(beforeEnd); // traffic flowed after the last replacement
    expect(await poolIds(d, 'roll')).toBe('n0:unknown,n1:unknown,n2:unknown');
    for (const n of news) expect(servedBy.get(n.name) ?? 0, n.name).toBeGreaterThan(0);
    // Every old member served before it left.
    for (const o of olds) expect(servedBy.get(o.name) ?? 0, o.name).toBeGreaterThan(0);
  });
});
