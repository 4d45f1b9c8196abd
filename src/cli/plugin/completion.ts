/**
 * Shell completion. One engine, `complete`, walks the command tree commander already holds (so a
 * new command or option completes without further work) and asks the API for names where a
 * command takes a TenantDatabase or a namespace. Three front ends use it: the bash and zsh scripts
 * of `completion` (for kubectl-tenantdb), and kubectl's own plugin completion, which runs
 * kubectl_complete-tenantdb with the words typed after `kubectl tenantdb`.
 */
import type { Command, Option } from 'commander';
import { examples, print } from './command.js';
import { CliError } from './errors.js';
import { listTenants, loadUserKubeConfig, openSession } from './session.js';

export interface Lookups {
  tenants(flags: Record<string, string>): Promise<string[]>;
  namespaces(flags: Record<string, string>): Promise<string[]>;
  contexts(flags: Record<string, string>): Promise<string[]>;
}

function optionsOf(cmd: Command): Option[] {
  const out: Option[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) out.push(...c.options);
  return out;
}

function findOption(cmd: Command, word: string): Option | undefined {
  const flag = word.split('=')[0];
  return optionsOf(cmd).find((o) => o.long === flag || o.short === flag);
}

function subcommand(cmd: Command, word: string): Command | undefined {
  return cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
}

const TENANT_ARGS = new Set(['name', 'tenant']);

/** Candidates for the last word of `words` (the words after the program's name). */
export async function complete(program: Command, words: readonly string[], lookups: Lookups): Promise<string[]> {
  let cmd = program;
  let positional = 0;
  const flags: Record<string, string> = {};
  const done = words.slice(0, -1);
  const current = words.at(-1) ?? '';
  for (let i = 0; i < done.length; i++) {
    const w = done[i] ?? '';
    if (w === '--') return [];
    if (w.startsWith('-')) {
      const o = findOption(cmd, w);
      if (o && (o.required || o.optional)) {
        const value = w.includes('=') ? w.slice(w.indexOf('=') + 1) : done[++i];
        if (value !== undefined) flags[o.attributeName()] = value;
      }
      continue;
    }
    const sub = positional === 0 ? subcommand(cmd, w) : undefined;
    if (sub) cmd = sub;
    else positional++;
  }
  const keep = (xs: readonly string[]) => xs.filter((x) => x.startsWith(current));
  const prev = done.at(-1);
  const pending = prev?.startsWith('-') && !prev.includes('=') ? findOption(cmd, prev) : undefined;
  if (pending && (pending.required || pending.optional)) {
    if (pending.argChoices) return keep(pending.argChoices);
    const name = pending.attributeName();
    if (name === 'namespace' || name === 'operatorNamespace') return keep(await lookups.namespaces(flags));
    if (name === 'context') return keep(await lookups.contexts(flags));
    if (name === 'format') return keep(['uri', 'jdbc', 'env']);
    return [];
  }
  if (current.startsWith('-'))
    return keep(
      optionsOf(cmd)
        .filter((o) => !o.hidden)
        .flatMap((o) => (o.long ? [o.long] : o.short ? [o.short] : [])),
    );
  const subs = cmd.commands.filter((c) => !c.name().startsWith('__'));
  if (subs.length && positional === 0) return keep(subs.map((c) => c.name()));
  const arg =
    cmd.registeredArguments[positional] ?? (cmd.registeredArguments.at(-1)?.variadic ? cmd.registeredArguments.at(-1) : undefined);
  if (!arg) return [];
  if (TENANT_ARGS.has(arg.name())) return keep(await lookups.tenants(flags));
  if (arg.name() === 'shell') return keep(['bash', 'zsh']);
  return [];
}

/** Lookups through the user's kubeconfig; a failure (no rights, no server) completes nothing. */
export const apiLookups: Lookups = {
  tenants: async (f) => {
    const s = openSession({ ...f, output: 'table', requestTimeout: 5000 });
    return (await listTenants(s, false)).map((t) => t.metadata.name);
  },
  namespaces: async (f) => {
    const s = openSession({ ...f, output: 'table', requestTimeout: 5000 });
    return (await s.call(() => s.core.listNamespace())).items.map((n) => n.metadata?.name ?? '').filter(Boolean);
  },
  contexts: async (f) =>
    loadUserKubeConfig(f)
      .getContexts()
      .map((c) => c.name),
};

const safely = (lookups: Lookups): Lookups => ({
  tenants: (f) => lookups.tenants(f).catch(() => []),
  namespaces: (f) => lookups.namespaces(f).catch(() => []),
  contexts: (f) => lookups.contexts(f).catch(() => []),
});

export async function completionCandidates(program: Command, words: readonly string[]): Promise<string[]> {
  return complete(program, words, safely(apiLookups));
}

export function bashScript(bin: string): string {
  return `# bash completion for ${bin}; load with: source <(${bin} completion bash)
_kubectl_tenantdb() {
  local cur="\${COMP_WORDS[COMP_CWORD]}"
  local IFS=$'\\n'
  COMPREPLY=( $(compgen -W "$(${bin} __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)" -- "$cur") )
}
complete -o default -F _kubectl_tenantdb ${bin}
`;
}

export function zshScript(bin: string): string {
  return `#compdef ${bin}
# zsh completion for ${bin}; load with: source <(${bin} completion zsh)
_kubectl_tenantdb() {
  local -a candidates
  candidates=("\${(@f)$(${bin} __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  compadd -a candidates
}
compdef _kubectl_tenantdb ${bin}
`;
}

export function registerCompletionCommands(program: Command): void {
  examples(
    program
      .command('completion')
      .description(
        'Print a shell completion script for kubectl-tenantdb (bash or zsh). `kubectl tenantdb <TAB>` completes through kubectl_complete-tenantdb, installed beside it.',
      )
      .argument('<shell>', 'bash or zsh')
      .action((shell: string) => {
        if (shell === 'bash') print(bashScript('kubectl-tenantdb'));
        else if (shell === 'zsh') print(zshScript('kubectl-tenantdb'));
        else throw new CliError(`no completion for shell "${shell}": choose bash or zsh`);
      }),
    [
      ['in this bash session', `source <(kubectl-tenantdb completion bash)`],
      ['for every zsh session', `kubectl-tenantdb completion zsh > "\${fpath[1]}/_kubectl-tenantdb"`],
    ],
  );
}
