/**
 * Child process for the etcd benchmarks: HTTP backends on 127.0.0.1 that answer `200 <name>`,
 * kept out of the benchmark process so they do not compete with autocannon's event loop.
 *
 * Protocol (JSON lines): stdin `{"op":"start","names":[...]}` -> stdout `{"ports":[...]}`;
 * stdin `{"op":"stop","port":N}` closes that backend (listener and idle keep-alive sockets,
 * as a deploy stopping an instance after deregistering it) -> stdout `{"stopped":N}`.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';

interface Running {
  readonly server: http.Server;
  readonly sockets: Set<Socket>;
}

const running = new Map<number, Running>();

function startOne(name: string): Promise<number> {
  const sockets = new Set<Socket>();
  const body = Buffer.from(name);
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (_e, s) => s.destroy());
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      running.set(port, { server, sockets });
      resolve(port);
    });
  });
}

function stopOne(port: number): Promise<void> {
  const r = running.get(port);
  if (r === undefined) return Promise.resolve();
  running.delete(port);
  return new Promise((resolve) => {
    r.server.close(() => resolve());
    // Graceful: requests in progress finish, idle keep-alive sockets close now.
    r.server.closeIdleConnections();
    setTimeout(() => {
      for (const s of r.sockets) s.destroy();
    }, 2000).unref();
  });
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const msg = JSON.parse(line) as { op: 'start'; names: string[] } | { op: 'stop'; port: number };
  if (msg.op === 'start') {
    void Promise.all(msg.names.map(startOne)).then((ports) => process.stdout.write(`${JSON.stringify({ ports })}\n`));
  } else {
    void stopOne(msg.port).then(() => process.stdout.write(`${JSON.stringify({ stopped: msg.port })}\n`));
  }
});
rl.on('close', () => process.exit(0));
