/**
 * Benchmark target `undici-bare`: the floor for any undici-based proxy. A minimal keep-alive
 * round-robin pass-through on undici's dispatch API with backpressure both ways, and nothing
 * else (no routing, no health, no metrics, no header rewriting beyond dropping hop-by-hop ones).
 *
 * With `--forwarding` it also adds the headers the contract makes every drover request carry
 * (X-Forwarded-For, -Proto, -Host and a generated X-Request-Id): the floor for a proxy that
 * must send them (bench target `undici-fwd`).
 *
 * Usage: node dist/bench/targets/undici-bare.js [--forwarding] PORT BACKEND_URL...   (prints `listening PORT`)
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'trailer', 'proxy-connection']);

class Handler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  constructor(private readonly res: ServerResponse) {
    this.onDrain = this.onDrain.bind(this);
  }
  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }
  onResponseStart(controller: Dispatcher.DispatchController, status: number): void {
    const raw = (controller.rawHeaders ?? []) as Buffer[];
    const headers: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as Buffer).toString('latin1');
      if (!HOP.has(name.toLowerCase())) headers.push(name, (raw[i + 1] as Buffer).toString('latin1'));
    }
    this.res.writeHead(status, headers);
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', this.onDrain);
    }
  }
  private onDrain(): void {
    this.controller?.resume();
  }
  onResponseEnd(): void {
    this.res.end();
  }
  onResponseError(_c: Dispatcher.DispatchController, _err: Error): void {
    if (!this.res.headersSent) {
      this.res.writeHead(502);
      this.res.end();
    } else this.res.destroy();
  }
}

const args = process.argv.slice(2);
const forwarding = args[0] === '--forwarding';
if (forwarding) args.shift();
const port = Number(args[0]);
const pools = args.slice(1).map((u) => new Pool(u, { pipelining: 1, keepAliveTimeout: 4_000 }));
let next = 0;

const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
  const pool = pools[next++ % pools.length] as Pool;
  const raw = req.rawHeaders;
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (!HOP.has(name.toLowerCase())) headers.push(name, raw[i + 1] as string);
  }
  if (forwarding) {
    const host = req.headers.host;
    headers.push('x-forwarded-for', req.socket.remoteAddress ?? '', 'x-forwarded-proto', 'http');
    if (host !== undefined) headers.push('x-forwarded-host', host);
    headers.push('x-request-id', randomUUID());
  }
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.dispatch({ method: req.method as Dispatcher.HttpMethod, path: req.url ?? '/', headers, body: hasBody ? req : null }, new Handler(res));
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
