/**
 * The access log (`access_log: off | stdout | PATH`): one JSON object per line per request,
 * written through pino's asynchronous destination (sonic-boom) so the data path never waits on
 * the disk; lines are batched and reach the file within `FLUSH_MS` (100 ms) of the request. SIGUSR1 reopens the file (for logrotate's `postrotate`, after a `mv`).
 *
 * The line is built by hand rather than through a pino logger: the field set is fixed, so a
 * template with `JSON.stringify` only on the free-text values is cheaper, and the line carries no
 * logger noise (`level`, `msg`, `pid`). Fields, in this order:
 *
 * | field        | type           | meaning                                                          |
 * |--------------|----------------|------------------------------------------------------------------|
 * | `time`       | string         | ISO 8601 UTC time the response finished (or failed)              |
 * | `request_id` | string         | `X-Request-Id` sent upstream (the client's, or generated); for answers drover gave itself before routing to a service (404, 400), the client's or `""` |
 * | `client`     | string         | the client's address: the peer, or behind a `trusted_proxies` peer the nearest untrusted address in X-Forwarded-For |
 * | `method`     | string         | request method                                                   |
 * | `host`       | string         | `Host` header as sent by the client (may include a port)         |
 * | `path`       | string         | request target as received, query string included                |
 * | `route`      | number / null  | index of the matching route in `routes:` (0-based, file order); null: no route matched |
 * | `service`    | string / null  | service chosen by the route                                     |
 * | `backend`    | string / null  | id of the backend that answered (the last one tried); null: none |
 * | `status`     | number         | status sent to the client; 499 when the client left first        |
 * | `duration_ms`| number         | milliseconds from request received to response finished (µs precision) |
 * | `bytes_in`   | number         | request body bytes read from the client (upgrades: tunnel bytes up) |
 * | `bytes_out`  | number         | response body bytes relayed to the client (upgrades: tunnel bytes down) |
 * | `retries`    | number         | retries to other backends                                        |
 * | `protocol`   | string         | the client's protocol: `HTTP/1.1` or `HTTP/2.0` (`HTTP/1.0` for 1.0 clients) |
 * | `error`      | string         | present only when the request failed: what went wrong            |
 */
import { pino } from 'pino';

/** One entry of the access log; built only when the access log is on. */
export interface AccessLogEntry {
  readonly requestId: string;
  readonly client: string;
  readonly method: string;
  readonly host: string;
  readonly path: string;
  readonly route: number | null;
  readonly service: string | null;
  readonly backend: string | null;
  readonly status: number;
  /** ms */
  readonly duration: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly retries: number;
  /** `HTTP/1.1` (default when absent) or `HTTP/2.0` */
  readonly protocol?: string | undefined;
  readonly error?: string | undefined;
}

/** An open access log. */
export interface AccessLog {
  /** Appends one line for `entry`; never throws, never blocks on I/O. */
  readonly write: (entry: AccessLogEntry) => void;
  /** Reopens the file after rotation (the next lines go to a new file at PATH); a no-op for stdout. */
  reopen(): void;
  /** Writes out what is buffered, synchronously (at shutdown or before switching files). */
  flush(): void;
}

/**
 * Characters of lines collected before they are handed to the file writer as one string (about
 * 250 lines). Measured: handing sonic-boom one line at a time costs about 8 µs of CPU per line (it
 * re-measures its growing buffer on every write, and issues a write per line when idle enough);
 * one string per batch costs a fraction of that, and 64 KiB batches cost less than 8 KiB ones
 * (access log on vs off, 15 interleaved rounds: 15.5 % of throughput lost with 8 KiB, 12.5 % with
 * 64 KiB), because each batch is one write system call.
 */
export const BATCH_CHARS = 65536;

/** ms between flushes of a partly filled batch: the longest a line waits before it is written. */
export const FLUSH_MS = 100;

/** Where the lines go; the sonic-boom destination satisfies it. */
export interface LineSink {
  write(line: string): unknown;
}

/**
 * A JSON string literal for `v`. Nearly every value here (ids, addresses, methods, hosts, paths)
 * is printable ASCII with no quote or backslash, which needs no escaping: one scan instead of
 * `JSON.stringify`'s general path. Anything else goes through `JSON.stringify`.
 */
export function jsonString(v: string): string {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 /* " */ || c === 0x5c /* \ */) return JSON.stringify(v);
  }
  return `"${v}"`;
}

/** `jsonString` for a value that may be null. */
function str(v: string | null): string {
  return v === null ? 'null' : jsonString(v);
}

/** 10000-01-01T00:00:00Z: from there on toISOString writes a six-digit signed year. */
const MAX_FOUR_DIGIT_YEAR_MS = 253_402_300_800_000;
let isoSecond = NaN;
let isoPrefix = '';

/**
 * `new Date(now).toISOString()` for a whole number of ms, with the part up to the seconds
 * computed once per second: a busy proxy writes thousands of lines per second.
 */
export function isoTime(now: number): string {
  // fractions, negatives and years past 9999 keep Date's own formatting
  if (!Number.isInteger(now) || now < 0 || now >= MAX_FOUR_DIGIT_YEAR_MS) return new Date(now).toISOString();
  const ms = now % 1000;
  const second = now - ms;
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second).toISOString().slice(0, 20); // "2026-11-26T07:59:12."
  }
  return `${isoPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`;
}

/** Renders one access log line (with its trailing newline); `now` is ms since the epoch. */
export function formatAccessLine(e: AccessLogEntry, now: number): string {
  let line =
    `{"time":"${isoTime(now)}","request_id":${jsonString(e.requestId)},"client":${jsonString(e.client)},` +
    `"method":${jsonString(e.method)},"host":${jsonString(e.host)},"path":${jsonString(e.path)},` +
    `"route":${e.route === null ? 'null' : e.route},"service":${str(e.service)},"backend":${str(e.backend)},` +
    `"status":${e.status},"duration_ms":${e.duration},"bytes_in":${e.bytesIn},"bytes_out":${e.bytesOut},"retries":${e.retries},"protocol":${e.protocol === undefined ? '"HTTP/1.1"' : jsonString(e.protocol)}`;
  if (e.error !== undefined) line += `,"error":${jsonString(e.error)}`;
  return `${line}}\n`;
}

/** An access log writing to `sink` (for tests and benchmarks that want the lines in memory). */
export function accessLogTo(sink: LineSink, clock: () => number = Date.now): (entry: AccessLogEntry) => void {
  return (entry) => {
    sink.write(formatAccessLine(entry, clock()));
  };
}

/**
 * Opens the access log named by `target` (`stdout` or an absolute path, whose directory is
 * created when missing); undefined for `off`.
 */
export function openAccessLog(target: string): AccessLog | undefined {
  if (target === 'off') return undefined;
  // Asynchronous: the data path never waits on the disk; while a write is in flight, the next
  // batches queue in sonic-boom's buffer.
  const dest = pino.destination({ dest: target === 'stdout' ? 1 : target, sync: false, mkdir: true });
  dest.on('error', () => undefined); // a full disk must not take the proxy down
  let pending = '';
  const drain = (): void => {
    if (pending === '') return;
    const batch = pending;
    pending = '';
    try {
      dest.write(batch);
    } catch {
      // sonic-boom throws when written to while closed (shutdown race): the batch is lost
    }
  };
  const timer = setInterval(drain, FLUSH_MS);
  timer.unref(); // an idle access log must not keep a stopping process alive
  return {
    write: (entry) => {
      pending += formatAccessLine(entry, Date.now());
      if (pending.length >= BATCH_CHARS) drain();
    },
    reopen: () => {
      if (target === 'stdout') return;
      // Lines of requests finished before the signal belong to the old file.
      drain();
      try {
        dest.reopen();
      } catch {
        // not open yet: the first open creates the file at PATH anyway
      }
    },
    flush: () => {
      drain();
      try {
        dest.flushSync();
      } catch {
        // not ready yet (nothing written): nothing to flush
      }
    },
  };
}
