/**
 * The Node TLS floor of bench/tls.ts: a bare `tls.Server` (same certificate, same Node as drover)
 * that answers the first read of every connection with a fixed `200 ok` and `Connection: close`:
 * no HTTP parser, no routing, no upstream. What a new connection costs it is what any Node
 * program pays for a TLS connection before doing anything with it.
 *
 *   node dist/bench/lib/tls-floor.js CERT KEY   (prints {"port":N}; exits when stdin closes)
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

const [certFile, keyFile] = process.argv.slice(2);
if (certFile === undefined || keyFile === undefined) throw new Error('usage: tls-floor CERT KEY');
const answer = Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
const server = tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), noDelay: true }, (socket) => {
  socket.on('error', () => undefined);
  socket.once('data', () => socket.end(answer));
});
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 })}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
