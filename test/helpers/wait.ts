/**
 * The one way tests wait for something to happen: poll a check until it yields a value, and fail
 * after a deadline saying what was awaited (and the last error the check threw). Every test waits
 * through `waitFor`; `eventually` is the same loop for the few that report a miss themselves.
 */

/** Values that mean "not yet". */
export type NotYet = undefined | null | false;

/** How long and how often to check; a number is the timeout alone. */
export interface WaitOptions {
  /** what is awaited, for the failure message; default: the check's source */
  readonly what?: string;
  /** ms before giving up; default 10 000 */
  readonly timeoutMs?: number;
  /** ms between two checks; default 20 */
  readonly everyMs?: number;
  /** more to say when it times out (a child process's output, the last value seen) */
  readonly detail?: () => string;
  /** checked before each try: a message ends the wait at once, as a failure (a server that exited) */
  readonly giveUp?: () => string | undefined;
}

function settings(options: number | WaitOptions | undefined): WaitOptions {
  return typeof options === 'number' ? { timeoutMs: options } : (options ?? {});
}

async function poll<T>(check: () => T | NotYet | Promise<T | NotYet>, o: WaitOptions): Promise<{ value: T } | { last: unknown }> {
  const deadline = Date.now() + (o.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    const stop = o.giveUp?.();
    if (stop !== undefined) throw new Error(stop);
    try {
      const v = await check();
      if (v !== undefined && v !== null && v !== false) return { value: v };
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) return { last };
    await new Promise((r) => setTimeout(r, o.everyMs ?? 20));
  }
}

/**
 * Resolves with the first value of `check` that is not undefined, null or false (a check that
 * throws counts as "not yet"); rejects once `timeoutMs` has passed without one.
 */
export async function waitFor<T>(check: () => T | NotYet | Promise<T | NotYet>, options?: number | WaitOptions): Promise<T> {
  const o = settings(options);
  const r = await poll(check, o);
  if ('value' in r) return r.value;
  const last = r.last instanceof Error ? `: ${r.last.message}` : r.last !== undefined ? `: ${String(r.last)}` : '';
  const detail = o.detail === undefined ? '' : `\n${o.detail()}`;
  throw new Error(`timed out after ${o.timeoutMs ?? 10_000} ms waiting for ${o.what ?? String(check)}${last}${detail}`);
}

/** `waitFor`'s loop, answering whether `check` held within the time instead of failing (`giveUp` still throws). */
export async function eventually(check: () => unknown, options?: number | WaitOptions): Promise<boolean> {
  return 'value' in (await poll(check, settings(options)));
}
