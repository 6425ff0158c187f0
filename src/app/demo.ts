/**
 * Demo backends for `npm start` (`drover start --demo`): small HTTP servers that name themselves
 * in every answer, so a newcomer sees the balancing with `curl` and nothing else installed.
 */
import http from 'node:http';

/** A started demo backend. */
export interface DemoBackend {
  readonly name: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Starts one demo backend on `host:port`. It answers `GET /healthz` with 200 and anything else
 * with a JSON body naming itself, echoing the method, path and the forwarding headers it got.
 */
export async function startDemoBackend(name: string, host: string, port: number): Promise<DemoBackend> {
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    // Drain any request body before answering so keep-alive connections stay reusable.
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({
        backend: name,
        method: req.method,
        path: req.url,
        'x-forwarded-for': req.headers['x-forwarded-for'] ?? null,
        'x-request-id': req.headers['x-request-id'] ?? null,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
      res.end(`${body}\n`);
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return {
    name,
    port: typeof addr === 'object' && addr !== null ? addr.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
