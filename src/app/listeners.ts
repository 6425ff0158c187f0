/**
 * The graceful drain of a process's proxy listeners, the same in the single-process runtime and
 * in a cluster worker: stop accepting, let in-flight requests and open tunnels finish for up to
 * the grace period, then close whatever is left.
 */
import type { Listener } from '../proxy/listener.js';

/** ms between two passes that close the keep-alive connections gone idle meanwhile. */
const IDLE_SWEEP_MS = 50;

/**
 * Closes every listener (new connections are refused from here on; a listener closed already
 * keeps its close) and waits until each has
 * drained (every connection and tunnel closed) or `graceMs` has passed; then destroys what is left.
 * Resolves with which came first.
 */
export async function drainListeners(listeners: readonly Listener[], graceMs: number): Promise<'drained' | 'expired'> {
  for (const l of listeners) void l.close();
  // Keep-alive connections that go idle after their response are closed as they do.
  const idle = setInterval(() => {
    for (const l of listeners) l.closeIdle();
  }, IDLE_SWEEP_MS);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((resolve) => {
    timer = setTimeout(() => resolve('expired'), graceMs);
  });
  const drained = Promise.all(listeners.map((l) => l.whenDrained())).then(() => 'drained' as const);
  const result = await Promise.race([drained, expired]);
  clearInterval(idle);
  clearTimeout(timer);
  if (result === 'expired') for (const l of listeners) l.destroyAll();
  return result;
}
