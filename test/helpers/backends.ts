/**
 * Test backends: real HTTP servers on 127.0.0.1:0 that name themselves in every body, record
 * every request they see, and can be told to misbehave.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
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

export interface TestBackend {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly seen: SeenRequest[];
  /** replaces how it answers (default: 200 with `name` as the body) */
  behave(b: Behaviour | undefined): void;
  /** closes listener and every connection */
  close(): Promise<void>;
  /** destroys every open connection now (as a crash would) */
  destroyConnections(): void;
}

/** Starts a backend that answers `200 <name>` unless told otherwise; `host` is any loopback address (default 127.0.0.1). */
export async function startBackend(name: string, port = 0, host = '127.0.0.1'): Promise<TestBackend> {
  const seen: SeenRequest[] = [];
  let behaviour: Behaviour | undefined;
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
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
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (_e, s) => s.destroy());
  await new Promise<void>((resolve) => server.listen(port, host, () => resolve()));
  const addr = server.address();
  const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
  return {
    name,
    port: bound,
    url: `http://${host}:${bound}`,
    seen,
    behave: (b) => {
      behaviour = b;
    },
    destroyConnections: () => {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
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
