/**
 * services.<name>.request_buffering (issue 20, item 9: slow POST amplification). Real sockets:
 * slow clients trickle their bodies byte by byte into the real `bin/drover`, in front of a raw
 * TCP backend that counts connections and records every byte. With buffering, no upstream
 * connection exists until a body is complete, and the backend then gets each body whole and
 * exact; a body that trickles too slowly still gets the listener's 408 and reaches no backend.
 * Both front ends: the fast path (default) and DROVER_FAST_PATH=off (node:http only).
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { ok, startRawBackend, type RawBackend } from './helpers/raw-backend.js';
import { request } from './helpers/backends.js';
import { parseConfig } from '../src/config/load.js';
import { waitFor } from './helpers/wait.js';

/** The requests (head, body) of one connection's bytes, framed by Content-Length. */
function requestsIn(data: string): { head: string; body: string }[] {
  const out: { head: string; body: string }[] = [];
  let rest = data;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) return out;
    const head = rest.slice(0, end);
    const cl = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? '0');
    out.push({ head, body: rest.slice(end + 4, end + 4 + cl) });
    rest = rest.slice(end + 4 + cl);
  }
}

interface SlowClient {
  /** sends the next `n` bytes of what is left (head first) */
  send(n: number): void;
  readonly left: number;
  readonly answer: Promise<string>;
  destroy(): void;
}

/** A client with its whole request ready, sent only as the test says (no timers). */
async function slowClient(port: number, request: string): Promise<SlowClient> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  let text = '';
  let pos = 0;
  s.setEncoding('latin1');
  s.on('data', (d: string) => (text += d));
  s.on('error', () => undefined);
  const answer = new Promise<string>((resolve) => {
    s.on('data', () => {
      if (/\r\n\r\n/.test(text) && text.endsWith('raw')) resolve(text);
    });
    s.on('close', () => resolve(text));
  });
  return {
    send(n: number) {
      s.write(request.slice(pos, pos + n), 'latin1');
      pos += n;
    },
    get left() {
      return request.length - pos;
    },
    answer,
    destroy: () => s.destroy(),
  };
}

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('request_buffering in the config', () => {
  it('maps max_bytes, and refuses 0 and sizes above 64 MiB', () => {
    const yaml = (v: string): string => `services:\n  web:\n    ${v}\n    backends: [{url: "http://127.0.0.1:9"}]\n`;
    expect(parseConfig(yaml('request_buffering: {max_bytes: 1048576}'), '/tmp/d.yaml').services[0]?.requestBuffering).toEqual({ maxBytes: 1048576 });
    expect(parseConfig(yaml('retries: 2'), '/tmp/d.yaml').services[0]?.requestBuffering).toBeUndefined();
    for (const bad of ['{max_bytes: 0}', '{max_bytes: 67108865}', '{max_bytes: 1mb}', '{}']) {
      expect(() => parseConfig(yaml(`request_buffering: ${bad}`), '/tmp/d.yaml'), bad).toThrow(/services\.web\.request_buffering/);
    }
  });
});

for (const frontEnd of ['fast path', 'node:http'] as const) {
  describe(`request_buffering (${frontEnd})`, () => {
    let raw: RawBackend;
    let drover: DroverProcess;

    beforeAll(async () => {
      raw = await startRawBackend('raw');
      drover = await startDrover(
        `
listen: [{address: 127.0.0.1:0, limits: {request_timeout: 2s}}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  up:
    request_buffering: {max_bytes: 1000}
    backends: [{url: ${raw.url}}]
routes:
  - match: {path_prefix: /}
    service: up
`,
        frontEnd === 'node:http' ? { env: { DROVER_FAST_PATH: 'off' } } : {},
      );
    });
    afterAll(async () => {
      await drover?.stop('SIGKILL');
      await raw?.close();
    });

    it('20 slow clients sending bodies byte by byte hold no upstream connection until their bodies complete; each body arrives whole and exact', async () => {
      raw.reset();
      const n = 20;
      const bodies = Array.from({ length: n }, (_, i) => `body-${i}-${'x'.repeat(40)}-end`);
      const clients = await Promise.all(
        bodies.map((b) => slowClient(drover.port, `POST /up/${b.slice(0, 7)} HTTP/1.1\r\nHost: a\r\nContent-Length: ${b.length}\r\n\r\n${b}`)),
      );
      // heads and all but the last body byte, a byte per round
      for (const c of clients) c.send(c.left - bodies[0]!.length);
      for (let round = 0; round < bodies[0]!.length - 1; round++) {
        for (const c of clients) c.send(1);
        await tick(5);
      }
      // A fast request answered after all that: drover has read every byte sent before it.
      // (on main the POSTs' upstream connections were opened at once, their heads sent)
      expect((await request(drover.port, { path: '/probe', headers: { connection: 'close' } })).status).toBe(200);
      expect(raw.heads.map((h) => h.split(' ')[1])).toEqual(['/probe']);
      const probeConnections = raw.connections;
      expect(probeConnections).toBe(1);

      for (const c of clients) c.send(1);
      const answers = await Promise.all(clients.map((c) => c.answer));
      for (const a of answers) expect(a).toMatch(/^HTTP\/1\.1 200 [^]*raw$/);
      await waitFor(() => raw.heads.length === n + 1);
      const got = raw.data.flatMap(requestsIn).filter((r) => r.head.startsWith('POST '));
      expect(got.map((r) => r.body).sort()).toEqual([...bodies].sort());
      for (const r of got) expect(r.head).toMatch(new RegExp(`^POST /up/${r.body.slice(0, 7)} HTTP/1.1\\r\\n[^]*content-length: ${r.body.length}(\\r\\n|$)`, 'i'));
      for (const c of clients) c.destroy();
    });

    it('a small chunked body is buffered and sent with its length; one that outgrows max_bytes streams, what was read first', async () => {
      raw.reset();
      const small = await slowClient(drover.port, 'POST /up/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
      small.send(60);
      await tick(20);
      expect((await request(drover.port, { path: '/probe', headers: { connection: 'close' } })).status).toBe(200);
      expect(raw.heads.map((h) => h.split(' ')[1])).toEqual(['/probe']);
      small.send(small.left);
      expect(await small.answer).toMatch(/^HTTP\/1\.1 200 /);
      await waitFor(() => raw.data.some((d) => d.endsWith('hello world')));
      const chunkedReq = raw.data.flatMap(requestsIn).find((r) => r.head.startsWith('POST /up/chunked'));
      expect(chunkedReq?.body).toBe('hello world');
      expect(chunkedReq?.head).toMatch(/\r\ncontent-length: 11(\r\n|$)/i);
      small.destroy();

      // 1 200 bytes in 3 chunks: past 1 000 it streams (the backend sees it chunked, whole)
      raw.reset();
      raw.respond((s, head) => {
        if (head.startsWith('POST')) {
          // answer once the terminating chunk arrived
          const wait = (): void => {
            if (raw.data.some((d) => d.includes('\r\n0\r\n\r\n'))) s.write(ok('raw'));
            else setTimeout(wait, 10);
          };
          wait();
        } else s.write(ok('raw'));
      });
      const part = (c: string): string => `190\r\n${c.repeat(400)}\r\n`;
      const big = await slowClient(drover.port, `POST /up/big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${part('a')}${part('b')}${part('c')}0\r\n\r\n`);
      big.send(big.left - 5);
      await waitFor(() => raw.heads.length === 1);
      big.send(5);
      expect(await big.answer).toMatch(/^HTTP\/1\.1 200 /);
      const streamed = raw.data.join('');
      expect(streamed).toMatch(/^POST \/up\/big HTTP\/1.1\r\n[^]*transfer-encoding: chunked\r\n/i);
      const decoded = streamed
        .slice(streamed.indexOf('\r\n\r\n') + 4)
        // the last chunk first: `\r\n0\r\n` would otherwise be taken for a chunk size line
        .split(/\r\n0\r\n\r\n$|\r\n[0-9a-f]+\r\n|^[0-9a-f]+\r\n/)
        .join('');
      expect(decoded).toBe('a'.repeat(400) + 'b'.repeat(400) + 'c'.repeat(400));
      raw.respond((s) => s.write(ok('raw')));
      big.destroy();
    });

    it('a body trickling past request_timeout (2s) gets 408 and no backend is contacted', async () => {
      raw.reset();
      const c = await slowClient(drover.port, `POST /up/slow HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\n${'z'.repeat(500)}`);
      c.send(c.left - 500);
      let answer = '';
      void c.answer.then((a) => (answer = a));
      while (answer === '' && c.left > 0) {
        c.send(1);
        await tick(100);
      }
      expect(await c.answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(raw.connections).toBe(0);
      expect(raw.bytes).toBe(0);
    });
  });
}
