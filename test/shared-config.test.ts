/**
 * Shared config in etcd, the pure part: a snapshot of keys -> validated routes and services with
 * located issues (the key and the file's dotted path), and the merge after the local file.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { describeConfig, mergeSharedConfig, parseSharedConfig, type SharedSnapshot } from '../src/config/shared.js';
import { formatIssue } from '../src/core/errors.js';

const P = '/drover/config/';

function snap(values: Record<string, string>, revision = '7'): SharedSnapshot {
  return { prefix: P, revision, values: new Map(Object.entries(values).map(([k, v]) => [`${P}${k}`, v])) };
}

function issuesOf(values: Record<string, string>): string[] {
  const r = parseSharedConfig(snap(values));
  if (r.ok) throw new Error('expected issues');
  return r.reason.map(formatIssue);
}

describe('parseSharedConfig', () => {
  it('reads routes (YAML) and services (YAML or JSON), resolved like the file', () => {
    const r = parseSharedConfig(
      snap({
        routes: '- match: {host: API.example.com, path_prefix: /v1}\n  service: api\n  strip_prefix: /v1\n- match: {}\n  service: web\n',
        'services/api': '{"balancer":"least_conn","retries":1,"health":{"active":{"path":"/healthz","interval":"5s"}}}',
        'services/web': 'balancer: p2c\nbackends:\n  - {url: "http://127.0.0.1:9001", weight: 2}\n',
      }),
    );
    if (!r.ok) throw new Error(`unexpected issues: ${r.reason.map(formatIssue).join('; ')}`);
    const c = r.value;
    expect(c.revision).toBe('7');
    expect(c.routes.map((x) => [x.index, x.service, x.match.host, x.match.pathPrefix, x.stripPrefix])).toEqual([
      [0, 'api', 'api.example.com', '/v1', '/v1'],
      [1, 'web', undefined, undefined, undefined],
    ]);
    expect(c.services.map((s) => [s.name, s.balancer, s.retries, s.backends.map((b) => [b.url, b.weight])])).toEqual([
      ['api', 'least_conn', 1, []],
      ['web', 'p2c', 2, [['http://127.0.0.1:9001', 2]]],
    ]);
    expect(c.services[0]?.health.active?.interval).toBe(5000);
  });

  it('JSON values (what push writes, parsed on a fast path) and YAML values yield the same config', () => {
    const routes = [{ match: { host: 'a.example.com', headers: { 'X-Env': 'prod' } }, service: 'web', request_headers: { set: { 'X-A': 1 } } }];
    const web = { balancer: 'hash', hash_key: 'header:X-User', timeouts: { connect: '250ms' }, backends: [{ url: 'http://127.0.0.1:9001' }] };
    const asJson = parseSharedConfig(snap({ routes: JSON.stringify(routes, null, 2), 'services/web': JSON.stringify(web) }));
    const asYaml = parseSharedConfig(
      snap({
        routes: '- match: {host: a.example.com, headers: {X-Env: prod}}\n  service: web\n  request_headers: {set: {X-A: 1}}\n',
        'services/web': 'balancer: hash\nhash_key: header:X-User\ntimeouts: {connect: 250ms}\nbackends: [{url: "http://127.0.0.1:9001"}]\n',
      }),
    );
    expect(asJson.ok).toBe(true);
    expect(asJson).toEqual(asYaml);
    // an invalid JSON value is still reported with its key and path
    expect(issuesOf({ 'services/web': JSON.stringify({ ...web, balancer: 'hsh' }) })).toEqual([
      '/drover/config/services/web: services.web.balancer: "hsh" is not one of: round_robin, least_conn, p2c, random, hash, ewma (did you mean "hash"?)',
    ]);
  });

  it('an empty prefix, an empty routes value and an empty service are valid (defaults)', () => {
    expect(parseSharedConfig(snap({}))).toMatchObject({ ok: true, value: { routes: [] } });
    const r = parseSharedConfig(snap({ routes: '', 'services/x': '' }));
    if (!r.ok) throw new Error('expected a config');
    expect(r.value.routes).toEqual([]);
    expect(r.value.services.map((s) => [s.name, s.balancer])).toEqual([['x', 'round_robin']]);
  });

  // Every problem at once, each as `KEY: path: message`, in key order.
  const invalid: [string, Record<string, string>, string[]][] = [
    [
      'schema errors in two keys',
      { routes: '- match: {path_prefix: api}\n  service: api\n', 'services/api': 'balancer: leastconn\nretrys: 2\n' },
      [
        '/drover/config/routes: routes.0.match.path_prefix: "api" must start with "/" (no spaces, query or fragment)',
        '/drover/config/services/api: services.api.balancer: "leastconn" is not one of: round_robin, least_conn, p2c, random, hash, ewma (did you mean "least_conn"?)',
        '/drover/config/services/api: services.api.retrys: unknown key "retrys" (did you mean "retries"?)',
      ],
    ],
    ['routes not a list', { routes: 'service: web\n' }, ['/drover/config/routes: routes: expected a list, got a map']],
    ['YAML syntax', { 'services/web': 'balancer: [p2c\n' }, []],
    ['unknown key', { other: 'x' }, ['/drover/config/other: (root): unknown key under /drover/config/: expected /drover/config/routes or /drover/config/services/<name>']],
    ['nested service key', { 'services/a/b': '{}' }, ['/drover/config/services/a/b: (root): unknown key under /drover/config/: expected /drover/config/routes or /drover/config/services/<name>']],
    ['bad service name', { 'services/-bad': '{}' }, ['/drover/config/services/-bad: services.-bad: "-bad" is not a valid service name (letters, digits, ".", "_", "-"; starts with a letter or digit)']],
  ];
  for (const [name, values, want] of invalid) {
    it(`refuses the whole snapshot: ${name}`, () => {
      const got = issuesOf(values);
      // YAML parser wording varies by version: compare the located prefix for syntax errors.
      if (name === 'YAML syntax') expect(got[0]).toMatch(/^\/drover\/config\/services\/web: \(root\): YAML syntax: /);
      else expect(got).toEqual(want);
    });
  }

  it('issues keep the line and column inside the value', () => {
    const r = parseSharedConfig(snap({ routes: '- match: {}\n  service: web\n- match: {path: nope}\n  service: web\n' }));
    expect(r.ok ? [] : r.reason.map((i) => [i.key, i.path, i.line, i.col])).toEqual([['/drover/config/routes', 'routes.1.match.path', 3, 17]]);
  });
});

describe('mergeSharedConfig', () => {
  const local = parseConfig(
    'services:\n  web: {balancer: least_conn}\nroutes:\n  - match: {path_prefix: /local}\n    service: web\n',
    '',
  );
  const parsed = parseSharedConfig(
    snap({ routes: '- match: {path_prefix: /shared}\n  service: api\n- match: {}\n  service: web\n', 'services/api': '{}', 'services/web': 'balancer: random\n' }, '42'),
  );
  if (!parsed.ok) throw new Error('expected a config');
  const shared = parsed.value;

  it("puts etcd's routes after the file's (re-indexed) and keeps the file's services when both define one", () => {
    const { config, shadowed } = mergeSharedConfig(local, shared);
    expect(config.routes.map((r) => [r.index, r.match.pathPrefix, r.service])).toEqual([
      [0, '/local', 'web'],
      [1, '/shared', 'api'],
      [2, undefined, 'web'],
    ]);
    expect(config.services.map((s) => [s.name, s.balancer])).toEqual([
      ['web', 'least_conn'],
      ['api', 'round_robin'],
    ]);
    expect(shadowed).toEqual(['web']);
    expect(config.origin).toEqual({ routes: ['file', 'etcd', 'etcd'], services: { web: 'file', api: 'etcd' }, etcd: { prefix: P, revision: '42' } });
    expect(Object.isFrozen(config.routes)).toBe(true);
  });

  it('describeConfig names the source of every route and service and the revision in force', () => {
    const d = describeConfig(mergeSharedConfig(local, shared).config) as {
      sources: unknown;
      routes: { source: string }[];
      services: { name: string; source: string }[];
      origin?: unknown;
    };
    expect(d.sources).toEqual({ file: '', etcd: { prefix: P, revision: '42' } });
    expect(d.routes.map((r) => r.source)).toEqual(['file', 'etcd', 'etcd']);
    expect(d.services.map((s) => [s.name, s.source])).toEqual([
      ['web', 'file'],
      ['api', 'etcd'],
    ]);
    expect(d.origin).toBeUndefined();
    expect((describeConfig(local) as { sources: unknown }).sources).toEqual({ file: '', etcd: null });
  });
});

describe('registry.etcd.config_prefix', () => {
  const cases: [string, string | undefined][] = [
    ['{endpoints: [http://127.0.0.1:2379], config_prefix: /drover/config}', undefined],
    ['{endpoints: [http://127.0.0.1:2379], config_prefix: /drover/services/cfg/}', 'registry.etcd.config_prefix: "/drover/services/cfg/" overlaps the members prefix "/drover/services/"; use a separate prefix such as /drover/config/'],
    ['{endpoints: [http://127.0.0.1:2379], layout: traefik, config_prefix: traefik}', 'registry.etcd.config_prefix: "traefik" overlaps the members prefix "traefik/"; use a separate prefix such as /drover/config/'],
    ['{endpoints: [http://127.0.0.1:2379], prefix: /a/, config_prefix: /}', 'registry.etcd.config_prefix: "/" overlaps the members prefix "/a/"; use a separate prefix such as /drover/config/'],
  ];
  for (const [etcd, error] of cases) {
    it(`${etcd}: ${error ?? 'valid, a trailing / added'}`, () => {
      const text = `registry:\n  etcd: ${etcd}\n`;
      if (error === undefined) {
        expect(parseConfig(text, '').registry.etcd?.configPrefix).toBe('/drover/config/');
        return;
      }
      expect(() => parseConfig(text, '')).toThrow(error);
    });
  }
});
