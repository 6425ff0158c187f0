/**
 * A TCP proxy on 127.0.0.1 that tests control, to cut a client (drover) off from a server (etcd)
 * while the test itself keeps talking to the server directly.
 *
 * `cut()` destroys every proxied connection and resets new ones at once (the client sees a
 * refused/reset connection, as when a network partition is noticed); `restore()` lets
 * connections through again.
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
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/** Starts a proxy forwarding 127.0.0.1:(random port) to `target`. */
export function startTcpProxy(target: { host?: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<net.Socket>();
  let isCut = false;
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
    inbound.pipe(outbound);
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
        close() {
          for (const s of pairs) s.destroy();
          pairs.clear();
          return new Promise<void>((done) => server.close(() => done()));
        },
      });
    });
  });
}
