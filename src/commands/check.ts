/**
 * `drover check -c FILE`: validates a config without starting anything. Prints every problem
 * (not just the first) as `FILE:LINE:COL: path: message` on stderr and exits 1, or `FILE: ok` on
 * stdout and exits 0. Beyond what `start` checks, it also verifies that referenced files exist.
 */
import type { Command } from 'commander';
import { formatIssue } from '../core/errors.js';
import { checkConfigFile } from '../config/load.js';

/** Default config path, as for `drover start`. */
export const DEFAULT_CONFIG_FILE = './drover.yaml';

/** Adds `check` to the program. Sets `process.exitCode` (0 valid, 1 invalid); never calls `process.exit`. */
export function addCheckCommand(program: Command): void {
  program
    .command('check')
    .description('validate a config file: print every problem as FILE:LINE:COL: path: message; exit 0 if valid, 1 if not')
    .option('-c, --config <file>', 'config file to check', DEFAULT_CONFIG_FILE)
    .action(async (opts: { config: string }) => {
      const all = await checkConfigFile(opts.config);
      if (all.length > 0) process.stderr.write(`${all.map(formatIssue).join('\n')}\n`);
      // warnings (a certificate about to expire) are printed but leave the config valid
      if (all.some((i) => i.severity !== 'warning')) {
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`${opts.config}: ok\n`);
      process.exitCode = 0;
    });
}
