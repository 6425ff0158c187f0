/**
 * drover's memory under the loads the robustness tests run without measuring it (tests hold no
 * memory ceilings; the README's "no timing or memory targets in tests"):
 *
 * - upload: one 256 MiB chunked POST from a fast client to a backend that reads 1 MiB, then
 *   pauses 8 ms (a quarter of what the client offers): drover's peak RSS (VmHWM) over the run;
 * - download: one 256 MiB answer from a fast backend to a client that reads 1 MiB, then pauses
 *   8 ms: drover's peak RSS;
 * - aborts: 10 000 requests to a backend that holds them, each client leaving once the backend
 *   has its request: drover's RSS after the first 2 000 (warm-up: JIT, pools, buffers) and after
 *   the other 8 000, both once every abort has reached the backend and nothing is in flight.
 *
 * A streaming proxy holds a few socket buffers per transfer whatever its size; one that buffered
 * what the slow side could not take would grow towards the whole body. Each scenario runs in a
 * fresh drover (the peak is per process), `--rounds` times; medians. Backends and clients run in
 * this process; only drover's own memory is read (/proc/PID/status).
 *
 * Usage: node dist/bench/memory.js [--rounds 3] [--aborts 10000]
 * Writes bench/results/<date>-memory.md and .json.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { abortingClients, type AbortingClients } from './lib/aborts.js';
import { adminBackends, machine, positiveFlag, sleep, startDrover, writeResults, type BenchDrover } from './lib/health-harness.js';
import { median } from './lib/stats.js';

const MIB = 1024 * 1024;
const SIZE = 256 * MIB;
/** ms the slow reader pauses after each MiB */
const PAUSE_MS = 8;
const CHUNK = Buffer.alloc(MIB);
for (let i = 0; i < CHUNK.length; i++) CHUNK[i] = (i * 31 + 7) & 0xff;

/** VmRSS and VmHWM (the peak) of a process, in bytes. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

const mib = (bytes: number): number => Math.round((bytes / MIB) * 10) / 10;

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

function droverFor(service: string, port: number, extra = ''): Promise<BenchDrover> {
  return startDrover(`listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
services:
  ${service}: {retries: 0, ${extra}backends: [{url: http://127.0.0.1:${port}}]}
routes: [{match: {path_prefix: /}, service: ${service}}]
`);
}

/** Reads `stream` 1 MiB at a time with a pause after each; resolves with the bytes and their SHA-256. */
function slowRead(stream: http.IncomingMessage): Promise<{ bytes: number; sha: string }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let bytes = 0;
    let sinceBreak = 0;
    stream.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
      sinceBreak += c.length;
      if (sinceBreak >= MIB) {
        sinceBreak = 0;
        stream.pause();
        setTimeout(() => stream.resume(), PAUSE_MS);
      }
    });
    stream.on('end', () => resolve({ bytes, sha: h.digest('hex') }));
    stream.on('error', reject);
  });
}

/** Writes 256 MiB into `out` as fast as its backpressure allows. */
function fastWrite(out: NodeJS.WritableStream & { end(): void }, done?: () => void): void {
  let sent = 0;
  const pump = (): void => {
    while (sent < SIZE) {
      sent += CHUNK.length;
      if (!out.write(CHUNK)) {
        out.once('drain', pump);
        return;
      }
    }
    out.end();
    done?.();
  };
  pump();
}

const WANT = (() => {
  const h = createHash('sha256');
  for (let i = 0; i < SIZE / MIB; i++) h.update(CHUNK);
  return h.digest('hex');
})();

interface TransferResult {
  readonly startRss: number;
  readonly peak: number;
  readonly seconds: number;
}

async function upload(): Promise<TransferResult> {
  let stored: { bytes: number; sha: string } | undefined;
  const backend = http.createServer((req, res) => {
    void slowRead(req).then((r) => {
      stored = r;
      res.end('stored');
    });
  });
  const d = await droverFor('up', await listen(backend));
  try {
    const startRss = memoryOf(d.pid).rss;
    const t0 = performance.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: d.port, method: 'POST', path: '/up', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      fastWrite(req);
    });
    const seconds = (performance.now() - t0) / 1000;
    if (answer !== 'stored' || stored?.bytes !== SIZE || stored.sha !== WANT) throw new Error(`upload corrupted: ${answer} ${JSON.stringify(stored)}`);
    return { startRss, peak: memoryOf(d.pid).peak, seconds };
  } finally {
    await d.stop();
    backend.closeAllConnections();
    backend.close();
  }
}

async function download(): Promise<TransferResult> {
  const backend = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-length': SIZE });
    fastWrite(res);
  });
  const d = await droverFor('down', await listen(backend));
  try {
    const startRss = memoryOf(d.pid).rss;
    const t0 = performance.now();
    const got = await new Promise<{ bytes: number; sha: string }>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: d.port, path: '/down', agent: false }, (res) => void slowRead(res).then(resolve, reject)).on('error', reject);
    });
    const seconds = (performance.now() - t0) / 1000;
    if (got.bytes !== SIZE || got.sha !== WANT) throw new Error(`download corrupted: ${JSON.stringify(got)}`);
    return { startRss, peak: memoryOf(d.pid).peak, seconds };
  } finally {
    await d.stop();
    backend.closeAllConnections();
    backend.close();
  }
}

interface AbortResult {
  readonly startRss: number;
  /** after the warm-up's aborts */
  readonly before: number;
  /** after all of them */
  readonly after: number;
  readonly peak: number;
}

async function aborts(total: number): Promise<AbortResult> {
  const warmup = Math.min(2000, Math.floor(total / 5));
  let clients: AbortingClients | undefined;
  let aborted = 0;
  const holder = http.createServer((req, res) => {
    res.on('close', () => {
      if (!res.writableFinished) aborted++;
    });
    clients?.arrived(req.url);
  });
  const d = await droverFor('hold', await listen(holder), 'timeouts: {response_headers: 60s}, ');
  const aborting = abortingClients(d.port);
  clients = aborting;
  const run = (count: number): Promise<void> => aborting.run(count);
  const settle = async (want: number): Promise<void> => {
    const deadline = Date.now() + 60_000;
    while (aborted < want || (await adminBackends(d.adminPort, 'hold')).some((b) => b.inflight > 0)) {
      if (Date.now() > deadline) throw new Error(`aborts: ${aborted} of ${want} reached the backend`);
      await sleep(50);
    }
    await sleep(2000); // let drover's timers and GC catch up before reading its RSS
  };
  try {
    const startRss = memoryOf(d.pid).rss;
    await run(warmup);
    await settle(warmup);
    const before = memoryOf(d.pid).rss;
    await run(total - warmup);
    await settle(total);
    const after = memoryOf(d.pid).rss;
    return { startRss, before, after, peak: memoryOf(d.pid).peak };
  } finally {
    await d.stop();
    holder.closeAllConnections();
    holder.close();
  }
}

async function main(): Promise<void> {
  const rounds = positiveFlag(process.argv, '--rounds', 3);
  const total = positiveFlag(process.argv, '--aborts', 10_000);
  const m = machine();
  const log: string[] = [];
  const say = (line: string): void => {
    log.push(line);
    process.stdout.write(`${line}\n`);
  };
  const ups: TransferResult[] = [];
  const downs: TransferResult[] = [];
  const abs: AbortResult[] = [];
  for (let r = 1; r <= rounds; r++) {
    const u = await upload();
    ups.push(u);
    say(`round ${r}/${rounds} upload 256 MiB to a slow reader: peak RSS ${mib(u.peak)} MiB (at start ${mib(u.startRss)} MiB), ${u.seconds.toFixed(1)} s`);
    const dl = await download();
    downs.push(dl);
    say(`round ${r}/${rounds} download 256 MiB by a slow reader: peak RSS ${mib(dl.peak)} MiB (at start ${mib(dl.startRss)} MiB), ${dl.seconds.toFixed(1)} s`);
    const a = await aborts(total);
    abs.push(a);
    say(
      `round ${r}/${rounds} ${total} aborts: RSS ${mib(a.startRss)} MiB at start, ${mib(a.before)} MiB after the warm-up, ${mib(a.after)} MiB after all: +${mib(a.after - a.before)} MiB over ${total - Math.min(2000, Math.floor(total / 5))} aborts (peak ${mib(a.peak)} MiB)`,
    );
  }
  const med = (xs: number[]): number => mib(median(xs));
  const abortCount = total - Math.min(2000, Math.floor(total / 5));
  const growth = abs.map((a) => a.after - a.before);
  const md = [
    `# drover memory under large streams and mass aborts (\`node dist/bench/memory.js\`, ${m.date})`,
    '',
    `Node ${m.node}, ${m.cpus} x ${m.cpuModel}; ${rounds} rounds, a fresh drover per scenario; medians, every round below.`,
    '',
    '| scenario | drover RSS at start, MiB | peak RSS, MiB | RSS growth, MiB |',
    '|---|---:|---:|---:|',
    `| 256 MiB upload, backend reads 1 MiB per ${PAUSE_MS} ms | ${med(ups.map((x) => x.startRss))} | ${med(ups.map((x) => x.peak))} | |`,
    `| 256 MiB download, client reads 1 MiB per ${PAUSE_MS} ms | ${med(downs.map((x) => x.startRss))} | ${med(downs.map((x) => x.peak))} | |`,
    `| ${total} client aborts mid-request (growth over the last ${abortCount}) | ${med(abs.map((x) => x.startRss))} | ${med(abs.map((x) => x.peak))} | ${med(growth)} (${Math.round(median(growth) / abortCount)} B per abort) |`,
    '',
    '```',
    ...log,
    '```',
    '',
  ].join('\n');
  const stamp = m.date.replace(/[:]/g, '-').replace(/\..*$/, '');
  const files = writeResults(`${stamp}-memory`, { machine: m, rounds, aborts: total, upload: ups, download: downs, abortRuns: abs }, md);
  process.stdout.write(`wrote ${files.md}\n`);
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`memory failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
