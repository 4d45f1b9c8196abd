/**
 * The rollout rule of a TenantGroup's migration, as one pure function: given where each member
 * stands, which members start now. Members go in the order of their names (a stable order a reader
 * can predict, and a canary is simply the member that sorts first), at most maxParallel at a time;
 * with stopOnFailure a failed member of the current template stops every start until the template
 * changes or that member is retried.
 */
import type { MigrationPhase } from '../../api/migration.js';

export interface RolloutMember {
  name: string;
  /** Provisioned far enough to migrate: its database, role and Secret exist. */
  eligible: boolean;
  /** The Job its run of the current template has (or would have). */
  jobName: string;
  /** Where its run of the current template stands; undefined when it has not started. */
  phase?: MigrationPhase | undefined;
  /** A Job of an earlier template still runs for it: the new run waits, two never overlap. */
  earlierRunning?: boolean | undefined;
}

export interface RolloutOptions {
  maxParallel: number;
  stopOnFailure: boolean;
}

export interface RolloutPlan {
  /** Members whose Job to create now, in order. */
  start: string[];
  succeeded: number;
  /** Running now, the ones started by this plan included, and those still finishing an earlier template. */
  running: number;
  failed: number;
  /** Not started yet (after this plan's starts). */
  pending: number;
  halted: boolean;
  /** The first member (by name) whose run of the current template failed. */
  firstFailed?: { name: string; jobName: string } | undefined;
}

export function planRollout(members: readonly RolloutMember[], o: RolloutOptions): RolloutPlan {
  const sorted = [...members].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const failedOnes = sorted.filter((m) => m.phase === 'Failed');
  const running = sorted.filter(
    (m) => m.phase === 'Running' || (m.phase !== 'Succeeded' && m.phase !== 'Failed' && m.earlierRunning),
  ).length;
  const succeeded = sorted.filter((m) => m.phase === 'Succeeded').length;
  const halted = o.stopOnFailure && failedOnes.length > 0;
  const start: string[] = [];
  if (!halted) {
    let slots = Math.max(0, o.maxParallel - running);
    for (const m of sorted) {
      if (slots === 0) break;
      if (m.phase !== undefined && m.phase !== 'Pending') continue;
      if (!m.eligible || m.earlierRunning) continue;
      start.push(m.name);
      slots--;
    }
  }
  const first = failedOnes[0];
  return {
    start,
    succeeded,
    running: running + start.length,
    failed: failedOnes.length,
    pending: sorted.length - succeeded - failedOnes.length - running - start.length,
    halted,
    ...(first ? { firstFailed: { name: first.name, jobName: first.jobName } } : {}),
  };
}

/** The one-line summary of a plan, for status and Events. */
export function rolloutMessage(p: RolloutPlan, total: number): string {
  if (p.halted && p.firstFailed)
    return `rollout halted: the migration of ${p.firstFailed.name} failed (Job ${p.firstFailed.jobName}); ${p.succeeded}/${total} succeeded. Fix the template, or retry that member with the tenantdb.dev/retry-migration annotation`;
  const parts = [`${p.succeeded}/${total} succeeded`];
  if (p.running) parts.push(`${p.running} running`);
  if (p.failed) parts.push(`${p.failed} failed${p.firstFailed ? ` (first: ${p.firstFailed.name}, Job ${p.firstFailed.jobName})` : ''}`);
  if (p.pending) parts.push(`${p.pending} pending`);
  return parts.join(', ');
}
