/**
 * DnsRegistry against a real UDP DNS server in this process (test/helpers/dns.ts: dns-packet on
 * dgram, records changed mid-test) and against Debian's dnsmasq, reporting to the shared
 * RecordingSink. Plus the pure rules of src/registry/dns-members.ts, table-driven.
 */
import { describe, expect, it } from 'vitest';
import { DnsRegistry, type DnsTarget } from '../src/registry/dns.js';
import { emptyConfirmed, nextResolveMs, pickSrvGroup, priorityGroups, type SrvRecord } from '../src/registry/dns-members.js';
import { parseDnsServer, queryDns } from '../src/registry/dns-client.js';
import { silentLogger } from '../src/observability/log.js';
import { RecordingSink } from './helpers/recording-sink.js';
import { describeDnsmasq, startDnsmasq, startDnsServer, type TestDnsServer } from './helpers/dns.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { waitUntil } from './helpers/raw-backend.js';

const later = cleanupAfterEach();

const srv = (target: string, port: number, priority: number, weight: number, ttl = 30): SrvRecord => ({ target, port, priority, weight, ttl });

describe('DNS member rules', () => {
  it.each([
    { name: 'one group', records: [srv('a', 1, 10, 1), srv('b', 2, 10, 1)], groups: [[0, 1]] },
    { name: 'lowest value first', records: [srv('a', 1, 20, 1), srv('b', 2, 10, 1), srv('c', 3, 20, 1)], groups: [[1], [0, 2]] },
    { name: 'none', records: [], groups: [] },
  ])('priorityGroups: $name', ({ records, groups }) => {
    expect(priorityGroups(records)).toEqual(groups);
  });

  it.each([
    { name: 'lowest group, weights, min TTL', resolvable: ['a', 'b', 'c'], ids: ['10.0.0.1:81', '10.0.0.2:82'], weights: [3, 1], ttl: 5 },
    { name: 'lowest group unresolvable: next group', resolvable: ['c'], ids: ['10.0.0.3:83'], weights: [7], ttl: 30 },
    { name: 'nothing resolves', resolvable: [], ids: [], weights: [], ttl: Infinity },
  ])('pickSrvGroup: $name', async ({ resolvable, ids, weights, ttl }) => {
    const records = [srv('a', 81, 0, 3, 5), srv('b', 82, 0, 0, 30), srv('c', 83, 1, 7, 30)];
    const addr: Record<string, string> = { a: '10.0.0.1', b: '10.0.0.2', c: '10.0.0.3' };
    const r = await pickSrvGroup(records, async (t) => (resolvable.includes(t) ? { addresses: [addr[t] as string], ttl: 60 } : undefined));
    expect(r.members.map((m) => m.id)).toEqual(ids);
    expect(r.members.map((m) => m.weight)).toEqual(weights); // SRV weight 0 counts as 1
    expect(r.ttl).toBe(ttl);
  });

  it.each([
    { ttl: 0, refresh: 5000, want: 1000 },
    { ttl: 3, refresh: 5000, want: 3000 },
    { ttl: 300, refresh: 5000, want: 5000 },
    { ttl: Infinity, refresh: 2000, want: 2000 },
  ])('nextResolveMs($ttl s, refresh $refresh) = $want', ({ ttl, refresh, want }) => {
    expect(nextResolveMs(ttl, refresh)).toBe(want);
  });

  it('an empty answer counts only the second time in a row', () => {
    expect([0, 1, 2, 3].map(emptyConfirmed)).toEqual([false, false, true, true]);
  });

  it.each([
    ['127.0.0.1', { host: '127.0.0.1', port: 53 }],
    ['127.0.0.1:5353', { host: '127.0.0.1', port: 5353 }],
    ['::1', { host: '::1', port: 53 }],
    ['[::1]:5353', { host: '::1', port: 5353 }],
  ])('parseDnsServer(%s)', (text, want) => {
    expect(parseDnsServer(text)).toEqual(want);
  });
});

async function startRegistry(server: TestDnsServer | string, targets: DnsTarget[], refresh = 5000): Promise<RecordingSink> {
  const sink = new RecordingSink();
  const reg = new DnsRegistry({ servers: [typeof server === 'string' ? server : server.server], refresh, timeout: 200 }, targets, silentLogger());
  later(() => reg.close());
  await reg.start(sink);
  return sink;
}

describe('DnsRegistry (in-process DNS server)', () => {
  async function dnsServer(): Promise<TestDnsServer> {
    const s = await startDnsServer();
    later(() => s.close());
    return s;
  }

  it('SRV: lowest priority group with weights; follows record changes on their TTL; falls back to the next group', async () => {
    const s = await dnsServer();
    s.zones.set('_http._tcp.web.test', {
      srv: [
        { target: 'a.test', port: 8081, priority: 10, weight: 3, ttl: 1 },
        { target: 'b.test', port: 8082, priority: 10, weight: 1, ttl: 1 },
        { target: 'c.test', port: 8083, priority: 20, weight: 1, ttl: 1 },
      ],
    });
    s.zones.set('a.test', { a: [{ address: '10.0.0.1' }] });
    s.zones.set('b.test', { a: [{ address: '10.0.0.2' }], aaaa: [{ address: 'fd00::2' }] });
    s.zones.set('c.test', { a: [{ address: '10.0.0.3' }] });
    const sink = await startRegistry(s, [{ service: 'web', dns: { srv: '_http._tcp.web.test' } }]);
    await waitUntil(() => sink.synced.has('dns'));
    expect(sink.view('dns')).toEqual({ web: { '10.0.0.1:8081': 'http://10.0.0.1:8081', '10.0.0.2:8082': 'http://10.0.0.2:8082', '[fd00::2]:8082': 'http://[fd00::2]:8082' } });
    expect(sink.member('web', '10.0.0.1:8081', 'dns')?.weight).toBe(3);
    expect(sink.connected.get('dns')).toBe(true);

    // TTL 1 s, refresh 5 s: a new record is seen on the TTL, not the refresh.
    s.zones.set('_http._tcp.web.test', { srv: [{ target: 'a.test', port: 9091, priority: 10, weight: 2, ttl: 1 }, { target: 'c.test', port: 8083, priority: 20, weight: 1, ttl: 1 }] });
    await waitUntil(() => sink.member('web', '10.0.0.1:9091', 'dns') !== undefined, 4000);
    expect(sink.view('dns')).toEqual({ web: { '10.0.0.1:9091': 'http://10.0.0.1:9091' } });

    // The lowest group no longer resolves: the next one takes over.
    s.zones.delete('a.test');
    await waitUntil(() => sink.member('web', '10.0.0.3:8083', 'dns') !== undefined, 4000);
    expect(sink.view('dns')).toEqual({ web: { '10.0.0.3:8083': 'http://10.0.0.3:8083' } });
  });

  it('A/AAAA + port; a silent server keeps the last members (connected 0); an empty answer empties only when seen twice in a row', async () => {
    const s = await dnsServer();
    s.zones.set('legacy.test', { a: [{ address: '10.1.0.1' }, { address: '10.1.0.2' }] });
    const sink = await startRegistry(s, [{ service: 'legacy', dns: { a: 'legacy.test', port: 8080 } }], 1000);
    await waitUntil(() => sink.synced.has('dns'));
    expect(Object.keys(sink.view('dns')['legacy'] ?? {})).toEqual(['10.1.0.1:8080', '10.1.0.2:8080']);

    s.silent = true;
    s.zones.set('legacy.test', { a: [{ address: '10.1.0.3' }] });
    await waitUntil(() => sink.connected.get('dns') === false, 5000);
    expect(Object.keys(sink.view('dns')['legacy'] ?? {})).toEqual(['10.1.0.1:8080', '10.1.0.2:8080']);
    s.silent = false;
    await waitUntil(() => sink.connected.get('dns') === true, 5000);
    await waitUntil(() => Object.keys(sink.view('dns')['legacy'] ?? {}).join() === '10.1.0.3:8080', 5000);

    // NXDOMAIN: the first answer keeps the members, the second in a row empties the service.
    const before = s.queries.filter((q) => q === 'legacy.test A').length;
    s.zones.delete('legacy.test');
    await waitUntil(() => s.queries.filter((q) => q === 'legacy.test A').length >= before + 1, 5000);
    expect(Object.keys(sink.view('dns')['legacy'] ?? {})).toEqual(['10.1.0.3:8080']);
    await waitUntil(() => sink.view('dns')['legacy'] === undefined, 5000);
    expect(s.queries.filter((q) => q === 'legacy.test A').length).toBeGreaterThanOrEqual(before + 2);
  });
});

describeDnsmasq('DnsRegistry against dnsmasq', () => {
  it('Consul-shaped SRV (_web._tcp.service.consul) with targets in the additional section; A records from a reloaded hosts file', async () => {
    const dm = await startDnsmasq(
      [
        '--srv-host=_web._tcp.service.consul,web1.node.dc1.consul,21000,1,10',
        '--srv-host=_web._tcp.service.consul,web2.node.dc1.consul,21001,1,30',
        '--host-record=web1.node.dc1.consul,127.0.0.11',
        '--host-record=web2.node.dc1.consul,127.0.0.12',
        '--local-ttl=1',
      ],
      '127.0.0.21 legacy.internal\n',
    );
    later(() => dm.stop());
    const ans = await queryDns([parseDnsServer(dm.server)], '_web._tcp.service.consul', 'SRV');
    expect(ans.answers.map((a) => (a.data as { port: number }).port).sort()).toEqual([21000, 21001]);
    const sink = await startRegistry(dm.server, [
      { service: 'web', dns: { srv: '_web._tcp.service.consul' } },
      { service: 'legacy', dns: { a: 'legacy.internal', port: 9000 } },
    ], 1000);
    await waitUntil(() => sink.synced.has('dns'));
    expect(sink.view('dns')).toEqual({
      legacy: { '127.0.0.21:9000': 'http://127.0.0.21:9000' },
      web: { '127.0.0.11:21000': 'http://127.0.0.11:21000', '127.0.0.12:21001': 'http://127.0.0.12:21001' },
    });
    expect(sink.member('web', '127.0.0.12:21001', 'dns')?.weight).toBe(30);
    await dm.reload('127.0.0.21 legacy.internal\n127.0.0.22 legacy.internal\n');
    await waitUntil(() => Object.keys(sink.view('dns')['legacy'] ?? {}).length === 2, 5000);
  });
});
