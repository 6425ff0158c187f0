/**
 * Session tickets of a TLS listener's front end (src/proxy/tls-front.ts), in process with real
 * sockets and Node's TLS client: a ticket resumes its session (TLS 1.2 and 1.3, on the default
 * certificate and on one chosen by SNI), a key rotation sends every earlier ticket back to a full
 * handshake while tickets issued after it resume, and the rotation timer does it by itself.
 */
import http from 'node:http';
import { rmSync } from 'node:fs';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import type { ListenConfig } from '../src/config/types.js';
import type { H2Context } from '../src/proxy/h2.js';
import { createTlsFront, type TlsFront } from '../src/proxy/tls-front.js';
import { describeWith, testCa, type TestCa } from './helpers/certs.js';
import { tempDir } from './helpers/drover.js';
import { waitFor } from './helpers/wait.js';

interface Options {
  readonly servername?: string | undefined;
  readonly maxVersion: tls.SecureVersion;
}

/** A full handshake; resolves with the ticket the server issued. */
function ticket(port: number, caPem: string, o: Options): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: o.servername, maxVersion: o.maxVersion, rejectUnauthorized: o.servername !== undefined });
    // TLS 1.3 tickets arrive after the handshake: keep reading until one does
    s.once('session', (session: Buffer) => {
      s.destroy();
      resolve(session);
    });
    s.on('error', reject);
    s.resume();
  });
}

/** Whether a connection offering `session` was resumed. */
function resumes(port: number, caPem: string, o: Options, session: Buffer): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: o.servername, maxVersion: o.maxVersion, session, rejectUnauthorized: o.servername !== undefined }, () => {
      const reused = s.isSessionReused();
      s.destroy();
      resolve(reused);
    });
    s.on('error', reject);
  });
}

describeWith(['openssl'], 'TLS session tickets', () => {
  let dir: string;
  let ca: TestCa;
  let cfg: ListenConfig;
  const fronts: TlsFront[] = [];

  /** A listening front end of `cfg`; it never gets as far as a request. */
  async function front(ticketRotationMs?: number): Promise<{ front: TlsFront; port: number }> {
    const tlsCfg = cfg.tls;
    if (tlsCfg === undefined) throw new Error('no tls in the test config');
    const h2ctx: H2Context = {
      info: { proto: 'https', maxUrlBytes: 8192, maxHeaders: 100 },
      getState: () => {
        throw new Error('no request is expected');
      },
      extra: [],
      maxHeaderBytes: 16384,
    };
    const f = createTlsFront(cfg, tlsCfg, http.createServer(), h2ctx, { ticketRotationMs });
    fronts.push(f);
    await new Promise<void>((resolve) => f.server.listen(0, '127.0.0.1', resolve));
    const addr = f.server.address();
    return { front: f, port: typeof addr === 'object' && addr !== null ? addr.port : 0 };
  }

  beforeAll(() => {
    dir = tempDir('drover-tickets-');
    ca = testCa(dir);
    const site = ca.leaf('site', ['site.test']);
    const other = ca.leaf('other', ['other.test']);
    const config = parseConfig(
      `
listen:
  - address: 127.0.0.1:0
    tls:
      certificates:
        - {cert: ${site.cert}, key: ${site.key}}
        - {cert: ${other.cert}, key: ${other.key}}
admin: {address: 127.0.0.1:0}
services:
  web:
    backends: [{url: http://127.0.0.1:9}]
routes:
  - match: {path_prefix: /}
    service: web
`,
      `${dir}/drover.yaml`,
    );
    cfg = config.listen[0] as ListenConfig;
  });

  afterAll(() => {
    for (const f of fronts) {
      f.stop();
      f.server.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('a ticket resumes until the key rotates; tickets issued after the rotation resume', async () => {
    const { front: f, port } = await front();
    const cases: Options[] = [
      { servername: 'site.test', maxVersion: 'TLSv1.3' },
      { servername: 'site.test', maxVersion: 'TLSv1.2' },
      // chosen by SNI: another secure context than the listener's default
      { servername: 'other.test', maxVersion: 'TLSv1.3' },
      { servername: 'other.test', maxVersion: 'TLSv1.2' },
      // no SNI at all: the default certificate
      { servername: undefined, maxVersion: 'TLSv1.3' },
    ];
    const seen: [string, boolean, boolean, boolean][] = [];
    for (const o of cases) {
      const before = await ticket(port, ca.caPem, o);
      const resumedBefore = await resumes(port, ca.caPem, o, before);
      f.rotateTicketKeys();
      const resumedAfter = await resumes(port, ca.caPem, o, before);
      const fresh = await ticket(port, ca.caPem, o);
      seen.push([`${o.servername ?? 'no SNI'} ${o.maxVersion}`, resumedBefore, resumedAfter, await resumes(port, ca.caPem, o, fresh)]);
    }
    expect(seen).toEqual(cases.map((o) => [`${o.servername ?? 'no SNI'} ${o.maxVersion}`, true, false, true]));
  });

  it('the rotation timer rotates the key by itself', async () => {
    const { port } = await front(200);
    const o: Options = { servername: 'site.test', maxVersion: 'TLSv1.3' };
    const old = await ticket(port, ca.caPem, o);
    await waitFor(async () => !(await resumes(port, ca.caPem, o, old)), 5_000);
  });
});
