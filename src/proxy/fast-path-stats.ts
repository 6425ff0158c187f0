/**
 * The fast path's counters, kept apart from `fast-path.ts` so that the metrics registry can read
 * them without importing the data path. Plain fields: no prom-client call per request.
 */

/** Why a connection left the fast path (label values of `drover_fast_path_handovers_total`). */
export type HandoverReason = 'parse_error' | 'incomplete' | 'pipelined' | 'body' | 'connection' | 'head';

/** Process-wide fast path counters, read by the metrics registry at scrape time. */
export const fastPathStats = {
  /** requests answered on the fast path */
  requests: 0,
  /** connections handed to node:http, by reason */
  handovers: new Map<HandoverReason, number>(),
};
