import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderJsonSchema, JSON_SCHEMA_PATH } from '../src/config/gen-schema.js';
import { checkConfigFile, loadConfigFile, parseConfig, parseServicesFile } from '../src/config/load.js';
import { ConfigError, ErrorCodes, formatIssue, type ConfigIssue } from '../src/core/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let dir = '';

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'drover-config-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Issues of a config that must fail to load. */
function issuesOf(text: string, file = 'drover.yaml'): readonly ConfigIssue[] {
  try {
    parseConfig(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected the config to be rejected');
}

const y = (lines: string[]): string => `${lines.join('\n')}\n`;

describe('valid configs', () => {
  it('an empty file is all defaults', () => {
    const c = parseConfig('', '');
    expect(c).toEqual({
      file: '',
      listen: [{ address: '127.0.0.1:8080', host: '127.0.0.1', port: 8080, redirectHttps: false, hsts: 0, limits: { maxHeaderBytes: 16384, maxHeaders: 100, maxUrlBytes: 8192, headersTimeout: 10_000, requestTimeout: 300_000, sendTimeout: 60_000, keepAliveTimeout: 60_000, maxConnections: 10_000 } }],
      trustedProxies: [],
      mergeSlashes: true,
      accessLog: 'stdout',
      shutdownGrace: 30_000,
      workers: 1,
      admin: { address: '127.0.0.1:9901', host: '127.0.0.1', port: 9901, tokenEnv: 'DROVER_ADMIN_TOKEN' },
      registry: {},
      services: [],
      routes: [],
    });
  });

  it('a minimal service gets every service default', () => {
    const c = parseConfig(
      y(['services:', '  web:', '    backends:', '      - url: http://127.0.0.1:9001', 'routes:', '  - match: {path_prefix: /}', '    service: web']),
      '',
    );
    expect(c.services).toEqual([
      {
        name: 'web',
        balancer: 'round_robin',
        health: { passive: { consecutiveFailures: 5, ejection: 30_000, maxEjectedPercent: 50 } },
        slowStart: 0,
        panicThreshold: 50,
        retries: 2,
        timeouts: { connect: 2000, responseHeaders: 30_000, idle: 60_000 },
        maxConns: 0,
        queue: { size: 0, timeout: 1000 },
        zoneAware: false,
        backends: [{ id: '127.0.0.1:9001', url: 'http://127.0.0.1:9001', weight: 1, draining: false }],
      },
    ]);
    expect(c.routes).toEqual([
      { index: 0, match: { pathPrefix: '/', headers: [] }, service: 'web', requestHeaders: { set: [], remove: [] } },
    ]);
  });

  it('the full contract example (with balancer: hash) resolves every key', () => {
    const file = path.join(dir, 'full', 'drover.yaml');
    mkdirSync(path.dirname(file), { recursive: true });
    const text = y([
      'listen:',
      '  - address: 127.0.0.1:8080',
      '  - address: "[::1]:0"',
      'trusted_proxies: [10.0.0.0/8, 192.168.1.1, "fd00::/8"]',
      'access_log: logs/access.jsonl',
      'shutdown_grace: 45s',
      'workers: auto',
      'admin:',
      '  address: 127.0.0.1:9901',
      '  token_env: DROVER_ADMIN_TOKEN',
      'registry:',
      '  file: services.yaml',
      '  etcd:',
      '    endpoints: [http://127.0.0.1:2379, https://10.0.0.2:2379]',
      '    prefix: /drover/services',
      '    layout: drover',
      '    username_env: ETCD_USER',
      '    password_env: ETCD_PASSWORD',
      '    tls: {ca: ca.pem, cert: c.pem, key: /etc/k.pem}',
      'services:',
      '  web:',
      '    balancer: hash',
      '    hash_key: header:X-User-Id',
      '    health:',
      '      active:',
      '        path: /healthz',
      '        interval: 2s',
      '        timeout: 1s',
      '        rise: 2',
      '        fall: 3',
      '        expect_status: 200-399',
      '      passive:',
      '        consecutive_failures: 5',
      '        ejection: 30s',
      '        max_ejected_percent: 50',
      '    slow_start: 1m30s',
      '    panic_threshold: 40',
      '    retries: 3',
      '    timeouts: {connect: 250ms, response_headers: 10s, idle: 2m}',
      '    max_conns: 32',
      '    queue: {size: 100, timeout: 500ms}',
      '    zone_aware: true',
      '    backends:',
      '      - {url: http://127.0.0.1:9001, weight: 1}',
      '      - {url: http://127.0.0.1:9002, weight: 3, id: b2, zone: a, draining: true}',
      '  tcp:',
      '    balancer: least_conn',
      '    health: {active: {tcp: true, expect_status: 204}}',
      'routes:',
      '  - match: {host: API.example.com, path_prefix: /v1, method: get, headers: {X-Env: prod, X-Version: 2}}',
      '    service: web',
      '    strip_prefix: /v1',
      '    request_headers: {set: {X-Env: prod}, remove: [X-Debug]}',
      '  - match: {path: /exact}',
      '    service: discovered-in-etcd',
      '  - match: {path_prefix: /}',
      '    service: web',
    ]);
    const c = parseConfig(text, file);
    const d = path.dirname(file);
    expect(c.file).toBe(file);
    expect(c.listen).toMatchObject([
      { address: '127.0.0.1:8080', host: '127.0.0.1', port: 8080 },
      { address: '[::1]:0', host: '::1', port: 0 },
    ]);
    expect(c.trustedProxies).toEqual(['10.0.0.0/8', '192.168.1.1', 'fd00::/8']);
    expect(c.accessLog).toBe(path.join(d, 'logs/access.jsonl'));
    expect(c.shutdownGrace).toBe(45_000);
    expect(c.workers).toBe('auto');
    expect(c.registry).toEqual({
      file: path.join(d, 'services.yaml'),
      etcd: {
        endpoints: ['http://127.0.0.1:2379', 'https://10.0.0.2:2379'],
        prefix: '/drover/services/',
        layout: 'drover',
        usernameEnv: 'ETCD_USER',
        passwordEnv: 'ETCD_PASSWORD',
        tls: { ca: path.join(d, 'ca.pem'), cert: path.join(d, 'c.pem'), key: '/etc/k.pem' },
      },
    });
    expect(c.services.map((s) => s.name)).toEqual(['web', 'tcp']);
    expect(c.services[0]).toEqual({
      name: 'web',
      balancer: 'hash',
      hashKey: { kind: 'header', name: 'x-user-id' },
      health: {
        active: { path: '/healthz', tcp: false, interval: 2000, timeout: 1000, rise: 2, fall: 3, expectStatus: { min: 200, max: 399 } },
        passive: { consecutiveFailures: 5, ejection: 30_000, maxEjectedPercent: 50 },
      },
      slowStart: 90_000,
      panicThreshold: 40,
      retries: 3,
      timeouts: { connect: 250, responseHeaders: 10_000, idle: 120_000 },
      maxConns: 32,
      queue: { size: 100, timeout: 500 },
      zoneAware: true,
      backends: [
        { id: '127.0.0.1:9001', url: 'http://127.0.0.1:9001', weight: 1, draining: false },
        { id: 'b2', url: 'http://127.0.0.1:9002', weight: 3, zone: 'a', draining: true },
      ],
    });
    expect(c.services[1]?.health.active).toEqual({ tcp: true, interval: 2000, timeout: 1000, rise: 2, fall: 3, expectStatus: { min: 204, max: 204 } });
    expect(c.routes[0]).toEqual({
      index: 0,
      match: {
        host: 'api.example.com',
        pathPrefix: '/v1',
        method: 'GET',
        headers: [
          { name: 'x-env', value: 'prod' },
          { name: 'x-version', value: '2' },
        ],
      },
      service: 'web',
      stripPrefix: '/v1',
      requestHeaders: { set: [{ name: 'X-Env', value: 'prod' }], remove: ['x-debug'] },
    });
    expect(c.routes.map((r) => r.index)).toEqual([0, 1, 2]);
  });

  it.each([
    ['drover', undefined, '/drover/services/'],
    ['traefik', undefined, 'traefik/'],
    ['drover', 'custom', 'custom/'],
    ['traefik', 'tr/', 'tr/'],
  ])('etcd layout %s with prefix %s -> %s', (layout, prefix, want) => {
    const c = parseConfig(y(['registry:', '  etcd:', '    endpoints: [http://127.0.0.1:2379]', `    layout: ${layout}`, ...(prefix === undefined ? [] : [`    prefix: ${prefix}`])]), '');
    expect(c.registry.etcd?.prefix).toBe(want);
  });

  it.each([
    ['hash', undefined, { kind: 'ip' }],
    ['hash', 'path', { kind: 'path' }],
    ['hash', 'cookie:Session', { kind: 'cookie', name: 'Session' }],
    ['round_robin', undefined, undefined],
  ])('balancer %s hash_key %s -> %j', (balancer, key, want) => {
    const c = parseConfig(y(['services:', '  s:', `    balancer: ${balancer}`, ...(key === undefined ? [] : [`    hash_key: ${key}`])]), '');
    expect(c.services[0]?.hashKey).toEqual(want);
  });

  it('services keep file order even with numeric-looking names', () => {
    const c = parseConfig(y(['services:', '  zeta: {}', '  "10": {}', '  alpha: {}']), '');
    expect(c.services.map((s) => s.name)).toEqual(['zeta', '10', 'alpha']);
  });

  it('a route may name a service only the registry file has', () => {
    const file = path.join(dir, 'regfile', 'drover.yaml');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(path.join(dir, 'regfile', 'members.yaml'), y(['api:', '  backends: [{url: "http://127.0.0.1:9100"}]']));
    const c = parseConfig(y(['registry: {file: members.yaml}', 'routes:', '  - {match: {}, service: api}']), file);
    expect(c.routes[0]?.service).toBe('api');
  });

  it('YAML anchors and merge keys work', () => {
    const c = parseConfig(y(['services:', '  a: &a {retries: 5, balancer: p2c}', '  b:', '    <<: *a', '    retries: 1']), '');
    expect(c.services.map((s) => [s.name, s.balancer, s.retries])).toEqual([
      ['a', 'p2c', 5],
      ['b', 'p2c', 1],
    ]);
  });
});

describe('backends follow the one value grammar (src/config/values.ts), as registry values do', () => {
  it('bare host:port (http), fractional weights and weights up to 1 000 000 are accepted', () => {
    const c = parseConfig(
      y(['services:', '  web:', '    backends:', '      - {url: "10.0.0.5:8080", weight: 0.5}', '      - {url: "http://10.0.0.6:8080", weight: 65535}', '      - {url: "h2c://10.0.0.7:50051", weight: 1000000}']),
      '',
    );
    expect(c.services[0]?.backends.map((b) => [b.id, b.url, b.weight])).toEqual([
      ['10.0.0.5:8080', 'http://10.0.0.5:8080', 0.5],
      ['10.0.0.6:8080', 'http://10.0.0.6:8080', 65535],
      ['10.0.0.7:50051', 'h2c://10.0.0.7:50051', 1_000_000],
    ]);
  });

  it.each([
    [0, /weight must be > 0/],
    [-1, /weight must be > 0/],
    [1_000_001, /1000000/],
  ])('weight %d is refused', (weight, why) => {
    const issues = issuesOf(y(['services:', '  web:', '    backends:', `      - {url: "10.0.0.5:8080", weight: ${weight}}`]));
    expect(issues.map((i) => i.path)).toEqual(['services.web.backends.0.weight']);
    expect(issues[0]?.message).toMatch(why);
  });
});

describe('the result is deeply frozen', () => {
  it('cannot be changed at any depth', () => {
    const c = parseConfig(y(['services:', '  web:', '    backends: [{url: "http://127.0.0.1:1"}]', 'routes: [{match: {headers: {a: b}}, service: web}]']), '');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.listen[0])).toBe(true);
    expect(Object.isFrozen(c.services[0]?.backends)).toBe(true);
    expect(Object.isFrozen(c.services[0]?.backends[0])).toBe(true);
    expect(Object.isFrozen(c.services[0]?.timeouts)).toBe(true);
    expect(Object.isFrozen(c.routes[0]?.match.headers[0])).toBe(true);
    expect(() => {
      (c.services[0]?.backends[0] as { weight: number }).weight = 9;
    }).toThrow(TypeError);
    expect(() => {
      (c.services as unknown as unknown[]).push({});
    }).toThrow(TypeError);
  });
});

interface Want {
  /** 1-based line, and the text the reported column must point at (first occurrence on that line) */
  readonly line: number;
  readonly token: string;
  readonly path: string;
  readonly message: RegExp;
  readonly code?: string;
}

describe('errors are located and all reported', () => {
  const cases: { name: string; text: string[]; want: Want[] }[] = [
    {
      name: 'unknown key, with a suggestion',
      text: ['services:', '  web:', '    health:', '      active:', '        path: /h', '        intervall: 2s'],
      want: [{ line: 6, token: 'intervall', path: 'services.web.health.active.intervall', message: /^unknown key "intervall" \(did you mean "interval"\?\)$/ }],
    },
    {
      name: 'unknown top-level key',
      text: ['listen: []', 'servces: {}'],
      want: [
        { line: 1, token: '[]', path: 'listen', message: /^needs at least one listener$/ },
        { line: 2, token: 'servces', path: 'servces', message: /did you mean "services"/ },
      ],
    },
    {
      name: 'bad duration',
      text: ['shutdown_grace: 5 seconds'],
      want: [{ line: 1, token: '5 seconds', path: 'shutdown_grace', message: /^"5 seconds" is not a duration/ }],
    },
    {
      name: 'duration given as a number',
      text: ['services:', '  web:', '    slow_start: 5'],
      want: [{ line: 3, token: '5', path: 'services.web.slow_start', message: /^expected text, got number 5$/ }],
    },
    {
      name: 'bad enum',
      text: ['services:', '  web:', '    balancer: leastconn'],
      want: [{ line: 3, token: 'leastconn', path: 'services.web.balancer', message: /^"leastconn" is not one of: .*least_conn.*did you mean "least_conn"/ }],
    },
    {
      name: 'bad backend urls',
      text: ['services:', '  web:', '    backends:', '      - url: ftp://10.0.0.1:443', '      - {url: "http://10.0.0.1"}'],
      want: [
        { line: 4, token: 'ftp', path: 'services.web.backends.0.url', message: /is not an http:\/\/, https:\/\/ or h2c:\/\/ URL/ },
        { line: 5, token: '"http', path: 'services.web.backends.1.url', message: /explicit port/ },
      ],
    },
    {
      name: 'hash_key with a bad form',
      text: ['services:', '  web:', '    balancer: random', '    hash_key: body'],
      want: [{ line: 4, token: 'body', path: 'services.web.hash_key', message: /"body" is not a hash key/ }],
    },
    {
      name: 'route to an unknown service',
      text: ['services:', '  web: {}', 'routes:', '  - match: {path_prefix: /}', '    service: wbe'],
      want: [{ line: 5, token: 'wbe', path: 'routes.0.service', message: /unknown service "wbe"/, code: ErrorCodes.CONFIG_UNKNOWN_SERVICE }],
    },
    {
      name: 'missing key reported at the parent map',
      text: ['routes:', '  - match: {path_prefix: /}'],
      want: [{ line: 2, token: 'match', path: 'routes.0.service', message: /^missing required key "service"$/ }],
    },
    {
      name: 'three errors in one file, all reported, in file order',
      text: ['workers: 0', 'services:', '  web:', '    retries: 11', '    timeouts: {connect: fast}'],
      want: [
        { line: 1, token: '0', path: 'workers', message: /^must be at least 1$/ },
        { line: 4, token: '11', path: 'services.web.retries', message: /^must be at most 10$/ },
        { line: 5, token: 'fast', path: 'services.web.timeouts.connect', message: /"fast" is not a duration/ },
      ],
    },
    {
      name: 'active checks need exactly one of path and tcp',
      text: ['services:', '  a: {health: {active: {interval: 1s}}}', '  b: {health: {active: {path: /h, tcp: true}}}', '  c: {health: {active: {path: healthz}}}'],
      want: [
        { line: 2, token: '{interval', path: 'services.a.health.active', message: /need either path/ },
        { line: 3, token: 'true', path: 'services.b.health.active.tcp', message: /not both/ },
        { line: 4, token: 'healthz', path: 'services.c.health.active.path', message: /must start with "\/"/ },
      ],
    },
    {
      name: 'duplicate backend ids',
      text: ['services:', '  web:', '    backends:', '      - url: http://a:1', '      - url: http://A:1', '      - {url: http://b:1, id: x}', '      - {url: http://c:1, id: x}'],
      want: [
        { line: 5, token: 'http', path: 'services.web.backends.1.url', message: /duplicate backend id "a:1"/ },
        { line: 7, token: 'x}', path: 'services.web.backends.3.id', message: /duplicate backend id "x"/ },
      ],
    },
    {
      name: 'bad service name, bad address, bad cidr, bad status',
      text: ['listen: [{address: "localhost:99999"}]', 'trusted_proxies: [10.0.0.0/33]', 'services:', '  "a b": {}', '  ok: {health: {active: {tcp: true, expect_status: 600}}}'],
      want: [
        { line: 1, token: '"localhost', path: 'listen.0.address', message: /not a port/ },
        { line: 2, token: '10.0', path: 'trusted_proxies.0', message: /prefix length/ },
        { line: 4, token: '"a b"', path: 'services.a b', message: /not a valid service name/ },
        { line: 5, token: '600', path: 'services.ok.health.active.expect_status', message: /^must be at most 599$/ },
      ],
    },
    {
      name: 'empty section',
      text: ['admin:', 'workers: 2'],
      want: [{ line: 1, token: 'admin', path: 'admin', message: /^expected a map, got nothing$/ }],
    },
    {
      name: 'etcd endpoints and pairs',
      text: ['registry:', '  etcd:', '    endpoints: []', '    username_env: U', '    tls: {cert: c.pem}'],
      want: [
        { line: 3, token: 'endpoints', path: 'registry.etcd', message: /username_env and password_env go together/ },
        { line: 3, token: '[]', path: 'registry.etcd.endpoints', message: /at least one endpoint/ },
        { line: 5, token: '{cert', path: 'registry.etcd.tls', message: /cert and key go together/ },
      ],
    },
    {
      name: 'route match: path and path_prefix together, bad host',
      text: ['services: {web: {}}', 'routes:', '  - match: {path: /a, path_prefix: /b, host: "bad host"}', '    service: web'],
      want: [
        { line: 3, token: '/a', path: 'routes.0.match.path', message: /either path \(exact\) or path_prefix/ },
        { line: 3, token: '"bad host"', path: 'routes.0.match.host', message: /not a host name/ },
      ],
    },
    {
      name: 'duplicate keys are a YAML error',
      text: ['workers: 1', 'workers: 2'],
      want: [{ line: 2, token: 'workers', path: '', message: /^YAML syntax: Map keys must be unique/, code: ErrorCodes.CONFIG_SYNTAX }],
    },
    {
      name: 'acme: bad directory, wildcard domain, bad email',
      text: ['acme:', '  directory: ftp://acme.test/dir', '  email: nobody', '  domains: [example.com, "*.example.com"]'],
      want: [
        { line: 2, token: 'ftp:', path: 'acme.directory', message: /must be an https:\/\/ URL/ },
        { line: 3, token: 'nobody', path: 'acme.email', message: /is not an e-mail address/ },
        { line: 4, token: '"*.example.com"', path: 'acme.domains.1', message: /not a DNS name http-01 can validate/ },
      ],
    },
    {
      name: 'acme without a plain listener',
      text: ['listen: [{address: 127.0.0.1:8443, tls: {cert: c.pem, key: k.pem}}]', 'acme:', '  directory: https://acme.test/dir', '  domains: [a.test]'],
      want: [{ line: 3, token: 'directory', path: 'acme', message: /acme needs a listener without tls/ }],
    },
    {
      name: 'acme: domains required and not empty',
      text: ['acme:', '  directory: https://acme.test/dir', '  domains: []'],
      want: [{ line: 3, token: '[]', path: 'acme.domains', message: /needs at least one domain/ }],
    },
    {
      name: 'services.tls: unknown key and a bad server_name',
      text: ['services:', '  web:', '    tls: {server_name: "a b", verfy: false}'],
      want: [
        { line: 3, token: '"a b"', path: 'services.web.tls.server_name', message: /is not a host name/ },
        { line: 3, token: 'verfy', path: 'services.web.tls.verfy', message: /unknown key "verfy" \(did you mean "verify"\?\)/ },
      ],
    },
    {
      name: 'document that is not a map',
      text: ['- a', '- b'],
      want: [{ line: 1, token: '- a', path: '', message: /^expected a map, got a list$/ }],
    },
  ];

  it.each(cases)('$name', ({ text, want }) => {
    const issues = issuesOf(y(text));
    const col = (w: Want): number => {
      const c = (text[w.line - 1] ?? '').indexOf(w.token);
      if (c < 0) throw new Error(`bad test: ${w.token} not on line ${w.line}`);
      return c + 1;
    };
    expect(issues.map((i) => `${i.line}:${i.col} ${i.path}`)).toEqual(want.map((w) => `${w.line}:${col(w)} ${w.path}`));
    issues.forEach((issue, n) => {
      const w = want[n];
      expect(issue.message).toMatch(w?.message ?? /never/);
      expect(issue.code).toBe(w?.code ?? ErrorCodes.CONFIG_INVALID);
      expect(issue.file).toBe('drover.yaml');
    });
  });

  it('YAML syntax errors: all of them, each on its line, and no schema noise', () => {
    const issues = issuesOf(y(['services:', '  web: {balancer: p2c', 'routes: [', '  - {service: web', 'bad: : :']));
    expect(issues.length).toBeGreaterThan(1);
    for (const i of issues) {
      expect(i.line).toBeGreaterThan(0);
      expect(i.col).toBeGreaterThan(0);
      expect(i.message).toMatch(/^YAML syntax: /);
      expect(i.message).not.toMatch(/at line \d+/);
      expect(i.code).toBe(ErrorCodes.CONFIG_SYNTAX);
    }
    expect(new Set(issues.map((i) => i.line)).size).toBeGreaterThan(1);
  });

  it('ConfigError carries every issue and prints them as FILE:LINE:COL: path: message', () => {
    let caught: unknown;
    try {
      parseConfig(y(['workers: none', 'shutdown_grace: soon']), 'conf/x.yaml');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const e = caught as ConfigError;
    expect(e.issues).toHaveLength(2);
    expect(e.message.split('\n')).toEqual([
      'conf/x.yaml:1:10: workers: expected a positive whole number or "auto"',
      'conf/x.yaml:2:17: shutdown_grace: "soon" is not a duration; write e.g. 250ms, 5s, 2m, 1h or 1m30s',
    ]);
    expect(e.code).toBe(ErrorCodes.CONFIG_INVALID);
  });

  it('with a registry file, a route to a service in neither place is refused, naming the file', () => {
    const file = path.join(dir, 'regfile2', 'drover.yaml');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(path.join(dir, 'regfile2', 'members.yaml'), y(['services:', '  api: {backends: []}']));
    const issues = issuesOf(y(['registry: {file: members.yaml}', 'routes:', '  - {match: {}, service: api}', '  - {match: {}, service: web}']), file);
    expect(issues.map(formatIssue)).toEqual([`${file}:4:26: routes.1.service: route to unknown service "web": not defined under services: or in registry file members.yaml`]);
  });

  it('with a missing registry file, the route error says why', () => {
    const issues = issuesOf(y(['registry: {file: nowhere.yaml}', 'routes: [{match: {}, service: api}]']), path.join(dir, 'x.yaml'));
    expect(issues).toHaveLength(1);
    expect(issues[0]?.message).toMatch(/registry file nowhere.yaml could not be read: ENOENT/);
  });

  it('with etcd, any service name is accepted at load time', () => {
    const c = parseConfig(y(['registry: {etcd: {endpoints: [http://127.0.0.1:2379]}}', 'routes: [{match: {}, service: later}]']), '');
    expect(c.routes[0]?.service).toBe('later');
  });
});

describe('loadConfigFile and checkConfigFile', () => {
  it('loads a file and resolves paths against its directory', async () => {
    const file = path.join(dir, 'load', 'drover.yaml');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, y(['access_log: ./a.log', 'registry: {file: s.yaml}']));
    const c = await loadConfigFile(file);
    expect(c.file).toBe(file);
    expect(c.accessLog).toBe(path.join(dir, 'load', 'a.log'));
    expect(c.registry.file).toBe(path.join(dir, 'load', 's.yaml'));
  });

  it('a missing file is a ConfigError with E_CONFIG_READ', async () => {
    const missing = path.join(dir, 'missing.yaml');
    await expect(loadConfigFile(missing)).rejects.toMatchObject({ code: ErrorCodes.CONFIG_READ, issues: [{ file: missing, line: 0, col: 0 }] });
    const issues = await checkConfigFile(missing);
    expect(issues.map((i) => i.code)).toEqual([ErrorCodes.CONFIG_READ]);
  });

  it('check reports missing referenced files at the line of their key, plus the registry file\'s own issues', async () => {
    const d = path.join(dir, 'check');
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'ca.pem'), 'x');
    writeFileSync(path.join(d, 'members.yaml'), y(['web:', '  backends:', '    - url: http://127.0.0.1:1', '    - url: ftp://x']));
    const file = path.join(d, 'drover.yaml');
    writeFileSync(
      file,
      y([
        'access_log: no/such/dir/a.log',
        'listen:',
        '  - address: 127.0.0.1:0',
        '    tls: {cert: cert.pem, key: key.pem}',
        'registry:',
        '  file: members.yaml',
        '  etcd:',
        '    endpoints: [http://127.0.0.1:2379]',
        '    tls:',
        '      ca: ca.pem',
        '      cert: nope.pem',
        '      key: nope-key.pem',
      ]),
    );
    const issues = await checkConfigFile(file);
    const lines = issues.map((i) => `${path.basename(i.file)}:${i.line}:${i.col} ${i.path} ${i.code}`);
    expect(lines).toEqual([
      `drover.yaml:1:13 access_log ${ErrorCodes.CONFIG_MISSING_FILE}`,
      `drover.yaml:4:17 listen.0.tls.cert ${ErrorCodes.CONFIG_MISSING_FILE}`,
      `drover.yaml:4:32 listen.0.tls.key ${ErrorCodes.CONFIG_MISSING_FILE}`,
      `drover.yaml:11:13 registry.etcd.tls.cert ${ErrorCodes.CONFIG_MISSING_FILE}`,
      `drover.yaml:12:12 registry.etcd.tls.key ${ErrorCodes.CONFIG_MISSING_FILE}`,
      `members.yaml:4:12 web.backends.1.url ${ErrorCodes.CONFIG_INVALID}`,
    ]);
    expect(issues.find((i) => i.path === 'access_log')?.message).toBe('directory no/such/dir does not exist');
  });

  it('check of a valid file is empty', async () => {
    const d = path.join(dir, 'check-ok');
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'members.yaml'), '');
    const file = path.join(d, 'drover.yaml');
    writeFileSync(file, y(['registry: {file: members.yaml}', 'services: {web: {backends: [{url: "http://127.0.0.1:9001"}]}}', 'routes: [{match: {}, service: web}]']));
    expect(await checkConfigFile(file)).toEqual([]);
  });
});

describe('parseServicesFile', () => {
  it.each([
    ['services: map', ['services:', '  web:', '    backends:', '      - url: http://127.0.0.1:9001', '      - {url: http://127.0.0.1:9002, weight: 2, zone: b, id: two}', '  api: {}']],
    ['bare map', ['web:', '  backends:', '    - url: http://127.0.0.1:9001', '    - {url: http://127.0.0.1:9002, weight: 2, zone: b, id: two}', 'api: {}']],
  ])('accepts the %s form', (_name, text) => {
    const r = parseServicesFile(y(text), 'members.yaml');
    expect(r.issues).toEqual([]);
    expect([...r.services.entries()]).toEqual([
      [
        'web',
        [
          { id: '127.0.0.1:9001', url: 'http://127.0.0.1:9001', weight: 1, draining: false, source: 'file' },
          { id: 'two', url: 'http://127.0.0.1:9002', weight: 2, zone: 'b', draining: false, source: 'file' },
        ],
      ],
      ['api', []],
    ]);
    expect(Object.isFrozen(r.services.get('web')?.[0])).toBe(true);
  });

  it.each([['', 0], ['# nothing yet\n', 0], ['services:\n', 0]])('an empty file (%j) is an empty registry', (text, n) => {
    const r = parseServicesFile(text, 'm.yaml');
    expect(r.issues).toEqual([]);
    expect(r.services.size).toBe(n);
  });

  it.each([
    {
      name: 'bad entries are located; good services are still returned',
      text: ['services:', '  web:', '    backends:', '      - url: http://127.0.0.1:1', '      - url: http://x', '  api:', '    backends: [{url: "http://127.0.0.1:2"}]'],
      want: ['m.yaml:5:14: services.web.backends.1.url: "http://x" needs an explicit port: http://host:port'],
      services: ['api'],
    },
    {
      name: 'service settings are not read from a registry file',
      text: ['web:', '  balancer: p2c', '  backends: []'],
      want: ['m.yaml:2:3: web.balancer: "balancer" is not read from a registry file (members only); set it under services: in drover.yaml'],
      services: [],
    },
    {
      name: 'typo in a backend key',
      text: ['web:', '  backends:', '    - {url: "http://a:1", wieght: 2}'],
      want: ['m.yaml:3:27: web.backends.0.wieght: unknown key "wieght" (did you mean "weight"?)'],
      services: [],
    },
    {
      name: 'not a map',
      text: ['- web'],
      want: ['m.yaml:1:1: (root): expected a map of services, got a list'],
      services: [],
    },
    {
      name: 'syntax error',
      text: ['web: {backends: ['],
      want: [/^m\.yaml:\d+:\d+: \(root\): YAML syntax: /],
      services: [],
    },
  ])('$name', ({ text, want, services }) => {
    const r = parseServicesFile(y(text), 'm.yaml');
    const got = r.issues.map(formatIssue);
    if (want[0] instanceof RegExp) {
      expect(got.length).toBeGreaterThan(0);
      for (const g of got) expect(g).toMatch(want[0]);
    } else {
      expect(got).toEqual(want);
    }
    expect([...r.services.keys()]).toEqual(services);
  });
});

describe('JSON Schema', () => {
  it('the committed config/drover.schema.json is what the zod schema generates', () => {
    const committed = readFileSync(path.join(root, JSON_SCHEMA_PATH), 'utf8');
    expect(committed).toBe(renderJsonSchema());
  });

  it('describes keys, keeps defaults on the input side and forbids unknown keys', () => {
    const s = JSON.parse(renderJsonSchema()) as {
      $schema: string;
      title: string;
      additionalProperties: boolean;
      required?: string[];
      properties: Record<string, { default?: unknown; description?: string; pattern?: string }>;
    };
    expect(s.$schema).toMatch(/json-schema\.org/);
    expect(s.title).toMatch(/drover/);
    expect(s.additionalProperties).toBe(false);
    expect(s.required ?? []).toEqual([]);
    expect(s.properties['shutdown_grace']).toMatchObject({ default: '30s' });
    expect(s.properties['shutdown_grace']?.description).toMatch(/SIGTERM/);
    expect(new RegExp(s.properties['shutdown_grace']?.pattern ?? '^$').test('1m30s')).toBe(true);
  });
});

describe('the contract example', () => {
  // Section 2 of the contract, verbatim: users copy it, outside tests load it.
  const example = `
listen:
  - address: 127.0.0.1:8080
trusted_proxies: []
access_log: stdout
shutdown_grace: 30s
workers: 1
admin:
  address: 127.0.0.1:9901
  token_env: DROVER_ADMIN_TOKEN
registry:
  etcd:
    endpoints: [http://127.0.0.1:2379]
    prefix: /drover/services/
    layout: drover
    username_env: ETCD_USER
    password_env: ETCD_PASSWORD
services:
  web:
    balancer: round_robin
    hash_key: header:x-user-id
    health:
      active:
        path: /healthz
        interval: 2s
        timeout: 1s
        rise: 2
        fall: 3
        expect_status: 200-399
      passive:
        consecutive_failures: 5
        ejection: 30s
        max_ejected_percent: 50
    slow_start: 0s
    panic_threshold: 50
    retries: 2
    timeouts: {connect: 2s, response_headers: 30s, idle: 60s}
    backends:
      - {url: http://127.0.0.1:9001, weight: 1}
routes:
  - match: {host: api.example.com, path_prefix: /v1}
    service: web
    strip_prefix: /v1
    request_headers: {set: {X-Env: prod}, remove: [X-Debug]}
  - match: {path_prefix: /}
    service: web
`;
  it('loads, with hash_key kept out of a round_robin service', () => {
    const c = parseConfig(example, 'drover.yaml');
    const web = c.services[0];
    expect(web?.balancer).toBe('round_robin');
    expect(web?.hashKey).toBeUndefined();
    expect(c.routes.map((r) => r.service)).toEqual(['web', 'web']);
    expect(c.routes[0]?.stripPrefix).toBe('/v1');
  });
});

describe('upstream TLS and ACME sections', () => {
  it('resolve paths against the config file, read the CA, and default verify and storage', () => {
    const d = mkdtempSync(path.join(tmpdir(), 'drover-cfg-tls-'));
    try {
      writeFileSync(path.join(d, 'ca.pem'), 'PEM TEXT');
      const file = path.join(d, 'drover.yaml');
      const c = parseConfig(
        ['acme:', '  directory: https://acme.test/dir', '  domains: [Example.COM]', 'services:', '  web:', '    tls: {ca: ca.pem, server_name: api.internal}', '    backends: [{url: "https://10.0.0.1:8443"}]'].join('\n'),
        file,
      );
      expect(c.acme).toEqual({ directory: 'https://acme.test/dir', domains: ['example.com'], storage: path.join(d, 'acme') });
      expect(c.services[0]?.tls).toEqual({ ca: path.join(d, 'ca.pem'), caPem: ['PEM TEXT'], serverName: 'api.internal', verify: true });
      expect(c.services[0]?.health.active).toBeUndefined();
      expect(c.services[0]?.backends[0]?.url).toBe('https://10.0.0.1:8443');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
