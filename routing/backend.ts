/**
 * One backend of one service, as the data path sees it. A pool owns its backends; the proxy reads
 * and updates the live counters (`inflight`, `requests`, `failures`); policies read
 * `effectiveWeight` and `inflight`. Objects are long-lived: a registry update of weight or zone
 * mutates the same object, so counters and in-flight requests are never lost by an update.
 */
import { PeakEwma } from './latency.js';
import type { Availability, MemberSpec } from './types.js';

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
  /** priority level, lower first (0 unless the registry gives one, e.g. SRV priority) */
  priority: number;
  meta: Readonly<Record<string, unknown>>;
  /**
   * Health's verdict, applied by `ServicePool.setAvailable`. A new backend is `pending` (no
   * traffic) until health has said otherwise: the wiring tells health of it in the same turn.
   */
  availability: Availability = 'pending';
  /** false once the backend left its pool: it finishes what it has in flight, gets nothing new */
  member = true;
  /** requests currently being proxied to this backend */
  inflight = 0;
  /** requests sent since the backend joined */
  requests = 0;
  /** failed requests (connect errors, resets, timeouts, 5xx) since the backend joined */
  failures = 0;
  /** ms timestamp (pool clock) when the backend last became available; drives slow start */
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
    this.priority = spec.priority ?? 0;
    this.meta = spec.meta ?? {};
    this.availableSince = now;
  }

  /** May it receive new requests (outside panic mode)? */
  get available(): boolean {
    return this.availability === 'available';
  }

  /** Drained by the registry or the admin API (as health decided). */
  get draining(): boolean {
    return this.availability === 'draining';
  }
}
