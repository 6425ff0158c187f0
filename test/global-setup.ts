/**
 * Builds `dist/` once before any test runs, so tests that spawn `bin/drover` run the current
 * sources whether they were started by `npm test` (which also builds in `pretest`) or by
 * `npx vitest run <file>`. Type errors fail the run: a suite must not pass on stale code.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  if (process.env['DROVER_SKIP_BUILD'] === '1') return;
  execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: 'inherit',
  });
}
