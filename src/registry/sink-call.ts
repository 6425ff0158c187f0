/**
 * Every registry hands its changes to the directory through a `RegistrySink`. A sink that throws
 * is a bug elsewhere (the directory, a pool rebuild); a registry logs it and keeps its watch loop
 * going rather than let one bad delivery stop every later one.
 */
import type { Logger } from '../observability/log.js';

/** Runs `fn` (a call into the sink); a throw is logged as `registry sink threw`, never rethrown. */
export function callSink(log: Logger, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    log.error({ err }, 'registry sink threw');
  }
}
