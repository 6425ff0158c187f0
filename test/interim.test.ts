/**
 * Issue 20, item 7: the byte filter that takes a backend's unsolicited `100 Continue` out of the
 * stream before undici's parser (src/proxy/interim.ts). Table-driven; each stream is fed whole,
 * split at every position, and byte by byte: the output must not depend on how reads fall.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { InterimFilter, interimSwallowingConnector, MAX_INTERIM_HEAD } from '../src/proxy/interim.js';
import { REFUSING_PORT } from './helpers/backends.js';

const FINAL = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
const C100 = 'HTTP/1.1 100 Continue\r\n\r\n';

/** Feeds `responses` (each after a request head was written) in `split`-sized reads; returns what the parser sees. */
function run(responses: readonly string[], cut: (s: string) => string[]): string {
  const f = new InterimFilter();
  let out = '';
  for (const r of responses) {
    f.responseExpected();
    for (const part of cut(r)) out += f.filter(Buffer.from(part, 'latin1')).toString('latin1');
  }
  return out;
}

const whole = (s: string): string[] => [s];
const bytes = (s: string): string[] => [...s];
const at = (i: number) => (s: string): string[] => [s.slice(0, i), s.slice(i)];

describe('InterimFilter', () => {
  const cases: [name: string, responses: string[], parserSees: string[]][] = [
    ['a plain response passes untouched', [FINAL], [FINAL]],
    ['one 100 before the answer is taken out', [C100 + FINAL], [FINAL]],
    ['a 100 with header fields, and one without a reason phrase', [`HTTP/1.1 100 Continue\r\nX-A: b\r\n\r\nHTTP/1.1 100\r\n\r\n${FINAL}`], [FINAL]],
    ['HTTP/1.0 and bare-LF heads', [`HTTP/1.0 100 Continue\n\n${FINAL}`], [FINAL]],
    ['other 1xx stay for undici, which skips them; the 100s around them go', [`${C100}HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n${C100}${FINAL}`], [`HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n${FINAL}`]],
    ['101, 1000 and 10 are not 100', ['HTTP/1.1 101 Switching\r\n\r\n', 'HTTP/1.1 1000 x\r\n\r\n', 'HTTP/1.1 10 x\r\n\r\n'], ['HTTP/1.1 101 Switching\r\n\r\n', 'HTTP/1.1 1000 x\r\n\r\n', 'HTTP/1.1 10 x\r\n\r\n']],
    ['a body that holds a 100 head is the body: untouched', [`HTTP/1.1 200 OK\r\nContent-Length: ${C100.length}\r\n\r\n${C100}`], [`HTTP/1.1 200 OK\r\nContent-Length: ${C100.length}\r\n\r\n${C100}`]],
    ['each response of a keep-alive connection', [C100 + FINAL, FINAL, C100 + C100 + FINAL], [FINAL, FINAL, FINAL]],
    ['garbage is left for the parser to refuse', ['HTTP/1.1 1x0 ?\r\n\r\n', 'nonsense'], ['HTTP/1.1 1x0 ?\r\n\r\n', 'nonsense']],
  ];

  it.each(cases)('%s', (_name, responses, parserSees) => {
    const want = parserSees.join('');
    expect(run(responses, whole)).toBe(want);
    expect(run(responses, bytes)).toBe(want);
    const longest = Math.max(...responses.map((r) => r.length));
    for (let i = 1; i < longest; i++) expect(run(responses, at(i)), `split at ${i}`).toBe(want);
  });

  it('reads before any request head pass untouched (undici refuses them itself)', () => {
    const f = new InterimFilter();
    expect(f.active).toBe(false);
    expect(f.filter(Buffer.from(C100)).toString()).toBe(C100);
  });

  it('stops checking once the response has started, and after a swallowed 100 until the next head', () => {
    const f = new InterimFilter();
    f.responseExpected();
    expect(f.active).toBe(true);
    expect(f.filter(Buffer.from('HTTP/1.1 1')).length).toBe(0);
    expect(f.active).toBe(true);
    expect(f.filter(Buffer.from('00 Continue\r\n\r\nHTTP/1.1 2')).toString()).toBe('HTTP/1.1 2');
    expect(f.active).toBe(false);
    const rest = Buffer.from(`00 OK\r\n\r\n${C100}`);
    expect(f.filter(rest)).toBe(rest); // the very same buffer: nothing copied on the common path
  });

  it('a 1xx head longer than MAX_INTERIM_HEAD fails the connection', () => {
    const f = new InterimFilter();
    f.responseExpected();
    f.filter(Buffer.from('HTTP/1.1 100 Continue\r\n'));
    const field = Buffer.from(`X: ${'a'.repeat(1000)}\r\n`);
    expect(() => {
      for (let i = 0; i * field.length <= MAX_INTERIM_HEAD + field.length; i++) f.filter(field);
    }).toThrow(/interim 1xx response head over/);
  });
});

describe('interimSwallowingConnector', () => {
  const connect = interimSwallowingConnector({ timeout: 1000 });
  const dial = (port: number): Promise<{ err: Error | null; socket: net.Socket | undefined }> =>
    new Promise((resolve) => {
      connect({ hostname: '127.0.0.1', host: `127.0.0.1:${port}`, protocol: 'http:', port: String(port), servername: null as unknown as string, localAddress: null, httpSocket: undefined }, ((err: Error | null, socket?: net.Socket) =>
        resolve({ err, socket })) as never);
    });

  it('hands a refused connection\'s error straight on (undici passes no socket then)', async () => {
    const r = await dial(REFUSING_PORT);
    expect(r.err).toMatchObject({ code: 'ECONNREFUSED' });
    expect(r.socket).toBeUndefined();
  });

  it('a connected socket reads through the filter', async () => {
    const server = net.createServer((c) => c.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { err, socket } = await dial((server.address() as net.AddressInfo).port);
      expect(err).toBeNull();
      const s = socket as net.Socket;
      // as undici does: it announces the request head it writes, then reads on 'readable'
      const { channel } = await import('node:diagnostics_channel');
      channel('undici:client:sendHeaders').publish({ request: {}, headers: '', socket: s });
      let seen = '';
      s.on('readable', () => {
        let chunk: Buffer | null;
        while ((chunk = s.read() as Buffer | null) !== null) seen += chunk.toString('latin1');
      });
      await new Promise((resolve) => s.once('end', resolve));
      expect(seen).toBe('HTTP/1.1 204 No Content\r\n\r\n');
    } finally {
      server.close();
    }
  });
});
