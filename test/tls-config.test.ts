/**
 * TLS config and certificate handling without a listener: `listen[].tls` parsing (shorthand,
 * certificate lists, versions, ALPN), `drover check` on certificate pairs (a real child process),
 * the certificate store's SNI choice, and the rapid-reset counter.
 */
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import type { Http2Session } from 'node:http2';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { ConfigError } from '../src/core/errors.js';
import { countReset, RAPID_RESET_LIMIT, RAPID_RESET_WINDOW_MS } from '../src/proxy/h2.js';
import { CertificateStore } from '../src/tls/store.js';
import { describeWith, testCa, type LeafFiles, type TestCa } from './helpers/certs.js';
import { BIN, tempDir } from './helpers/drover.js';

const run = promisify(execFile);

function issuesOf(yaml: string): string[] {
  try {
    parseConfig(yaml, '');
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
}

describe('listen[].tls config', () => {
  it('resolves the shorthand and the list, with defaults', () => {
    const c = parseConfig(
      ['listen:', '  - address: 127.0.0.1:0', '    tls: {cert: a.pem, key: a.key}', '  - address: 127.0.0.1:0', '    tls:', '      certificates: [{cert: a.pem, key: a.key}, {cert: /b.pem, key: /b.key}]', '      min_version: TLSv1.3', '      alpn: [http/1.1]', '      client_ca: ca.pem', '    hsts: 365d'].join('\n'),
      '/etc/drover/drover.yaml',
    );
    expect(c.listen[0]?.tls).toEqual({ certificates: [{ cert: '/etc/drover/a.pem', key: '/etc/drover/a.key' }], minVersion: 'TLSv1.2', alpn: ['h2', 'http/1.1'] });
    expect(c.listen[1]?.tls).toEqual({
      certificates: [
        { cert: '/etc/drover/a.pem', key: '/etc/drover/a.key' },
        { cert: '/b.pem', key: '/b.key' },
      ],
      minVersion: 'TLSv1.3',
      alpn: ['http/1.1'],
      clientCa: '/etc/drover/ca.pem',
    });
    expect([c.listen[0]?.hsts, c.listen[1]?.hsts, c.listen[0]?.redirectHttps]).toEqual([0, 365 * 86_400_000, false]);
  });

  it.each([
    ['tls: {cert: a.pem}', 'listen.0.tls: cert and key go together'],
    ['tls: {cert: a.pem, key: a.key, certificates: [{cert: b.pem, key: b.key}]}', 'listen.0.tls: give either cert and key or certificates, not both'],
    ['tls: {min_version: TLSv1.3}', 'listen.0.tls: needs cert and key, or certificates'],
    ['tls: {cert: a.pem, key: a.key, min_version: TLSv1.1}', 'listen.0.tls.min_version: "TLSv1.1" is not one of: TLSv1.2, TLSv1.3 (did you mean "TLSv1.2"?)'],
    ['tls: {cert: a.pem, key: a.key, alpn: [h3]}', 'listen.0.tls.alpn.0: "h3" is not one of: h2, http/1.1 (did you mean "h2"?)'],
    ['tls: {certificates: []}', 'listen.0.tls.certificates: needs at least one certificate'],
    ['tls: {cert: a.pem, key: a.key}\n    redirect_https: true', 'listen.0.redirect_https: redirect_https is for plain listeners: this one already serves HTTPS'],
    ['hsts: 11y', 'listen.0.hsts: "11y" is not a duration; write e.g. 365d, 8760h or 30m'],
  ])('refuses %s', (snippet, message) => {
    expect(issuesOf(`listen:\n  - address: 127.0.0.1:0\n    ${snippet}\n`)).toEqual([message]);
  });
});

describeWith(['openssl'], 'certificates', () => {
  let dir: string;
  let ca: TestCa;
  let site: LeafFiles;
  let wild: LeafFiles;
  let other: LeafFiles;

  beforeAll(() => {
    dir = tempDir('drover-tlscfg-');
    ca = testCa(dir);
    site = ca.leaf('site', ['site.test', 'alt.test']);
    wild = ca.leaf('wild', ['*.wild.test', 'wild.test']);
    other = ca.leaf('other', ['other.test']);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the store picks by exact name, then one-label wildcard, else the first', () => {
    const store = new CertificateStore();
    store.set('site', site.certPem, site.keyPem);
    store.set('wild', wild.certPem, wild.keyPem);
    const cases: [string | undefined, string][] = [
      ['site.test', 'site'],
      ['ALT.test', 'site'],
      ['wild.test', 'wild'],
      ['a.wild.test', 'wild'],
      ['a.b.wild.test', 'site'],
      ['nothing.test', 'site'],
      [undefined, 'site'],
      ['', 'site'],
    ];
    expect(cases.map(([sni]) => [sni, store.pick(sni)?.info.name])).toEqual(cases);
    // replacing keeps the position; a broken pair throws and changes nothing
    store.set('site', other.certPem, other.keyPem);
    expect([store.pick(undefined)?.info.name, store.pick('other.test')?.info.name, store.pick('site.test')?.info.name]).toEqual(['site', 'site', 'site']);
    expect(store.pick('site.test')?.info.names).toEqual(['other.test']);
    expect(() => store.set('wild', wild.certPem, site.keyPem)).toThrow(/does not match/);
    expect(() => store.set('wild', 'not a pem', wild.keyPem)).toThrow(/does not parse/);
    expect(store.pick('a.wild.test')?.info.name).toBe('wild');
    expect(store.delete('site')).toBe(true);
    expect(store.pick(undefined)?.info.name).toBe('wild');
  });

  it('drover check refuses a mismatched or unparsable pair and warns about an expired one', async () => {
    const expired = ca.leaf('expired', ['old.test'], { days: -1 });
    const garbage = path.join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    const file = path.join(dir, 'drover.yaml');
    const write = (tlsLines: string[]): void =>
      writeFileSync(file, ['listen:', '  - address: 127.0.0.1:0', ...tlsLines, 'services:', '  web:', '    backends: [{url: http://127.0.0.1:1}]', ''].join('\n'));
    write(['    tls:', '      certificates:', `        - {cert: ${site.cert}, key: ${other.key}}`, `        - {cert: ${garbage}, key: ${site.key}}`]);
    const bad = await run(process.execPath, [BIN, 'check', '-c', file]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toEqual([
      `${file}:5:18: listen.0.tls.certificates.0.cert: ${site.cert}: private key does not match the certificate`,
      expect.stringMatching(new RegExp(`^${file}:6:18: listen\\.0\\.tls\\.certificates\\.1\\.cert: ${garbage}: certificate does not parse`)),
    ]);
    write([`    tls: {cert: ${expired.cert}, key: ${expired.key}}`]);
    const warned = await run(process.execPath, [BIN, 'check', '-c', file]);
    expect(warned.stdout).toBe(`${file}: ok\n`);
    expect(warned.stderr).toMatch(/listen\.0\.tls\.cert: warning: certificate expired on 2020-01-02T00:00:00\.000Z/);
    write([`    tls: {cert: ${site.cert}, key: ${site.key}}`]);
    const ok = await run(process.execPath, [BIN, 'check', '-c', file]);
    expect(ok.stdout).toBe(`${file}: ok\n`);
    // valid 2 days: inside the 30-day warning window
    expect(ok.stderr).toMatch(/warning: certificate expires in [01] days/);
  });
});

describe('rapid reset accounting', () => {
  it('cuts a session off past the limit within one window, not across windows', () => {
    const session = {} as Http2Session;
    const t0 = 1_000_000;
    const within = Array.from({ length: RAPID_RESET_LIMIT + 1 }, (_, i) => countReset(session, t0 + i));
    expect(within.indexOf(true)).toBe(RAPID_RESET_LIMIT);
    const fresh = {} as Http2Session;
    const spread = Array.from({ length: 3 * RAPID_RESET_LIMIT }, (_, i) => countReset(fresh, t0 + Math.floor(i / (RAPID_RESET_LIMIT / 2)) * RAPID_RESET_WINDOW_MS));
    expect(spread.some(Boolean)).toBe(false);
  });
});
