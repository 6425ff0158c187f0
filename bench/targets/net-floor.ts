/**
 * Benchmark target `net-floor`: NOT a proxy. A `net` server that answers every read with a
 * canned `200 ok`: the least a Node process can hold per open keep-alive connection (the
 * socket, its stream states and its TCP handle), for `bench/idle-floor.ts` to set drover's RSS
 * per idle connection against.
 *
 * Usage: node dist/bench/targets/net-floor.js PORT   (prints `listening PORT`)
 */
import net from 'node:net';

const ANSWER = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');

function answer(this: net.Socket): void {
  this.write(ANSWER);
}

function ignore(): void {
  // a reset client: 'close' follows
}

const port = Number(process.argv[2]);
const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on('data', answer);
  socket.on('error', ignore);
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
