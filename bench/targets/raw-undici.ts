/**
 * Benchmark target `raw-undici`: an EXPERIMENT, not a proxy anyone should run. Requests are
 * read from raw `net` sockets with a minimal HTTP/1.1 head parser (no body, no validation, no
 * pipelining beyond one request after another, keep-alive only) and passed to undici's dispatch
 * API as `undici-bare` does; the response head and body go back in one write.
 *
 * It answers one question: how much of a Node proxy's cost is node:http's server side? If it is
 * much cheaper than `undici-bare`, replacing node:http in drover (with a strict parser: llhttp's
 * checks are what the robustness tests rely on) could pay; if not, it would not.
 *
 * Usage: node dist/bench/targets/raw-undici.js PORT BACKEND_URL...   (prints `listening PORT`)
 */
import net from 'node:net';
import { Pool, type Dispatcher } from 'undici';

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'trailer', 'proxy-connection']);

class Handler implements Dispatcher.DispatchHandler {
  private head = '';
  private readonly chunks: Buffer[] = [];
  constructor(
    private readonly socket: net.Socket,
    private readonly done: () => void,
  ) {}
  onRequestStart(): void {}
  onResponseStart(controller: Dispatcher.DispatchController, status: number, _h: unknown, message?: string): void {
    const raw = (controller.rawHeaders ?? []) as Buffer[];
    let head = `HTTP/1.1 ${status} ${message ?? ''}\r\n`;
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as Buffer).toString('latin1');
      if (!HOP.has(name.toLowerCase())) head += `${name}: ${(raw[i + 1] as Buffer).toString('latin1')}\r\n`;
    }
    this.head = `${head}Connection: keep-alive\r\n\r\n`;
  }
  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk);
  }
  onResponseEnd(): void {
    this.socket.cork();
    this.socket.write(this.head, 'latin1');
    for (const c of this.chunks) this.socket.write(c);
    this.socket.uncork();
    this.done();
  }
  onResponseError(): void {
    this.socket.destroy();
  }
}

const port = Number(process.argv[2]);
const pools = process.argv.slice(3).map((u) => new Pool(u, { pipelining: 1, keepAliveTimeout: 4_000 }));
let next = 0;

const server = net.createServer({ noDelay: true }, (socket) => {
  let buf = '';
  let busy = false;
  const serve = (): void => {
    if (busy) return;
    const end = buf.indexOf('\r\n\r\n');
    if (end === -1) return;
    const head = buf.slice(0, end);
    buf = buf.slice(end + 4);
    const lines = head.split('\r\n');
    const [method, path] = (lines[0] ?? '').split(' ');
    const headers: string[] = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const colon = line.indexOf(':');
      const name = line.slice(0, colon);
      if (!HOP.has(name.toLowerCase())) headers.push(name, line.slice(colon + 1).trim());
    }
    busy = true;
    const pool = pools[next++ % pools.length] as Pool;
    pool.dispatch(
      { method: method as Dispatcher.HttpMethod, path: path ?? '/', headers, body: null },
      new Handler(socket, () => {
        busy = false;
        serve();
      }),
    );
  };
  socket.on('data', (chunk: Buffer) => {
    buf += chunk.toString('latin1');
    serve();
  });
  socket.on('error', () => socket.destroy());
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
