import { describe, expect, it } from 'vitest';
import type { IncomingHttpHeaders } from 'node:http';
import { RouteTable, rewritePath } from '../routing/route-table.js';
import type { RouteConfig } from '../routing/types.js';

type Match = Partial<Omit<RouteConfig['match'], 'headers'>> & { headers?: RouteConfig['match']['headers'] };

function route(index: number, service: string, match: Match, stripPrefix?: string): RouteConfig {
  return {
    index,
    match: { headers: [], ...match },
    service,
    stripPrefix,
    requestHeaders: { set: [], remove: [] },
  };
}

const routes: RouteConfig[] = [
  route(0, 'api-v1', { host: 'api.example.com', pathPrefix: '/v1' }),
  route(1, 'wild', { host: '*.example.com' }),
  route(2, 'exact-post', { path: '/exact', method: 'post' }),
  route(3, 'canary', { headers: [{ name: 'X-Env', value: 'canary' }] }),
  route(4, 'two-headers', { headers: [{ name: 'x-a', value: '1' }, { name: 'x-b', value: '2' }] }),
  route(5, 'static', { pathPrefix: '/static/' }),
  route(6, 'default', { pathPrefix: '/' }),
];

describe('RouteTable.match', () => {
  const table = new RouteTable(routes);
  it.each<[string, string, string, IncomingHttpHeaders, string | undefined]>([
    ['GET', 'api.example.com', '/v1/users', {}, 'api-v1'],
    ['GET', 'api.example.com', '/v1', {}, 'api-v1'],
    ['GET', 'api.example.com', '/v1beta', {}, 'api-v1'], // plain string prefix
    ['GET', 'api.example.com', '/v2', {}, 'wild'], // host matched but not the path: next route
    ['GET', 'a.example.com', '/', {}, 'wild'],
    ['GET', 'a.b.example.com', '/x', {}, 'wild'],
    ['GET', 'example.com', '/', {}, 'default'], // *.suffix does not match the suffix itself
    ['GET', 'evil-example.com', '/', {}, 'default'],
    ['GET', 'example.com.evil.net', '/', {}, 'default'],
    ['POST', 'example.com', '/exact', {}, 'exact-post'],
    ['GET', 'example.com', '/exact', {}, 'default'],
    ['POST', 'example.com', '/exact/', {}, 'default'],
    ['POST', 'example.com', '/exac', {}, 'default'],
    ['GET', 'other.net', '/', { 'x-env': 'canary' }, 'canary'],
    ['GET', 'other.net', '/', { 'x-env': 'Canary' }, 'default'], // values are case-sensitive
    ['GET', 'other.net', '/', { 'x-env': ['prod', 'canary'] }, 'canary'],
    ['GET', 'other.net', '/', { 'x-a': '1', 'x-b': '2' }, 'two-headers'],
    ['GET', 'other.net', '/', { 'x-a': '1' }, 'default'], // every header must match
    ['GET', 'other.net', '/', { 'x-a': '1', 'x-b': '3' }, 'default'],
    ['GET', 'other.net', '/static/app.js', {}, 'static'],
    ['GET', 'other.net', '/static', {}, 'default'],
    ['GET', 'x.example.com', '/static/app.js', {}, 'wild'], // first match wins, not most specific
  ])('%s %s%s %j -> %s', (method, host, path, headers, want) => {
    expect(table.match(method, host, path, headers)?.service).toBe(want);
  });

  it('returns undefined when nothing matches or there are no routes', () => {
    const t = new RouteTable([route(0, 'a', { host: 'a.test' }), route(1, 'b', { pathPrefix: '/b' })]);
    expect(t.match('GET', 'x.test', '/a', {})).toBeUndefined();
    expect(t.match('GET', 'x.test', '/b', {})?.service).toBe('b');
    expect(new RouteTable([]).match('GET', 'a.test', '/', {})).toBeUndefined();
  });

  it('orders by index (file order), whatever the array order', () => {
    const t = new RouteTable([route(1, 'specific', { pathPrefix: '/api' }), route(0, 'catch-all', { pathPrefix: '/' })]);
    expect(t.match('GET', 'h', '/api/x', {})?.service).toBe('catch-all');
    const u = new RouteTable([route(0, 'specific', { pathPrefix: '/api' }), route(1, 'catch-all', { pathPrefix: '/' })]);
    expect(u.match('GET', 'h', '/api/x', {})?.service).toBe('specific');
    expect(u.size).toBe(2);
  });

  it('a route with no conditions matches everything', () => {
    const t = new RouteTable([route(0, 'all', {})]);
    expect(t.match('DELETE', 'anything', '/x/y', {})?.service).toBe('all');
  });

  it('lower-cases configured hosts once', () => {
    const t = new RouteTable([route(0, 'up', { host: '*.Example.COM' }), route(1, 'exact', { host: 'API.test' })]);
    expect(t.match('GET', 'a.example.com', '/', {})?.service).toBe('up');
    expect(t.match('GET', 'api.test', '/', {})?.service).toBe('exact');
  });

  it('returns the configured route object', () => {
    const r = routes[5]!;
    expect(new RouteTable(routes).match('GET', 'h', '/static/x', {})).toBe(r);
  });
});

describe('rewritePath', () => {
  it.each<[string | undefined, string, string]>([
    [undefined, '/a/b?c=1', '/a/b?c=1'],
    [undefined, '', '/'],
    ['/v1', '/v1/users?x=1', '/users?x=1'],
    ['/v1', '/v1/users', '/users'],
    ['/v1', '/v1', '/'],
    ['/v1', '/v1?x=1', '/?x=1'],
    ['/v1', '/v1beta', '/beta'],
    ['/v1', '/v2/users', '/v2/users'],
    ['/v1', '/v2?next=/v1', '/v2?next=/v1'],
    ['/v1/', '/v1/users', '/users'],
    ['/v1/', '/v1', '/v1'],
    ['/a?b', '/a?bc', '/a?bc'], // a prefix never runs into the query
    ['', '/x', '/x'],
    ['/', '/x', '/x'],
  ])('strip %s from %s -> %s', (strip, raw, want) => {
    expect(rewritePath(route(0, 's', {}, strip), raw)).toBe(want);
  });
});
