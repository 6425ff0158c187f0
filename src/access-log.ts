/**
 * The access log: one JSON line per request (`access_log: stdout | PATH`), written by pino's
 * asynchronous destination so the data path never waits on the disk. SIGUSR1 reopens the file
 * (for logrotate's `postrotate`).
 */
import { pino } from 'pino';
import type { AccessLogEntry } from './proxy/types.js';

export interface AccessLog {
  readonly write: (entry: AccessLogEntry) => void;
  /** reopens the file after rotation; a no-op for stdout */
  reopen(): void;
  /** flushes what is buffered */
  flush(): void;
}

/** Opens the access log named by `target` (`stdout` or an absolute path); undefined for `off`. */
export function openAccessLog(target: string): AccessLog | undefined {
  if (target === 'off') return undefined;
  const dest = pino.destination({ dest: target === 'stdout' ? 1 : target, sync: false, mkdir: true });
  dest.on('error', () => undefined); // a full disk must not take the proxy down
  const logger = pino({ base: undefined, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, dest);
  return {
    write: (entry) => logger.info(entry, 'access'),
    reopen: () => {
      if (target !== 'stdout') dest.reopen();
    },
    flush: () => {
      try {
        dest.flushSync();
      } catch {
        // not ready yet (nothing written): nothing to flush
      }
    },
  };
}
