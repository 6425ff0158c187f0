/**
 * Process logging: JSON lines on stdout through pino (chosen for its speed and because its
 * line format is what log shippers expect). One root logger; modules take a child with
 * `logger.child({ component: 'etcd' })`.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Creates the root logger. `level` defaults to `DROVER_LOG_LEVEL` or `info`. */
export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? process.env['DROVER_LOG_LEVEL'] ?? 'info';
  const base = { pid: process.pid };
  if (options.destination !== undefined) {
    return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime }, options.destination);
  }
  return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that drops everything: for unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
