/**
 * Issue 20, the second attack pass: pipelining around refused requests, path normalisation,
 * upgrade tokens, transfer-codings, 1xx and early backend failures, against the real
 * `bin/drover` over raw sockets, on both front ends (the fast path and node:http). Whether a
 * backend saw anything is measured at the TCP level on a raw backend.
 */
import net from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { scrapeSum } from './helpers/metrics.js';
import { adminBackends, fdCount, ok, rawExchange, startRawBackend, type RawBackend } from './helpers/raw-backend.js';
import { waitFor, eventually } from './helpers/wait.js';

/** The raw backend answers every head with 200 and the request target as the body. */
function echoTarget(b: RawBackend): void {
  b.respond((s, head) => s.write(ok(head.split(' ')[1] ?? '')));
}

const H = 'Host: x\r\n';
const AFTER = `POST /v1/after HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc`;

const FRONT_ENDS: [string, NodeJS.ProcessEnv][] = [
  ['fast path', {}],
  ['node:http', { DROVER_FAST_PATH: 'off' }],
];

describe.each(FRONT_ENDS)('%s', (_name, env) => {
  let raw: RawBackend;
  /** behind `path_prefix: /public/` only */
  let pub: RawBackend;
  let drover: DroverProcess;

  beforeAll(async () => {
    raw = await startRawBackend('raw');
    pub = await startRawBackend('pub');
    drover = await startDrover(
      `
listen:
  - address: 127.0.0.1:0
    limits: {max_url_bytes: 1024}
admin: {address: 127.0.0.1:0}
access_log: stdout
services:
  raw: {retries: 0, health: {passive: {consecutive_failures: 1000}}, backends: [{url: ${raw.url}, id: raw}]}
  pub: {retries: 0, backends: [{url: ${pub.url}, id: pub}]}
routes:
  - match: {path_prefix: /public/}
    service: pub
  - match: {path_prefix: /v1}
    service: raw
    strip_prefix: /v1
  - match: {path_prefix: /h2c}
    service: raw
    upgrades: [websocket, h2c]
  - match: {path_prefix: /}
    service: raw
`,
      { env },
    );
  });

  afterAll(async () => {
    await drover?.stop();
    await Promise.all([raw?.close(), pub?.close()]);
  });

  beforeEach(() => {
    raw.reset();
    pub.reset();
    echoTarget(raw);
    echoTarget(pub);
  });

  /** One request on its own connection: status and body. */
  async function get(target: string): Promise<{ status: number; body: string }> {
    const r = await rawExchange(drover.port, `GET ${target} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(r.text)?.[1] ?? 0);
    return { status, body: r.text.slice(r.text.indexOf('\r\n\r\n') + 4) };
  }

  /** Access log lines (requests) so far. */
  const accessLines = (): Record<string, unknown>[] => drover.logs.filter((l) => typeof l['status'] === 'number' && 'path' in l);

  describe('item 1: a refused request followed in the same write by a POST leaks nothing', () => {
    const refused: [string, string][] = [
      ['duplicate Host', `GET /v1/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`],
      ['absolute-form target', `GET http://evil/v1/a HTTP/1.1\r\n${H}\r\n`],
      ['fragment', `GET /v1/a#frag HTTP/1.1\r\n${H}\r\n`],
      ['414', `GET /${'a'.repeat(1100)} HTTP/1.1\r\n${H}\r\n`],
    ];

    it.each(refused)('%s + POST: 400/414 and close; the POST reaches no backend', async (_case, first) => {
      const r = await rawExchange(drover.port, first + AFTER);
      expect(r.text).toMatch(/^HTTP\/1\.1 (400|414) /);
      expect(r.closedByServer).toBe(true);
      // only the refusal was answered: one status line
      expect(r.text.match(/HTTP\/1\.1 \d{3} /g)).toHaveLength(1);
      await new Promise((res) => setTimeout(res, 100));
      expect(raw.connections).toBe(0);
      expect(raw.bytes).toBe(0);
      expect((await adminBackends(drover.adminPort)).every((b) => b.inflight === 0)).toBe(true);
    });

    it('a client that leaves with a pipelined POST still queued leaves nothing in flight', async () => {
      // /slow is answered after 300 ms; the POST behind it (its body incomplete) is dispatched meanwhile
      raw.respond((s, head) => {
        const target = head.split(' ')[1] ?? '';
        if (target === '/slow') setTimeout(() => s.writable && s.write(ok(target)), 300);
        else s.write(ok(target));
      });
      const s = net.connect(drover.port, '127.0.0.1');
      s.on('error', () => undefined);
      s.write(`GET /slow HTTP/1.1\r\n${H}\r\nPOST /queued HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabc`);
      await waitFor(() => raw.heads.length >= 1);
      s.destroy();
      await waitFor(async () => (await adminBackends(drover.adminPort)).every((b) => b.inflight === 0), 5000);
      await waitFor(() => raw.open <= 1, 5000);
    });

    it('1 000 such connections leave fds, upstream connections and drover_backend_inflight at baseline', async () => {
      // warm-up: pools, JIT, log stream; then the baseline
      for (let i = 0; i < 20; i++) await rawExchange(drover.port, `GET /warm HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      await waitFor(() => raw.open === 0 || raw.open === 1);
      const pid = drover.child.pid ?? 0;
      const upstreamBefore = raw.open;
      const fdsBefore = fdCount(pid);
      raw.reset();
      let left = 1000;
      let refusedCount = 0;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (left > 0) {
            left--;
            const r = await rawExchange(drover.port, `GET /v1/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n${AFTER}`);
            if (/^HTTP\/1\.1 400 /.test(r.text) && r.closedByServer) refusedCount++;
          }
        }),
      );
      expect(refusedCount).toBe(1000);
      // every client connection is gone once drover has seen them close
      await eventually(() => fdCount(pid) <= fdsBefore, 5000);
      expect(fdCount(pid)).toBeLessThanOrEqual(fdsBefore);
      expect(raw.connections).toBe(0);
      expect(raw.bytes).toBe(0);
      // no new upstream connection (raw.connections above); the warm-up's idle one may have expired
      expect(raw.open).toBeLessThanOrEqual(upstreamBefore);
      expect(await scrapeSum(drover.adminPort, 'drover_backend_inflight')).toBe(0);
    }, 60_000);
  });

  describe('item 3: routing on the normalised path', () => {
    // [sent, status, backend that must see it ('raw' | 'pub' | undefined), target it receives]
    const cases: [string, number, 'raw' | 'pub' | undefined, string | undefined][] = [
      ['/public/x', 200, 'pub', '/public/x'],
      ['/public/../admin', 200, 'raw', '/admin'],
      ['/public/%2e%2e/admin', 200, 'raw', '/admin'],
      ['/public/%2E./admin?q=/public/', 200, 'raw', '/admin?q=/public/'],
      ['/public/./x/../y', 200, 'pub', '/public/y'],
      ['/public//x', 200, 'pub', '/public/x'],
      ['//public/x', 200, 'pub', '/public/x'],
      ['/%70ublic/%7Euser', 200, 'pub', '/public/~user'],
      ['/v1/a/../b', 200, 'raw', '/b'],
      ['/v1../admin', 400, undefined, undefined],
      ['/../etc/passwd', 400, undefined, undefined],
      ['/public/%2e%2e/%2e%2e/x', 400, undefined, undefined],
      ['/public/a%2Fb', 400, undefined, undefined],
      ['/public/a%5cb', 400, undefined, undefined],
      ['/v1/a%2fb', 400, undefined, undefined],
      ['/x%zz', 400, undefined, undefined],
      ['/x%00', 400, undefined, undefined],
      // a route that matches every path: encoded slashes pass as sent (identifiers use them)
      ['/repo/a%2fb', 200, 'raw', '/repo/a%2Fb'],
    ];

    it.each(cases)('%s -> %i', async (target, status, backend, upstream) => {
      const r = await get(target);
      expect(r.status).toBe(status);
      const seen = { raw: raw.heads.map((h) => h.split(' ')[1]), pub: pub.heads.map((h) => h.split(' ')[1]) };
      if (backend === undefined) {
        expect(seen).toEqual({ raw: [], pub: [] });
      } else {
        expect(seen[backend]).toEqual([upstream]);
        expect(seen[backend === 'raw' ? 'pub' : 'raw']).toEqual([]);
        expect(r.body).toBe(upstream);
      }
    });
  });

  describe('item 4: only allowed upgrades are tunnelled', () => {
    const KEY = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
    const upgrade = (path: string, protocol: string, extra = ''): string => `GET ${path} HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: ${protocol}\r\n${extra}\r\n`;
    beforeEach(() => {
      // a backend that switches to whatever it is asked, then echoes one line
      raw.respond((s, head) => {
        const protocol = /\r\nupgrade: ([^\r]*)/i.exec(head)?.[1] ?? '?';
        s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${protocol}\r\nConnection: Upgrade\r\n\r\ntunnel-open`);
        s.end();
      });
    });

    const refused: [string, string][] = [
      ['h2c (smuggling)', upgrade('/x', 'h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n')],
      ['an unknown protocol', upgrade('/x', 'foo/1')],
      ['two protocols', upgrade('/x', 'websocket, h2c', KEY)],
      ['websocket without Sec-WebSocket-Key', upgrade('/x', 'websocket', 'Sec-WebSocket-Version: 13\r\n')],
      ['websocket without Sec-WebSocket-Version', upgrade('/x', 'websocket', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n')],
      ['websocket with a malformed key', upgrade('/x', 'websocket', 'Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n')],
      ['websocket version 8', upgrade('/x', 'websocket', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n')],
    ];
    it.each(refused)('%s: 400, nothing reaches the backend', async (_case, text) => {
      const r = await rawExchange(drover.port, text);
      expect(r.text).toMatch(/^HTTP\/1\.1 400 /);
      expect(r.text).not.toContain('tunnel-open');
      await new Promise((res) => setTimeout(res, 50));
      expect(raw.connections).toBe(0);
    });

    it('a valid WebSocket handshake is tunnelled', async () => {
      const r = await rawExchange(drover.port, upgrade('/x', 'websocket', KEY));
      expect(r.text).toMatch(/^HTTP\/1\.1 101 /);
      expect(r.text).toContain('tunnel-open');
      expect(raw.heads[0]).toMatch(/\r\nupgrade: websocket/i);
    });

    it('h2c on a route that lists it in upgrades is tunnelled', async () => {
      const r = await rawExchange(drover.port, upgrade('/h2c/x', 'h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n'));
      expect(r.text).toMatch(/^HTTP\/1\.1 101 /);
      expect(r.text).toContain('tunnel-open');
      expect(raw.heads[0]).toMatch(/\r\nupgrade: h2c/i);
    });
  });

  describe('item 6: transfer-codings other than chunked', () => {
    it.each([['gzip, chunked'], ['deflate,chunked'], ['x-custom, chunked']])('a request with Transfer-Encoding: %s gets 501 and reaches no backend', async (te) => {
      const r = await rawExchange(drover.port, `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: ${te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n`);
      expect(r.text).toMatch(/^HTTP\/1\.1 501 /);
      expect(r.closedByServer).toBe(true);
      await new Promise((res) => setTimeout(res, 50));
      expect(raw.connections).toBe(0);
    });

    it.each([
      ['gzip, chunked', 'Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'],
      ['gzip', 'Transfer-Encoding: gzip\r\nConnection: close\r\n\r\nabc'],
    ])('a backend answering Transfer-Encoding: %s gets the client a 502', async (_te, rest) => {
      raw.respond((s) => {
        s.write(`HTTP/1.1 200 OK\r\n${rest}`);
        if (rest.includes('close')) s.end();
      });
      const r = await get('/coded');
      expect(r.status).toBe(502);
      expect(r.body).not.toContain('abc');
    });
  });

  describe('item 7: 1xx from backends are swallowed, 100 Continue included', () => {
    /** Writes `parts` to `s` one by one, 15 ms apart (separate reads on drover's side). */
    const trickle = (s: net.Socket, parts: string[]): void => {
      parts.forEach((p, i) => setTimeout(() => s.writable && s.write(Buffer.from(p, 'latin1')), 15 * i));
    };
    const upstreamErrors = (): Promise<number> => scrapeSum(drover.adminPort, 'drover_upstream_errors_total', { backend: 'raw' });

    it('an unsolicited 100 (whole, split across reads, twice, beside a 103) before each answer: every request gets the answer, no backend failure', async () => {
      const final = (t: string): string => `HTTP/1.1 200 OK\r\nContent-Length: ${t.length}\r\n\r\n${t}`;
      const answers: ((t: string) => string[])[] = [
        (t) => [`HTTP/1.1 100 Continue\r\n\r\n${final(t)}`],
        (t) => ['HTTP/1.1 1', '00 Contin', 'ue\r\n\r', `\n${final(t)}`],
        (t) => ['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100\r\nX-A: b\r\n\r\n', final(t)],
      ];
      raw.respond((s, head, index) => trickle(s, (answers[index % answers.length] as (t: string) => string[])(head.split(' ')[1] ?? '')));
      const before = await upstreamErrors();
      // one client connection, requests one after another: each answer on the same upstream connection
      const s = net.connect(drover.port, '127.0.0.1');
      s.on('error', () => undefined);
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString('latin1')));
      for (let i = 1; i <= 9; i++) {
        s.write(`GET /c${i} HTTP/1.1\r\n${H}\r\n`);
        await waitFor(() => text.endsWith(`\r\n\r\n/c${i}`), 5000);
      }
      s.destroy();
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
      expect(statuses).toEqual(Array(9).fill('200'));
      // all nine on one upstream connection (a kept-alive one from an earlier test, or a new one)
      expect(raw.data.filter((d) => d.includes('GET /c')).map((d) => d.match(/GET \/c\d/g)?.length)).toEqual([9]);
      expect(await upstreamErrors()).toBe(before);
      expect((await adminBackends(drover.adminPort)).find((b) => b.id === 'raw')).toMatchObject({ state: 'unknown', inflight: 0 });
    });

    it('a POST whose backend sends 100 before reading the body: the body arrives whole, the answer comes back', async () => {
      raw.respond((s) => {
        s.write('HTTP/1.1 100 Continue\r\n\r\n');
        setTimeout(() => s.writable && s.write(ok('stored')), 50);
      });
      const body = 'x'.repeat(3000);
      const r = await rawExchange(drover.port, `POST /up HTTP/1.1\r\n${H}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
      expect(r.text.endsWith('\r\n\r\nstored')).toBe(true);
      // on whichever upstream connection took it (a streamed body may open one of its own)
      const took = raw.data.filter((d) => d.includes('POST /up '));
      expect(took).toHaveLength(1);
      expect(took[0]?.endsWith(`\r\n\r\n${body}`)).toBe(true);
    });

    it('a body that holds a 100 status line is relayed byte for byte', async () => {
      const inner = 'HTTP/1.1 100 Continue\r\n\r\n';
      raw.respond((s) => trickle(s, [`HTTP/1.1 200 OK\r\nContent-Length: ${inner.length + 2}\r\n\r\n`, `${inner}ok`]));
      const r = await get('/inner');
      expect(r.status).toBe(200);
      expect(r.body).toBe(`${inner}ok`);
    });
  });

  describe('item 8: a backend failing before the first body byte gets the client a 502', () => {
    const cases: [string, string][] = [
      ['200 + Content-Length 100, then FIN', 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'],
      ['204 with a Content-Length (and a body)', 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello'],
      ['a control byte in the reason phrase', 'HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok'],
      ['a header value node:http refuses to write', 'HTTP/1.1 200 OK\r\nX-Bad: a\x7fb\r\nContent-Length: 2\r\n\r\nok'],
    ];
    it.each(cases)('%s: 502, logged 502', async (name, answer) => {
      raw.respond((s) => {
        s.write(Buffer.from(answer, 'latin1'));
        s.end();
      });
      const target = `/early-${cases.findIndex((c) => c[0] === name)}`;
      const r = await get(target);
      expect(r.status).toBe(502);
      expect(r.body).toBe('{"error":"bad_gateway","service":"raw"}');
      await waitFor(() => accessLines().some((l) => l['path'] === target));
      expect(accessLines().find((l) => l['path'] === target)?.['status']).toBe(502);
    });
  });

  describe('item 10: address and URL claims from an untrusted client', () => {
    it('X-Real-IP, X-Forwarded-Port, X-Original-URL and X-Rewrite-URL are dropped', async () => {
      const r = await rawExchange(
        drover.port,
        `GET /claims HTTP/1.1\r\n${H}X-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 443\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Kept: yes\r\nConnection: close\r\n\r\n`,
      );
      expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
      const head = (raw.heads[0] ?? '').toLowerCase();
      expect(head).toContain('x-kept: yes');
      for (const name of ['x-real-ip', 'x-forwarded-port', 'x-original-url', 'x-rewrite-url']) expect(head).not.toContain(`${name}:`);
      expect(head).toContain('x-forwarded-for: 127.0.0.1');
    });
  });

  describe('item 10: CONNECT', () => {
    it('CONNECT gets 400 and reaches no backend', async () => {
      const r = await rawExchange(drover.port, `CONNECT 127.0.0.1:${raw.port} HTTP/1.1\r\nHost: 127.0.0.1:${raw.port}\r\n\r\n`);
      expect(r.text).toMatch(/^HTTP\/1\.1 400 /);
      expect(raw.connections).toBe(0);
    });
  });

  describe('item 2: pipelining around a malformed request', () => {
    it('GET /1 + a refused request + POST /3: /1 answered, then 400, close; /3 never forwarded', async () => {
      const r = await rawExchange(drover.port, `GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nPOST /3 HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`);
      const statuses = [...r.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
      expect(statuses).toEqual(['200', '400']);
      expect(r.text).toContain('\r\n\r\n/1');
      expect(r.closedByServer).toBe(true);
      await new Promise((res) => setTimeout(res, 100));
      expect(raw.heads.map((h) => h.split('\r\n')[0])).toEqual(['GET /1 HTTP/1.1']);
    });

    it('GET /1 + a request the parser refuses: /1 answered (logged 200), then 400, close', async () => {
      raw.respond((s, head) => setTimeout(() => s.write(ok(head.split(' ')[1] ?? '')), 50));
      // paths of their own: access log lines of earlier tests may still be on their way
      const r = await rawExchange(drover.port, `GET /pp1 HTTP/1.1\r\n${H}\r\nGET /pp2 HTTP/1.1\r\n${H}X-A : b\r\n\r\nGET /pp3 HTTP/1.1\r\n${H}\r\n`);
      const statuses = [...r.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
      expect(statuses).toEqual(['200', '400']);
      expect(r.text).toContain('\r\n\r\n/pp1');
      expect(r.closedByServer).toBe(true);
      expect(raw.heads.map((h) => h.split('\r\n')[0])).toEqual(['GET /pp1 HTTP/1.1']);
      const mine = (): unknown[][] => accessLines().filter((l) => String(l['path']).startsWith('/pp')).map((l) => [l['path'], l['status']]);
      await waitFor(() => mine().length > 0);
      await new Promise((res) => setTimeout(res, 200));
      expect(mine()).toEqual([['/pp1', 200]]);
    });

    it('two good requests and then a refused one: both answered in order before the 400', async () => {
      const r = await rawExchange(drover.port, `GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}\r\nGET /3#x HTTP/1.1\r\n${H}\r\nGET /4 HTTP/1.1\r\n${H}\r\n`);
      const statuses = [...r.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
      expect(statuses).toEqual(['200', '200', '400']);
      expect(r.text.indexOf('\r\n\r\n/1')).toBeLessThan(r.text.indexOf('\r\n\r\n/2'));
      expect(r.closedByServer).toBe(true);
      await new Promise((res) => setTimeout(res, 100));
      expect(raw.heads.map((h) => h.split('\r\n')[0])).toEqual(['GET /1 HTTP/1.1', 'GET /2 HTTP/1.1']);
    });
  });
});

describe('item 3 with merge_slashes: false: runs of / are kept, for routing and forwarding', () => {
  let raw: RawBackend;
  let pub: RawBackend;
  let drover: DroverProcess;
  beforeAll(async () => {
    [raw, pub] = await Promise.all([startRawBackend('raw'), startRawBackend('pub')]);
    echoTarget(raw);
    echoTarget(pub);
    drover = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
merge_slashes: false
services:
  raw: {backends: [{url: ${raw.url}, id: raw}]}
  pub: {backends: [{url: ${pub.url}, id: pub}]}
routes:
  - {match: {path_prefix: /public/}, service: pub}
  - {match: {path_prefix: /v1}, service: raw, strip_prefix: /v1}
  - {match: {path_prefix: /}, service: raw}
`);
  });
  afterAll(async () => {
    await drover?.stop();
    await Promise.all([raw?.close(), pub?.close()]);
  });

  // [sent, backend, target it receives]; dot-segments are still removed (an empty segment is one)
  it.each([
    ['/public//x', 'pub', '/public//x'],
    ['//public/x', 'raw', '//public/x'],
    ['/public/a//../b', 'pub', '/public/a/b'],
    ['/public//../admin', 'pub', '/public/admin'],
    ['/public/../admin', 'raw', '/admin'],
    ['/v1//a', 'raw', '//a'],
  ])('%s -> %s %s', async (target, backend, upstream) => {
    raw.reset();
    pub.reset();
    const r = await rawExchange(drover.port, `GET ${target} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
    expect({ raw: raw.heads.map((h) => h.split(' ')[1]), pub: pub.heads.map((h) => h.split(' ')[1]) }).toEqual({
      raw: backend === 'raw' ? [upstream] : [],
      pub: backend === 'pub' ? [upstream] : [],
    });
  });
});

describe('item 5: the admin API answers only its own names (DNS rebinding)', () => {
  let raw: RawBackend;
  let drover: DroverProcess;
  beforeAll(async () => {
    raw = await startRawBackend('raw');
    drover = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0, allowed_hosts: [lb.internal, 'ops.example:9999']}
access_log: off
services:
  web: {backends: [{url: ${raw.url}, id: b1}]}
routes: [{match: {path_prefix: /}, service: web}]
`);
  });
  afterAll(async () => {
    await drover?.stop();
    await raw?.close();
  });

  const call = async (method: string, path: string, host: string, extra = ''): Promise<number> => {
    const r = await rawExchange(drover.adminPort, `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`);
    return Number(/^HTTP\/1\.1 (\d{3}) /.exec(r.text)?.[1] ?? 0);
  };
  const state = async (): Promise<string | undefined> => (await adminBackends(drover.adminPort)).find((b) => b.id === 'b1')?.state;

  it('a rebinding page (Host and Origin both rebind.example) cannot drain a backend or read the API', async () => {
    const rebind = `rebind.example:${drover.adminPort}`;
    expect(await call('POST', '/api/services/web/backends/b1/drain', rebind, `Origin: http://${rebind}\r\n`)).toBe(403);
    expect(await call('GET', '/api/services', rebind)).toBe(403);
    expect(await call('GET', '/metrics', 'ops.example:9901')).toBe(403); // listed with another port
    expect(await state()).not.toBe('draining');
  });

  it('loopback names, IP literals and allowed_hosts are served', async () => {
    const p = drover.adminPort;
    for (const host of [`127.0.0.1:${p}`, `localhost:${p}`, `[::1]:${p}`, `LB.internal:${p}`, 'ops.example:9999', 'app.localhost']) {
      expect(await call('GET', '/healthz', host)).toBe(200);
    }
    expect(await call('POST', '/api/services/web/backends/b1/drain', `localhost:${p}`, `Origin: http://localhost:${p}\r\n`)).toBe(200);
    expect(await state()).toBe('draining');
    expect(await call('POST', '/api/services/web/backends/b1/undrain', `127.0.0.1:${p}`)).toBe(200);
  });
});
