/**
 * Child process for bench/scale.ts: writes registry churn (weight changes) to etcd at a fixed
 * rate, so the gRPC work of the writer does not share an event loop with autocannon.
 *
 * argv: endpoint prefix rate services members realPortsJson. Runs until stdin closes or it gets
 * SIGTERM, then prints `{"puts":N,"errors":N,"seconds":S}` and exits.
 */
import { createEtcdClient } from '../../src/registry/etcd-client.js';

const [endpoint = '', prefix = '', rateS = '500', servicesS = '1000', membersS = '10', realS = '[]'] = process.argv.slice(2);
const rate = Number(rateS);
const services = Number(servicesS);
const members = Number(membersS);
const real = JSON.parse(realS) as number[];
const client = createEtcdClient({ endpoints: [endpoint], callTimeoutMs: 10_000 });

let stop = false;
let puts = 0;
let errors = 0;
let inflight = 0;
const started = Date.now();

function finish(): void {
  if (stop) return;
  stop = true;
}
process.on('SIGTERM', finish);
process.stdin.on('end', finish);
process.stdin.resume();

const tickMs = 20;
const perTick = Math.max(1, Math.round((rate * tickMs) / 1000));
let next = Date.now();
let n = 0;
while (!stop) {
  for (let i = 0; i < perTick && inflight < 500; i++) {
    const s = (n * 7919) % services;
    const m = n % members;
    const port = s === 0 ? (real[m] ?? 1) : 20_000 + ((s * members + m) % 40_000);
    n++;
    inflight++;
    client
      .put(`${prefix}svc${s}/m${m}`)
      .value(JSON.stringify({ url: `http://127.0.0.1:${port}`, weight: 1 + (n % 3) }))
      .exec()
      .then(
        () => puts++,
        () => errors++,
      )
      .finally(() => inflight--);
  }
  next += tickMs;
  await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
}
const seconds = (Date.now() - started) / 1000;
const deadline = Date.now() + 5000;
while (inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
process.stdout.write(`${JSON.stringify({ puts, errors, seconds })}\n`);
client.close();
process.exit(0);
