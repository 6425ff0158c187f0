/**
 * The one grammar of user-written values (src/config/values.ts): what the config, every registry
 * and `drover register` accept as a backend address, a weight, a duration and a TTL. Table-driven;
 * the same table holds what the config, the etcd values and `drover register` used to test apart.
 */
import { describe, expect, it } from 'vitest';
import {
  backendFromFields,
  formatDuration,
  isBackendId,
  MAX_WEIGHT,
  parseBackendUrl,
  parseDuration,
  parseEtcdEndpoint,
  parseEtcdEndpoints,
  parseListenAddress,
  parseServerList,
  parseTtlSeconds,
  parseWeight,
} from '../src/config/values.js';

describe('durations', () => {
  it.each([
    ['250ms', 250],
    ['5s', 5000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1h2m3s4ms', 3_723_004],
    ['1.5s', 1500],
    ['0', 0],
    ['0s', 0],
  ])('%s = %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });
  it.each(['5', '5x', '', 's', '-1s', '1 s', '5S', '1s ms', '600h', '1d'])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
  // one formatter for messages (config errors, ejection reasons): what a user would write, and
  // what parses back to the same value
  it.each([
    [0, '0s'],
    [250, '250ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [30_000, '30s'],
    [90_000, '1m30s'],
    [120_000, '2m'],
    [3_600_000, '1h'],
    [3_723_004, '1h2m3.004s'],
    [61_050, '1m1.05s'],
  ])('formats %d as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
    expect(parseDuration(text)).toBe(ms);
  });
});

describe('TTLs (drover register --ttl): a duration of at least 1s, in whole seconds', () => {
  it.each([
    ['10s', 10],
    ['2m', 120],
    ['1m30s', 90],
    ['1.5s', 2], // rounded up: a lease never ends before the time asked for
    ['1s', 1],
  ])('%s = %d s', (text, seconds) => {
    expect(parseTtlSeconds(text)).toEqual({ ok: true, value: seconds });
  });
  it.each([
    ['250ms', /shorter than 1s/],
    ['0', /shorter than 1s/],
    ['7', /not a duration/], // a bare number has no unit, as in the config
    ['x', /not a duration/],
    ['10 parsecs', /not a duration/],
    ['600h', /too long/],
  ])('refuses %j', (text, why) => {
    const r = parseTtlSeconds(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(why);
  });
});

describe('weights: a number > 0 and at most 1 000 000, wherever it is written', () => {
  it.each([
    [1, 1],
    [0.5, 0.5],
    [1000, 1000],
    [65_535, 65_535],
    [MAX_WEIGHT, MAX_WEIGHT],
    ['3', 3], // CLI flags and Traefik's weight keys are text
  ])('%j', (input, want) => {
    expect(parseWeight(input)).toEqual({ ok: true, value: want });
  });
  it.each([0, -1, MAX_WEIGHT + 1, 'two', '', null, Number.NaN, Infinity])('refuses %j', (input) => {
    expect(parseWeight(input).ok).toBe(false);
  });
});

describe('listen addresses', () => {
  it.each([
    ['127.0.0.1:8080', { host: '127.0.0.1', port: 8080 }],
    ['[::1]:0', { host: '::1', port: 0 }],
    ['Localhost:65535', { host: 'localhost', port: 65535 }],
  ])('listen address %s', (text, want) => {
    expect(parseListenAddress(text)).toEqual({ ok: true, value: want });
  });
  it.each(['8080', ':8080', '::1:8080', '127.0.0.1:65536', '127.0.0.1:x', 'a b:1'])('rejects listen address %j', (text) => {
    expect(parseListenAddress(text)).toMatchObject({ ok: false, reason: expect.any(String) });
  });
});

describe('backend addresses: one grammar for the config, the registries and drover register', () => {
  const accepted: [string, string, string][] = [
    // [written, url, default id]
    ['http://127.0.0.1:9001', 'http://127.0.0.1:9001', '127.0.0.1:9001'],
    ['http://Web-1.internal:80/', 'http://web-1.internal:80', 'web-1.internal:80'],
    ['http://[::1]:9001', 'http://[::1]:9001', '[::1]:9001'],
    ['HTTPS://Api.Internal:8443', 'https://api.internal:8443', 'api.internal:8443'],
    ['h2c://127.0.0.1:50051/', 'h2c://127.0.0.1:50051', '127.0.0.1:50051'],
    ['10.0.0.5:8080', 'http://10.0.0.5:8080', '10.0.0.5:8080'], // the bare form registrator writes
    ['  10.0.0.5:8080\n', 'http://10.0.0.5:8080', '10.0.0.5:8080'],
    ['http://10.0.0.5:8080/', 'http://10.0.0.5:8080', '10.0.0.5:8080'],
    ['HTTP://Example.COM:81', 'http://example.com:81', 'example.com:81'],
    ['example.com:80', 'http://example.com:80', 'example.com:80'],
    ['[::1]:9000', 'http://[::1]:9000', '[::1]:9000'],
    ['[0:0:0:0:0:0:0:1]:9000', 'http://[::1]:9000', '[::1]:9000'],
    ['https://api.internal:443', 'https://api.internal:443', 'api.internal:443'],
    ['H2C://[::1]:80/', 'h2c://[::1]:80', '[::1]:80'],
    ['app_web_1:8080', 'http://app_web_1:8080', 'app_web_1:8080'], // Docker Compose names
  ];
  it.each(accepted)('%j -> %s (id %s)', (text, url, id) => {
    expect(parseBackendUrl(text)).toMatchObject({ ok: true, value: { url, id } });
  });

  const refused: [string, RegExp][] = [
    ['ftp://a:1', /not an http:\/\/, https:\/\/ or h2c:\/\//],
    ['h2://a:1', /not an http:\/\/, https:\/\/ or h2c:\/\//],
    ['ftp://10.0.0.5:21', /not an http:\/\/, https:\/\/ or h2c:\/\//],
    ['http://a', /explicit port: http:\/\/host:port/], // the port is never guessed
    ['http://example.com', /explicit port/],
    ['https://api.internal', /explicit port/], // nor 443
    ['h2c://a', /explicit port: h2c:\/\/host:port/],
    ['h2c://10.0.0.5', /explicit port/], // h2c has no default port
    ['example.com', /explicit port: host:port/], // the bare form needs its port too
    ['https://u:p@a:1', /credentials/],
    ['http://u@a:1', /credentials/],
    ['http://u:p@10.0.0.5:8080', /credentials/],
    ['http://a:1/x', /path/],
    ['http://10.0.0.5:8080/api', /path/],
    ['http://10.0.0.5:8080?x=1', /path, query or fragment/],
    ['http://a:0', /not a port/],
    ['10.0.0.5:0', /not a port/],
    ['http://10.0.0.5:0', /not a port/],
    ['10.0.0.5:99999', /not a port/],
    ['http://h\t1:80', /whitespace or a control character/],
    ['10.0.0.5:80\x01', /whitespace or a control character/],
    ['10.0.0.5 :8080', /whitespace or a control character/],
    ['10.0.0.300:80', /not a valid host/],
    ['-web:80', /not a valid host/],
    ['', /empty/],
    ['http://', /not a valid host/],
  ];
  it.each(refused)('refuses %j', (text, why) => {
    const r = parseBackendUrl(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(why);
  });

  it.each([
    ['10.0.0.5', 8080, 'http://10.0.0.5:8080'],
    ['fd00::5', 80, 'http://[fd00::5]:80'],
    ['[fd00::5]', '80', 'http://[fd00::5]:80'],
    ['Web.Internal', 81, 'http://web.internal:81'],
  ])('from separate fields (Nerve, SkyDNS): %s and %j', (host, port, url) => {
    expect(backendFromFields(host, port)).toMatchObject({ ok: true, value: { url } });
  });
  it.each([
    ['', 80],
    [5, 80],
    ['10.0.0.5', 0],
    ['10.0.0.5', 80.5],
    ['10.0.0.5', 'http'],
    ['a b', 80],
  ])('refuses separate fields %j and %j', (host, port) => {
    expect(backendFromFields(host, port).ok).toBe(false);
  });
});

describe('servers: etcd endpoints and ZooKeeper connect strings, in the config and on the command line', () => {
  it.each([
    ['http://127.0.0.1:2379', 'http://127.0.0.1:2379'],
    ['https://etcd.internal:2379', 'https://etcd.internal:2379'],
    ['127.0.0.1:2379', 'http://127.0.0.1:2379'], // as etcdctl takes it
    ['[::1]:2379', 'http://[::1]:2379'],
  ])('etcd endpoint %s', (text, url) => {
    expect(parseEtcdEndpoint(text)).toEqual({ ok: true, value: url });
  });
  it.each(['e', 'ftp://a:1', 'http://a:1/v3', '127.0.0.1:0', 'a b:1', ''])('refuses etcd endpoint %j', (text) => {
    expect(parseEtcdEndpoint(text).ok).toBe(false);
  });
  it('a comma-separated --etcd list', () => {
    expect(parseEtcdEndpoints(' http://a:2379, b:2379 ,')).toEqual({ ok: true, value: ['http://a:2379', 'http://b:2379'] });
    expect(parseEtcdEndpoints(' , ')).toMatchObject({ ok: false, reason: /at least one endpoint/ });
    expect(parseEtcdEndpoints('http://a:2379,nope')).toMatchObject({ ok: false, reason: /"nope"/ });
  });
  it.each([
    ['127.0.0.1:2181', '127.0.0.1:2181'],
    ['zk1:2181, zk2:2181', 'zk1:2181,zk2:2181'],
    ['[::1]:2181', '[::1]:2181'],
  ])('ZooKeeper servers %j', (text, want) => {
    expect(parseServerList(text)).toEqual({ ok: true, value: want });
  });
  it.each(['zk1', 'zk1:2181,', 'zk1:0', 'zk1:99999', 'zk 1:2181'])('refuses ZooKeeper servers %j', (text) => {
    expect(parseServerList(text).ok).toBe(false);
  });
});

describe('backend ids: the same rule in the config, etcd keys, znodes and SkyDNS keys', () => {
  it.each(['web-1', '10.0.0.5:8080', '[::1]:80', 'i_1.a', 'ä'])('accepts %j', (id) => {
    expect(isBackendId(id)).toBe(true);
  });
  it.each(['', 'a/b', 'a b', 'a\tb', 'a\u0001b', 'a\u007f', undefined])('refuses %j', (id) => {
    expect(isBackendId(id)).toBe(false);
  });
});
