/**
 * Benchmark target `http-proxy`: the Node proxy most people would write first. The http-proxy
 * package with a keep-alive agent, round-robin over the backends, 502 on an upstream error.
 *
 * Usage: node dist/bench/targets/http-proxy.js PORT BACKEND_URL...   (prints `listening PORT`)
 */
import http from 'node:http';
import httpProxy from 'http-proxy';

const port = Number(process.argv[2]);
const targets = process.argv.slice(3);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const proxy = httpProxy.createProxyServer({ agent, xfwd: true });
proxy.on('error', (_err, _req, res) => {
  const r = res as http.ServerResponse;
  if (!r.headersSent) r.writeHead(502);
  r.end();
});
let next = 0;
const server = http.createServer((req, res) => {
  proxy.web(req, res, { target: targets[next++ % targets.length] });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
