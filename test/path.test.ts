/** Request path normalisation (issue 20, item 3): table-driven, both `merge_slashes` settings. */
import { describe, expect, it } from 'vitest';
import { normalizePath, removeDotSegments } from '../src/proxy/path.js';

describe('normalizePath', () => {
  // [raw, merge_slashes, normalised path or undefined (400), escaped slash seen]
  const cases: [string, boolean, string | undefined, boolean][] = [
    ['/', true, '/', false],
    ['/a/b', true, '/a/b', false],
    ['/a//b', true, '/a/b', false],
    ['/a//b', false, '/a//b', false],
    ['/a/./b/../c', true, '/a/c', false],
    ['/a/..', true, '/', false],
    ['/a/.', true, '/a/', false],
    ['/a/%2e%2E/b', true, '/b', false],
    ['/.well-known/x', true, '/.well-known/x', false],
    ['/a..b/..c', true, '/a..b/..c', false],
    ['/%41%7e%2D', true, '/A~-', false],
    ['/a%2fb', true, '/a%2Fb', true],
    ['/a%5Cb', true, '/a%5Cb', true],
    ['/a%20b', true, '/a%20b', false],
    ['/a%c3%a9', true, '/a%C3%A9', false],
    ['/..', true, undefined, false],
    ['/a/../..', true, undefined, false],
    ['/a/%2e%2e/%2e%2e', true, undefined, false],
    ['/a%', true, undefined, false],
    ['/a%4', true, undefined, false],
    ['/a%g0', true, undefined, false],
    ['/a%00', true, undefined, false],
    ['//..//x', true, undefined, false],
    ['/a/..//x', false, '//x', false],
  ];
  it.each(cases)('%s (merge %s) -> %s', (raw, merge, want, slash) => {
    const got = normalizePath(raw, merge);
    expect(got?.path).toBe(want);
    if (want !== undefined) expect(got?.escapedSlash).toBe(slash);
  });

  it('returns the very same string when nothing needs changing', () => {
    const raw = '/api/v1/users?x';
    expect(normalizePath(raw, true)?.path).toBe(raw);
    expect(removeDotSegments('/a/b')).toBe('/a/b');
  });
});
