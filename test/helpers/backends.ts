/**
 * Test backends: real HTTP servers on 127.0.0.1:0 that name themselves in every body, record
 * every request they see, and can be told to misbehave (`startBackend`, the one factory; raw TCP
 * backends that write bytes by hand are in ./raw-backend.ts).
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';

/** One request as a backend saw it. */
export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly body: string;
}

export type Behaviour = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** How to start a test backend; every field is optional. */
export interface BackendOptions {
  /** default 0: a free port */
  readonly port?: number;
  /** any loopback address; default 127.0.0.1 */
  readonly host?: string;
  /** serve HTTPS with this certificate and key (PEM) */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /**
   * Sees each request as it arrives, before its body is read (a backend that streams or reads
   * slowly); the request is recorded in `seen` with an empty body. Default: the whole body is read,
   * then `behave`'s behaviour (or `200 <name>`) answers.
   */
  readonly stream?: (req: IncomingMessage, res: ServerResponse) => void;
  /** answers Upgrade requests (WebSocket backends); default: none (node:http closes them) */
  readonly upgrade?: (req: IncomingMessage, socket: Socket, head: Buffer) => void;
}

export interface TestBackend {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly seen: SeenRequest[];
  /** the server itself (for what a test needs beyond these helpers) */
  readonly server: http.Server;
  /** client connections open now, and the most ever open at once */
  readonly connections: { open: number; max: number };
  /** replaces how it answers (default: 200 with `name` as the body) */
  behave(b: Behaviour | undefined): void;
  /** closes listener and every connection */
  close(): Promise<void>;
  /** destroys every open connection now (as a crash would) */
  destroyConnections(): void;
}

/**
 * The one factory of test backends: a real HTTP (or HTTPS) server on a free loopback port that
 * answers `200 <name>` unless told otherwise, and records every request it sees.
 */
export async function startBackend(name: string, options: BackendOptions = {}): Promise<TestBackend> {
  const host = options.host ?? '127.0.0.1';
  const seen: SeenRequest[] = [];
  let behaviour: Behaviour | undefined;
  const sockets = new Set<Socket>();
  const connections = { open: 0, max: 0 };
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (options.stream !== undefined) {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: '' });
      options.stream(req, res);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body });
      if (behaviour !== undefined) {
        behaviour(req, res, body);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
      res.end(name);
    });
    req.on('error', () => undefined);
  };
  const server: http.Server = options.tls === undefined ? http.createServer(onRequest) : https.createServer({ cert: options.tls.cert, key: options.tls.key }, onRequest);
  if (options.upgrade !== undefined) server.on('upgrade', options.upgrade);
  server.on(options.tls === undefined ? 'connection' : 'secureConnection', (s: Socket) => {
    sockets.add(s);
    connections.open++;
    connections.max = Math.max(connections.max, connections.open);
    s.on('close', () => {
      sockets.delete(s);
      connections.open--;
    });
  });
  server.on('clientError', (_e, s) => s.destroy());
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, host, () => resolve()));
  const addr = server.address();
  const bound = typeof addr === 'object' && addr !== null ? addr.port : (options.port ?? 0);
  return {
    name,
    port: bound,
    url: `${options.tls === undefined ? 'http' : 'https'}://${host}:${bound}`,
    seen,
    server,
    connections,
    behave: (b) => {
      behaviour = b;
    },
    destroyConnections: () => {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

/**
 * A port that refuses connections: 2 on 127.0.0.1, where nothing listens (a port below 1024
 * that no test binds; not 1, which fetch refuses to dial as a "bad port"). Unlike a port bound
 * and released, no test running in parallel can take it meanwhile and answer.
 */
export const REFUSING_PORT = 2;

/** Result of one HTTP request made by a test client. */
export interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** One request with a fresh connection (no keep-alive surprises between tests). */
export function request(
  port: number,
  options: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer; agent?: http.Agent | false; timeoutMs?: number } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path ?? '/', headers: options.headers, agent: options.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.timeoutMs !== undefined) {
      req.setTimeout(options.timeoutMs, () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    }
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}
