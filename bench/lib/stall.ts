/** The service-time model of a stalling benchmark backend (`health-backends.ts`, `stall=`). */

/**
 * The wall time a request needs when it starts `at` ms after the process started and needs `work`
 * ms of service, on a backend that stalls during [k x period, k x period + length): its work
 * progresses only outside the stalls.
 */
export function stalledHoldMs(at: number, work: number, period: number, length: number): number {
  let t = at;
  let left = work;
  for (;;) {
    const phase = t % period;
    if (phase < length) {
      t += length - phase; // stalled: wait for the end of it
      continue;
    }
    const untilStall = period - phase;
    if (left <= untilStall) return t + left - at;
    left -= untilStall;
    t += untilStall;
  }
}
