/**
 * Benchmark target `tcp-pipe`: NOT a proxy. Each client connection gets its own connection to
 * the first backend and bytes are relayed both ways untouched: no HTTP parsing, no pool, no
 * balancing. The least a Node process adds to a request's latency (two wakeups, a read and a
 * write each way), for the low-load latency figures to set drover and bare undici against.
 *
 * Usage: node dist/bench/targets/tcp-pipe.js PORT BACKEND_URL   (prints `listening PORT`)
 */
import net from 'node:net';

const port = Number(process.argv[2]);
const backend = new URL(process.argv[3] ?? 'http://127.0.0.1:80');

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ host: backend.hostname, port: Number(backend.port), noDelay: true });
  // pipe() gives backpressure both ways; either side closing closes the other
  client.pipe(upstream).pipe(client);
  const closeBoth = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', closeBoth);
  upstream.on('error', closeBoth);
  client.on('close', closeBoth);
  upstream.on('close', closeBoth);
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
