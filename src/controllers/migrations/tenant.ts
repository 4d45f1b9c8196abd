/**
 * The migration step of a TenantDatabase's reconcile: it runs the tenant's own migration Job, reads
 * where the tenant's migration stands (its own, or its TenantGroup's rollout), and puts that into
 * the reconcile's one status write: status.migration, the Migrated condition and, with gateReady,
 * the Ready summary (Ready only once the migration of the current template has succeeded).
 */
import type { Logger } from 'pino';
import type { MigrationStatus } from '../../api/migration.js';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import type { ConditionInput } from '../../runtime/conditions.js';
import { tenantRef, type OperatorContext } from '../context.js';
import { createMigrationJob } from './jobs.js';
import { migrationJob } from './job.js';
import { appliedMigration, parsedGroups, runState } from './source.js';

/** The part of a reconcile's outcome this step reads and amends. */
export interface GateOutcome {
  conditions: ConditionInput[];
  status: { migration?: MigrationStatus | undefined };
  terminal: boolean;
}

const READY_REASON = { Pending: 'MigrationPending', Running: 'MigrationRunning', Failed: 'MigrationFailed' } as const;

export async function gateOnMigration(
  ctx: OperatorContext,
  td: TenantDatabase,
  outcome: GateOutcome,
  secretName: string | undefined,
  log: Logger,
): Promise<void> {
  const namespace = td.metadata.namespace ?? '';
  const previous = td.status?.migration;
  const applied = appliedMigration(
    { name: td.metadata.name, labels: td.metadata.labels, annotations: td.metadata.annotations },
    td.spec.migration,
    parsedGroups(ctx.groups, namespace),
  );
  const setReady = (c: Omit<ConditionInput, 'type'>) => {
    outcome.conditions = [...outcome.conditions.filter((x) => x.type !== 'Ready'), { type: 'Ready', ...c }];
  };
  const ready = outcome.conditions.find((c) => c.type === 'Ready');

  if (applied.kind === 'none') {
    // Nothing to run: what an earlier template left in status goes (a null removes the field).
    if (previous) outcome.status.migration = null as unknown as undefined;
    if (td.status?.conditions?.some((c) => c.type === 'Migrated'))
      outcome.conditions.push({ type: 'Migrated', status: 'True', reason: 'NoMigration', message: 'no migration applies to this tenant' });
    return;
  }
  if (applied.kind === 'conflict') {
    outcome.conditions.push({ type: 'Migrated', status: 'False', reason: 'MigrationConflict', message: applied.message });
    if (ready?.status === 'True') {
      setReady({ status: 'False', reason: 'MigrationConflict', message: applied.message });
      outcome.terminal = true;
    }
    return;
  }

  if (!ctx.config.migrationJobs) {
    // The platform has not consented: nothing runs, and the tenant says why (and is not Ready when gated).
    const message =
      'migration Jobs are off in this operator (the platform turns them on with --migration-jobs=on, chart value migrations.jobs)';
    outcome.conditions.push({ type: 'Migrated', status: 'False', reason: 'MigrationsDisabled', message });
    if (applied.gateReady && ready?.status === 'True') {
      setReady({ status: 'False', reason: 'MigrationsDisabled', message });
      outcome.terminal = true;
    }
    return;
  }
  const tenant = { namespace, uid: td.metadata.uid };
  let state = runState(ctx.jobs, tenant, applied.jobName, applied.hash, previous);
  // A suspended tenant cannot log in: its migration waits for it to resume.
  const provisioned =
    !td.spec.suspend &&
    ['DatabaseReady', 'RoleReady', 'SecretReady'].every((t) => outcome.conditions.some((c) => c.type === t && c.status === 'True'));
  let message = state.message;
  if (state.phase === undefined) {
    if (!provisioned || !secretName) message = 'waiting for the tenant to be provisioned';
    else if (state.earlierRunning) message = `waiting for Job ${state.earlierJob ?? ''} of the previous template to end`;
    else if (applied.kind === 'own') {
      const body = migrationJob({
        tenant: { name: td.metadata.name, namespace, uid: td.metadata.uid },
        secretName,
        template: applied.template,
        hash: applied.hash,
      });
      const created = await createMigrationJob(ctx, body, td.metadata.uid);
      if (created === 'foreign') {
        message = `Job ${applied.jobName} exists and is not this tenant's; delete it so that the migration can run`;
      } else {
        if (created === 'created') {
          log.info({ job: applied.jobName, templateHash: applied.hash }, 'Created migration Job');
          ctx.events.normal(tenantRef(td), 'MigrationStarted', `Created Job ${applied.jobName} (template ${applied.hash})`);
        }
        state = { ...state, phase: 'Running' };
        message = `Job ${applied.jobName} is running`;
      }
    } else {
      const group = ctx.groups.get(applied.group ?? '', namespace);
      const rollout = group?.status?.rollout;
      message =
        rollout?.halted && rollout.failedTenant
          ? `waiting: TenantGroup ${applied.group ?? ''}'s rollout is halted at ${rollout.failedTenant} (Job ${rollout.failedJob ?? '?'})`
          : `waiting for its turn in TenantGroup ${applied.group ?? ''}'s rollout`;
    }
  }
  const phase = state.phase ?? 'Pending';
  const migration: MigrationStatus = {
    source: applied.source,
    templateHash: applied.hash,
    phase,
    jobName: applied.jobName,
    ...(state.startedAt ? { startedAt: state.startedAt } : {}),
    ...(state.finishedAt ? { finishedAt: state.finishedAt } : {}),
    ...(message ? { message: message.slice(0, 1024) } : {}),
  };
  // Keep what the earlier status said of a run still going (startedAt before the Job was seen).
  if (previous?.templateHash === applied.hash && previous.phase === phase && previous.startedAt && !migration.startedAt)
    migration.startedAt = previous.startedAt;
  outcome.status.migration = migration;

  // Events on the transitions of this template's run.
  const before = previous?.templateHash === applied.hash ? previous.phase : undefined;
  if (phase !== before) {
    if (phase === 'Succeeded')
      ctx.events.normal(tenantRef(td), 'MigrationSucceeded', `Job ${applied.jobName} succeeded (${applied.source})`);
    if (phase === 'Failed') ctx.events.warning(tenantRef(td), 'MigrationFailed', `${message ?? ''} (${applied.source})`);
  }

  const what = `migration of template ${applied.hash} (${applied.source})`;
  outcome.conditions.push(
    phase === 'Succeeded'
      ? { type: 'Migrated', status: 'True', reason: 'MigrationSucceeded', message: `${what} succeeded: Job ${applied.jobName}` }
      : { type: 'Migrated', status: 'False', reason: READY_REASON[phase], message: `${what}: ${message ?? phase}` },
  );
  if (applied.gateReady && ready?.status === 'True' && phase !== 'Succeeded') {
    setReady({ status: 'False', reason: READY_REASON[phase], message: `${what}: ${message ?? phase}` });
    // A failed migration needs a change from someone (a new template or a retry): Stalled.
    if (phase === 'Failed') outcome.terminal = true;
  }
}
