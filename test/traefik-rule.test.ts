/**
 * Traefik router rules -> drover route matches (one per alternative), and the refusals, table-driven.
 */
import { describe, expect, it } from 'vitest';
import { parseTraefikRule, type RuleMatch } from '../src/config/traefik-rule.js';

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
