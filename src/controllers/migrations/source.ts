/**
 * Which migration applies to a tenant, and where its run of that migration stands, from the caches.
 * Shared by the tenant controller (status.migration and the Ready gate) and the group controller
 * (the rollout), so that the two always agree on the template, its hash and the Job's name.
 */
import type * as k8s from '@kubernetes/client-node';
import type { CachedTenantDatabase, CachedTenantGroup } from '../../api/cached.js';
import { matchesSelector } from '../../api/common.js';
import type { MigrationPhase, MigrationStatus, MigrationTemplate } from '../../api/migration.js';
import { tenantGroup, type TenantGroup } from '../../api/tenantgroup.js';
import type { ResilientInformer } from '../../runtime/informer.js';
import { BY_NAMESPACE, BY_OWNER } from '../watches.js';
import { RETRY_ANNOTATION, TEMPLATE_HASH_LABEL, isActive, isJobOf, jobOutcome, migrationJobName, templateHash } from './job.js';

export type AppliedMigration =
  | { kind: 'none' }
  | { kind: 'conflict'; message: string }
  | {
      kind: 'own' | 'group';
      /** TenantDatabase, or TenantGroup/<name>. */
      source: string;
      group?: string | undefined;
      template: MigrationTemplate;
      gateReady: boolean;
      hash: string;
      jobName: string;
    };

/** The groups of a namespace as the API holds them, those that do not parse or are going left out. */
export function parsedGroups(groups: ResilientInformer<CachedTenantGroup>, namespace: string): TenantGroup[] {
  const out: TenantGroup[] = [];
  for (const raw of groups.byIndex(BY_NAMESPACE, namespace)) {
    const r = tenantGroup.safeParse(raw);
    if (r.success && !r.data.metadata.deletionTimestamp) out.push(r.data);
  }
  return out;
}

/**
 * The migration of a tenant: its own when it names one, else that of the one TenantGroup of its
 * namespace that selects it and has a migration. Two such groups are a conflict: which of two
 * templates should define its schema is the user's call, not the operator's.
 */
export function appliedMigration(
  tenant: { name: string; labels?: Record<string, string> | undefined; annotations?: Record<string, string> | undefined },
  own: (MigrationTemplate & { gateReady: boolean }) | undefined,
  groups: readonly TenantGroup[],
): AppliedMigration {
  const retry = tenant.annotations?.[RETRY_ANNOTATION];
  const make = (kind: 'own' | 'group', source: string, t: MigrationTemplate & { gateReady: boolean }, group?: string): AppliedMigration => {
    const hash = templateHash(t, retry);
    return { kind, source, group, template: t, gateReady: t.gateReady, hash, jobName: migrationJobName(tenant.name, hash) };
  };
  if (own) return make('own', 'TenantDatabase', own);
  const selecting = groups.filter((g) => g.spec.migration && matchesSelector(g.spec.selector, tenant.labels));
  if (selecting.length > 1) {
    const names = selecting.map((g) => g.metadata.name).sort();
    return {
      kind: 'conflict',
      message: `TenantGroups ${names.join(', ')} all select this tenant and each has a migration; change their selectors so that at most one does, or give the tenant a migration of its own`,
    };
  }
  const g = selecting[0];
  return g?.spec.migration ? make('group', `TenantGroup/${g.metadata.name}`, g.spec.migration, g.metadata.name) : { kind: 'none' };
}

export interface RunState {
  phase?: MigrationPhase | undefined;
  startedAt?: string | undefined;
  finishedAt?: string | undefined;
  message?: string | undefined;
  /** Whether the Job itself was seen (not only the status it left). */
  jobSeen: boolean;
  /** A Job of another template still runs for this tenant. */
  earlierRunning: boolean;
  earlierJob?: string | undefined;
}

/**
 * Where a tenant's run of `hash` stands: its Job when the cache has it; else the result status kept
 * for that hash (the Job went by TTL); else not started.
 */
export function runState(
  jobs: ResilientInformer<k8s.V1Job>,
  tenant: { namespace: string; uid: string },
  jobName: string,
  hash: string,
  previous: Partial<MigrationStatus> | undefined,
): RunState {
  const own = jobs.byIndex(BY_OWNER, tenant.uid).filter((j) => j.metadata?.namespace === tenant.namespace && isJobOf(j, tenant.uid));
  const earlier = own.find((j) => j.metadata?.labels?.[TEMPLATE_HASH_LABEL] !== hash && isActive(j));
  const base = { earlierRunning: !!earlier, earlierJob: earlier?.metadata?.name };
  const job = own.find((j) => j.metadata?.name === jobName);
  if (job) return { ...jobOutcome(job), jobSeen: true, ...base };
  if (previous?.templateHash === hash && (previous.phase === 'Succeeded' || previous.phase === 'Failed'))
    return {
      phase: previous.phase,
      startedAt: previous.startedAt,
      finishedAt: previous.finishedAt,
      message: previous.message,
      jobSeen: false,
      ...base,
    };
  return { jobSeen: false, ...base };
}

/** Provisioned far enough to migrate: database, role and Secret are in place and logins are allowed. */
export function readyToMigrate(t: CachedTenantDatabase): boolean {
  if (t.metadata?.deletionTimestamp || t.spec?.suspend) return false;
  const ok = (type: string) => t.status?.conditions?.some((c) => c.type === type && c.status === 'True') ?? false;
  return ok('DatabaseReady') && ok('RoleReady') && ok('SecretReady');
}
