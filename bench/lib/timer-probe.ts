/**
 * Preloaded into a drover child by bench/service-churn.ts (`node --import`): counts the timers
 * that are alive (set and neither fired nor cleared: `setTimeout`, `setInterval`, unref'd ones
 * included, which `process.getActiveResourcesInfo()` leaves out) and writes one JSON line per
 * second to the file named by `DROVER_TIMER_PROBE`: `{"t","timers","handles","rss","heapUsed"}`.
 * Bench-only instrumentation: it wraps the global timer functions of that one process.
 */
import fs from 'node:fs';

const out = process.env['DROVER_TIMER_PROBE'];
if (out !== undefined && out !== '') {
  const live = new Set<unknown>();
  const realSetTimeout = globalThis.setTimeout;
  const realClearTimeout = globalThis.clearTimeout;
  const realSetInterval = globalThis.setInterval;
  const realClearInterval = globalThis.clearInterval;
  type Cb = (...args: unknown[]) => void;

  globalThis.setTimeout = ((cb: Cb, ms?: number, ...args: unknown[]) => {
    const t = realSetTimeout((...a: unknown[]) => {
      live.delete(t);
      cb(...a);
    }, ms, ...args);
    live.add(t);
    return t;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((t: Parameters<typeof clearTimeout>[0]) => {
    live.delete(t);
    realClearTimeout(t);
  }) as typeof clearTimeout;
  globalThis.setInterval = ((cb: Cb, ms?: number, ...args: unknown[]) => {
    const t = realSetInterval(cb, ms, ...args);
    live.add(t);
    return t;
  }) as typeof setInterval;
  globalThis.clearInterval = ((t: Parameters<typeof clearInterval>[0]) => {
    live.delete(t);
    realClearInterval(t);
  }) as typeof clearInterval;

  const started = Date.now();
  const tick = realSetInterval(() => {
    const m = process.memoryUsage();
    const handles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.().length ?? -1;
    fs.appendFileSync(out, `${JSON.stringify({ t: (Date.now() - started) / 1000, timers: live.size, handles, rss: m.rss, heapUsed: m.heapUsed })}\n`);
  }, 1000);
  tick.unref();
}
