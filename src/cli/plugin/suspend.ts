/**
 * suspend / resume: set spec.suspend (and, with --end-sessions, spec.endSessionsOnSuspend) and, with
 * --wait, follow the operator's answer: Ready=True with reason Suspended once logins are refused,
 * Ready=True with another reason once the tenant works again.
 */
import { Option, type Command } from 'commander';
import { GROUP, VERSION } from '../../api/common.js';
import { TENANT_DATABASE } from '../../api/kinds.js';
import { mergePatch } from '../../kube/client.js';
import { duration } from '../options.js';
import { PROGRAM, examples, note, print, sessionOf } from './command.js';
import { CliError } from './errors.js';
import { humanAge, renderData } from './format.js';
import { fail, getTenant } from './session.js';
import { brief, type ConditionBrief } from './summary.js';

export type SuspendProgress = { state: 'done' } | { state: 'blocked'; message: string } | { state: 'waiting'; message: string };

/** Where a suspend or resume stands, from the generation asked for and the conditions observed. */
export function suspendProgress(
  suspend: boolean,
  generation: number | undefined,
  observed: number | undefined,
  ready: ConditionBrief | undefined,
  stalled: ConditionBrief | undefined,
): SuspendProgress {
  if (stalled?.status === 'True') return { state: 'blocked', message: `Stalled=True (${stalled.reason}): ${stalled.message}` };
  if (generation !== undefined && observed !== undefined && observed < generation)
    return { state: 'waiting', message: `the operator has not seen generation ${generation} yet (status is for ${observed})` };
  const suspended = ready?.status === 'True' && ready.reason === 'Suspended';
  if (suspend && suspended) return { state: 'done' };
  if (!suspend && ready?.status === 'True' && !suspended) return { state: 'done' };
  return {
    state: 'waiting',
    message: ready ? `Ready=${ready.status} (${ready.reason}): ${ready.message}` : 'the TenantDatabase has no Ready condition yet',
  };
}

interface Opts {
  wait?: boolean;
  timeout: number;
  endSessions?: boolean;
}

async function setSuspended(name: string, suspend: boolean, opts: Opts, cmd: Command): Promise<void> {
  const s = sessionOf(cmd);
  const td = await getTenant(s, name);
  const namespace = td.metadata.namespace ?? s.namespace;
  const spec: Record<string, boolean> = { suspend };
  if (suspend) spec.endSessionsOnSuspend = opts.endSessions === true;
  let generation: number | undefined;
  try {
    const patched = (await s.call(() =>
      s.custom.patchNamespacedCustomObject(
        { group: GROUP, version: VERSION, plural: TENANT_DATABASE.plural, namespace, name, body: { spec } },
        mergePatch,
      ),
    )) as { metadata?: { generation?: number } };
    generation = patched.metadata?.generation;
  } catch (err) {
    fail(s, err);
  }
  const what = `TenantDatabase ${namespace}/${name}`;
  const verb = suspend ? 'Suspended' : 'Resumed';
  if (!opts.wait) {
    if (s.output === 'table') print(`${suspend ? 'Asked to suspend' : 'Asked to resume'} ${what}`);
    else print(renderData(s.output, { namespace, name, suspend, done: false }));
    return;
  }
  note(`${suspend ? 'Suspending' : 'Resuming'} ${what}; waiting up to ${humanAge(opts.timeout)}`);
  const deadline = Date.now() + opts.timeout;
  for (;;) {
    const now = await getTenant(s, name, namespace);
    const conds = now.status?.conditions;
    const p = suspendProgress(suspend, generation, now.status?.observedGeneration, brief(conds, 'Ready'), brief(conds, 'Stalled'));
    if (p.state === 'done') break;
    if (p.state === 'blocked') throw new CliError(`${what} cannot be ${verb.toLowerCase()}: ${p.message}`);
    if (Date.now() >= deadline) throw new CliError(`timed out after ${humanAge(opts.timeout)} waiting for ${what}: ${p.message}`);
    await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, deadline - Date.now()))));
  }
  if (s.output === 'table') print(`${verb} ${what}`);
  else print(renderData(s.output, { namespace, name, suspend, done: true }));
}

const waitOptions = (c: Command) =>
  c
    .option('--wait', 'wait until the operator reports the change (Ready with reason Suspended, or Ready again)')
    .addOption(new Option('--timeout <duration>', 'how long --wait waits (30s, 5m)').argParser(duration).default(120_000, '2m'));

export function registerSuspendCommands(program: Command): void {
  examples(
    waitOptions(
      program
        .command('suspend')
        .description(
          'Refuse every new login of a TenantDatabase, direct and pooled, keeping its data (spec.suspend). Open sessions go on unless --end-sessions.',
        )
        .argument('<name>', 'the TenantDatabase')
        .option('--end-sessions', "also end the tenant's open sessions (spec.endSessionsOnSuspend)"),
    ).action((name: string, opts: Opts, cmd: Command) => setSuspended(name, true, opts, cmd)),
    [
      ['suspend, keeping open sessions', `${PROGRAM} suspend orders -n team-a --wait`],
      ['suspend and end every open session', `${PROGRAM} suspend orders -n team-a --end-sessions --wait`],
    ],
  );
  examples(
    waitOptions(
      program
        .command('resume')
        .description('Let a suspended TenantDatabase log in again (spec.suspend: false).')
        .argument('<name>', 'the TenantDatabase'),
    ).action((name: string, opts: Opts, cmd: Command) => setSuspended(name, false, opts, cmd)),
    [['resume and wait until the tenant works', `${PROGRAM} resume orders -n team-a --wait`]],
  );
}
