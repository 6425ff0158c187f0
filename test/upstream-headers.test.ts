/**
 * The header mappings of the upstream protocols, table-driven: HTTP/1.1 raw headers to an
 * HTTP/2 request, HTTP/2 response headers back to raw ones, which trailers are relayed, and
 * when `TE: trailers` is seen.
 */
import { describe, expect, it } from 'vitest';
import { flatResponseHeaders, h2RequestHeaders } from '../src/proxy/h2-upstream.js';
import { NO_EDITS, responseTrailers, upstreamRequestHeaders } from '../src/proxy/headers.js';

describe('h2RequestHeaders', () => {
  it.each([
    {
      name: 'Host becomes :authority; names lower-cased; pseudo-headers from the request line',
      flat: ['Host', 'api.example', 'X-A', '1'],
      want: { ':method': 'GET', ':path': '/p?q', ':scheme': 'http', ':authority': 'api.example', 'x-a': '1' },
    },
    {
      name: 'no Host: the backend address',
      flat: ['accept', '*/*'],
      want: { ':method': 'GET', ':path': '/p?q', ':scheme': 'http', ':authority': '10.0.0.8:50051', accept: '*/*' },
    },
    {
      name: 'connection-specific fields dropped; te kept only as trailers',
      flat: ['connection', 'x', 'keep-alive', '5', 'transfer-encoding', 'chunked', 'upgrade', 'h2c', 'http2-settings', 'AAA', 'te', 'trailers', 'proxy-connection', 'k'],
      want: { ':method': 'GET', ':path': '/p?q', ':scheme': 'http', ':authority': '10.0.0.8:50051', te: 'trailers' },
    },
    {
      name: 'te other than trailers is dropped',
      flat: ['te', 'gzip'],
      want: { ':method': 'GET', ':path': '/p?q', ':scheme': 'http', ':authority': '10.0.0.8:50051' },
    },
    {
      name: 'repeated fields become a list, in order',
      flat: ['x-b', '1', 'X-B', '2', 'x-b', '3'],
      want: { ':method': 'GET', ':path': '/p?q', ':scheme': 'http', ':authority': '10.0.0.8:50051', 'x-b': ['1', '2', '3'] },
    },
    {
      name: 'pseudo-header names smuggled in as fields are ignored',
      flat: [':path', '/admin', ':authority', 'evil'],
      want: { ':method': 'GET', ':path': '/p?q', ':scheme': 'http', ':authority': '10.0.0.8:50051' },
    },
  ])('$name', ({ flat, want }) => {
    expect(h2RequestHeaders('GET', '/p?q', 'http', '10.0.0.8:50051', flat)).toEqual(want);
  });
});

describe('flatResponseHeaders', () => {
  it('drops pseudo-headers and spreads lists', () => {
    expect(flatResponseHeaders({ ':status': '200', 'content-type': 'application/grpc', 'set-cookie': ['a=1', 'b=2'] })).toEqual([
      'content-type',
      'application/grpc',
      'set-cookie',
      'a=1',
      'set-cookie',
      'b=2',
    ]);
  });
});

describe('responseTrailers', () => {
  it.each([
    { name: 'gRPC status fields kept', in: { 'grpc-status': '0', 'grpc-message': 'ok' }, want: { 'grpc-status': '0', 'grpc-message': 'ok' } },
    { name: 'nothing left: undefined', in: {}, want: undefined },
    { name: 'framing, routing and hop-by-hop fields dropped', in: { 'content-length': '3', 'transfer-encoding': 'x', host: 'h', 'set-cookie': 'a=1', ':status': '200', 'x-sum': '6' }, want: { 'x-sum': '6' } },
    { name: 'names lower-cased', in: { 'X-Sum': '1' }, want: { 'x-sum': '1' } },
  ])('$name', ({ in: input, want }) => {
    expect(responseTrailers(input)).toEqual(want);
  });
});

describe('TE: trailers from the client', () => {
  const info = { peer: '127.0.0.1', trusted: false, proto: 'http' };
  it.each([
    [['TE', 'trailers'], true],
    [['te', 'deflate;q=0.5, Trailers'], true],
    [['te', 'trailers;q=1'], true],
    [['te', 'gzip'], false],
    [['x-te', 'trailers'], false],
    [[], false],
  ])('%j -> %s, and te itself is never forwarded as a field', (raw, want) => {
    const out = upstreamRequestHeaders(['host', 'h', ...raw], info, NO_EDITS);
    expect(out.teTrailers).toBe(want);
    expect(out.headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'te')).toBe(false);
  });
});
