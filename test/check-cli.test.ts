/**
 * `drover check` as users run it: the real `bin/drover` in a child process (dist/ is built by the
 * vitest global setup).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'drover');
let dir = '';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function drover(args: readonly string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'drover-check-'));
  writeFileSync(
    path.join(dir, 'drover.yaml'),
    ['services:', '  web:', '    backends: [{url: "http://127.0.0.1:9001"}]', 'routes:', '  - {match: {path_prefix: /}, service: web}', ''].join('\n'),
  );
  writeFileSync(
    path.join(dir, 'bad.yaml'),
    ['workers: none', 'services:', '  web:', '    balancer: roundrobin', 'routes:', '  - {match: {}, service: api}', ''].join('\n'),
  );
  writeFileSync(path.join(dir, 'missing-ref.yaml'), ['registry:', '  file: members.yaml', ''].join('\n'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('drover check', () => {
  it.each([
    {
      name: 'a valid file: ok on stdout, exit 0',
      args: ['check', '-c', 'drover.yaml'],
      code: 0,
      stdout: 'drover.yaml: ok\n',
      stderr: '',
    },
    {
      name: '-c defaults to ./drover.yaml',
      args: ['check'],
      code: 0,
      stdout: './drover.yaml: ok\n',
      stderr: '',
    },
    {
      name: 'every error, one per line, located, exit 1',
      args: ['check', '--config', 'bad.yaml'],
      code: 1,
      stdout: '',
      stderr: [
        'bad.yaml:1:10: workers: expected a positive whole number or "auto"',
        'bad.yaml:4:15: services.web.balancer: "roundrobin" is not one of: round_robin, least_conn, p2c, random, hash, ewma (did you mean "round_robin"?)',
        'bad.yaml:6:26: routes.0.service: route to unknown service "api": not defined under services:',
        '',
      ].join('\n'),
    },
    {
      name: 'a referenced file that does not exist, at the line of its key',
      args: ['check', '-c', 'missing-ref.yaml'],
      code: 1,
      stdout: '',
      stderr: /^missing-ref\.yaml:2:9: registry\.file: file members\.yaml does not exist \(looked for .*members\.yaml\)\n$/,
    },
    {
      name: 'a config file that does not exist',
      args: ['check', '-c', 'nope.yaml'],
      code: 1,
      stdout: '',
      stderr: 'nope.yaml:0:0: (root): cannot read config: file not found\n',
    },
  ])('$name', async ({ args, code, stdout, stderr }) => {
    const run = await drover(args, dir);
    expect(run.stdout).toBe(stdout);
    if (typeof stderr === 'string') expect(run.stderr).toBe(stderr);
    else expect(run.stderr).toMatch(stderr);
    expect(run.code).toBe(code);
  });

  it('--help describes -c', async () => {
    const run = await drover(['check', '--help'], dir);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/-c, --config <file>/);
    expect(run.stdout).toMatch(/default: "\.\/drover\.yaml"/);
  });
});
