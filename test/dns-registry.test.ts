/**
 * DnsRegistry against a real UDP DNS server in this process (test/helpers/dns.ts: dns-packet on
 * dgram, records changed mid-test) and against Debian's dnsmasq, reporting to the shared
 * RecordingSink. Plus the pure rules of src/registry/dns-members.ts, table-driven.
 */
import { describe, expect, it } from 'vitest';
import { DnsRegistry, type DnsTarget } from '../src/registry/dns.js';
import { emptyConfirmed, nextResolveMs, srvMembers, type SrvRecord } from '../src/registry/dns-members.js';
import { parseDnsServer, queryDns } from '../src/registry/dns-client.js';
import { silentLogger } from '../src/observability/log.js';
import { RecordingSink } from './helpers/recording-sink.js';
import { describeDnsmasq, startDnsmasq, startDnsServer, type TestDnsServer } from './helpers/dns.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();

const srv = (target: string, port: number, priority: number, weight: number, ttl = 30): SrvRecord => ({ target, port, priority, weight, ttl });

describe('DNS member rules', () => {
  it.each([
    {
      name: 'every group, lowest priority first, each member with its priority; weights; min TTL',
      resolvable: ['a', 'b', 'c'],
      members: ['10.0.0.1:81 w3 p0', '10.0.0.2:82 w1 p0', '10.0.0.3:83 w7 p1'],
      ttl: 5,
    },
    // levels are ranks among the resolvable records: the next group becomes level 0
    { name: 'the lowest group unresolvable: the next one alone', resolvable: ['c'], members: ['10.0.0.3:83 w7 p0'], ttl: 30 },
    { name: 'nothing resolves', resolvable: [], members: [], ttl: Infinity },
  ])('srvMembers: $name', async ({ resolvable, members, ttl }) => {
    // listed out of priority order on purpose; b has SRV weight 0 (counts as 1)
    const records = [srv('c', 83, 1, 7, 30), srv('a', 81, 0, 3, 5), srv('b', 82, 0, 0, 30)];
    const addr: Record<string, string> = { a: '10.0.0.1', b: '10.0.0.2', c: '10.0.0.3' };
    const r = await srvMembers(records, async (t) => (resolvable.includes(t) ? { addresses: [addr[t] as string], ttl: 60 } : undefined));
    expect(r.members.map((m) => `${m.id} w${m.weight} p${m.priority}`)).toEqual(members);
    expect(r.ttl).toBe(ttl);
  });

  it('srvMembers: an address and port named at two priorities keeps the lowest', async () => {
    const r = await srvMembers([srv('x', 80, 5, 1), srv('y', 80, 1, 2), srv('z', 81, 9, 1)], async (t) => ({ addresses: [t === 'z' ? '10.0.0.8' : '10.0.0.9'], ttl: 60 }));
    expect(r.members.map((m) => `${m.id} w${m.weight} p${m.priority} srv${String(m.meta?.['priority'])}`)).toEqual(['10.0.0.9:80 w2 p0 srv1', '10.0.0.8:81 w1 p2 srv9']);
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

  it('SRV: every group with its priority and weights; follows record changes on their TTL; a target that stops resolving goes', async () => {
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
    await waitFor(() => sink.synced.has('dns'));
    expect(sink.view('dns')).toEqual({
      web: { '10.0.0.1:8081': 'http://10.0.0.1:8081', '10.0.0.2:8082': 'http://10.0.0.2:8082', '[fd00::2]:8082': 'http://[fd00::2]:8082', '10.0.0.3:8083': 'http://10.0.0.3:8083' },
    });
    expect(sink.member('web', '10.0.0.1:8081', 'dns')).toMatchObject({ weight: 3, priority: 0, meta: { priority: 10 } });
    expect(sink.member('web', '10.0.0.3:8083', 'dns')).toMatchObject({ weight: 1, priority: 1, meta: { priority: 20 } });
    expect(sink.connected.get('dns')).toBe(true);

    // TTL 1 s, refresh 5 s: a new record is seen on the TTL, not the refresh.
    s.zones.set('_http._tcp.web.test', { srv: [{ target: 'a.test', port: 9091, priority: 10, weight: 2, ttl: 1 }, { target: 'c.test', port: 8083, priority: 20, weight: 1, ttl: 1 }] });
    await waitFor(() => sink.member('web', '10.0.0.1:9091', 'dns') !== undefined, 4000);
    expect(sink.view('dns')).toEqual({ web: { '10.0.0.1:9091': 'http://10.0.0.1:9091', '10.0.0.3:8083': 'http://10.0.0.3:8083' } });

    // A record's priority changes: the member is updated in place.
    s.zones.set('_http._tcp.web.test', { srv: [{ target: 'a.test', port: 9091, priority: 30, weight: 2, ttl: 1 }, { target: 'c.test', port: 8083, priority: 20, weight: 1, ttl: 1 }] });
    await waitFor(() => sink.member('web', '10.0.0.1:9091', 'dns')?.priority === 1, 4000);
    expect(sink.member('web', '10.0.0.3:8083', 'dns')?.priority).toBe(0);

    // A target no longer resolves: its members go, the others stay.
    s.zones.delete('a.test');
    await waitFor(() => sink.member('web', '10.0.0.1:9091', 'dns') === undefined, 4000);
    expect(sink.view('dns')).toEqual({ web: { '10.0.0.3:8083': 'http://10.0.0.3:8083' } });
  });

  it('A/AAAA + port; a silent server keeps the last members (connected 0); an empty answer empties only when seen twice in a row', async () => {
    const s = await dnsServer();
    s.zones.set('legacy.test', { a: [{ address: '10.1.0.1' }, { address: '10.1.0.2' }] });
    const sink = await startRegistry(s, [{ service: 'legacy', dns: { a: 'legacy.test', port: 8080 } }], 1000);
    await waitFor(() => sink.synced.has('dns'));
    expect(Object.keys(sink.view('dns')['legacy'] ?? {})).toEqual(['10.1.0.1:8080', '10.1.0.2:8080']);

    s.silent = true;
    s.zones.set('legacy.test', { a: [{ address: '10.1.0.3' }] });
    await waitFor(() => sink.connected.get('dns') === false, 5000);
    expect(Object.keys(sink.view('dns')['legacy'] ?? {})).toEqual(['10.1.0.1:8080', '10.1.0.2:8080']);
    s.silent = false;
    await waitFor(() => sink.connected.get('dns') === true, 5000);
    await waitFor(() => Object.keys(sink.view('dns')['legacy'] ?? {}).join() === '10.1.0.3:8080', 5000);

    // NXDOMAIN: the first answer keeps the members, the second in a row empties the service.
    const before = s.queries.filter((q) => q === 'legacy.test A').length;
    s.zones.delete('legacy.test');
    await waitFor(() => s.queries.filter((q) => q === 'legacy.test A').length >= before + 1, 5000);
    expect(Object.keys(sink.view('dns')['legacy'] ?? {})).toEqual(['10.1.0.3:8080']);
    await waitFor(() => sink.view('dns')['legacy'] === undefined, 5000);
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
    await waitFor(() => sink.synced.has('dns'));
    expect(sink.view('dns')).toEqual({
      legacy: { '127.0.0.21:9000': 'http://127.0.0.21:9000' },
      web: { '127.0.0.11:21000': 'http://127.0.0.11:21000', '127.0.0.12:21001': 'http://127.0.0.12:21001' },
    });
    expect(sink.member('web', '127.0.0.12:21001', 'dns')?.weight).toBe(30);
    await dm.reload('127.0.0.21 legacy.internal\n127.0.0.22 legacy.internal\n');
    await waitFor(() => Object.keys(sink.view('dns')['legacy'] ?? {}).length === 2, 5000);
  });
});
