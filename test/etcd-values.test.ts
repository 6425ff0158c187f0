import { describe, expect, it } from 'vitest';
import { assembleKeyspace, createKeyspaceModel } from '../src/registry/keyspace.js';
import {
  parseDroverKey,
  parseMemberValue,
  parseTraefikKey,
  type ModelEffect,
} from '../src/registry/etcd-values.js';
import { Backoff } from '../src/registry/backoff.js';

const P = '/drover/services/';

describe('parseMemberValue', () => {
  const cases: [string, unknown][] = [
    ['10.0.0.5:8080', { url: 'http://10.0.0.5:8080', weight: 1, draining: false }],
    ['http://10.0.0.5:8080', { url: 'http://10.0.0.5:8080', weight: 1, draining: false }],
    [
      '{"url":"http://10.0.0.5:8080","weight":2,"zone":"a","draining":false,"meta":{"v":"1"}}',
      { url: 'http://10.0.0.5:8080', weight: 2, zone: 'a', draining: false, meta: { v: '1' } },
    ],
    ['{"url":"10.0.0.5:8080"}', { url: 'http://10.0.0.5:8080', weight: 1, zone: undefined, draining: false, meta: undefined }],
    ['{"url":"http://a:1","draining":true,"extra":1}', { url: 'http://a:1', weight: 1, zone: undefined, draining: true, meta: undefined }],
    ['{"url":"http://a:1","weight":0.5}', { url: 'http://a:1', weight: 0.5, zone: undefined, draining: false, meta: undefined }],
    ['{"url":"http://a:1","weight":0}', 'weight'],
    ['{"url":"http://a:1","weight":-1}', 'weight'],
    ['{"url":"http://a:1","weight":"2"}', 'weight'],
    ['{"url":"http://a:1","draining":"yes"}', 'draining'],
    ['{"url":"http://a:1","zone":3}', 'zone'],
    ['{"url":"http://a:1","meta":[1]}', 'meta'],
    ['{"weight":1}', 'url'],
    ['{"url":"ftp://a:1"}', 'url'],
    ['{not json', 'JSON'],
    ['[1,2]', 'not a host:port'],
    ['', 'empty'],
    ['   ', 'empty'],
  ];
  it.each(cases)('%j', (input, want) => {
    const got = parseMemberValue(input);
    if (typeof want === 'string') {
      expect(got.ok).toBe(false);
      if (!got.ok) expect(got.reason).toContain(want);
    } else {
      expect(got).toEqual({ ok: true, value: want });
    }
  });
});

describe('parseDroverKey', () => {
  const cases: [string, { service: string; id: string } | null][] = [
    [`${P}web/i-1`, { service: 'web', id: 'i-1' }],
    [`${P}web.v2/host-8080`, { service: 'web.v2', id: 'host-8080' }],
    [`${P}web`, null],
    [`${P}web/`, null],
    [`${P}/i-1`, null],
    [`${P}web/i-1/extra`, null],
    [`${P}web/i 1`, null],
    ['/other/web/i-1', null],
  ];
  it.each(cases)('%s', (key, want) => {
    const got = parseDroverKey(P, key);
    if (want === null) expect(got.ok).toBe(false);
    else expect(got).toEqual({ ok: true, value: want });
  });
});

describe('parseTraefikKey', () => {
  const T = 'traefik/';
  const cases: [string, unknown][] = [
    [`${T}http/services/web/loadbalancer/servers/0/url`, { service: 'web', server: '0', field: 'url' }],
    [`${T}http/services/web/loadbalancer/servers/1/weight`, { service: 'web', server: '1', field: 'weight' }],
    [`${T}http/services/web/loadbalancer/passhostheader`, undefined],
    [`${T}http/routers/web/rule`, undefined],
    [`${T}http/services/web/loadbalancer/servers/0/other`, undefined],
    [`${T}tcp/services/web/loadbalancer/servers/0/url`, undefined],
    ['elsewhere/http/services/web/loadbalancer/servers/0/url', undefined],
  ];
  it.each(cases)('%s', (key, want) => {
    expect(parseTraefikKey(T, key)).toEqual(want);
  });
});

describe('drover keyspace model', () => {
  it('applies puts and deletes, keeps the last valid value on an invalid update', () => {
    const m = createKeyspaceModel('drover', P);
    const steps: [op: 'put' | 'delete', key: string, value: string, want: ModelEffect['type'][]][] = [
      ['put', `${P}web/a`, '127.0.0.1:1', ['put']],
      ['put', `${P}web/b`, '{"url":"http://127.0.0.1:2","weight":3}', ['put']],
      ['put', `${P}web/a`, 'garbage value', ['invalid']],
      ['put', `${P}web/a/deep`, '127.0.0.1:9', ['invalid']],
      ['delete', `${P}web/zz`, '', []],
      ['delete', `${P}web/b`, '', ['delete']],
      ['put', `${P}api/x`, 'http://127.0.0.1:3', ['put']],
    ];
    for (const [op, key, value, want] of steps) {
      const effects = op === 'put' ? m.put(key, value) : m.delete(key);
      expect(effects.map((e) => e.type), `${op} ${key}`).toEqual(want);
    }
    const snap = m.snapshot();
    expect([...snap.keys()].sort()).toEqual(['api', 'web']);
    expect(snap.get('web')).toEqual([
      { id: 'a', url: 'http://127.0.0.1:1', weight: 1, zone: undefined, draining: false, source: 'etcd', meta: undefined },
    ]);
    expect(snap.get('api')?.map((x) => x.url)).toEqual(['http://127.0.0.1:3']);
  });

  it('assembles a full list and reports invalid entries', () => {
    const { services, invalid } = assembleKeyspace('drover', P, [
      [`${P}web/a`, '127.0.0.1:1'],
      [`${P}web/b`, 'nope'],
      [`${P}web`, '127.0.0.1:2'],
      [`${P}web/c`, '{"url":"http://127.0.0.1:3","draining":true}'],
    ]);
    expect(services.get('web')?.map((x) => [x.id, x.url, x.draining])).toEqual([
      ['a', 'http://127.0.0.1:1', false],
      ['c', 'http://127.0.0.1:3', true],
    ]);
    expect(invalid.map((i) => i.key)).toEqual([`${P}web/b`, `${P}web`]);
  });
});

describe('traefik keyspace model', () => {
  const T = 'traefik/';
  const k = (svc: string, n: string, f: string): string => `${T}http/services/${svc}/loadbalancer/servers/${n}/${f}`;
  it('a server appears with its url, takes its weight from the sibling key', () => {
    const m = createKeyspaceModel('traefik', T);
    const steps: [op: 'put' | 'delete', key: string, value: string, want: unknown[]][] = [
      ['put', k('web', '0', 'weight'), '3', []],
      ['put', `${T}http/routers/web/rule`, 'Host(`x`)', []],
      ['put', k('web', '0', 'url'), 'http://127.0.0.1:1', [['put', '0', 3]]],
      ['put', k('web', '1', 'url'), 'http://127.0.0.1:2', [['put', '1', 1]]],
      ['put', k('web', '1', 'weight'), 'x', [['invalid'], ['put', '1', 1]]],
      ['put', k('web', '1', 'weight'), '5', [['put', '1', 5]]],
      ['put', k('web', '0', 'url'), 'ftp://bad', [['invalid']]],
      ['delete', k('web', '1', 'weight'), '', [['put', '1', 1]]],
      ['delete', k('web', '1', 'url'), '', [['delete', '1']]],
    ];
    for (const [op, key, value, want] of steps) {
      const effects = op === 'put' ? m.put(key, value) : m.delete(key);
      const got = effects.map((e) =>
        e.type === 'put' ? ['put', e.member.id, e.member.weight] : e.type === 'delete' ? ['delete', e.id] : ['invalid'],
      );
      expect(got, `${op} ${key}=${value}`).toEqual(want);
    }
    // server 0 kept its last valid url despite the bad update
    expect(m.snapshot().get('web')?.map((x) => [x.id, x.url, x.weight])).toEqual([['0', 'http://127.0.0.1:1', 3]]);
  });
});

describe('Backoff', () => {
  it('grows exponentially with equal jitter, caps, and resets', () => {
    const seq = [0, 1, 0.5, 0, 1, 1, 1, 0];
    let i = 0;
    const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => seq[i++ % seq.length] as number });
    const got = Array.from({ length: 7 }, () => b.next());
    // ceilings 100, 200, 400, 800, 1000, 1000, 1000 -> [c/2, c]
    expect(got).toEqual([50, 200, 300, 400, 1000, 1000, 1000]);
    b.reset();
    expect(b.next()).toBe(50);
  });
});
