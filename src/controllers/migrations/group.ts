/**
 * The migration step of a TenantGroup's reconcile: the rollout of the group's template across its
 * members. It reads where each member stands (its Job, or the result its status kept), asks
 * planRollout which members start now, creates their Jobs, and returns the rollout summary and the
 * group's Migrated condition for the group's one status write. Each member's own status (and its
 * Ready gate) is written by the member's reconcile, which the Jobs' events wake.
 */
import type { Logger } from 'pino';
import { matchesSelector } from '../../api/common.js';
import type { RolloutStatus } from '../../api/migration.js';
import type { TenantGroup } from '../../api/tenantgroup.js';
import type { ConditionInput } from '../../runtime/conditions.js';
import type { ObjectRef } from '../../runtime/events.js';
import { type OperatorContext } from '../context.js';
import { BY_NAMESPACE } from '../watches.js';
import { createMigrationJob } from './jobs.js';
import { migrationJob, templateHash } from './job.js';
import { planRollout, rolloutMessage, type RolloutMember } from './rollout.js';
import { appliedMigration, parsedGroups, readyToMigrate, runState } from './source.js';

export interface RolloutResult {
  rollout?: RolloutStatus | null;
  condition?: ConditionInput;
}

export async function rollOutMigration(ctx: OperatorContext, g: TenantGroup, ref: ObjectRef, log: Logger): Promise<RolloutResult> {
  const m = g.spec.migration;
  if (!m) {
    const had = g.status?.conditions?.some((c) => c.type === 'Migrated');
    return {
      ...(g.status?.rollout ? { rollout: null } : {}),
      ...(had ? { condition: { type: 'Migrated', status: 'True', reason: 'NoMigration', message: 'the group has no migration' } } : {}),
    };
  }
  if (!ctx.config.migrationJobs)
    return {
      condition: {
        type: 'Migrated',
        status: 'False',
        reason: 'MigrationsDisabled',
        message:
          'migration Jobs are off in this operator (the platform turns them on with --migration-jobs=on, chart value migrations.jobs)',
      },
    };
  const namespace = g.metadata.namespace ?? '';
  const groups = parsedGroups(ctx.groups, namespace);
  const members: (RolloutMember & { uid: string; secretName: string; hash: string })[] = [];
  let conflicts = 0;
  for (const t of ctx.tenants.byIndex(BY_NAMESPACE, namespace)) {
    const name = t.metadata?.name ?? '';
    const uid = t.metadata?.uid ?? '';
    // (An observed member runs nothing: a Job is a change.)
    if (t.metadata?.deletionTimestamp || !name || !uid || t.spec?.managementPolicy === 'Observe') continue;
    // A member's own migration wins over the group's: it is not part of the rollout.
    if (t.spec?.migration) continue;
    const applied = appliedMigration({ name, labels: t.metadata?.labels, annotations: t.metadata?.annotations }, undefined, groups);
    if (applied.kind === 'conflict') {
      if (matchesSelector(g.spec.selector, t.metadata?.labels)) conflicts++;
      continue;
    }
    if (applied.kind !== 'group' || applied.group !== g.metadata.name) continue;
    const state = runState(ctx.jobs, { namespace, uid }, applied.jobName, applied.hash, t.status?.migration);
    members.push({
      name,
      uid,
      hash: applied.hash,
      secretName: t.status?.secretName ?? t.spec?.secretName ?? `${name}-db`,
      eligible: readyToMigrate(t) && !!t.status?.secretName,
      jobName: applied.jobName,
      phase: state.phase,
      earlierRunning: state.earlierRunning,
    });
  }
  const plan = planRollout(members, { maxParallel: m.maxParallel, stopOnFailure: m.stopOnFailure });
  for (const name of plan.start) {
    const member = members.find((x) => x.name === name);
    if (!member) continue;
    const body = migrationJob({
      tenant: { name, namespace, uid: member.uid },
      secretName: member.secretName,
      template: m,
      hash: member.hash,
      group: g.metadata.name,
    });
    const created = await createMigrationJob(ctx, body, member.uid);
    if (created === 'created') {
      log.info({ tenant: name, job: member.jobName }, 'Created migration Job');
      ctx.events.normal(ref, 'MigrationStarted', `Created Job ${member.jobName} for ${name}`);
    }
  }
  const hash = templateHash(m);
  const summary =
    rolloutMessage(plan, members.length) +
    (conflicts ? `; ${conflicts} tenant(s) selected by another migrating group too are left out` : '');
  const rollout: RolloutStatus = {
    templateHash: hash,
    members: members.length,
    succeeded: plan.succeeded,
    running: plan.running,
    failed: plan.failed,
    pending: plan.pending,
    halted: plan.halted,
    ...(plan.firstFailed ? { failedTenant: plan.firstFailed.name, failedJob: plan.firstFailed.jobName } : {}),
    message: summary.slice(0, 1024),
  };
  const before = g.status?.rollout;
  if (plan.halted && plan.firstFailed && !(before?.halted && before.failedJob === plan.firstFailed.jobName))
    ctx.events.warning(ref, 'RolloutHalted', summary);
  const done = plan.succeeded === members.length;
  if (
    done &&
    members.length > 0 &&
    !(before?.templateHash === hash && before.succeeded === before.members && before.members === members.length)
  )
    ctx.events.normal(ref, 'RolloutComplete', `The migration (template ${hash}) succeeded on all ${members.length} member(s)`);
  const condition: ConditionInput = done
    ? { type: 'Migrated', status: 'True', reason: 'RolloutComplete', message: summary }
    : plan.halted
      ? { type: 'Migrated', status: 'False', reason: 'RolloutHalted', message: summary }
      : plan.failed
        ? { type: 'Migrated', status: 'False', reason: 'MigrationFailed', message: summary }
        : { type: 'Migrated', status: 'False', reason: 'RollingOut', message: summary };
  return { rollout, condition };
}
