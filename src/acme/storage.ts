/**
 * The `acme.storage` directory: the account key, one certificate directory per certificate
 * (named after its first domain), and the http-01 challenges pending right now. Challenges are
 * files so that every process serving the plain listeners (cluster workers included) can answer
 * them, while only one process runs the ACME client.
 *
 * ```
 * <storage>/account.key             PEM, 0600
 * <storage>/<domain>/cert.pem       full chain, leaf first
 * <storage>/<domain>/key.pem        PEM, 0600
 * <storage>/challenges/<token>      the key authorization, while the order is pending
 * ```
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** http-01 tokens are base64url (RFC 8555 section 8.3); anything else never names a file. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{1,256}$/;

/** The URL path prefix http-01 challenges are fetched under. */
export const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/** Writes a file whole or not at all (a reader never sees half of it). */
export function writeAtomic(file: string, data: string, mode = 0o644): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, file);
}

/** Reads a file, or undefined when it does not exist or cannot be read. */
export function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Paths inside one storage directory. */
export class AcmeStorage {
  readonly dir: string;

  /** @param dir absolute path of `acme.storage` */
  constructor(dir: string) {
    this.dir = dir;
  }

  get accountKey(): string {
    return path.join(this.dir, 'account.key');
  }

  /** `cert.pem` and `key.pem` of the certificate named by `domain` (its first name). */
  certificate(domain: string): { cert: string; key: string } {
    const d = path.join(this.dir, domain);
    return { cert: path.join(d, 'cert.pem'), key: path.join(d, 'key.pem') };
  }

  private challengeFile(token: string): string | undefined {
    return TOKEN_PATTERN.test(token) ? path.join(this.dir, 'challenges', token) : undefined;
  }

  /** Publishes a pending challenge's key authorization. */
  putChallenge(token: string, keyAuthorization: string): void {
    const f = this.challengeFile(token);
    if (f === undefined) throw new Error(`ACME token ${JSON.stringify(token)} is not base64url`);
    writeAtomic(f, keyAuthorization);
  }

  /** Withdraws a challenge once the ACME server has looked at it. */
  removeChallenge(token: string): void {
    const f = this.challengeFile(token);
    if (f !== undefined) rmSync(f, { force: true });
  }

  /** The key authorization for `token`, or undefined when no such challenge is pending. */
  challenge(token: string): string | undefined {
    const f = this.challengeFile(token);
    return f === undefined ? undefined : readIfExists(f);
  }
}

/**
 * The answer to a request for `url` on a plain listener when it is a pending http-01
 * challenge of `storage`; undefined otherwise (the request is routed as usual).
 */
export function challengeAnswer(storage: AcmeStorage, url: string): string | undefined {
  if (!url.startsWith(CHALLENGE_PREFIX)) return undefined;
  return storage.challenge(url.slice(CHALLENGE_PREFIX.length));
}
