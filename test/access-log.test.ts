/**
 * The access log line formatter (src/observability/access-log.ts): its fast paths (`jsonString`, `isoTime`)
 * must give exactly what `JSON.stringify` and `Date#toISOString` give, and a line must parse
 * back to its fields in the documented order.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatAccessLine, isoTime, jsonString } from '../src/observability/access-log.js';
import type { AccessLogEntry } from '../src/observability/access-log.js';

describe('jsonString', () => {
  it.each([
    ['', '""'],
    ['GET', '"GET"'],
    ['/a/b?x=1&y=2', '"/a/b?x=1&y=2"'],
    ['say "hi"', '"say \\"hi\\""'],
    ['back\\slash', '"back\\\\slash"'],
    ['tab\there', '"tab\\there"'],
    ['nul\u0000', '"nul\\u0000"'],
    ['del\u007f', '"del\u007f"'],
    ['é', '"é"'],
    ['😀', '"😀"'],
    ['lone \ud800', '"lone \\ud800"'],
  ])('%j -> %s', (input, expected) => {
    expect(jsonString(input)).toBe(expected);
    expect(jsonString(input)).toBe(JSON.stringify(input));
  });

  it('equals JSON.stringify for any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 64 }), (s) => jsonString(s) === JSON.stringify(s)),
      { seed: 7, numRuns: 2000 },
    );
  });
});

describe('isoTime', () => {
  it.each([0, 1, 9, 10, 99, 100, 999, 1000, 1_764_000_000_000, 1_764_000_000_007, 1_764_000_000_070, 1_764_000_000_999, 1_764_000_001_000, 951_782_400_000 /* 2000-02-29 */, 253_402_300_799_999, 253_402_300_800_000, -1, 0.5, 1_764_000_000_000.25])(
    '%d',
    (t) => {
      expect(isoTime(t)).toBe(new Date(t).toISOString());
    },
  );

  it('equals toISOString for any ms, in any order (the cached second is replaced when it changes)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 4_102_444_800_000 }), { maxLength: 20 }), (ts) => ts.every((t) => isoTime(t) === new Date(t).toISOString())),
      { seed: 11, numRuns: 500 },
    );
  });
});

describe('formatAccessLine', () => {
  const entry: AccessLogEntry = {
    requestId: 'r-1',
    client: '10.0.0.7',
    method: 'GET',
    host: 'shop.example:8080',
    path: '/cart?item="x"',
    route: 2,
    service: 'web',
    backend: 'w1',
    status: 200,
    duration: 1.234,
    bytesIn: 0,
    bytesOut: 512,
    retries: 1,
    error: undefined,
  };

  it('one JSON object per line, fields in the documented order', () => {
    const line = formatAccessLine(entry, 1_764_000_000_042);
    expect(line.endsWith('}\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(Object.entries(parsed)).toEqual([
      ['time', '2025-11-24T16:00:00.042Z'],
      ['request_id', 'r-1'],
      ['client', '10.0.0.7'],
      ['method', 'GET'],
      ['host', 'shop.example:8080'],
      ['path', '/cart?item="x"'],
      ['route', 2],
      ['service', 'web'],
      ['backend', 'w1'],
      ['status', 200],
      ['duration_ms', 1.234],
      ['bytes_in', 0],
      ['bytes_out', 512],
      ['retries', 1],
      ['protocol', 'HTTP/1.1'],
    ]);
  });

  it('nulls for no route, service or backend; error only when present, escaped', () => {
    const line = formatAccessLine({ ...entry, route: null, service: null, backend: null, status: 502, error: 'reset "ECONNRESET"\n' }, 0);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect([parsed['route'], parsed['service'], parsed['backend'], parsed['error']]).toEqual([null, null, null, 'reset "ECONNRESET"\n']);
    expect(Object.keys(parsed).at(-1)).toBe('error');
  });
});
