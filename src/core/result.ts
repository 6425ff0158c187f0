/**
 * The one result type of drover's parsers and validators: a value, or why it was refused. Parsers
 * return it instead of throwing, so callers can collect every problem at once (config errors) or
 * skip one bad entry and keep the rest (registry values).
 */

/** A parsed value, or the reason it was refused (`E`: a message by default; a list of issues where a caller reports them all). */
export type Result<T, E = string> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: E };

/** A success. */
export function ok<T>(value: T): { readonly ok: true; readonly value: T } {
  return { ok: true, value };
}

/** A refusal. */
export function fail<E = string>(reason: E): { readonly ok: false; readonly reason: E } {
  return { ok: false, reason };
}
