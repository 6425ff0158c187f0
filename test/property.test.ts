/**
 * Property-based (fast-check, fixed seeds): random input to the config loader and to header
 * handling never throws anything but a ConfigError, and random header names and values sent
 * over a real socket to the real `bin/drover` only ever get forwarded or refused (400, 431; Node's
 * own 417 for an unknown Expect).
 */
import fc from 'fast-check';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { ConfigError } from '../src/core/errors.js';
import { clientAddress, downstreamResponseHeaders, NO_EDITS, upstreamRequestHeaders } from '../src/proxy/headers.js';
import { startDrover, type DroverProcess } from './helpers/drover.js';
import { rawExchange, startRawBackend, type RawBackend } from './helpers/raw-backend.js';

const SEED = 20_26_06;

function loadsOrConfigError(text: string): boolean {
  try {
    parseConfig(text, 'random.yaml');
    return true;
  } catch (err) {
    if (err instanceof ConfigError) {
      expect(err.issues.length).toBeGreaterThan(0);
      return true;
    }
    throw err;
  }
}

const KEYS = ['listen', 'address', 'limits', 'max_headers', 'headers_timeout', 'trusted_proxies', 'admin', 'token_env', 'registry', 'file', 'etcd', 'endpoints', 'services', 'web', 'balancer', 'hash_key', 'health', 'active', 'path', 'timeouts', 'backends', 'url', 'weight', 'routes', 'match', 'service', 'strip_prefix', 'request_headers', 'set', '<<', '__proto__', 'constructor'];
const scalar = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constantFrom('5s', '127.0.0.1:0', 'http://127.0.0.1:9', 'round_robin', '/', 'web', '10.0.0.0/8'));
const shaped = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: 'small' }, scalar, fc.array(tie('node'), { maxLength: 3 }), fc.dictionary(fc.constantFrom(...KEYS), tie('node'), { maxKeys: 4 })),
})).node;

describe('config loader on random input', () => {
  it('random text: loads or throws ConfigError', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), loadsOrConfigError), { seed: SEED, numRuns: 400 });
  });

  it('random YAML documents of config-like shape: loads or throws ConfigError', () => {
    fc.assert(fc.property(shaped, (doc) => loadsOrConfigError(stringify(doc))), { seed: SEED, numRuns: 600 });
  });

  it('random values at every documented key of a valid config: loads or throws ConfigError', () => {
    const base = { listen: [{ address: '127.0.0.1:0' }], services: { web: { backends: [{ url: 'http://127.0.0.1:9' }] } }, routes: [{ match: { path_prefix: '/' }, service: 'web' }] };
    const paths = [['listen', 0, 'limits'], ['limits'], ['services', 'web', 'timeouts'], ['services', 'web', 'health'], ['routes', 0, 'request_headers'], ['services', 'web', 'backends', 0, 'url'], ['trusted_proxies'], ['admin']];
    fc.assert(
      fc.property(fc.constantFrom(...paths), fc.anything(), (p, v) => {
        const doc = structuredClone(base) as Record<string, unknown>;
        let at: Record<string | number, unknown> = doc;
        for (const seg of p.slice(0, -1)) {
          at[seg] ??= {};
          at = at[seg] as Record<string | number, unknown>;
        }
        at[p.at(-1) as string | number] = v;
        return loadsOrConfigError(stringify(doc));
      }),
      { seed: SEED, numRuns: 600 },
    );
  });
});

describe('header handling on random input', () => {
  const rawHeaders = fc.array(fc.tuple(fc.string({ unit: 'binary', maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 40 })), { maxLength: 12 }).map((pairs) => pairs.flat());
  it('upstreamRequestHeaders, downstreamResponseHeaders and clientAddress never throw', () => {
    fc.assert(
      fc.property(rawHeaders, fc.boolean(), fc.string(), (raw, trusted, peer) => {
        const up = upstreamRequestHeaders(raw, { peer, trusted, proto: 'http' }, NO_EDITS);
        expect(up.headers.length % 2).toBe(0);
        expect(up.headers.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())).toContain('x-forwarded-for');
        const down = downstreamResponseHeaders(raw.map((x) => Buffer.from(x, 'latin1')));
        expect(down.length % 2).toBe(0);
        const c = clientAddress(peer, raw, () => true);
        expect(typeof c).toBe('string');
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });
});

describe('request parsing on random header names and values (real drover)', () => {
  let backend: RawBackend;
  let drover: DroverProcess;
  beforeAll(async () => {
    backend = await startRawBackend('ok');
    drover = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  s: {backends: [{url: ${backend.url}}]}
routes: [{match: {path_prefix: /}, service: s}]
`);
  });
  afterAll(async () => {
    await drover?.stop();
    await backend?.close();
  });

  // bytes 0-255, biased towards the characters that matter to HTTP framing
  const byte = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 9, 10, 13, 32, 58, 44, 127)).map((c) => String.fromCharCode(c));
  const text = (max: number) => fc.array(byte, { minLength: 0, maxLength: max }).map((cs) => cs.join(''));

  it('only 200 (forwarded), 400, 431 or 417 for an unknown Expect (refused, backend untouched); the process lives', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(text(12), fc.constantFrom('Host', 'Content-Length', 'Transfer-Encoding', 'Connection', 'X-Forwarded-For', 'Upgrade', 'Expect')), text(24), async (name, value) => {
        const before = backend.heads.length;
        const r = await rawExchange(drover.port, `GET / HTTP/1.1\r\nHost: x\r\n${name}: ${value}\r\nConnection: close\r\n\r\n`, 3000);
        const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(r.text)?.[1] ?? 0);
        expect([200, 400, 417, 431], JSON.stringify({ name, value, got: r.text.slice(0, 80) })).toContain(status);
        if (status !== 200) expect(backend.heads.length).toBe(before);
      }),
      { seed: SEED, numRuns: 250 },
    );
    expect(drover.child.exitCode).toBeNull();
  }, 60_000);
});
