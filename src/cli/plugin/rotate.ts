/**
 * rotate: asks the operator for a new password (the tenantdb.dev/rotate-password annotation) and,
 * with --wait, follows the answer: the Secret names the request in tenantdb.dev/rotated-for once it
 * holds the new password, the operator records a PasswordRotated Event once the role carries it,
 * and Ready=True says the tenant works with it.
 */
import { Option, type Command } from 'commander';
import { ROTATED_ANNOTATION, ROTATE_ANNOTATION } from '../../controllers/tenantdatabase/secret.js';
import { TENANT_DATABASE } from '../../api/kinds.js';
import { GROUP, VERSION } from '../../api/common.js';
import { duration } from '../options.js';
import { PROGRAM, examples, note, print, sessionOf } from './command.js';
import { CliError, describeError, notFoundKind, statusCode } from './errors.js';
import { humanAge, renderData } from './format.js';
import { eventsAbout } from './tenants.js';
import { fail, getTenant, secretNameOf, type Session } from './session.js';
import { brief, type ConditionBrief } from './summary.js';
import { mergePatch } from '../../kube/client.js';

export interface RotationObservation {
  request: string;
  /** The request the Secret answers (its rotated-for annotation); undefined when none or no Secret. */
  answered?: string;
  /** Whether the PasswordRotated Event for this request was seen; undefined when Events cannot be read. */
  eventSeen?: boolean;
  /** The request the role carries, from status.passwordRotatedFor (operators that write it). */
  carried?: string;
  ready?: ConditionBrief;
  stalled?: ConditionBrief;
  /** With overlapping rotation: a request waits until the previous login's grace period ends (status). */
  waitsUntil?: string;
}

export type RotationProgress = { state: 'done' } | { state: 'blocked'; message: string } | { state: 'waiting'; message: string };

/** Where a rotation stands; `blocked` when the operator cannot go on without a change by someone. */
export function rotationProgress(o: RotationObservation): RotationProgress {
  if (o.stalled?.status === 'True') return { state: 'blocked', message: `Stalled=True (${o.stalled.reason}): ${o.stalled.message}` };
  if (o.answered !== o.request && o.waitsUntil)
    return {
      state: 'waiting',
      message: `the previous login keeps working until ${o.waitsUntil} (passwordRotation.gracePeriod); the rotation follows then`,
    };
  if (o.answered !== o.request)
    return {
      state: 'waiting',
      message: `the operator has not answered request "${o.request}" in the Secret yet (its ${ROTATED_ANNOTATION} is ${o.answered ? `"${o.answered}"` : 'unset'})`,
    };
  if (o.eventSeen === false && o.carried !== o.request)
    return { state: 'waiting', message: 'the Secret holds the new password; no PasswordRotated Event yet says the role carries it' };
  if (o.ready?.status !== 'True')
    return {
      state: 'waiting',
      message: o.ready
        ? `Ready=${o.ready.status} (${o.ready.reason}): ${o.ready.message}`
        : 'the TenantDatabase has no Ready condition yet',
    };
  return { state: 'done' };
}

/** A request value that differs from every earlier one and says when it was made. */
export function newRequest(now = new Date()): string {
  return now.toISOString();
}

async function observe(
  s: Session,
  name: string,
  namespace: string,
  request: string,
  eventsOk: { value: boolean },
): Promise<RotationObservation> {
  const td = await getTenant(s, name, namespace);
  const conds = td.status?.conditions;
  const ready = brief(conds, 'Ready');
  const stalled = brief(conds, 'Stalled');
  let answered: string | undefined;
  try {
    const secret = await s.call(() => s.core.readNamespacedSecret({ name: secretNameOf(td), namespace }));
    answered = secret.metadata?.annotations?.[ROTATED_ANNOTATION];
  } catch (err) {
    if (notFoundKind(err) !== 'object') fail(s, err);
  }
  let eventSeen: boolean | undefined;
  const carried = (td.status as { passwordRotatedFor?: string } | undefined)?.passwordRotatedFor;
  const waitsUntil = (td.status as { credentials?: { rotationWaitsUntil?: string } } | undefined)?.credentials?.rotationWaitsUntil;
  if (eventsOk.value && answered === request && carried !== request) {
    try {
      const events = await eventsAbout(s, namespace, td.metadata.uid);
      eventSeen = events.some((e) => e.reason === 'PasswordRotated' && (e.message ?? '').includes(`(request ${request})`));
    } catch (err) {
      if (statusCode(err) !== 403) fail(s, err);
      eventsOk.value = false;
      note(`note: cannot read Events (${describeError(err, s.server)}); relying on the Secret and Ready`);
    }
  }
  return {
    request,
    ...(answered !== undefined ? { answered } : {}),
    ...(eventSeen !== undefined ? { eventSeen } : {}),
    ...(carried !== undefined ? { carried } : {}),
    ...(ready ? { ready } : {}),
    ...(stalled ? { stalled } : {}),
    ...(waitsUntil ? { waitsUntil } : {}),
  };
}

async function rotate(name: string, opts: { wait?: boolean; timeout: number; request?: string }, cmd: Command): Promise<void> {
  const s = sessionOf(cmd);
  const td = await getTenant(s, name);
  const namespace = td.metadata.namespace ?? s.namespace;
  const request = opts.request ?? newRequest();
  if (td.metadata.annotations?.[ROTATE_ANNOTATION] === request)
    throw new CliError(`request "${request}" was already made for TenantDatabase "${name}": a rotation needs a new value`);
  try {
    await s.call(() =>
      s.custom.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          plural: TENANT_DATABASE.plural,
          namespace,
          name,
          body: { metadata: { annotations: { [ROTATE_ANNOTATION]: request } } },
        },
        mergePatch,
      ),
    );
  } catch (err) {
    fail(s, err);
  }
  const what = `TenantDatabase ${namespace}/${name}`;
  if (!opts.wait) {
    if (s.output === 'table') print(`Requested a new password for ${what} (request ${request})`);
    else print(renderData(s.output, { namespace, name, request, rotated: false }));
    return;
  }
  note(`Requested a new password for ${what} (request ${request}); waiting up to ${humanAge(opts.timeout)}`);
  const deadline = Date.now() + opts.timeout;
  const eventsOk = { value: true };
  for (;;) {
    const last = rotationProgress(await observe(s, name, namespace, request, eventsOk));
    if (last.state === 'done') break;
    if (last.state === 'blocked') throw new CliError(`rotation of ${what} cannot proceed: ${last.message}`);
    if (Date.now() >= deadline)
      throw new CliError(`timed out after ${humanAge(opts.timeout)} waiting for the rotation of ${what}: ${last.message}`);
    await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, deadline - Date.now()))));
  }
  const secret = secretNameOf(td);
  if (s.output === 'table') print(`Rotated the password of ${what}; Secret ${secret} holds the new one and the tenant is Ready`);
  else print(renderData(s.output, { namespace, name, request, rotated: true, secretName: secret }));
}

export function registerRotateCommand(program: Command): void {
  examples(
    program
      .command('rotate')
      .description(
        "Give a TenantDatabase a new password: its Secret gets it, the role's old password stops working, open sessions keep running.",
      )
      .argument('<name>', 'the TenantDatabase')
      .option('--wait', 'wait until the Secret holds the new password, the role carries it and the tenant is Ready')
      .addOption(new Option('--timeout <duration>', 'how long --wait waits (30s, 5m)').argParser(duration).default(120_000, '2m'))
      .option('--request <value>', 'the rotation request value (default: the current time); each rotation needs a new one')
      .action((name: string, opts: { wait?: boolean; timeout: number; request?: string }, cmd: Command) => rotate(name, opts, cmd)),
    [
      ['rotate and return at once', `${PROGRAM} rotate orders -n team-a`],
      ['rotate and wait until the new password works', `${PROGRAM} rotate orders -n team-a --wait --timeout 2m`],
    ],
  );
}
