/**
 * Traefik router rules -> drover route matches (one per alternative), and the refusals,
 * table-driven; Traefik KV routers -> ordered routes, a router drover cannot express skipped.
 */
import { describe, expect, it } from 'vitest';
import { parseTraefikRule, type RuleMatch } from '../src/config/traefik-rule.js';
import { parseTraefikRouters } from '../src/config/traefik-routers.js';
import type { SharedSnapshot } from '../src/config/shared.js';
import { formatIssue } from '../src/core/errors.js';

const accepted: [string, RuleMatch[]][] = [
  ['Host(`example.com`)', [{ host: 'example.com' }]],
  ['Host(`A.Example.com`) && PathPrefix(`/api`)', [{ host: 'a.example.com', path_prefix: '/api' }]],
  ['Host("a.com") || Host("b.com")', [{ host: 'a.com' }, { host: 'b.com' }]],
  ['Host(`a.com`, `b.com`)', [{ host: 'a.com' }, { host: 'b.com' }]],
  ['Path(`/exact`) && Method(`post`)', [{ path: '/exact', method: 'POST' }]],
  ['Headers(`X-Env`, `prod`) && Header(`X-Team`, `a`)', [{ headers: { 'X-Env': 'prod', 'X-Team': 'a' } }]],
  [
    '(Host(`a.com`) || Host(`b.com`)) && (PathPrefix(`/v1`) || PathPrefix(`/v2`))',
    [
      { host: 'a.com', path_prefix: '/v1' },
      { host: 'a.com', path_prefix: '/v2' },
      { host: 'b.com', path_prefix: '/v1' },
      { host: 'b.com', path_prefix: '/v2' },
    ],
  ],
  ['Host(`a.com`) && (Method(`GET`) || Method(`HEAD`))', [{ host: 'a.com', method: 'GET' }, { host: 'a.com', method: 'HEAD' }]],
  ['Host(`a.com`) && Host(`a.com`)', [{ host: 'a.com' }]],
  ['HostRegexp(`{sub:[a-z0-9-]+}.example.com`)', [{ host: '*.example.com' }]],
  ['HostRegexp(`{sub}.Example.com`)', [{ host: '*.example.com' }]],
  ['HostRegexp(`^[^.]+\\.example\\.com$`)', [{ host: '*.example.com' }]],
  ['HostRegexp(`^.+\\.example\\.com$`) && PathPrefix(`/`)', [{ host: '*.example.com', path_prefix: '/' }]],
  ['  PathPrefix( `/a` )  ', [{ path_prefix: '/a' }]],
];

const refused: [string, RegExp][] = [
  ['', /empty rule/],
  ['!Host(`a.com`)', /negation \(!\) is not supported/],
  ['Query(`a`, `b`)', /matcher Query is not supported/],
  ['PathRegexp(`^/a`)', /matcher PathRegexp is not supported/],
  ['ClientIP(`10.0.0.0/8`)', /matcher ClientIP is not supported/],
  ['Host(`a.com`) && Host(`b.com`)', /two different host values \("a.com" and "b.com"\)/],
  ['Path(`/a`) && PathPrefix(`/b`)', /Path and PathPrefix in one alternative are not supported/],
  ['Headers(`X-A`)', /Headers takes 2 arguments, got 1/],
  ['Header(`X-A`, `1`) && Header(`X-A`, `2`)', /header X-A to be both "1" and "2"/],
  ['HostRegexp(`^(a|b)\\.example\\.com$`)', /is not simple/],
  ['Host(a.com)', /unexpected "\." at column 7/],
  ['Host(com)', /Host: arguments must be quoted/],
  ['Host(`a.com`', /expected "\)", got the end of the rule/],
  ['Host(`a.com`) Host(`b.com`)', /unexpected "Host" after a complete expression/],
  ['Host(`a.com) ', /unterminated string/],
  ['Host(`a.com`) & Path(`/`)', /unexpected "&" at column 15/],
  ['(Host(`a.com`)', /expected "\)"/],
  ['Host()', /Host needs an argument/],
  [
    Array.from({ length: 7 }, (_, i) => `(PathPrefix(\`/a${i}\`) || PathPrefix(\`/b${i}\`))`).join(' && '),
    /expands to more than 64 alternatives/,
  ],
];

describe('parseTraefikRule', () => {
  for (const [rule, want] of accepted) {
    it(`accepts ${rule}`, () => {
      expect(parseTraefikRule(rule)).toEqual(want);
    });
  }
  for (const [rule, why] of refused) {
    it(`refuses ${rule.length > 60 ? `${rule.slice(0, 60)}...` : JSON.stringify(rule)}`, () => {
      expect(() => parseTraefikRule(rule)).toThrow(why);
    });
  }
});

describe('parseTraefikRouters', () => {
  const P = 'traefik/http/routers/';
  const snap = (values: Record<string, string>): SharedSnapshot => ({ prefix: P, revision: '5', values: new Map(Object.entries(values).map(([k, v]) => [`${P}${k}`, v])) });

  it('orders routers by priority (default: rule length), then name; one route per alternative', () => {
    const r = parseTraefikRouters(
      snap({
        'short/rule': 'PathPrefix(`/`)',
        'short/service': 'web@kv',
        'api/rule': 'Host(`api.example.com`) && (PathPrefix(`/v1`) || PathPrefix(`/v2`))',
        'api/service': 'api',
        'pinned/rule': 'Path(`/ping`)',
        'pinned/service': 'ping',
        'pinned/priority': '1000',
        'pinned/entryPoints/0': 'web',
      }),
    );
    expect(r.skipped).toEqual([]);
    expect(r.routes.map((x) => [x.index, x.service, x.match.host, x.match.pathPrefix, x.match.path])).toEqual([
      [0, 'ping', undefined, undefined, '/ping'],
      [1, 'api', 'api.example.com', '/v1', undefined],
      [2, 'api', 'api.example.com', '/v2', undefined],
      [3, 'web', undefined, '/', undefined],
    ]);
  });

  it('skips a router it cannot express, naming it, and keeps the others', () => {
    const r = parseTraefikRouters(
      snap({
        'good/rule': 'Host(`a.com`)',
        'good/service': 'a',
        'neg/rule': '!Host(`b.com`)',
        'neg/service': 'b',
        'mw/rule': 'Host(`c.com`)',
        'mw/service': 'c',
        'mw/middlewares/0': 'auth',
        'nosvc/rule': 'Host(`d.com`)',
        'badpath/rule': 'PathPrefix(`api`)',
        'badpath/service': 'e',
      }),
    );
    expect(r.routes.map((x) => x.service)).toEqual(['a']);
    expect(r.skipped.map(formatIssue)).toEqual([
      'traefik/http/routers/badpath/rule: routers.badpath: router "badpath" skipped: match.path_prefix: "api" must start with "/" (no spaces, query or fragment)',
      'traefik/http/routers/mw/rule: routers.mw: router "mw" skipped: middlewares are not supported (drover would route without them)',
      'traefik/http/routers/neg/rule: routers.neg: router "neg" skipped: rule "!Host(`b.com`)": negation (!) is not supported',
      'traefik/http/routers/nosvc/rule: routers.nosvc: router "nosvc" skipped: it has no service',
    ]);
  });
});
