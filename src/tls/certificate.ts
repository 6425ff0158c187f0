/**
 * One certificate and its key, checked before anything serves it: the chain parses, the key
 * parses and belongs to the leaf, OpenSSL accepts the pair. The names the leaf covers (DNS
 * subject alternative names, else the subject CN) are what SNI selection matches against.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { DroverError, ErrorCodes } from '../core/errors.js';

/** What drover knows about a certificate it serves. */
export interface CertificateInfo {
  /** the store's name for it (a file path, or what a programmatic `set` was given) */
  readonly name: string;
  /** lower-cased DNS names the leaf covers (`*.example.com` included as written); CN when no SAN */
  readonly names: readonly string[];
  /** ms since the epoch: the leaf's notAfter */
  readonly notAfter: number;
  /** SHA-256 fingerprint of the leaf (colon-separated hex), to tell two versions apart in logs */
  readonly fingerprint: string;
}

/** A checked pair, ready to serve. */
export interface CheckedPair {
  readonly info: CertificateInfo;
  readonly certPem: string;
  readonly keyPem: string;
}

function refuse(name: string, message: string, cause?: unknown): never {
  throw new DroverError(ErrorCodes.TLS_CERTIFICATE, `${name}: ${message}`, { cause });
}

/** DNS names of a leaf: its `DNS:` subject alternative names, else its subject CN. */
function namesOf(x: X509Certificate): string[] {
  const names: string[] = [];
  for (const part of (x.subjectAltName ?? '').split(',')) {
    const p = part.trim();
    if (p.startsWith('DNS:')) names.push(p.slice(4).toLowerCase());
  }
  if (names.length > 0) return names;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x.subject)?.[1];
  return cn === undefined ? [] : [cn.trim().toLowerCase()];
}

/**
 * Checks a PEM certificate chain and private key. Throws a `DroverError` (`E_TLS_CERTIFICATE`)
 * saying what is wrong: nothing parses, the key is not the leaf's, OpenSSL refuses the pair.
 * An expired certificate is not refused here (serving it beats serving nothing); callers warn.
 * @param name how messages name the pair (usually the certificate file)
 */
export function checkPair(name: string, certPem: string, keyPem: string): CheckedPair {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (err) {
    refuse(name, `certificate does not parse (${(err as Error).message})`, err);
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    refuse(name, `private key does not parse (${(err as Error).message})`, err);
  }
  if (!leaf.checkPrivateKey(key)) refuse(name, 'private key does not match the certificate');
  try {
    createSecureContext({ cert: certPem, key: keyPem });
  } catch (err) {
    refuse(name, `OpenSSL refuses the pair (${(err as Error).message})`, err);
  }
  const info: CertificateInfo = { name, names: namesOf(leaf), notAfter: Date.parse(leaf.validTo), fingerprint: leaf.fingerprint256 };
  return { info, certPem, keyPem };
}

/** A served certificate: its facts and the OpenSSL context built from it. */
export interface ServedCertificate {
  readonly info: CertificateInfo;
  readonly context: SecureContext;
  /** the options the context was built from (the listener's `setSecureContext` needs them again) */
  readonly options: SecureContextOptions;
}

/** Builds the serving context of a checked pair with a listener's common options (versions, client CA, ticket keys). */
export function serve(pair: CheckedPair, common: SecureContextOptions): ServedCertificate {
  const options: SecureContextOptions = { ...common, cert: pair.certPem, key: pair.keyPem };
  return { info: pair.info, context: createSecureContext(options), options };
}
