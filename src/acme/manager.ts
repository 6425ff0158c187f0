/**
 * Obtains and renews the `acme:` certificate with http-01 (acme-client). One process runs it
 * (the single-process runtime, or the cluster primary); the plain listeners answer challenges
 * from the storage directory (see storage.ts), so workers answer them too.
 *
 * On start the stored certificate, if any, is handed to `onCertificate` at once; then, and every
 * `CHECK_EVERY_MS`, the certificate is (re)obtained when it is missing, does not cover the
 * configured domains, or expires within `RENEW_BEFORE_MS`. A failed attempt is retried after
 * `RETRY_AFTER_MS` and never throws out of the timer; the old certificate keeps serving.
 */
import { Agent } from 'node:https';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import * as acme from 'acme-client';
import type { AcmeConfig } from '../config/types.js';
import { AcmeStorage, readIfExists, writeAtomic } from './storage.js';

/** Renew when the certificate expires within this long: 30 days, as Let's Encrypt advises for 90-day certificates. */
export const RENEW_BEFORE_MS = 30 * 24 * 3_600_000;
/** How often the expiry is looked at: 12 h. */
export const CHECK_EVERY_MS = 12 * 3_600_000;
/** After a failed attempt, the next one: 15 min (ACME servers rate-limit failures). */
export const RETRY_AFTER_MS = 15 * 60_000;

/** What the ACME manager tells the rest of drover. */
export interface AcmeHooks {
  /**
   * A certificate for `domain` (the first configured name; the certificate covers them all) is
   * available: at start from storage, and after each issuance. `certPem` is the full chain.
   */
  onCertificate(domain: string, certPem: string, keyPem: string): void;
  /** progress and failures, for the log */
  log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
}

/** Test seams: a fake clock (ms since the epoch). */
export interface AcmeManagerOptions {
  readonly clock?: (() => number) | undefined;
}

/** What a check did. */
export type AcmeCheckResult = 'valid' | 'obtained' | 'failed';

/** Why a stored certificate must be replaced, or undefined when it is fine at `now`. */
export function renewalReason(certPem: string | undefined, domains: readonly string[], now: number): string | undefined {
  if (certPem === undefined) return 'no certificate yet';
  let x: X509Certificate;
  try {
    x = new X509Certificate(certPem);
  } catch {
    return 'stored certificate does not parse';
  }
  const names = new Set((x.subjectAltName ?? '').split(',').map((s) => s.trim().replace(/^DNS:/, '').toLowerCase()));
  const missing = domains.filter((d) => !names.has(d));
  if (missing.length > 0) return `certificate does not cover ${missing.join(', ')}`;
  const left = Date.parse(x.validTo) - now;
  if (left < RENEW_BEFORE_MS) return `expires in ${Math.max(0, Math.floor(left / 86_400_000))} days`;
  return undefined;
}

export class AcmeManager {
  private readonly config: AcmeConfig;
  private readonly hooks: AcmeHooks;
  private readonly clock: () => number;
  readonly storage: AcmeStorage;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<AcmeCheckResult> | undefined;
  private stopped = false;

  constructor(config: AcmeConfig, hooks: AcmeHooks, options: AcmeManagerOptions = {}) {
    this.config = config;
    this.hooks = hooks;
    this.clock = options.clock ?? Date.now;
    this.storage = new AcmeStorage(config.storage);
  }

  /** The `acme:` section this manager runs with. */
  get settings(): AcmeConfig {
    return this.config;
  }

  /** The first domain: the certificate's name and storage subdirectory. */
  get name(): string {
    return this.config.domains[0] as string;
  }

  /** The key authorization of a pending http-01 challenge, or undefined. */
  challenge(token: string): string | undefined {
    return this.storage.challenge(token);
  }

  /** Hands over the stored certificate, then checks now and on schedule. */
  start(): void {
    const paths = this.storage.certificate(this.name);
    const cert = readIfExists(paths.cert);
    const key = readIfExists(paths.key);
    if (cert !== undefined && key !== undefined) this.deliver(cert, key, 'storage');
    this.schedule(0);
  }

  /** Stops the schedule; an attempt in flight finishes (its result is still stored). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.check().then((r) => this.schedule(r === 'failed' ? RETRY_AFTER_MS : CHECK_EVERY_MS));
    }, ms);
    this.timer.unref();
  }

  /** Obtains a certificate if the stored one needs replacing; one attempt at a time. Never rejects. */
  check(): Promise<AcmeCheckResult> {
    this.running ??= this.checkOnce().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async checkOnce(): Promise<AcmeCheckResult> {
    const reason = renewalReason(readIfExists(this.storage.certificate(this.name).cert), this.config.domains, this.clock());
    if (reason === undefined) return 'valid';
    this.hooks.log('info', 'acme: ordering a certificate', { domains: this.config.domains, reason });
    try {
      await this.obtain();
      return 'obtained';
    } catch (err) {
      this.hooks.log('error', 'acme: could not obtain a certificate', { domains: this.config.domains, err: String((err as Error).message ?? err) });
      return 'failed';
    }
  }

  private async accountKey(): Promise<string> {
    const existing = readIfExists(this.storage.accountKey);
    if (existing !== undefined) return existing;
    const key = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
    writeAtomic(this.storage.accountKey, key, 0o600);
    return key;
  }

  /**
   * Finds the account of the stored key, or registers it. Done here rather than by `auto()`:
   * for a key already registered, auto() sends `{termsOfServiceAgreed}` as an account update,
   * which servers may refuse as an empty update (pebble does) when there is no e-mail to add.
   */
  private async account(client: acme.Client): Promise<void> {
    try {
      await client.createAccount({ onlyReturnExisting: true });
      return;
    } catch (err) {
      // accountDoesNotExist: a new key (or a new server); anything else fails again below
      // (RFC 8555 section 7.3.1: the type is accountDoesNotExist; acme-client keeps only the detail)
      const e = err as Error & { type?: unknown };
      if (!/accountDoesNotExist|does not exist|unable to find existing account|no account/i.test(`${String(e.type)} ${e.message}`)) throw err;
    }
    await client.createAccount({ termsOfServiceAgreed: true, ...(this.config.email === undefined ? {} : { contact: [`mailto:${this.config.email}`] }) });
  }

  private async obtain(): Promise<void> {
    if (this.config.ca !== undefined) {
      // acme-client talks through one module-wide axios instance; one manager runs per process
      acme.axios.defaults.httpsAgent = new Agent({ ca: readFileSync(this.config.ca, 'utf8') });
    }
    const client = new acme.Client({ directoryUrl: this.config.directory, accountKey: await this.accountKey() });
    await this.account(client);
    const [key, csr] = await acme.crypto.createCsr({ commonName: this.name, altNames: [...this.config.domains] }, await acme.crypto.createPrivateEcdsaKey('P-256'));
    const cert = await client.auto({
      csr,
      challengePriority: ['http-01'],
      // acme-client's own pre-check fetches http://<domain>:80/ from here: often not routable
      // from inside (NAT, split DNS) and never the port in tests; the ACME server's check counts
      skipChallengeVerification: true,
      challengeCreateFn: (_authz, challenge, keyAuthorization) => {
        this.storage.putChallenge(challenge.token, keyAuthorization);
        return Promise.resolve();
      },
      challengeRemoveFn: (_authz, challenge) => {
        this.storage.removeChallenge(challenge.token);
        return Promise.resolve();
      },
    });
    const keyPem = key.toString();
    const paths = this.storage.certificate(this.name);
    // key first: a watcher that sees the new certificate finds its key already there
    writeAtomic(paths.key, keyPem, 0o600);
    writeAtomic(paths.cert, cert);
    this.deliver(cert, keyPem, 'issued');
  }

  private deliver(cert: string, key: string, from: 'storage' | 'issued'): void {
    let validTo = '';
    try {
      validTo = new X509Certificate(cert).validTo;
    } catch {
      // reported by the next check as a certificate that does not parse
    }
    this.hooks.log('info', from === 'issued' ? 'acme: certificate obtained' : 'acme: certificate loaded from storage', {
      domains: this.config.domains,
      valid_to: validTo,
      cert: this.storage.certificate(this.name).cert,
    });
    try {
      this.hooks.onCertificate(this.name, cert, key);
    } catch (err) {
      this.hooks.log('error', 'acme: the new certificate was refused', { err: String(err) });
    }
  }
}

/** Minimal logger shape (pino's fits). */
interface LoggerLike {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * The runtime's side: keeps one manager in step with `config.acme` across reloads (a changed
 * section restarts it, a removed one stops it). Certificates are logged and stored; feeding them
 * to TLS listeners is `onCertificate`'s job (undefined: they are only stored).
 * @returns the manager now in force (undefined without `acme:`)
 */
export function syncAcme(
  current: AcmeManager | undefined,
  config: AcmeConfig | undefined,
  logger: LoggerLike,
  onCertificate?: AcmeHooks['onCertificate'],
): AcmeManager | undefined {
  if (current !== undefined && config !== undefined && JSON.stringify(current.settings) === JSON.stringify(config)) return current;
  current?.stop();
  if (config === undefined) return undefined;
  const manager = new AcmeManager(config, {
    onCertificate: onCertificate ?? (() => undefined),
    log: (level, msg, fields) => logger[level]({ component: 'acme', ...fields }, msg),
  });
  manager.start();
  return manager;
}
