/**
 * A TCP proxy on 127.0.0.1 that tests control, to cut a client (drover) off from a server (etcd)
 * while the test itself keeps talking to the server directly.
 *
 * `cut()` destroys every proxied connection and resets new ones at once (the client sees a
 * refused/reset connection, as when a network partition is noticed); `restore()` lets
 * connections through again.
 *
 * With `{ framed: true }` the client's bytes are read as 4-byte length-prefixed frames (the
 * ZooKeeper protocol) so that a test can hold requests back: `holdFrames(match)` delays the
 * first frame `match` accepts and every frame after it (their order kept) until
 * `releaseFrames()`, while the server's answers still flow. That puts one request after a change
 * the test makes meanwhile, which is how a race between two reads is made to happen every time.
 */
import net from 'node:net';

/** A running proxy. */
export interface TcpProxy {
  readonly port: number;
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** connections currently proxied */
  readonly activeConnections: number;
  cut(): void;
  restore(): void;
  /** framed proxies only: from the first client frame `match` accepts on, frames wait */
  holdFrames(match: (frame: Buffer) => boolean): void;
  /** frames held back now */
  readonly heldFrames: number;
  /** sends the held frames on, in order, and stops holding */
  releaseFrames(): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/** Starts a proxy forwarding 127.0.0.1:(random port) to `target`. */
export function startTcpProxy(target: { host?: string; port: number }, options: { framed?: boolean } = {}): Promise<TcpProxy> {
  const pairs = new Set<net.Socket>();
  let isCut = false;
  let match: ((frame: Buffer) => boolean) | undefined;
  let holding = false;
  const held: { to: net.Socket; frame: Buffer }[] = [];
  /** Forwards the client's complete frames (or holds them back), keeping a partial one. */
  const framedPipe = (from: net.Socket, to: net.Socket): void => {
    let buf = Buffer.alloc(0);
    from.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const frame = buf.subarray(0, 4 + buf.readUInt32BE(0));
        buf = buf.subarray(frame.length);
        if (!holding && match?.(frame) === true) holding = true;
        if (holding) held.push({ to, frame });
        else to.write(frame);
      }
    });
  };
  const server = net.createServer((inbound) => {
    inbound.on('error', () => undefined);
    if (isCut) {
      inbound.resetAndDestroy();
      return;
    }
    const outbound = net.connect({ host: target.host ?? '127.0.0.1', port: target.port });
    outbound.on('error', () => inbound.destroy());
    inbound.on('error', () => outbound.destroy());
    inbound.on('close', () => {
      outbound.destroy();
      pairs.delete(inbound);
      pairs.delete(outbound);
    });
    outbound.on('close', () => inbound.destroy());
    pairs.add(inbound);
    pairs.add(outbound);
    if (options.framed === true) framedPipe(inbound, outbound);
    else inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      resolve({
        port,
        url: `http://127.0.0.1:${port}`,
        get activeConnections() {
          return pairs.size / 2;
        },
        cut() {
          isCut = true;
          for (const s of pairs) s.resetAndDestroy();
          pairs.clear();
        },
        restore() {
          isCut = false;
        },
        get heldFrames() {
          return held.length;
        },
        holdFrames(m) {
          if (options.framed !== true) throw new Error('holdFrames needs a framed proxy');
          match = m;
        },
        releaseFrames() {
          match = undefined;
          holding = false;
          for (const { to, frame } of held.splice(0)) if (!to.destroyed) to.write(frame);
        },
        close() {
          for (const s of pairs) s.destroy();
          pairs.clear();
          return new Promise<void>((done) => server.close(() => done()));
        },
      });
    });
  });
}
