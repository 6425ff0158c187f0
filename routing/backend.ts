/**
 * One backend of one service, as the data path sees it. A pool owns its backends; the proxy reads
 * and updates the live counters (`inflight`, `requests`, `failures`); policies read
 * `effectiveWeight` and `inflight`. Objects are long-lived: a registry update of weight or zone
 * mutates the same object, so counters and in-flight requests are never lost by an update.
 */
import { PeakEwma } from './latency.js';
import type { MemberSpec } from './types.js';

export class Backend {
  /** unique within its service */
  readonly id: string;
  /** name of the owning service */
  readonly service: string;
  /** normalised origin `http://host:port`; changing the URL of an id replaces the backend */
  readonly url: string;
  /** configured weight (> 0) */
  weight: number;
  /**
   * The weight policies use: `weight`, scaled down during slow start. Always > 0 for a
   * candidate. Policies must read this, never `weight`.
   */
  effectiveWeight: number;
  zone: string | undefined;
  source: string;
  meta: Readonly<Record<string, unknown>>;
  /** set by the registry (`draining: true`) or by the admin API */
  draining: boolean;
  /** set by health: false while unhealthy, ejected, or not yet checked under active checks */
  available = true;
  /** false once the backend left its pool: it finishes what it has in flight, gets nothing new */
  member = true;
  /** requests currently being proxied to this backend */
  inflight = 0;
  /** requests sent since the backend joined */
  requests = 0;
  /** failed requests (connect errors, resets, timeouts, 5xx) since the backend joined */
  failures = 0;
  /** ms timestamp (pool clock) when the backend became available; drives slow start */
  availableSince: number;
  /** latency to response headers as the data path observed it (peak EWMA, see `latency.ts`) */
  readonly latency = new PeakEwma();
  /** free slot for the data path (e.g. per-backend metric children); routing never reads it */
  ext: unknown = undefined;

  constructor(service: string, spec: MemberSpec, now: number) {
    this.id = spec.id;
    this.service = service;
    this.url = spec.url;
    this.weight = spec.weight;
    this.effectiveWeight = spec.weight;
    this.zone = spec.zone;
    this.source = spec.source;
    this.meta = spec.meta ?? {};
    this.draining = spec.draining;
    this.availableSince = now;
  }
}
