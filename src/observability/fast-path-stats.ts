/**
 * The fast path's counters, kept apart from `fast-path.ts` so that the metrics registry can read
 * them without importing the data path. One object, made by whoever owns the metrics and handed
 * to every listener explicitly; plain fields: no prom-client call per request.
 */

/** Why a connection left the fast path (label values of `drover_fast_path_handovers_total`). */
export type HandoverReason = 'parse_error' | 'incomplete' | 'pipelined' | 'body' | 'connection' | 'head';

/** Fast path counters, read by the metrics registry at scrape time. */
export class FastPathStats {
  /** requests answered on the fast path */
  requests = 0;
  /** connections handed to node:http, by reason */
  readonly handovers = new Map<HandoverReason, number>();

  /** Counts one connection handed to node:http. */
  handover(reason: HandoverReason): void {
    this.handovers.set(reason, (this.handovers.get(reason) ?? 0) + 1);
  }
}
