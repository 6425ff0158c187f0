/**
 * The certificates one TLS listener serves, chosen per connection by the client's SNI name:
 * an exact name first, then a wildcard (`*.example.com` covers `a.example.com`, one label
 * only), else the default (the first certificate). Two feeds write to it: the listener's files
 * (watched, see `cert-files.ts`) and programmatic callers such as ACME, through `set`.
 *
 * A change swaps the lookup tables in one assignment: connections already open keep the context
 * they were handed; the next handshake sees the new one. A pair that does not check out throws
 * and changes nothing.
 */
import type { SecureContext, SecureContextOptions } from 'node:tls';
import { checkPair, serve, type CertificateInfo, type ServedCertificate } from './certificate.js';

interface Index {
  readonly exact: ReadonlyMap<string, ServedCertificate>;
  /** key: the suffix after `*.` */
  readonly wildcard: ReadonlyMap<string, ServedCertificate>;
  readonly first: ServedCertificate | undefined;
}

const EMPTY: Index = { exact: new Map(), wildcard: new Map(), first: undefined };

export class CertificateStore {
  private readonly common: SecureContextOptions;
  /** insertion order: the first is the default; earlier entries win a name both cover */
  private readonly entries = new Map<string, ServedCertificate>();
  private index: Index = EMPTY;
  private readonly listeners: ((first: ServedCertificate | undefined) => void)[] = [];

  /** @param common options every context of this listener shares (minVersion, client CA...) */
  constructor(common: SecureContextOptions = {}) {
    this.common = common;
  }

  /**
   * Adds or replaces the certificate called `name` (its position is kept on replace). Throws a
   * `DroverError` (`E_TLS_CERTIFICATE`) for a pair that cannot be served; the store is then
   * unchanged. Returns what was installed.
   */
  set(name: string, certPem: string, keyPem: string): CertificateInfo {
    const served = serve(checkPair(name, certPem, keyPem), this.common);
    this.entries.set(name, served);
    this.rebuild();
    return served.info;
  }

  /** Removes the certificate called `name`; false when there was none. */
  delete(name: string): boolean {
    if (!this.entries.delete(name)) return false;
    this.rebuild();
    return true;
  }

  /** The context for a handshake naming `servername` (undefined: no SNI), or undefined when the store is empty. */
  select(servername: string | undefined): SecureContext | undefined {
    return this.pick(servername)?.context;
  }

  /** The certificate a handshake naming `servername` gets. */
  pick(servername: string | undefined): ServedCertificate | undefined {
    const ix = this.index;
    if (servername === undefined || servername === '') return ix.first;
    const name = servername.toLowerCase();
    const exact = ix.exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    if (dot !== -1) {
      const wild = ix.wildcard.get(name.slice(dot + 1));
      if (wild !== undefined) return wild;
    }
    return ix.first;
  }

  /** The default certificate (the first). */
  get first(): ServedCertificate | undefined {
    return this.index.first;
  }

  /** Facts about every certificate, in order. */
  list(): CertificateInfo[] {
    return [...this.entries.values()].map((e) => e.info);
  }

  /** Calls `fn` with the new default after every change (the listener rebuilds its no-SNI context). */
  onChange(fn: (first: ServedCertificate | undefined) => void): void {
    this.listeners.push(fn);
  }

  private rebuild(): void {
    const exact = new Map<string, ServedCertificate>();
    const wildcard = new Map<string, ServedCertificate>();
    let first: ServedCertificate | undefined;
    for (const e of this.entries.values()) {
      first ??= e;
      for (const n of e.info.names) {
        if (n.startsWith('*.')) {
          if (!wildcard.has(n.slice(2))) wildcard.set(n.slice(2), e);
        } else if (!exact.has(n)) exact.set(n, e);
      }
    }
    this.index = { exact, wildcard, first };
    for (const fn of this.listeners) fn(first);
  }
}
