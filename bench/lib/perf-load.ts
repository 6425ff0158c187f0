/**
 * Load generators for the benchmark: autocannon (programmatic), wrk (when installed), a paced
 * low-rate client with microsecond timing, and a crowd of idle keep-alive connections.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import autocannon from 'autocannon';

/** One load run's figures. */
export interface LoadResult {
  /** requests per second (mean over the run) */
  readonly rps: number;
  /** ms */
  readonly p50: number;
  /** ms */
  readonly p99: number;
  /** responses received (any status) */
  readonly total: number;
  /** requests written */
  readonly sent: number;
  /** responses that were not 2xx, plus connection errors and timeouts */
  readonly bad: number;
  /** bytes per second received */
  readonly bytesPerSec: number;
}

/** autocannon for `seconds` with `connections` keep-alive connections. */
export async function runAutocannon(url: string, seconds: number, connections = 50): Promise<LoadResult> {
  return toLoadResult(await autocannon({ url, connections, duration: seconds, pipelining: 1 }));
}

function toLoadResult(r: autocannon.Result): LoadResult {
  return {
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    total: r.requests.total,
    sent: r.requests.sent,
    bad: r.non2xx + r.errors + r.timeouts,
    bytesPerSec: r.throughput.average,
  };
}

/**
 * autocannon at a fixed total rate (`rate` requests/s over `connections` connections): an open
 * load the target can keep up with, for comparing CPU per request of two targets loaded at
 * the same time. Its `sent` is not a count of requests written (autocannon counts ahead under a
 * rate limit); compare `total` with rate x seconds instead.
 */
export async function runFixedRate(url: string, rate: number, seconds: number, connections = 20): Promise<LoadResult> {
  return toLoadResult(await autocannon({ url, connections, duration: seconds, pipelining: 1, overallRate: rate }));
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (m === null) return NaN;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'us':
      return n / 1000;
    case 'ms':
      return n;
    case 's':
      return n * 1000;
    default:
      return n * 60_000;
  }
}

/** wrk with one thread and `connections` connections; undefined if wrk failed. */
export interface WrkResult {
  readonly rps: number;
  /** ms */
  readonly p50: number;
  /** ms */
  readonly p99: number;
  /** requests completed */
  readonly requests: number;
  /** connect, read, write and timeout errors plus non-2xx/3xx answers, as wrk counts them */
  readonly errors: number;
}

/** wrk (C, one thread, `connections` keep-alive connections) for `seconds`; undefined without wrk. */
export async function runWrk(url: string, seconds: number, connections = 50): Promise<WrkResult | undefined> {
  const out = await new Promise<string>((resolve) => {
    const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', url], { stdio: ['ignore', 'pipe', 'ignore'] });
    let s = '';
    child.stdout.on('data', (d: Buffer) => (s += d.toString()));
    child.on('close', () => resolve(s));
    child.on('error', () => resolve(''));
  });
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p50 = /\s50%\s+(\S+)/.exec(out);
  const p99 = /\s99%\s+(\S+)/.exec(out);
  const requests = /(\d+) requests in/.exec(out);
  if (rps === null || p50 === null || p99 === null || requests === null) return undefined;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const errors = (socket === null ? 0 : socket.slice(1).reduce((a, x) => a + Number(x), 0)) + Number(non2xx?.[1] ?? 0);
  return { rps: Number(rps[1]), p50: toMs(p50[1] as string), p99: toMs(p99[1] as string), requests: Number(requests[1]), errors };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/**
 * Paced requests at `rate` per second for `seconds` over a few keep-alive connections; latency of
 * each measured with hrtime. Returns p50/p99 in ms and the count of failures.
 */
export async function lowLoadLatency(url: string, rate: number, seconds: number): Promise<{ p50: number; p99: number; n: number; failed: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const lat: number[] = [];
  let failed = 0;
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      new Promise<void>((resolve) => {
        const t0 = process.hrtime.bigint();
        const req = http.get(url, { agent }, (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
            else failed++;
            resolve();
          });
        });
        req.on('error', () => {
          failed++;
          resolve();
        });
      }),
    );
  }
  await Promise.all(pending);
  agent.destroy();
  // the first requests open connections: leave them out
  const sorted = lat.slice(Math.min(10, lat.length >> 2)).sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: lat.length, failed };
}

/**
 * Opens `count` keep-alive connections to `url`'s host, sends one GET on each, waits for the
 * answer, and keeps them open and idle. Returns how many got an answer and a closer.
 */
export async function idleConnections(url: string, count: number): Promise<{ open: number; close(): void }> {
  const u = new URL(url);
  const sockets: net.Socket[] = [];
  let open = 0;
  const batch = 200;
  for (let i = 0; i < count; i += batch) {
    const n = Math.min(batch, count - i);
    await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<void>((resolve) => {
            const s = net.connect({ host: u.hostname, port: Number(u.port) });
            sockets.push(s);
            const t = setTimeout(() => resolve(), 5_000);
            s.on('error', () => {
              clearTimeout(t);
              resolve();
            });
            s.once('connect', () => s.write(`GET / HTTP/1.1\r\nHost: ${u.host}\r\n\r\n`));
            s.once('data', () => {
              open++;
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
  }
  return {
    open,
    close: () => {
      for (const s of sockets) s.destroy();
    },
  };
}
