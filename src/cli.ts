/**
 * The `drover` command line (commander: subcommands, `--help` for each, and usage errors for
 * free). Each command lives in `src/commands/<name>.ts` and adds itself to the program.
 */
import { Command } from 'commander';
import { addStartCommand } from './commands/start.js';
import { addStatusCommand } from './commands/status.js';
import { addCheckCommand } from './commands/check.js';
import { addRegisterCommand } from './commands/register.js';
import { addConfigCommand } from './commands/config.js';

/** Runs the CLI with `argv` (without node and the script path). Sets `process.exitCode`. */
export async function main(argv: readonly string[]): Promise<void> {
  const program = new Command('drover')
    .description('drover: a dynamic L7 load balancer driven by a registry (etcd or a YAML file)')
    .showHelpAfterError()
    .exitOverride();
  addStartCommand(program);
  // Each helper line below adds one subcommand.
  addCheckCommand(program);
  addStatusCommand(program);
  addRegisterCommand(program);
  addConfigCommand(program);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode;
    if (typeof code === 'number') {
      process.exitCode = code;
      return;
    }
    throw err;
  }
}
