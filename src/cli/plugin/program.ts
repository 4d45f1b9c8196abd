/** The kubectl tenantdb command tree, and running it with one-line errors. */
import { Command } from 'commander';
import { addGlobalOptions } from './command.js';
import { completionCandidates, registerCompletionCommands } from './completion.js';
import { registerConnectCommands } from './connect.js';
import { CliError, describeError, oneLine } from './errors.js';
import { registerPlanCommand } from './plan.js';
import { registerReportCommand } from './report.js';
import { registerRotateCommand } from './rotate.js';
import { registerSuspendCommands } from './suspend.js';
import { registerTenantCommands } from './tenants.js';
import { registerWhitelistCommands } from './whitelist.js';

/** The words that mean "complete the rest" (the bash and zsh scripts pass them first). */
export const COMPLETE = '__complete';

function forEachCommand(cmd: Command, fn: (c: Command, path: string) => void, path = ''): void {
  fn(cmd, path);
  for (const c of cmd.commands) forEachCommand(c, fn, path ? `${path} ${c.name()}` : c.name());
}

export function buildProgram(version: string): Command {
  const program = addGlobalOptions(
    new Command()
      .name('kubectl tenantdb')
      .usage('<command> [options]')
      .description(
        'Work with tenantdb tenants (TenantDatabases) from the command line, with your own kubeconfig and rights: status, connection URLs, psql, password rotation, allow-lists, bug reports.',
      )
      .version(version, '--version', 'print the version'),
  );
  registerTenantCommands(program);
  registerConnectCommands(program);
  registerRotateCommand(program);
  registerSuspendCommands(program);
  registerPlanCommand(program);
  registerWhitelistCommands(program);
  registerReportCommand(program);
  registerCompletionCommands(program);
  program.addHelpText(
    'after',
    `
Examples:
  # what runs in the context's namespace, then one tenant in detail
  kubectl tenantdb list
  kubectl tenantdb status orders -n team-a

  # connect, rotate the password, restrict who may log in
  kubectl tenantdb psql orders -n team-a
  kubectl tenantdb rotate orders -n team-a --wait
  kubectl tenantdb whitelist add orders 203.0.113.0/24 -n team-a

Use "kubectl tenantdb <command> --help" for a command's options and examples.`,
  );
  // Every usage error is one line: commander's message with a pointer to the command's help.
  forEachCommand(program, (c, path) => {
    c.showHelpAfterError(` (see: kubectl tenantdb ${path ? `${path} ` : ''}--help)`);
    c.configureOutput({ outputError: (str, write) => write(oneLine(str)) });
  });
  return program;
}

/** Runs the plugin; returns the exit code instead of exiting, so callers decide. */
export async function runPlugin(program: Command, args: readonly string[]): Promise<number> {
  try {
    if (args[0] === COMPLETE) {
      for (const c of await completionCandidates(program, args.slice(1))) process.stdout.write(`${c}\n`);
      return 0;
    }
    if (!args.length) {
      program.outputHelp();
      return 0;
    }
    await program.parseAsync([...args], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    process.stderr.write(`error: ${describeError(err)}\n`);
    return err instanceof CliError ? err.exitCode : 1;
  }
}
