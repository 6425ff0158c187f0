/**
 * `drover config push|get|diff` as a user meets them without etcd: help texts and the refusal of
 * an invalid file before any connection (the etcd behaviour is in e2e-fleet.test.ts).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { BIN, tempDir } from './helpers/drover.js';

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const helps: [string[], RegExp[]][] = [
  [['config', '--help'], [/push/, /get/, /diff/]],
  [['config', 'push', '--help'], [/-c, --config <file>/, /--etcd <urls>/, /--config-prefix <prefix>/, /one\s+etcd\s+transaction/]],
  [['config', 'get', '--help'], [/--etcd <urls>/, /--config-prefix <prefix>/, /YAML/]],
  [['config', 'diff', '--help'], [/-c, --config <file>/, /--etcd <urls>/, /exit 0 nothing,\s+1\s+changes,\s+2\s+trouble/]],
];
for (const [args, want] of helps) {
  it(`drover ${args.join(' ')} describes every flag`, () => {
    const r = run(args);
    expect(r.code).toBe(0);
    for (const re of want) expect(r.stdout).toMatch(re);
  });
}

it('push and diff of an invalid file print every problem and never connect (the endpoint is unreachable)', () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'services:\n  web: {balancer: fastest}\nroutes:\n  - {match: {path: x}, service: web}\n');
    const problems = `${file}:2:19: services.web.balancer: "fastest" is not one of: round_robin, least_conn, p2c, random, hash, ewma\n${file}:4:20: routes.0.match.path: "x" must start with "/" (no spaces, query or fragment)\n${file}: not pushed (nothing was written)\n`;
    // port 2 refuses connections: had the command connected, it would fail differently
    expect(run(['config', 'push', '-c', file, '--etcd', 'http://127.0.0.1:2'])).toEqual({ code: 1, stdout: '', stderr: problems });
    expect(run(['config', 'diff', '-c', file, '--etcd', 'http://127.0.0.1:2'])).toEqual({ code: 2, stdout: '', stderr: problems });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

it('config push without --etcd is a usage error', () => {
  const r = run(['config', 'push', '-c', 'x.yaml']);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/required option '--etcd <urls>' not specified/);
});
