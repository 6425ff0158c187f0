/**
 * The backend of the observability benchmark, run as a child process so it never competes with
 * autocannon's event loop: one HTTP server on 127.0.0.1:0 answering `200 ok` (keep-alive) to
 * everything. Prints `{"port":N}` on stdout once listening; exits when stdin closes (its parent
 * died) or on SIGTERM.
 */
import http from 'node:http';

const body = Buffer.from('ok');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 })}\n`);
});
const stop = (): void => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
