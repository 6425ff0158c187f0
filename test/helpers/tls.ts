/**
 * Test certificates made with openssl in a temp dir: a CA and leaf certificates it signs for
 * the names a test wants. Nothing here is committed; keys live only as long as the temp dir.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

/** A test CA: its certificate and key files. */
export interface TestCa {
  readonly dir: string;
  /** PEM certificate path */
  readonly cert: string;
  readonly key: string;
}

/** A leaf certificate signed by a test CA. */
export interface TestCert {
  /** PEM certificate path */
  readonly cert: string;
  readonly key: string;
}

function ssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'pipe' });
}

/** Creates a CA (`<name>.pem`, `<name>.key`) in `dir`, valid two days. */
export function makeCa(dir: string, name = 'test-ca'): TestCa {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', key, '-out', cert);
  return { dir, cert, key };
}

/**
 * Issues a server certificate for `sans` (`DNS:name` or `IP:addr` entries) signed by `ca`,
 * written as `<file>.pem` / `<file>.key` in the CA's dir.
 */
export function issueCert(ca: TestCa, file: string, sans: readonly string[]): TestCert {
  const f = (ext: string): string => path.join(ca.dir, `${file}.${ext}`);
  writeFileSync(f('cnf'), `subjectAltName=${sans.join(',')}\nextendedKeyUsage=serverAuth\n`);
  ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${file}`, '-keyout', f('key'), '-out', f('csr'));
  ssl('x509', '-req', '-in', f('csr'), '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', f('cnf'), '-out', f('pem'));
  return { cert: f('pem'), key: f('key') };
}
