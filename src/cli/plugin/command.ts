/** What every command shares: the global options, the session, writing results. */
import { Option, type Command } from 'commander';
import { duration } from '../options.js';
import { CliError } from './errors.js';
import { openSession, type GlobalOptions, type Output, type Session } from './session.js';

export const PROGRAM = 'kubectl tenantdb';

/** A command's own options with the global ones (kubectl's habit: they go anywhere on the line). */
export function globalsOf(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<{ kubeconfig?: string; context?: string; namespace?: string; output?: Output; requestTimeout?: number }>();
  return {
    ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
    ...(o.context ? { context: o.context } : {}),
    ...(o.namespace ? { namespace: o.namespace } : {}),
    output: o.output ?? 'table',
    requestTimeout: o.requestTimeout ?? 30_000,
  };
}

export function sessionOf(cmd: Command): Session {
  return openSession(globalsOf(cmd));
}

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** A note for the person at the terminal; never part of the output a script reads. */
export function note(text: string): void {
  process.stderr.write(`${text}\n`);
}

export function addGlobalOptions(program: Command): Command {
  return program
    .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)')
    .option('--context <name>', 'kubeconfig context to use (default: its current context)')
    .option('-n, --namespace <namespace>', "namespace (default: the context's namespace, else default)")
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .addOption(
      new Option('--request-timeout <duration>', 'how long to wait for one answer of the API server')
        .argParser(duration)
        .default(30_000, '30s'),
    )
    .configureHelp({ showGlobalOptions: true });
}

/** Examples under --help, in the form kubectl's own commands show them. */
export function examples(cmd: Command, lines: readonly [comment: string, command: string][]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map(([c, x]) => `  # ${c}\n  ${x}\n`).join('\n')}`);
}

/** Refuses an option value the command cannot use, in the same one-line form as commander's errors. */
export function usage(message: string): never {
  throw new CliError(message, 1);
}
