/**
 * A load generator that counts every request itself (autocannon's `errors` misses requests whose
 * connection the proxy dropped). Two modes:
 * - closed loop: `concurrency` workers, each sending its next request when the last one ended;
 * - open loop: `rate` requests per second at evenly spaced send times, whatever the answers do.
 *   Latency is measured from the scheduled send time, so a stalled server cannot hide its
 *   queue (no coordinated omission). Autocannon's `overallRate` sends each connection's quota
 *   in a burst at the start of every second, which is why it is not used for this.
 */
import http from 'node:http';

export interface LoadOptions {
  readonly port: number;
  readonly path?: string | undefined;
  /** ms of load; the run ends when every request sent has been answered or failed */
  readonly durationMs: number;
  /** closed loop: number of workers */
  readonly concurrency?: number | undefined;
  /** open loop: requests per second */
  readonly rate?: number | undefined;
  /** called with every answer (status, body) at the time it arrives */
  readonly onAnswer?: ((status: number, body: string, at: number) => void) | undefined;
  /**
   * open loop: ms of load before `durationMs` whose requests are sent but not counted (no
   * latency, no `onAnswer`). It runs on the same connections as the measured load, so the
   * measured run does not start by opening them all at once.
   */
  readonly warmupMs?: number | undefined;
  /** open loop: called once, when the first measured request is about to be sent */
  readonly onMeasureStart?: (() => void) | undefined;
  /**
   * ms after its scheduled send time a measured request is given up (its connection closed):
   * it counts as failed (`timeout`) and its latency as this many ms, a lower bound, so a
   * collapsed target cannot shorten the tail by never answering. Default: never.
   */
  readonly timeoutMs?: number | undefined;
}

export interface LoadResult {
  sent: number;
  /** answered 2xx */
  ok: number;
  /** non-2xx answers and transport errors, by reason (e.g. `502`, `ECONNRESET`) */
  failed: Record<string, number>;
  failedTotal: number;
  /** ms, sorted ascending, one per answered request */
  latencies: number[];
  /** ms the load ran */
  elapsedMs: number;
}

/** The p-th percentile (0-100) of sorted values, nearest rank; 0 when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? 0;
}

/** The error a request given up after `LoadOptions.timeoutMs` fails with. */
class GaveUp extends Error {
  readonly code = 'timeout';
}

function once(agent: http.Agent, port: number, path: string, timeoutMs?: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => req.destroy(new GaveUp('gave up')), timeoutMs);
  });
}

/** Runs one load and counts every request. */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const path = opts.path ?? '/';
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2000 });
  const result: LoadResult = { sent: 0, ok: 0, failed: {}, failedTotal: 0, latencies: [], elapsedMs: 0 };
  const warmupMs = opts.rate !== undefined ? (opts.warmupMs ?? 0) : 0;
  const start = performance.now();
  const measureFrom = start + warmupMs;
  const end = measureFrom + opts.durationMs;
  const one = async (scheduledAt: number): Promise<void> => {
    if (scheduledAt < measureFrom) {
      await once(agent, opts.port, path).catch(() => undefined);
      return;
    }
    result.sent++;
    try {
      const left = opts.timeoutMs === undefined ? undefined : Math.max(0, scheduledAt + opts.timeoutMs - performance.now());
      const a = await once(agent, opts.port, path, left);
      result.latencies.push(performance.now() - scheduledAt);
      opts.onAnswer?.(a.status, a.body, Date.now());
      if (a.status >= 200 && a.status < 300) result.ok++;
      else {
        result.failed[String(a.status)] = (result.failed[String(a.status)] ?? 0) + 1;
        result.failedTotal++;
      }
    } catch (err) {
      if (err instanceof GaveUp) result.latencies.push(opts.timeoutMs ?? 0);
      const code = (err as { code?: string }).code ?? String(err);
      result.failed[code] = (result.failed[code] ?? 0) + 1;
      result.failedTotal++;
    }
  };
  if (opts.rate !== undefined) {
    const interval = 1000 / opts.rate;
    const pending: Promise<void>[] = [];
    let next = start;
    let measuring = false;
    while (next < end) {
      const now = performance.now();
      while (next <= now && next < end) {
        if (!measuring && next >= measureFrom) {
          measuring = true;
          opts.onMeasureStart?.();
        }
        pending.push(one(next));
        next += interval;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(pending);
  } else {
    const workers = Array.from({ length: opts.concurrency ?? 16 }, async () => {
      while (performance.now() < end) await one(performance.now());
    });
    await Promise.all(workers);
  }
  result.elapsedMs = performance.now() - measureFrom;
  agent.destroy();
  result.latencies.sort((x, y) => x - y);
  return result;
}
