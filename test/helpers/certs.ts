/**
 * Certificates for TLS tests, made with openssl in the test's temp dir (never committed): one
 * CA per call of `testCa`, and leaf certificates it signs for any set of DNS names (ECDSA P-256:
 * fast to make). `describeTls` skips when openssl is missing, except under `CI=true`.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe } from 'vitest';

function haveBinary(name: string): boolean {
  try {
    execFileSync(name, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    try {
      execFileSync(name, ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  }
}

/** True when `name` runs here. */
export function binaryAvailable(name: string): boolean {
  return haveBinary(name);
}

/** A describe block needing `binaries` (openssl by default): skipped without them, except under CI=true. */
export function describeWith(binaries: readonly string[], name: string, fn: () => void): void {
  const missing = binaries.filter((b) => !haveBinary(b));
  if (missing.length === 0) {
    describe(name, fn);
    return;
  }
  if (process.env['CI'] === 'true') throw new Error(`${missing.join(', ')} not found: "${name}" cannot be skipped under CI=true`);
  console.warn(`${name}: ${missing.join(', ')} not found, skipped`);
  describe.skip(name, fn);
}

/** A leaf certificate and its key, as files and as PEM text. */
export interface LeafFiles {
  readonly cert: string;
  readonly key: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** A test CA that signs leaves. */
export interface TestCa {
  /** the CA certificate (trust anchor for clients), path */
  readonly ca: string;
  readonly caPem: string;
  /**
   * Makes a leaf for `names` (DNS SANs; `127.0.0.1` gets an IP SAN too) into `dir` under `base`.
   * @param days validity; negative: already expired
   * @param usage extendedKeyUsage (default serverAuth)
   */
  leaf(base: string, names: readonly string[], options?: { days?: number; usage?: string; dir?: string }): LeafFiles;
}

function ssl(args: readonly string[]): void {
  execFileSync('openssl', args, { stdio: 'pipe' });
}

/** Creates a CA in `dir`. `name` tells CAs apart in their subject. */
export function testCa(dir: string, name = 'drover-test-ca'): TestCa {
  const f = (n: string): string => path.join(dir, n);
  const caKey = f(`${name}.key`);
  const ca = f(`${name}.pem`);
  ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '3', '-subj', `/CN=${name}`, '-keyout', caKey, '-out', ca]);
  let serial = 1;
  return {
    ca,
    caPem: readFileSync(ca, 'utf8'),
    leaf(base, names, options = {}) {
      const d = options.dir ?? dir;
      const key = path.join(d, `${base}.key`);
      const cert = path.join(d, `${base}.pem`);
      const csr = path.join(d, `${base}.csr`);
      const ext = path.join(d, `${base}.ext`);
      const san = names.map((n) => (/^\d+\.\d+\.\d+\.\d+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=${options.usage ?? 'serverAuth'}\n`);
      ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${names[0] ?? base}`, '-keyout', key, '-out', csr]);
      const days = options.days ?? 2;
      const validity =
        days < 0
          ? // openssl x509 -days cannot go back in time: sign with explicit dates in the past
            ['-not_before', '20200101000000Z', '-not_after', '20200102000000Z']
          : ['-days', String(days)];
      try {
        ssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-set_serial', String(serial++ + Date.now()), ...validity, '-extfile', ext, '-out', cert]);
      } catch (err) {
        if (days >= 0) throw err;
        // OpenSSL 3.0's x509 lacks -not_before: `ca` signs with explicit dates instead
        signExpired(dir, ca, caKey, csr, ext, cert);
      }
      return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
    },
  };
}

function signExpired(dir: string, ca: string, caKey: string, csr: string, ext: string, out: string): void {
  const db = path.join(dir, 'ca-index.txt');
  writeFileSync(db, '');
  const conf = path.join(dir, 'ca.cnf');
  writeFileSync(
    conf,
    [
      '[ca]',
      'default_ca = test',
      '[test]',
      `database = ${db}`,
      `new_certs_dir = ${dir}`,
      'serial = ' + path.join(dir, 'ca-serial'),
      'default_md = sha256',
      'policy = any',
      'unique_subject = no',
      '[any]',
      'commonName = supplied',
    ].join('\n'),
  );
  writeFileSync(path.join(dir, 'ca-serial'), '1000\n');
  ssl(['ca', '-batch', '-config', conf, '-cert', ca, '-keyfile', caKey, '-in', csr, '-out', out, '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-extfile', ext, '-notext']);
}
