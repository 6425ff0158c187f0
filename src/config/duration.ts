/**
 * Duration strings as written in `drover.yaml`: one or more `<number><unit>` parts, units `ms`,
 * `s`, `m`, `h` (`250ms`, `5s`, `2m`, `1h`, `1m30s`, `1.5s`), or a bare `0`.
 */

/**
 * Longest duration accepted, in ms: Node's timers silently fire after 1 ms for anything larger
 * than a signed 32-bit delay, so a bigger value would turn "wait a long time" into "do not wait".
 */
export const MAX_DURATION_MS = 2_147_483_647;

/** The accepted syntax, anchored; also used as the JSON Schema `pattern`. */
export const DURATION_PATTERN = /^(?:0|(?:\d+(?:\.\d+)?(?:ms|s|m|h))+)$/;

const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration string to whole milliseconds (rounded to nearest).
 * Returns `undefined` when the text does not match {@link DURATION_PATTERN} or exceeds
 * {@link MAX_DURATION_MS}.
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!DURATION_PATTERN.test(trimmed)) return undefined;
  let total = 0;
  for (const m of trimmed.matchAll(PART)) {
    total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? Number.NaN);
  }
  const ms = Math.round(total);
  return Number.isFinite(ms) && ms <= MAX_DURATION_MS ? ms : undefined;
}

/** Formats milliseconds the way a user would write them (`1m30s`, `250ms`, `0s`); for messages. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.join('');
}

/** `LONG_DURATION_PATTERN`'s units: those of durations plus `d` (days). */
const LONG_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/** Long durations (`hsts`): the duration syntax plus a `d` unit, e.g. `365d`, `8760h`. */
export const LONG_DURATION_PATTERN = /^(?:0|(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+)$/;

/** Longest long duration, in ms: 10 years (no timer ever waits for one). */
export const MAX_LONG_DURATION_MS = 10 * 366 * 86_400_000;

/**
 * Parses a long duration (a max-age sent to clients, never a timer) to whole ms; undefined when
 * it does not match {@link LONG_DURATION_PATTERN} or exceeds {@link MAX_LONG_DURATION_MS}.
 */
export function parseLongDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!LONG_DURATION_PATTERN.test(trimmed)) return undefined;
  let total = 0;
  for (const m of trimmed.matchAll(LONG_PART)) total += Number(m[1]) * (m[2] === 'd' ? 86_400_000 : (UNIT_MS[m[2] ?? ''] ?? Number.NaN));
  const ms = Math.round(total);
  return Number.isFinite(ms) && ms <= MAX_LONG_DURATION_MS ? ms : undefined;
}
