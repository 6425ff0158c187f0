/**
 * The second round's registries, pure parts: config keys (`registry.zookeeper`, `registry.dns`,
 * `services.<name>.dns`, etcd `layout: skydns`), SkyDNS keys and values, ZooKeeper/Nerve values.
 * Table-driven, no I/O.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { ConfigError } from '../src/core/errors.js';
import { registriesKey } from '../src/registry/create.js';
import { assembleKeyspace } from '../src/registry/keyspace.js';
import { parseSkyDnsKey, parseSkyDnsValue } from '../src/registry/skydns-values.js';
import { parseInstanceNode, parseNerveValue } from '../src/registry/zookeeper-values.js';

const y = (lines: string[]): string => `${lines.join('\n')}\n`;

function messages(text: string): string[] {
  try {
    parseConfig(text, 'drover.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected the config to be rejected');
}

describe('config: registry.zookeeper, registry.dns, services.<name>.dns, layout skydns', () => {
  it('defaults and resolved forms', () => {
    const c = parseConfig(
      y([
        'registry:',
        '  zookeeper: {servers: "127.0.0.1:2181, 127.0.0.2:2181"}',
        '  dns: {servers: ["127.0.0.1:5353", "::1", "[::1]:53"]}',
        '  etcd: {endpoints: [http://127.0.0.1:2379], layout: skydns}',
        'services:',
        '  web: {dns: {srv: _http._tcp.web.service.consul}}',
        '  legacy: {dns: {a: legacy.internal., port: 8080}}',
        'routes: [{match: {}, service: anything}]',
      ]),
      '',
    );
    expect(c.registry.zookeeper).toEqual({ servers: '127.0.0.1:2181,127.0.0.2:2181', prefix: '/drover/services', layout: 'drover', sessionTimeout: 10_000 });
    expect(c.registry.dns).toEqual({ servers: ['127.0.0.1:5353', '::1', '[::1]:53'], refresh: 5000, timeout: 1000 });
    expect(c.registry.etcd?.prefix).toBe('/skydns/');
    expect(c.services.map((s) => [s.name, s.dns])).toEqual([
      ['web', { srv: '_http._tcp.web.service.consul' }],
      ['legacy', { a: 'legacy.internal.', port: 8080 }],
    ]);
  });

  it('a trailing / of the ZooKeeper prefix is dropped; nerve layout', () => {
    const c = parseConfig(y(['registry:', '  zookeeper: {servers: "zk:2181", prefix: /nerve/services/, layout: nerve, session_timeout: 4s}']), '');
    expect(c.registry.zookeeper).toMatchObject({ prefix: '/nerve/services', layout: 'nerve', sessionTimeout: 4000 });
  });

  it.each([
    [['registry:', '  zookeeper: {servers: "127.0.0.1"}'], 'registry.zookeeper.servers'],
    [['registry:', '  zookeeper: {servers: "a:1", prefix: relative}'], 'registry.zookeeper.prefix'],
    [['registry:', '  zookeeper: {servers: "a:1", layout: curator}'], 'registry.zookeeper.layout'],
    [['registry:', '  dns: {servers: [dns.example.com]}'], 'registry.dns.servers.0'],
    [['registry:', '  dns: {refresh: often}'], 'registry.dns.refresh'],
    [['registry:', '  etcd: {endpoints: [http://127.0.0.1:2379], layout: consul}'], 'registry.etcd.layout'],
    [['services:', '  web: {dns: {srv: "bad name"}}'], 'services.web.dns'],
    [['services:', '  web: {dns: {a: legacy.internal}}'], 'services.web.dns'],
    [['services:', '  web: {dns: {srv: x.example, port: 80}}'], 'services.web.dns'],
  ])('refuses %j at %s', (lines, at) => {
    expect(messages(y(lines)).some((m) => m.startsWith(`${at}`))).toBe(true);
  });

  it('a service gaining dns: rebuilds the registries on reload', () => {
    const a = parseConfig(y(['services:', '  web: {}']), '');
    const b = parseConfig(y(['services:', '  web: {dns: {a: web.internal, port: 80}}']), '');
    expect(registriesKey(a)).not.toBe(registriesKey(b));
  });
});

describe('skydns layout', () => {
  it.each([
    ['/skydns/', '/skydns/local/skydns/web/x1', { service: 'web.skydns.local', id: 'x1' }],
    ['/skydns/local/skydns/', '/skydns/local/skydns/web/x1', { service: 'web', id: 'x1' }],
    ['/skydns/local/skydns/', '/skydns/local/skydns/web/host:web:80', { service: 'web', id: 'host:web:80' }],
    ['/skydns/', '/skydns/com/Example/_http/a', { service: '_http.example.com', id: 'a' }],
  ])('parseSkyDnsKey(%s, %s)', (prefix, key, want) => {
    expect(parseSkyDnsKey(prefix, key)).toEqual({ ok: true, value: want });
  });

  it.each([
    ['/skydns/', '/skydns/x1'],
    ['/skydns/', '/other/local/web/x1'],
    ['/skydns/', '/skydns/local/bad label/x1'],
  ])('parseSkyDnsKey refuses %s %s', (prefix, key) => {
    expect(parseSkyDnsKey(prefix, key).ok).toBe(false);
  });

  it.each([
    ['{"host":"10.0.0.5","port":8080,"priority":10,"weight":20,"ttl":30}', { url: 'http://10.0.0.5:8080', weight: 20, meta: { priority: 10 } }],
    ['{"host":"fd00::5","port":80}', { url: 'http://[fd00::5]:80', weight: 1, meta: {} }],
    ['{"host":"web.internal","port":81,"weight":0}', { url: 'http://web.internal:81', weight: 1, meta: {} }],
  ])('parseSkyDnsValue(%s)', (raw, want) => {
    expect(parseSkyDnsValue(raw)).toEqual({ ok: true, value: want });
  });

  it.each(['{"host":"10.0.0.5"}', '{"port":80}', 'not json', '{"host":"10.0.0.5","port":80,"weight":-1}', '[]'])('parseSkyDnsValue refuses %s', (raw) => {
    expect(parseSkyDnsValue(raw).ok).toBe(false);
  });

  it('a key space: members per domain, invalid records reported', () => {
    const { services, invalid } = assembleKeyspace('skydns', '/skydns/', [
      ['/skydns/local/skydns/web/a', '{"host":"10.0.0.1","port":80}'],
      ['/skydns/local/skydns/web/b', '{"host":"10.0.0.2","port":80,"weight":3}'],
      ['/skydns/local/skydns/web/c', '{"host":"10.0.0.4","port":80,"priority":20}'],
      ['/skydns/local/skydns/web/d', '{"host":"10.0.0.5","port":80,"priority":0}'],
      ['/skydns/local/skydns/api/c', '{"host":"10.0.0.3"}'],
    ]);
    // priority: as written, or SkyDNS's default 10
    expect([...services.entries()].map(([s, ms]) => [s, ms.map((m) => `${m.id}=${m.url}*${m.weight}@${m.priority}`)])).toEqual([
      ['web.skydns.local', ['a=http://10.0.0.1:80*1@10', 'b=http://10.0.0.2:80*3@10', 'c=http://10.0.0.4:80*1@20', 'd=http://10.0.0.5:80*1@0']],
    ]);
    expect(invalid.map((i) => i.key)).toEqual(['/skydns/local/skydns/api/c']);
  });
});

describe('ZooKeeper values', () => {
  it.each([
    ['drover', 'a', '127.0.0.1:9001', { id: 'a', url: 'http://127.0.0.1:9001', weight: 1 }],
    ['drover', 'b', '{"url":"http://10.0.0.2:80","weight":2,"zone":"z"}', { id: 'b', url: 'http://10.0.0.2:80', weight: 2, zone: 'z' }],
    ['nerve', 'i-1_0000000007', '{"host":"10.0.0.3","port":8080,"name":"i-1","weight":4,"labels":{"az":"us-1a"}}', { id: 'i-1_0000000007', url: 'http://10.0.0.3:8080', weight: 4, zone: 'us-1a' }],
    ['nerve', 'i-2_0000000008', '{"host":"10.0.0.4","port":"8081","name":"i-2"}', { id: 'i-2_0000000008', url: 'http://10.0.0.4:8081', weight: 1 }],
  ] as const)('%s %s = %s', (layout, name, data, want) => {
    const r = parseInstanceNode(layout, name, data);
    expect(r.ok && r.value).toMatchObject({ ...want, source: 'zookeeper' });
  });

  it.each([
    ['drover', 'a', ''],
    ['drover', 'a', 'nonsense'],
    ['nerve', 'x', '127.0.0.1:80'],
    ['nerve', 'x', '{"host":"10.0.0.1","port":0}'],
    ['nerve', 'x', '{"port":80}'],
    ['nerve', 'x', '{"host":"10.0.0.1","port":80,"weight":0}'],
  ] as const)('%s refuses %s = %j', (layout, name, data) => {
    expect(parseInstanceNode(layout, name, data).ok).toBe(false);
  });

  it('Nerve keeps its name and labels as meta', () => {
    expect(parseNerveValue('{"host":"h","port":1,"name":"n","labels":{"k":"v"}}')).toEqual({ ok: true, value: { url: 'http://h:1', weight: 1, zone: undefined, meta: { name: 'n', labels: { k: 'v' } } } });
  });
});
