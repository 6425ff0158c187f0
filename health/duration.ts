/**
 * Durations printed the way drover's config writes them, for every message that shows one
 * (ejection reasons, config errors, logs): `250ms`, `1.5s`, `30s`, `1m30s`, `2m`, `1h`. The
 * output always parses back to the same value with the config's duration grammar
 * (src/config/values.ts re-exports this function: one formatter for the whole program).
 */

/** Formats whole or fractional ms: below 1 s in `ms`, else in `h`, `m` and `s` (seconds to the ms). */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms));
  if (total === 0) return '0s';
  if (total < 1000) return `${total}ms`;
  const h = Math.floor(total / 3_600_000);
  const m = Math.floor((total % 3_600_000) / 60_000);
  const rest = total % 60_000;
  let out = '';
  if (h > 0) out += `${h}h`;
  if (m > 0) out += `${m}m`;
  if (rest > 0) out += `${rest % 1000 === 0 ? rest / 1000 : (rest / 1000).toFixed(3).replace(/0+$/, '')}s`;
  return out;
}
