/**
 * A backend at the TCP level, for tests where the bytes matter: it counts every connection and
 * every byte it receives, and answers with whatever the test scripts (well-formed or not).
 */
import net from 'node:net';
import fs from 'node:fs';

/** Called for each complete request head (`\r\n\r\n`) seen on a connection; bodies are not parsed. */
export type RawResponder = (socket: net.Socket, head: string, index: number) => void;

export interface RawBackend {
  readonly port: number;
  readonly url: string;
  /** connections accepted so far */
  readonly connections: number;
  /** bytes received so far, over every connection */
  readonly bytes: number;
  /** connections open now */
  readonly open: number;
  /** request heads seen, in order */
  readonly heads: string[];
  /** everything each connection received (latin1), in the order connections were accepted (since reset: open ones first) */
  readonly data: string[];
  respond(r: RawResponder): void;
  reset(): void;
  /** destroys every open connection (as a crash would) */
  dropConnections(): void;
  close(): Promise<void>;
}

/** `HTTP/1.1 200` with a body of `text`, keep-alive. */
export function ok(text: string): string {
  return `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
}

/** Starts a raw backend answering `200 <name>` to every head unless told otherwise. */
export async function startRawBackend(name: string): Promise<RawBackend> {
  let responder: RawResponder = (s) => s.write(ok(name));
  let connections = 0;
  let bytes = 0;
  const heads: string[] = [];
  let data: string[] = [];
  /** each open connection's index in `data` (renumbered by reset) */
  const slots = new Map<net.Socket, number>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    let index = 0;
    slots.set(s, data.push('') - 1);
    s.on('close', () => slots.delete(s));
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      data[slots.get(s) ?? data.length] += d.toString('latin1');
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        heads.push(head);
        responder(s, head, index++);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get connections() {
      return connections;
    },
    get bytes() {
      return bytes;
    },
    get open() {
      return sockets.size;
    },
    heads,
    get data() {
      return data;
    },
    respond: (r) => {
      responder = r;
    },
    dropConnections: () => {
      for (const s of sockets) s.destroy();
    },
    reset: () => {
      connections = 0;
      bytes = 0;
      heads.length = 0;
      // open connections keep being recorded, from empty, at the front
      data = [...slots.keys()].map(() => '');
      let i = 0;
      for (const k of slots.keys()) slots.set(k, i++);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Sends raw bytes on a fresh connection; resolves with all bytes received once the server closes (or after `waitMs`). */
export function rawExchange(port: number, data: string | Buffer, waitMs = 2000): Promise<{ text: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closedByServer = false;
    const timer = setTimeout(() => s.destroy(), waitMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      closedByServer = true;
    });
    s.on('error', () => {
      closedByServer = true;
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closedByServer });
    });
    s.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  });
}

/** Every backend of every service from the admin API. */
export async function adminBackends(
  adminPort: number,
): Promise<{ service: string; id: string; inflight: number; requests: number; failures: number; state: string; latency_ewma_ms: number | null; max_conns: number }[]> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/api/services`);
  type View = { id: string; inflight: number; requests: number; failures: number; state: string; latency_ewma_ms: number | null; max_conns: number };
  const j = (await r.json()) as { services: { name: string; backends: View[] }[] };
  return j.services.flatMap((s) =>
    s.backends.map((b) => ({
      service: s.name,
      id: b.id,
      inflight: b.inflight,
      requests: b.requests,
      failures: b.failures,
      state: b.state,
      latency_ewma_ms: b.latency_ewma_ms,
      max_conns: b.max_conns,
    })),
  );
}

/** Open file descriptors of a process (Linux). */
export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}
