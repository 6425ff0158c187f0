/**
 * Benchmark backends for the health benchmarks, run as a child process (so the load generator's
 * event loop and the backends' never compete, and so `kill -9` can take one down).
 *
 * `node dist/bench/lib/health-backends.js NAME:SERVICE_MS:WORKERS ...` starts one HTTP server per
 * argument on 127.0.0.1:0 and prints one JSON line per server, `{"name","port"}`. Each server
 * models a machine with `WORKERS` request slots and a `SERVICE_MS` service time: a request waits
 * for a free slot (FIFO), holds it for `SERVICE_MS`, then answers `200 NAME`. A backend with a
 * ten times longer service time therefore has a tenth of the capacity, and queues when it is
 * sent more than that: the hot spot a load balancer has to route around. `/healthz` answers at
 * once. The process exits when its stdin closes (its parent died) or on SIGTERM.
 *
 * An optional fourth field makes the backend a hot spot (the hot-spot benchmark). It takes effect
 * when the process reads a line `go` on its stdin (the benchmark sends it when its measured run
 * starts, so the hot spot appears in a pool that was healthy until then); times below count
 * from that moment:
 * - `slow=FACTOR`: the service time is FACTOR times as long (a tenth of the capacity at 10);
 * - `stall=PERIOD/STALL`: every PERIOD ms the backend stalls for STALL ms (a stop-the-world GC
 *   pause, a CPU-throttled container): nothing in flight on it progresses during a stall, so every
 *   request in service is held STALL ms longer (one that arrives during a stall starts when it
 *   ends), and requests waiting for a slot wait behind them;
 * - `degrade=RATE`: the service time grows by RATE ms per second.
 */
import http from 'node:http';
import { stalledHoldMs } from './stall.js';

interface Spec {
  readonly name: string;
  /** ms a request holds a worker slot */
  readonly serviceMs: number;
  /** concurrent request slots */
  readonly workers: number;
  /** `slow=`: service time multiplier */
  readonly slow?: number | undefined;
  /** `stall=`: period and length of the stalls, ms */
  readonly stall?: { readonly period: number; readonly length: number } | undefined;
  /** `degrade=`: ms added to the service time per second */
  readonly degrade?: number | undefined;
}

/** Date.now() when `go` was read: the hot-spot modes count from it; undefined before. */
let goAt: number | undefined;

function parseSpec(arg: string): Spec {
  const [name, ms, workers, mode] = arg.split(':');
  if (name === undefined || name === '') throw new Error(`bad backend spec ${arg}: NAME:SERVICE_MS:WORKERS[:MODE]`);
  const base = { name, serviceMs: Number(ms ?? '0'), workers: Math.max(1, Number(workers ?? '1')) };
  const slow = /^slow=([\d.]+)$/.exec(mode ?? '');
  if (slow !== null) return { ...base, slow: Number(slow[1]) };
  const stall = /^stall=(\d+)\/(\d+)$/.exec(mode ?? '');
  if (stall !== null) {
    const period = Number(stall[1]);
    const length = Number(stall[2]);
    if (length >= period) throw new Error(`bad stall ${mode}: the stall must be shorter than its period`);
    return { ...base, stall: { period, length } };
  }
  const degrade = /^degrade=([\d.]+)$/.exec(mode ?? '');
  if (degrade !== null) return { ...base, degrade: Number(degrade[1]) };
  if (mode !== undefined) throw new Error(`bad backend mode ${mode}: slow=FACTOR | stall=PERIOD/STALL | degrade=RATE`);
  return base;
}

/** How long a request started now holds its slot, ms. */
function holdMs(spec: Spec): number {
  if (goAt === undefined) return spec.serviceMs;
  const since = Date.now() - goAt;
  const ms = spec.serviceMs * (spec.slow ?? 1) + (spec.degrade === undefined ? 0 : (spec.degrade * since) / 1000);
  return spec.stall === undefined ? ms : stalledHoldMs(since, ms, spec.stall.period, spec.stall.length);
}

function serve(spec: Spec): Promise<number> {
  let busy = 0;
  const queue: (() => void)[] = [];
  const release = (): void => {
    const next = queue.shift();
    if (next !== undefined) next();
    else busy--;
  };
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/healthz') {
      res.end('ok');
      return;
    }
    const run = (): void => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(spec.name);
        release();
      }, holdMs(spec));
    };
    if (busy < spec.workers) {
      busy++;
      run();
    } else queue.push(run);
  });
  server.keepAliveTimeout = 60_000;
  server.on('clientError', (_err, socket) => socket.destroy());
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      resolve(typeof addr === 'object' && addr !== null ? addr.port : 0);
    });
  });
}

async function main(): Promise<void> {
  const specs = process.argv.slice(2).map(parseSpec);
  for (const spec of specs) {
    const port = await serve(spec);
    process.stdout.write(`${JSON.stringify({ name: spec.name, port })}\n`);
  }
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d: string) => {
    if (goAt === undefined && d.split('\n').includes('go')) goAt = Date.now();
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

void main();
