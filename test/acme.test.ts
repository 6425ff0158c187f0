/**
 * ACME against a real server (pebble on loopback): drover orders a certificate for the
 * configured names, pebble validates http-01 against drover's plain listeners (127.0.0.1 and
 * ::1 on pebble's httpPort), and the account key and certificate land in `acme.storage`. A
 * restart serves the stored certificate without a new order; a certificate within 30 days of
 * expiry (a fake clock on the manager) is renewed.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AcmeManager, renewalReason, RENEW_BEFORE_MS } from '../src/acme/manager.js';
import { request } from './helpers/backends.js';
import { startDrover, tempDir, type DroverProcess } from './helpers/drover.js';
import { describePebble, startPebble, type Pebble } from './helpers/pebble.js';
import { issueCert, makeCa } from './helpers/tls.js';

const DOMAINS = ['a.drover.test', 'b.drover.test'];

describePebble('ACME http-01 against pebble', () => {
  let pebble: Pebble;
  let drover: DroverProcess | undefined;
  /** acme.storage, outside drover's temp dir so that a restarted drover finds it again */
  let storage: string;
  const files = (): Record<string, string> => ({ 'pebble-ca.pem': fs.readFileSync(pebble.ca, 'utf8') });

  function yaml(): string {
    return `
listen: [{address: "127.0.0.1:${pebble.httpPort}"}, {address: "[::1]:${pebble.httpPort}"}]
admin: {address: 127.0.0.1:0}
access_log: off
acme:
  directory: ${pebble.directory}
  email: ops@drover.test
  domains: [${DOMAINS.join(', ')}]
  storage: ${storage}
  ca: pebble-ca.pem
`;
  }

  const certFile = (): string => path.join(storage, 'a.drover.test', 'cert.pem');

  beforeAll(async () => {
    pebble = await startPebble();
    storage = tempDir('drover-acme-storage-');
  });

  afterAll(async () => {
    await drover?.stop();
    await pebble?.stop();
    if (storage !== undefined) fs.rmSync(storage, { recursive: true, force: true });
  });

  it('obtains one certificate for every configured name; key, chain and account kept in acme.storage', async () => {
    drover = await startDrover(yaml(), { files: files() });
    await drover.waitForLog((l) => l['msg'] === 'acme: certificate obtained', 60_000);
    const certPem = fs.readFileSync(certFile(), 'utf8');
    const keyPem = fs.readFileSync(path.join(storage, 'a.drover.test', 'key.pem'), 'utf8');
    const leaf = new X509Certificate(certPem);
    expect(leaf.subjectAltName?.split(', ').sort()).toEqual(DOMAINS.map((d) => `DNS:${d}`));
    expect(leaf.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    // the chain is pebble's: the leaf is signed by the intermediate pebble issues with
    const intermediate = new X509Certificate(await pebble.intermediate());
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(fs.existsSync(path.join(storage, 'account.key'))).toBe(true);
    expect(fs.statSync(path.join(storage, 'a.drover.test', 'key.pem')).mode & 0o077).toBe(0);
    // challenges were withdrawn once validated
    expect(fs.readdirSync(path.join(storage, 'challenges'))).toEqual([]);
    // an unknown token is not answered by drover: it is routed like any request (no route here)
    const r = await request(pebble.httpPort, { path: '/.well-known/acme-challenge/not-pending' });
    expect(r.status).toBe(404);
  }, 90_000);

  it('a restart loads the stored certificate and orders nothing', async () => {
    await drover?.stop();
    const before = fs.readFileSync(certFile(), 'utf8');
    drover = await startDrover(yaml(), { files: files() });
    await drover.waitForLog((l) => l['msg'] === 'acme: certificate loaded from storage', 10_000);
    // the check after start found the certificate valid: give it a moment to (not) order
    await new Promise((r) => setTimeout(r, 1_000));
    expect(drover.logs.some((l) => l['msg'] === 'acme: ordering a certificate')).toBe(false);
    expect(fs.readFileSync(certFile(), 'utf8')).toBe(before);
  });

  it('renews a certificate within 30 days of expiry; challenges answered by the running drover', async () => {
    const first = new X509Certificate(fs.readFileSync(certFile(), 'utf8'));
    const expiry = Date.parse(first.validTo);
    const logs: string[] = [];
    const got: string[] = [];
    const config = { directory: pebble.directory, domains: DOMAINS, storage, ca: pebble.ca };
    const hooks = { onCertificate: (_d: string, cert: string) => got.push(cert), log: (_l: string, msg: string, f?: Record<string, unknown>) => logs.push(msg + (f?.['err'] === undefined ? '' : ` ${String(f['err'])}`)) };
    // today: nothing to do
    expect(await new AcmeManager(config, hooks).check()).toBe('valid');
    // 10 days before expiry: renewed; pebble fetches the challenges from the drover started
    // above, which reads them from the shared storage directory
    const late = new AcmeManager(config, hooks, { clock: () => expiry - 10 * 86_400_000 });
    expect([await late.check(), logs]).toEqual(['obtained', expect.anything()]);
    const second = new X509Certificate(fs.readFileSync(certFile(), 'utf8'));
    expect(second.serialNumber).not.toBe(first.serialNumber);
    expect(got).toHaveLength(1);
    expect(logs).toContain('acme: ordering a certificate');
  }, 120_000);

  it('with workers: 2 the primary orders and the workers answer the challenges', async () => {
    await drover?.stop();
    const own = tempDir('drover-acme-storage-');
    try {
      const text = yaml().replace(`storage: ${storage}`, `storage: ${own}`).replace(`domains: [${DOMAINS.join(', ')}]`, 'domains: [c.drover.test]');
      drover = await startDrover(`workers: 2\n${text}`, { files: files() });
      await drover.waitForLog((l) => l['msg'] === 'acme: certificate obtained', 60_000);
      const leaf = new X509Certificate(fs.readFileSync(path.join(own, 'c.drover.test', 'cert.pem'), 'utf8'));
      expect(leaf.subjectAltName).toBe('DNS:c.drover.test');
      // one ACME client only: one order, from one process
      const orders = drover.logs.filter((l) => l['msg'] === 'acme: ordering a certificate');
      expect(orders).toHaveLength(1);
    } finally {
      await drover?.stop();
      drover = undefined;
      fs.rmSync(own, { recursive: true, force: true });
    }
  }, 90_000);
});

it('renewalReason: missing, unparsable, names not covered, expiring, fine', () => {
  const dir = tempDir();
  try {
    // a certificate made by the test, valid 2 days, for one name
    const ca = makeCa(dir);
    const leaf = fs.readFileSync(issueCert(ca, 'x', ['DNS:x.test']).cert, 'utf8');
    const notAfter = Date.parse(new X509Certificate(leaf).validTo);
    expect(renewalReason(undefined, ['x.test'], 0)).toBe('no certificate yet');
    expect(renewalReason('garbage', ['x.test'], 0)).toBe('stored certificate does not parse');
    expect(renewalReason(leaf, ['x.test', 'y.test'], 0)).toBe('certificate does not cover y.test');
    expect(renewalReason(leaf, ['x.test'], notAfter - RENEW_BEFORE_MS - 1_000)).toBeUndefined();
    expect(renewalReason(leaf, ['x.test'], notAfter - 5 * 86_400_000 - 1_000)).toBe('expires in 5 days');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
