/**
 * RSS per idle keep-alive connection: drover against the floor of a Node process (`net-floor`,
 * a bare `net` server with a canned answer; `raw-floor`, the same on bare libuv handles), bare
 * undici and (when installed) NGINX as a proxy, measured the same way and side by side: a fresh process per sample, 3 s of load first (so the heap has grown as it would in
 * service), then 10 000 connections that each send one GET and stay open; the RSS growth over
 * them, per connection. Rounds are interleaved; medians.
 *
 * Usage: node dist/bench/idle-floor.js [--rounds 3] [--connections 10000]
 * Writes bench/results/<date>-idle-floor.md with every sample and the medians.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { positiveFlag, sleep } from './lib/health-harness.js';
import { idleConnections, runAutocannon } from './lib/perf-load.js';
import { processTree, treeRssBytes } from './lib/perf-proc.js';
import { installed, startBackends, startDrover, startNginxProxy, startNodeTarget, stopAll, type Running } from './lib/perf-servers.js';
import { median } from './lib/stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

async function main(): Promise<void> {
  const rounds = positiveFlag(process.argv, '--rounds', 3);
  const count = positiveFlag(process.argv, '--connections', 10_000);
  const be = await startBackends();
  const starters: Record<string, () => Promise<Running>> = {
    'net-floor': () => startNodeTarget(ROOT, 'net-floor', 'net-floor', []),
    'raw-floor': () => startNodeTarget(ROOT, 'raw-floor', 'raw-floor', []),
    drover: () => startDrover(ROOT, 'drover', be.ports, 1),
    'undici-bare': () => startNodeTarget(ROOT, 'undici-bare', 'undici-bare', be.ports),
    ...(installed('nginx') ? { nginx: () => startNginxProxy(be.ports) } : {}),
  };
  const perConn: Record<string, number[]> = {};
  const started = new Date();
  const log: string[] = [];
  const say = (line: string): void => {
    log.push(line);
    process.stdout.write(`${line}\n`);
  };
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [name, start] of Object.entries(starters)) {
        const t = await start();
        await runAutocannon(`${t.url}/`, 3, 50);
        await sleep(1_000);
        const before = treeRssBytes(processTree(t.pid));
        const idle = await idleConnections(`${t.url}/`, count);
        await sleep(1_500);
        const after = treeRssBytes(processTree(t.pid));
        idle.close();
        // NGINX's master takes its worker down with it on SIGTERM; SIGKILL would orphan it
        process.kill(t.pid, name === 'nginx' ? 'SIGTERM' : 'SIGKILL');
        const kib = (after - before) / Math.max(1, idle.open) / 1024;
        (perConn[name] ??= []).push(kib);
        say(`round ${round + 1}/${rounds} ${name}: ${kib.toFixed(2)} KiB per idle connection (${idle.open} open)`);
        await sleep(500);
      }
    }
  } finally {
    await stopAll();
  }
  say('');
  say('| target | RSS per idle connection, KiB (median) | rounds |');
  say('|---|---:|---|');
  for (const [name, xs] of Object.entries(perConn)) say(`| ${name} | ${median(xs).toFixed(2)} | ${xs.map((x) => x.toFixed(2)).join(' ')} |`);
  const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\..*$/, '');
  const file = path.join(ROOT, 'bench', 'results', `${stamp}-idle-floor.md`);
  const cmd = `node dist/bench/idle-floor.js ${process.argv.slice(2).join(' ')}`.trim();
  fs.writeFileSync(file, [`\`${cmd}\` — ${started.toISOString()} · Node ${process.version}`, '', ...log, ''].join('\n'));
  process.stdout.write(`wrote ${path.relative(ROOT, file)}\n`);
  process.exit(0);
}

main().catch(async (err: unknown) => {
  process.stderr.write(`idle-floor failed: ${(err as Error).stack ?? String(err)}\n`);
  await stopAll();
  process.exit(1);
});
