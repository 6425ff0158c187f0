/**
 * Issue 6, backends: malformed responses, death mid-body, silence, stalls, stale keep-alive
 * connections and broken WebSocket upgrades, each from a raw TCP backend, through the real
 * `bin/drover`.
 */
import { createHash } from 'node:crypto';
import { WebSocket } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { request } from './helpers/backends.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { adminBackends, ok, rawExchange, startRawBackend, type RawBackend } from './helpers/raw-backend.js';
import { waitFor, eventually } from './helpers/wait.js';

let bad: RawBackend;
let slow: RawBackend;
let stale: RawBackend;
let ws: RawBackend;
let stale2: RawBackend;
let drover: DroverProcess;

beforeAll(async () => {
  [bad, slow, stale, ws, stale2] = await Promise.all([startRawBackend('bad'), startRawBackend('slow'), startRawBackend('stale'), startRawBackend('ws'), startRawBackend('stale2')]);
  drover = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  bad: {retries: 0, health: {passive: {consecutive_failures: 1000}}, backends: [{url: ${bad.url}, id: bad}]}
  slow: {retries: 0, health: {passive: {consecutive_failures: 1000}}, timeouts: {response_headers: 500ms, idle: 500ms}, backends: [{url: ${slow.url}, id: slow}]}
  stale: {retries: 0, backends: [{url: ${stale.url}, id: stale}]}
  stale2: {retries: 0, backends: [{url: ${stale2.url}, id: stale2}]}
  ws: {retries: 0, health: {passive: {consecutive_failures: 1000}}, backends: [{url: ${ws.url}, id: ws}]}
routes:
  - {match: {path_prefix: /bad}, service: bad}
  - {match: {path_prefix: /slow}, service: slow}
  - {match: {path_prefix: /stale2}, service: stale2}
  - {match: {path_prefix: /stale}, service: stale}
  - {match: {path_prefix: /ws}, service: ws}
`);
});

afterAll(async () => {
  await drover?.stop();
  await Promise.all([bad?.close(), slow?.close(), stale?.close(), ws?.close(), stale2?.close()]);
});

beforeEach(() => {
  for (const b of [bad, slow, stale, ws]) b.reset();
});

async function failuresOf(id: string): Promise<number> {
  return (await adminBackends(drover.adminPort)).find((b) => b.id === id)?.failures ?? -1;
}

async function upstreamErrors(backend: string, kind: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${drover.adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('drover_upstream_errors_total{') && l.includes(`backend="${backend}"`) && l.includes(`kind="${kind}"`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('malformed responses: 502, never forwarded', () => {
  const cases: [string, string][] = [
    ['two Content-Lengths that differ', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nSECRET'],
    ['two equal Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 6\r\n\r\nSECRET'],
    ['Content-Length + Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nSECRET\r\n0\r\n\r\n'],
    ['invalid Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 6x\r\n\r\nSECRET'],
    ['not HTTP at all', 'SSH-2.0-OpenSSH_9.6 SECRET\r\n\r\n'],
    ['a four-digit status', 'HTTP/1.1 2000 OK\r\nContent-Length: 6\r\n\r\nSECRET'],
    ['NUL in a header value', 'HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 6\r\n\r\nSECRET'],
    ['obs-fold in a header', 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 6\r\n\r\nSECRET'],
    ['invalid chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nSECRET\r\n0\r\n\r\n'],
  ];

  it('a well-formed answer from the same backend passes (the path works)', async () => {
    bad.respond((s) => s.write(ok('fine')));
    const r = await request(drover.port, { path: '/bad' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('fine');
  });

  it.each(cases)('%s', async (_name, answer) => {
    bad.respond((s) => {
      s.write(answer);
      setTimeout(() => s.destroy(), 50);
    });
    const before = await failuresOf('bad');
    const r = await rawExchange(drover.port, 'GET /bad HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    // the invalid chunk size breaks the body before its first byte, while the head is still
    // buffered in drover: it is taken back and the client gets a clean 502 too (issue 20, item 8)
    expect(r.text).toMatch(/^HTTP\/1\.1 502 /);
    expect(r.text.endsWith('{"error":"bad_gateway","service":"bad"}')).toBe(true);
    expect(r.text).not.toContain('SECRET');
    expect(await failuresOf('bad')).toBe(before + 1);
  });
});

describe('a backend that dies mid-body', () => {
  it('declared length: the client gets fewer bytes and a closed connection, never a clean short answer; counted', async () => {
    bad.respond((s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n${'x'.repeat(50)}`);
      setTimeout(() => s.destroy(), 100);
    });
    const before = await failuresOf('bad');
    const resets = await upstreamErrors('bad', 'reset');
    const r = await rawExchange(drover.port, 'GET /bad HTTP/1.1\r\nHost: x\r\n\r\n', 5000);
    expect(r.closedByServer).toBe(true);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(r.text.toLowerCase()).toContain('content-length: 100');
    const body = r.text.slice(r.text.indexOf('\r\n\r\n') + 4);
    expect(body).toBe('x'.repeat(50));
    expect(await failuresOf('bad')).toBe(before + 1);
    expect(await upstreamErrors('bad', 'reset')).toBe(resets + 1);
  });

  it('chunked: the client never gets the final chunk, and the connection closes', async () => {
    bad.respond((s) => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
      setTimeout(() => s.destroy(), 100);
    });
    const before = await failuresOf('bad');
    const r = await rawExchange(drover.port, 'GET /bad HTTP/1.1\r\nHost: x\r\n\r\n', 5000);
    expect(r.closedByServer).toBe(true);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(r.text.toLowerCase()).toContain('transfer-encoding: chunked');
    expect(r.text).toContain('5\r\nhello\r\n');
    expect(r.text).not.toContain('0\r\n\r\n');
    expect(await failuresOf('bad')).toBe(before + 1);
  });

  it('a Node client sees an error, not a complete response', async () => {
    bad.respond((s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n${'x'.repeat(50)}`);
      setTimeout(() => s.destroy(), 100);
    });
    await expect(request(drover.port, { path: '/bad' })).rejects.toThrow(/aborted|ECONNRESET|socket hang up/);
  });
});

describe('silence and stalls', () => {
  it('accepts and never answers: 504 after response_headers (500ms)', async () => {
    slow.respond(() => undefined);
    const t0 = Date.now();
    const r = await request(drover.port, { path: '/slow' });
    const took = Date.now() - t0;
    expect(r.status).toBe(504);
    expect(r.body).toBe('{"error":"gateway_timeout","service":"slow"}');
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(5000);
    expect(slow.heads).toHaveLength(1);
  });

  it.each([
    ['drover’s own HTTP/1.1 upstream', {}],
    ['undici (https, host names, streamed bodies; here forced)', { DROVER_UPSTREAM: 'undici' }],
  ])('response_headers 300ms on %s: each 504 comes after 300 ms, not on a coarse clock (undici alone: about 1 s)', async (_name, env) => {
    const d = await startDrover(
      `
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  slow: {retries: 0, health: {passive: {consecutive_failures: 1000}}, timeouts: {response_headers: 300ms}, backends: [{url: ${slow.url}}]}
routes:
  - {match: {path_prefix: /}, service: slow}
`,
      { env },
    );
    try {
      slow.respond(() => undefined);
      const took: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const r = await request(d.port, { path: `/slow${i}` });
        took.push(performance.now() - t0);
        expect(r.status).toBe(504);
      }
      // a correctness bound, not a speed target: late by more than half the timeout is the bug
      for (const ms of took) {
        expect(ms).toBeGreaterThanOrEqual(290);
        expect(ms).toBeLessThan(450);
      }
    } finally {
      await d.stop();
    }
  });

  it('a body that stalls is aborted after idle (500ms): truncated, connection closed, counted as a timeout', async () => {
    slow.respond((s) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n${'y'.repeat(10)}`));
    const timeouts = await upstreamErrors('slow', 'timeout');
    const t0 = Date.now();
    const r = await rawExchange(drover.port, 'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n', 8000);
    const took = Date.now() - t0;
    expect(r.closedByServer).toBe(true);
    expect(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)).toBe('y'.repeat(10));
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(5000);
    expect(await upstreamErrors('slow', 'timeout')).toBe(timeouts + 1);
    await waitFor(async () => (await adminBackends(drover.adminPort)).every((b) => b.inflight === 0));
  });
});

describe('stale keep-alive connections', () => {
  // The backend answers the first request of every connection and closes the connection when a
  // second one arrives on it: the race of a backend idling a connection out just as the proxy
  // reuses it, made deterministic.
  beforeEach(() => {
    stale.respond((s, _head, index) => {
      if (index === 0) s.write(ok('fresh'));
      else s.destroy();
    });
  });

  it('idempotent requests never see a 502 (replayed on the same backend, retries: 0)', async () => {
    for (let i = 0; i < 10; i++) {
      const r = await request(drover.port, { path: `/stale/${i}` });
      expect(r.status).toBe(200);
      expect(r.body).toBe('fresh');
    }
    // most requests went out on a reused connection first: the race did happen
    const heads = stale.heads.filter((h) => h.startsWith('GET'));
    expect(heads.length).toBeGreaterThanOrEqual(15);
    expect(stale.connections).toBe(10); // each connection answered exactly one request
    expect(await failuresOf('stale')).toBe(0); // not the backend's fault
  });

  it('a POST on a reused connection is not replayed: 502', async () => {
    stale2.respond((s, _head, index) => {
      if (index === 0) s.write(ok('fresh'));
      else s.destroy();
    });
    // one GET leaves exactly one idle connection in this backend's pool; the POST reuses it
    expect((await request(drover.port, { path: '/stale2/a' })).status).toBe(200);
    const r = await request(drover.port, { method: 'POST', path: '/stale2/b', headers: { 'content-length': '0' } });
    expect(r.status).toBe(502);
    expect(stale2.connections).toBe(1);
    expect(stale2.heads.filter((h) => h.startsWith('POST'))).toHaveLength(1);
  });
});

describe('WebSocket upgrades that go wrong', () => {
  const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
  const keyOf = (head: string): string => /sec-websocket-key: *([^\r\n]+)/i.exec(head)?.[1]?.trim() ?? '';

  function outcome(path: string): Promise<{ events: string[]; messages: string[] }> {
    return new Promise((resolve) => {
      const events: string[] = [];
      const messages: string[] = [];
      const sock = new WebSocket(`ws://127.0.0.1:${drover.port}${path}`);
      sock.addEventListener('open', () => events.push('open'));
      sock.addEventListener('message', (e) => messages.push(String(e.data)));
      sock.addEventListener('error', () => events.push('error'));
      sock.addEventListener('close', (e) => {
        events.push(`close ${e.code}`);
        resolve({ events, messages });
      });
    });
  }

  it('the backend refuses the upgrade (404): the client sees the 404 and an error', async () => {
    ws.respond((s) => {
      s.end('HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found');
    });
    const r = await rawExchange(drover.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    expect(r.text).toMatch(/^HTTP\/1\.1 404 /);
    expect(r.text.endsWith('not found')).toBe(true);
    const o = await outcome('/ws');
    expect(o.events).toEqual(['error', 'close 1006']);
  });

  it('101 without (or with a wrong) Sec-WebSocket-Accept: relayed as is, the client fails the handshake', async () => {
    // drover is transparent to the handshake (as HAProxy and NGINX are): checking it is the client's job
    ws.respond((s) => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'));
    expect((await outcome('/ws')).events).toEqual(['error', 'close 1006']);
    ws.respond((s) => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n'));
    expect((await outcome('/ws')).events).toEqual(['error', 'close 1006']);
    // undici's client keeps its TCP connection after a failed handshake, so the tunnels stay
    // open; when the backend goes, drover closes them and releases their in-flight slots
    expect((await adminBackends(drover.adminPort)).find((b) => b.id === 'ws')?.inflight).toBe(2);
    ws.dropConnections();
    await waitFor(async () => (await adminBackends(drover.adminPort)).every((b) => b.inflight === 0), 3000);
    expect(drover.child.exitCode).toBeNull();
  });

  it('the backend dies mid-stream: the client gets its message, then a close; drover keeps serving', async () => {
    ws.respond((s, head) => {
      const accept = createHash('sha1').update(keyOf(head) + GUID).digest('base64');
      s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      s.write(Buffer.from([0x81, 5, ...Buffer.from('hello')]));
      setTimeout(() => s.destroy(), 100);
    });
    const o = await outcome('/ws');
    expect(o.events[0]).toBe('open');
    expect(o.messages).toEqual(['hello']);
    expect(o.events.at(-1)).toBe('close 1006');
    const settled = await eventually(async () => (await adminBackends(drover.adminPort)).every((b) => b.inflight === 0), 3000);
    expect(settled ? [] : await adminBackends(drover.adminPort)).toEqual([]);
    bad.respond((s) => s.write(ok('alive')));
    expect((await request(drover.port, { path: '/bad' })).body).toBe('alive');
    expect(drover.child.exitCode).toBeNull();
  });
});
