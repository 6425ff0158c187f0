/**
 * Benchmark target `raw-floor`: NOT a proxy. The canned answer of `net-floor`, on Node's bare
 * libuv TCP handles (the `tcp_wrap` / `stream_wrap` bindings drover's fast path uses) instead
 * of net.Socket: what a Node process holds per open connection without net.Socket's stream
 * states and emitter, for `bench/idle-floor.ts`.
 *
 * Usage: node dist/bench/targets/raw-floor.js PORT   (prints `listening PORT`)
 */

interface Handle {
  onread: (this: Handle) => void;
  onconnection: (err: number, client: Handle | undefined) => void;
  bind(host: string, port: number): number;
  listen(backlog: number): number;
  readStart(): number;
  setNoDelay(on: boolean): number;
  writeLatin1String(req: object, data: string): number;
  close(): void;
}

const proc = process as unknown as { binding(name: string): unknown };
const { TCP, constants } = proc.binding('tcp_wrap') as { TCP: new (type: number) => Handle; constants: { SERVER: number } };
const wrap = proc.binding('stream_wrap') as { WriteWrap: new () => Record<string, unknown>; streamBaseState: Int32Array; kReadBytesOrError: number };

const ANSWER = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

function done(): void {
  // nothing is waiting on a write
}

function onRead(this: Handle): void {
  const nread = wrap.streamBaseState[wrap.kReadBytesOrError] as number;
  if (nread > 0) {
    const req = new wrap.WriteWrap();
    req['handle'] = this;
    req['oncomplete'] = done;
    req['async'] = false;
    this.writeLatin1String(req, ANSWER);
  } else if (nread < 0) this.close();
}

const port = Number(process.argv[2]);
const server = new TCP(constants.SERVER);
if (server.bind('127.0.0.1', port) !== 0 || server.listen(511) !== 0) throw new Error(`cannot listen on ${port}`);
server.onconnection = (err, client) => {
  if (err !== 0 || client === undefined) return;
  client.setNoDelay(true);
  client.onread = onRead;
  if (client.readStart() !== 0) client.close();
};
process.stdout.write(`listening ${port}\n`);
process.on('SIGTERM', () => process.exit(0));
