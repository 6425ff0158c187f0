/**
 * The fast path's pure parts, table-driven: which request heads it serves (and with which header
 * record) and why it hands the others to node:http (`classifyHead`); what its HTTP/1.1 response
 * writer puts on the wire (`Http1ResponseWriter`).
 */
import { describe, expect, it } from 'vitest';
import { classifyHead, MAX_WHOLE_BODY_BYTES, type HeadContext } from '../src/proxy/fast-path-head.js';
import { Http1ResponseWriter, keepAliveLines } from '../src/proxy/fast-path-writer.js';

const ctx: HeadContext = { maxUrlBytes: 100, maxHeaders: 4, challenges: false };

interface Case {
  name: string;
  raw?: string[] | undefined;
  method?: string | undefined;
  url?: string | undefined;
  version?: [number, number];
  upgrade?: boolean;
  keepAlive?: boolean;
  ctx?: HeadContext;
  want: Record<string, string> | string;
}

const HOST = ['Host', 'a.test'];

describe('classifyHead', () => {
  it.each<Case>([
    { name: 'a plain GET: served, names lower-cased', raw: ['Host', 'a.test', 'X-A', '1'], want: { host: 'a.test', 'x-a': '1' } },
    { name: 'a small Content-Length body: served', method: 'POST', raw: [...HOST, 'Content-Length', '5'], want: { host: 'a.test', 'content-length': '5' } },
    { name: `Content-Length at the limit (${MAX_WHOLE_BODY_BYTES})`, method: 'PUT', raw: [...HOST, 'content-length', String(MAX_WHOLE_BODY_BYTES)], want: { host: 'a.test', 'content-length': String(MAX_WHOLE_BODY_BYTES) } },
    { name: 'Content-Length over the limit', method: 'PUT', raw: [...HOST, 'content-length', String(MAX_WHOLE_BODY_BYTES + 1)], want: 'body' },
    { name: 'Content-Length with a sign or spaces (node:http decides)', method: 'PUT', raw: [...HOST, 'content-length', '+5'], want: 'body' },
    { name: 'Transfer-Encoding', method: 'POST', raw: [...HOST, 'Transfer-Encoding', 'chunked'], want: 'body' },
    { name: 'Expect', method: 'POST', raw: [...HOST, 'Expect', '100-continue'], want: 'body' },
    { name: 'HTTP/1.0', version: [1, 0], raw: HOST, want: 'connection' },
    { name: 'Connection: close (not keep-alive)', keepAlive: false, raw: HOST, want: 'connection' },
    { name: 'an upgrade', upgrade: true, raw: HOST, want: 'connection' },
    { name: 'fields flushed early (a long head)', raw: undefined, want: 'head' },
    { name: 'more fields than max_headers', raw: [...HOST, 'a', '1', 'b', '2', 'c', '3', 'd', '4'], want: 'head' },
    { name: 'a target longer than max_url_bytes', url: `/${'x'.repeat(100)}`, raw: HOST, want: 'head' },
    { name: 'absolute-form target', url: 'http://a.test/', raw: HOST, want: 'head' },
    { name: 'a fragment in the target', url: '/a#b', raw: HOST, want: 'head' },
    { name: 'TE (trailers are node:http’s)', raw: [...HOST, 'TE', 'trailers'], want: 'head' },
    { name: 'an Upgrade field', raw: [...HOST, 'Upgrade', 'h2c'], want: 'head' },
    { name: 'a repeated field', raw: [...HOST, 'X-A', '1', 'x-a', '2'], want: 'head' },
    { name: 'two Host fields', raw: [...HOST, 'host', 'b.test'], want: 'head' },
    { name: 'no Host', raw: ['X-A', '1'], want: 'head' },
    { name: 'a Host that is not an authority', raw: ['Host', 'a b'], want: 'head' },
    { name: 'CONNECT', method: 'CONNECT', raw: HOST, want: 'head' },
    { name: 'a method this Node does not name', method: undefined, raw: HOST, want: 'head' },
    { name: 'an ACME challenge while a responder is set', url: '/.well-known/acme-challenge/t', ctx: { ...ctx, challenges: true }, raw: HOST, want: 'head' },
    { name: 'the same path without a responder: served', url: '/.well-known/acme-challenge/t', raw: HOST, want: { host: 'a.test' } },
  ])('$name', (c) => {
    const [major, minor] = c.version ?? [1, 1];
    const got = classifyHead(major, minor, c.raw, 'method' in c ? c.method : 'GET', c.url ?? '/p?q=1', c.upgrade ?? false, c.keepAlive ?? true, c.ctx ?? ctx);
    expect(typeof got === 'string' ? got : { ...got }).toEqual(c.want);
  });
});

/** A writer whose output is collected as one latin1 string. */
function writer(keepAliveMs = 5_000): { w: Http1ResponseWriter; out: () => string } {
  const chunks: string[] = [];
  const w = new Http1ResponseWriter({ send: (c) => (chunks.push(typeof c === 'string' ? c : c.toString('latin1')), true) }, keepAliveLines(keepAliveMs));
  return { w, out: () => chunks.join('') };
}


describe('Http1ResponseWriter', () => {
  it.each<{ name: string; status: number; message?: string; headers: string[]; body: string[]; isHead?: boolean; last?: boolean; keepAliveMs?: number; want: string }>([
    { name: 'Content-Length: the body as is', status: 200, headers: ['Content-Length', '2', 'date', 'x'], body: ['ok'], want: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\ndate: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok' },
    { name: 'no length: chunked, one chunk per write', status: 200, headers: ['Date', 'x'], body: ['ab', 'cde'], want: 'HTTP/1.1 200 OK\r\nDate: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n' },
    { name: 'custom reason, last response: Connection: close', status: 299, message: 'Fine', headers: ['content-length', '0', 'Date', 'x'], body: [], last: true, want: 'HTTP/1.1 299 Fine\r\ncontent-length: 0\r\nDate: x\r\nConnection: close\r\n\r\n' },
    { name: '204: no body, no chunked framing', status: 204, headers: ['Date', 'x'], body: ['ignored'], want: 'HTTP/1.1 204 No Content\r\nDate: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n' },
    { name: 'HEAD: the head only', status: 200, headers: ['Content-Length', '9', 'Date', 'x'], body: ['ignored'], isHead: true, want: 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\nDate: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n' },
    { name: 'keep_alive_timeout 0: no Keep-Alive line', status: 200, headers: ['Content-Length', '0', 'Date', 'x'], body: [], keepAliveMs: 0, want: 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: x\r\nConnection: keep-alive\r\n\r\n' },
  ])('$name', (c) => {
    const { w, out } = writer(c.keepAliveMs);
    w.reset(c.isHead ?? false);
    w.writeHead(c.status, c.message, c.headers, c.last ?? false);
    for (const b of c.body) w.write(Buffer.from(b, 'latin1'));
    w.end();
    expect(out()).toBe(c.want);
  });

  it('adds a Date when the backend sent none', () => {
    const { w, out } = writer();
    w.reset(false);
    w.writeHead(200, undefined, ['Content-Length', '0'], false);
    w.end();
    expect(out()).toMatch(/^HTTP\/1\.1 200 OK\r\nContent-Length: 0\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\nConnection: keep-alive\r\n/);
  });

  it('refuses what node:http refuses, writing nothing; unless the fields were checked by a strict parser', () => {
    const { w, out } = writer();
    w.reset(false);
    expect(() => w.writeHead(200, undefined, ['Bad Name', 'x'], false)).toThrow();
    expect(() => w.writeHead(200, undefined, ['x', 'a\nb'], false)).toThrow();
    expect(() => w.writeHead(200, 'bad\nreason', ['x', 'y'], false)).toThrow();
    expect(w.headersSent).toBe(false);
    w.writeHead(200, undefined, ['X-Fine', 'v', 'Date', 'x', 'Content-Length', '0'], false, true);
    w.end();
    expect(out()).toBe('HTTP/1.1 200 OK\r\nX-Fine: v\r\nDate: x\r\nContent-Length: 0\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n');
  });

  it('a head not sent yet can be taken back; one that went out cannot', () => {
    const { w, out } = writer();
    w.reset(false);
    w.writeHead(200, undefined, ['Date', 'x'], false);
    expect(w.retractHead()).toBe(true);
    expect([w.headersSent, out()]).toEqual([false, '']);
    w.writeHead(502, undefined, ['Content-Length', '1', 'Date', 'x'], false);
    w.write(Buffer.from('!'));
    expect(w.retractHead()).toBe(false);
    expect(out()).toBe('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 1\r\nDate: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n!');
  });
});
