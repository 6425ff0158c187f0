/**
 * `drover status [--admin URL]`: prints the services and backends of a running drover as an
 * aligned table, read from its admin API (`GET /api/services`). Exit 1 when the API cannot be
 * reached or answers something unexpected, so scripts can rely on the exit status.
 */
import type { Command } from 'commander';
import { parseDuration } from '../config/values.js';
import type { BackendView, ServiceView } from '../admin/model.js';

/** Default admin API address (the config default of `admin.address`). */
export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9901';

// SOURCE last: scripts that read the columns before it by position keep working.
const HEADERS = ['SERVICE', 'BACKEND', 'URL', 'STATE', 'WEIGHT', 'INFLIGHT', 'MAX-CONNS', 'REQUESTS', 'EWMA-MS', 'LAST-CHANGE', 'SOURCE'] as const;
/** columns printed right-aligned (numbers) */
const RIGHT = new Set<number>([4, 5, 6, 7, 8]);

/** Adds `status` to the program. */
export function addStatusCommand(program: Command): void {
  program
    .command('status')
    .description('print the services and backends of a running drover (state, weight, inflight, requests, last change, source)')
    .option('--admin <url>', 'admin API base URL', DEFAULT_ADMIN_URL)
    .option('--timeout <duration>', 'give up after this long (e.g. 5s, 500ms)', '5s')
    .action(async (options: { admin: string; timeout: string }) => {
      process.exitCode = await runStatus(options.admin, options.timeout, process.stdout, process.stderr);
    });
}

/**
 * Fetches `/api/services` from `adminUrl` and writes the table to `out`; errors go to `err`.
 * Returns the exit code (0 ok, 1 unreachable or bad answer, 2 bad usage).
 */
export async function runStatus(
  adminUrl: string,
  timeout: string,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  const timeoutMs = parseDuration(timeout);
  if (timeoutMs === undefined || timeoutMs <= 0) {
    err.write(`drover status: --timeout: not a duration: ${timeout} (use e.g. 5s or 500ms)\n`);
    return 2;
  }
  let url: URL;
  try {
    url = servicesUrl(adminUrl);
  } catch {
    err.write(`drover status: --admin: not a URL: ${adminUrl}\n`);
    return 2;
  }

  let body: unknown;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
    const text = await res.text();
    if (res.status !== 200) {
      err.write(`drover status: ${url.href} answered HTTP ${res.status}: ${text.slice(0, 200).trim()}\n`);
      return 1;
    }
    body = JSON.parse(text);
  } catch (e) {
    err.write(`drover status: cannot reach the admin API at ${url.href}: ${describeFetchError(e)}\n`);
    return 1;
  }

  const services = parseServices(body);
  if (services === undefined) {
    err.write(`drover status: unexpected answer from ${url.href} (is this a drover admin API?)\n`);
    return 1;
  }
  out.write(formatStatusTable(services, Date.now()));
  return 0;
}

/** `http://h:p` or `h:p` -> `http://h:p/api/services`, keeping any path prefix (admin behind a proxy). */
function servicesUrl(adminUrl: string): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(adminUrl) ? adminUrl : `http://${adminUrl}`;
  const base = new URL(withScheme);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('unsupported scheme');
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  return new URL('api/services', base);
}

function describeFetchError(e: unknown): string {
  if (e instanceof Error) {
    if (e.name === 'TimeoutError') return 'timed out';
    if (e instanceof SyntaxError) return `the answer is not JSON (${e.message})`;
    // fetch wraps the socket error: the cause carries the useful code (ECONNREFUSED, ENOTFOUND).
    const cause = (e as { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as NodeJS.ErrnoException).code;
      return code !== undefined ? `${code} (${cause.message})` : cause.message;
    }
    return e.message;
  }
  return String(e);
}

function parseServices(body: unknown): ServiceView[] | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const services = (body as { services?: unknown }).services;
  if (!Array.isArray(services)) return undefined;
  for (const s of services) {
    if (typeof s !== 'object' || s === null) return undefined;
    const v = s as Partial<ServiceView>;
    if (typeof v.name !== 'string' || !Array.isArray(v.backends)) return undefined;
  }
  return services as ServiceView[];
}

/**
 * Renders the status table: one row per backend (one `(none)` row for a service without
 * backends), columns padded to the widest cell, numbers right-aligned. `now` is ms since epoch,
 * for the relative age next to LAST-CHANGE.
 */
export function formatStatusTable(services: readonly ServiceView[], now: number): string {
  const rows: string[][] = [[...HEADERS]];
  for (const s of services) {
    if (s.backends.length === 0) {
      rows.push([s.name, '(none)', '-', '-', '-', '-', '-', '-', '-', '-', '-']);
      continue;
    }
    for (const b of s.backends) rows.push(backendRow(s.name, b, now));
  }
  const widths = HEADERS.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (RIGHT.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

function backendRow(service: string, b: BackendView, now: number): string[] {
  // MAX-CONNS 0 is "unlimited"; EWMA-MS `-` is "no answer observed yet" (or an older drover)
  return [service, s(b.id), s(b.url), s(b.state), num(b.weight), num(b.inflight), num(b.max_conns), num(b.requests), num(b.latency_ewma_ms), lastChange(b.last_change, now), s(b.source)];
}

function s(v: unknown): string {
  // Control characters from a registry value must not garble the terminal.
  return typeof v === 'string' && v !== '' ? v.replace(/[\u0000-\u001f\u007f]/g, '?') : '-';
}

function num(v: unknown): string {
  return typeof v === 'number' && Number.isFinite(v) ? String(v) : '-';
}

function lastChange(iso: string | null | undefined, now: number): string {
  if (typeof iso !== 'string') return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return s(iso);
  return `${new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z')} (${age(now - t)} ago)`;
}

function age(ms: number): string {
  const sec = Math.max(0, Math.round(ms / 1000));
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h`;
  return `${Math.floor(sec / 86400)}d`;
}
