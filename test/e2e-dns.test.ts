/**
 * End to end with DNS: Debian's real dnsmasq serving Consul-shaped SRV records and a hosts file,
 * the real `bin/drover` child process, backends on distinct loopback addresses that name
 * themselves. Nothing on the path is mocked.
 */
import { expect, it } from 'vitest';
import { describeDnsmasq, startDnsmasq, type Dnsmasq } from './helpers/dns.js';
import { startBackend, request, type TestBackend } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { bodies, metric, pool, uniq } from './helpers/e2e.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();

async function backendAt(name: string, host: string, port = 0): Promise<TestBackend> {
  const b = await startBackend(name, { port, host });
  later(() => b.close());
  return b;
}

async function dnsmasq(args: string[], hosts = ''): Promise<Dnsmasq> {
  const dm = await startDnsmasq(args, hosts);
  later(() => dm.stop());
  return dm;
}

async function drover(server: string, services: string): Promise<DroverProcess> {
  const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
shutdown_grace: 1s
registry:
  dns: {servers: ["${server}"], refresh: 1s, timeout: 200ms}
services:
${services}
routes:
  - match: {path_prefix: /}
    service: web
`);
  later(() => d.stop('SIGKILL'));
  return d;
}

function counts(xs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

describeDnsmasq('drover with DNS (dnsmasq), end to end', () => {
  it('Consul DNS interface: _web._tcp.service.consul SRV targets become members; SRV weights honoured by weighted round robin', async () => {
    const w1 = await backendAt('consul-w1', '127.0.0.11');
    const w2 = await backendAt('consul-w2', '127.0.0.12');
    const dm = await dnsmasq([
      `--srv-host=_web._tcp.service.consul,web1.node.dc1.consul,${w1.port},1,1`,
      `--srv-host=_web._tcp.service.consul,web2.node.dc1.consul,${w2.port},1,3`,
      // a higher priority value: a fallback, unused while priority 1 resolves
      `--srv-host=_web._tcp.service.consul,spare.node.dc1.consul,9,2,100`,
      '--host-record=web1.node.dc1.consul,127.0.0.11',
      '--host-record=web2.node.dc1.consul,127.0.0.12',
      '--host-record=spare.node.dc1.consul,127.0.0.13',
      '--local-ttl=1',
    ]);
    const d = await drover(dm.server, '  web:\n    dns: {srv: _web._tcp.service.consul}\n');
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    const members = (await pool(d, 'web')) ?? [];
    // every record is a member, the fallback too (with its priority); only the lowest priority with an available member serves
    expect(members.map((m) => `${m.id}:${m.source}`).sort()).toEqual([`127.0.0.11:${w1.port}:dns`, `127.0.0.12:${w2.port}:dns`, '127.0.0.13:9:dns']);
    // Smooth weighted round robin: every 4 requests carry weight 1 once and weight 3 three times; the fallback none.
    expect(counts(await bodies(d.port, '/', 40))).toEqual({ 'consul-w1': 10, 'consul-w2': 30 });
    expect(await metric(d, 'drover_registry_connected', { source: 'dns' })).toBe(1);
  });

  it('SRV priority: the fallback serves only while every member of the lowest priority is down (active checks), and stops when one is back', async () => {
    const healthy = new Map<string, boolean>();
    const backend = async (name: string, host: string): Promise<TestBackend> => {
      const b = await backendAt(name, host);
      healthy.set(name, true);
      b.behave((req, res) => {
        const down = req.url === '/healthz' && healthy.get(name) !== true;
        res.writeHead(down ? 503 : 200, { 'content-type': 'text/plain' });
        res.end(down ? 'down' : name);
      });
      return b;
    };
    const p1 = await backend('primary-1', '127.0.0.31');
    const p2 = await backend('primary-2', '127.0.0.32');
    const spare = await backend('spare', '127.0.0.33');
    const dm = await dnsmasq([
      `--srv-host=_web._tcp.service.consul,p1.node.dc1.consul,${p1.port},10,1`,
      `--srv-host=_web._tcp.service.consul,p2.node.dc1.consul,${p2.port},10,1`,
      `--srv-host=_web._tcp.service.consul,spare.node.dc1.consul,${spare.port},20,1`,
      '--host-record=p1.node.dc1.consul,127.0.0.31',
      '--host-record=p2.node.dc1.consul,127.0.0.32',
      '--host-record=spare.node.dc1.consul,127.0.0.33',
      '--local-ttl=1',
    ]);
    const d = await drover(dm.server, '  web:\n    dns: {srv: _web._tcp.service.consul}\n    health: {active: {path: /healthz, interval: 200ms, timeout: 1s, rise: 1, fall: 1}}\n');
    // ready once every member had its first check (before that, a fallback answering its check
    // first may serve while the primaries are still unknown: no primary is available yet)
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    expect(((await pool(d, 'web')) ?? []).map((m) => `${m.id}:${m.state}`).sort()).toEqual([
      `127.0.0.31:${p1.port}:healthy`,
      `127.0.0.32:${p2.port}:healthy`,
      `127.0.0.33:${spare.port}:healthy`,
    ]);
    expect(counts(await bodies(d.port, '/', 8))).toEqual({ 'primary-1': 4, 'primary-2': 4 });

    healthy.set('primary-1', false);
    await waitFor(async () => ((await pool(d, 'web')) ?? []).some((m) => m.id.startsWith('127.0.0.31') && m.state === 'unhealthy'), { what: 'primary-1 down' });
    expect(uniq(await bodies(d.port, '/', 6))).toEqual(['primary-2']); // one primary left: still no fallback
    healthy.set('primary-2', false);
    await waitFor(async () => uniq(await bodies(d.port, '/', 6)).join() === 'spare', { what: 'the fallback serves' });
    healthy.set('primary-2', true);
    await waitFor(async () => uniq(await bodies(d.port, '/', 6)).join() === 'primary-2', { what: 'back to the primary' });
  });

  it('A records: traffic follows adds and removals; dnsmasq killed: traffic keeps flowing on the last members; changes made meanwhile apply when it returns', async () => {
    const a = await backendAt('legacy-a', '127.0.0.21');
    const b = await backendAt('legacy-b', '127.0.0.22', a.port);
    const c = await backendAt('legacy-c', '127.0.0.23', a.port);
    const dm = await dnsmasq(['--local-ttl=1'], '127.0.0.21 legacy.internal\n');
    const d = await drover(dm.server, `  web:\n    dns: {a: legacy.internal, port: ${a.port}}\n`);
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['legacy-a']);

    await dm.reload('127.0.0.21 legacy.internal\n127.0.0.22 legacy.internal\n');
    await waitFor(async () => uniq(await bodies(d.port, '/', 4)).length === 2, { what: 'legacy-b added' });
    await dm.reload('127.0.0.22 legacy.internal\n');
    await waitFor(async () => JSON.stringify(uniq(await bodies(d.port, '/', 4))) === '["legacy-b"]', { what: 'legacy-a removed' });
    expect(await metric(d, 'drover_registry_events_total', { source: 'dns', type: 'delete' })).toBe(1);

    await dm.kill();
    await waitFor(async () => (await metric(d, 'drover_registry_connected', { source: 'dns' })) === 0, { what: 'dns unreachable noticed' });
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['legacy-b']);
    // Changed while dnsmasq was down; served once it is back.
    await dm.reload('127.0.0.22 legacy.internal\n127.0.0.23 legacy.internal\n'); // only the file: nothing runs
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['legacy-b']);
    await dm.restart();
    await waitFor(async () => uniq(await bodies(d.port, '/', 4)).join() === 'legacy-b,legacy-c', { what: 'legacy-c after the restart' });
    expect(await metric(d, 'drover_registry_connected', { source: 'dns' })).toBe(1);
    expect(c.seen.length).toBeGreaterThan(0);
    expect(b.seen.length).toBeGreaterThan(0);
  });
});
