/**
 * The migration Job of one tenant, as pure functions: its template hash, its name and its body, and
 * what its status says. No client here: the tenant and group steps create what these describe.
 */
import type * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { MIGRATION_ENV_KEYS, migrationTemplateFields, type MigrationPhase, type MigrationTemplate } from '../../api/migration.js';
import { MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL, controllerRef } from '../context.js';

export const COMPONENT_LABEL = 'app.kubernetes.io/component';
export const MIGRATION_COMPONENT = 'migration';
export const TEMPLATE_HASH_LABEL = 'tenantdb.dev/template-hash';
export const MIGRATION_GROUP_LABEL = 'tenantdb.dev/tenantgroup';
/** Changing this annotation of a TenantDatabase runs its migration again with the same template. */
export const RETRY_ANNOTATION = 'tenantdb.dev/retry-migration';
/** The label selector of the Job cache: only the operator's migration Jobs. */
export const MIGRATION_JOB_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY},${COMPONENT_LABEL}=${MIGRATION_COMPONENT}`;

/**
 * A finished Job stays a day, for its logs, then Kubernetes deletes it. The result outlives it in
 * the tenant's status.migration, which is what decides whether the migration ran: a Job gone by TTL
 * is never re-run.
 */
export const JOB_TTL_SECONDS = 24 * 3600;

const HASH_CHARS = 10;
const MAX_JOB_NAME = 63; // the Job controller puts the name into a label of the pods
const JOB_SUFFIX = '-migrate-';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** JSON with the keys of every object sorted, so that equal templates hash equally. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/**
 * The hash that names one run of a migration: the fields that make the Job (not gateReady and the
 * rollout settings, which change nothing in it), and the tenant's retry annotation when set.
 */
export function templateHash(template: MigrationTemplate, retry?: string): string {
  const fields = Object.fromEntries(Object.keys(migrationTemplateFields).map((k) => [k, (template as Record<string, unknown>)[k]]));
  return sha256(canonical(retry ? { fields, retry } : { fields })).slice(0, HASH_CHARS);
}

/**
 * `<tenant>-migrate-<hash>`: one Job per tenant and template, so creating it twice is harmless (the
 * second create finds it). A tenant name too long for that is cut and given a hash of its own, so
 * that two long names with the same beginning never share a Job.
 */
export function migrationJobName(tenant: string, hash: string): string {
  const whole = `${tenant}${JOB_SUFFIX}${hash}`;
  if (whole.length <= MAX_JOB_NAME) return whole;
  const room = MAX_JOB_NAME - JOB_SUFFIX.length - hash.length - 7;
  const head = tenant.slice(0, room).replace(/[-.]+$/, '');
  return `${head}-${sha256(tenant).slice(0, 6)}${JOB_SUFFIX}${hash}`;
}

export interface JobInput {
  tenant: { name: string; namespace: string; uid: string };
  /** The tenant's own Secret (status.secretName). */
  secretName: string;
  template: MigrationTemplate;
  hash: string;
  /** The TenantGroup whose rollout runs it; absent for a tenant's own migration. */
  group?: string | undefined;
}

/** A label value, when the name fits in one. */
const labelValue = (s: string) => (s.length <= 63 ? s : undefined);

export function migrationJobLabels(i: Pick<JobInput, 'tenant' | 'hash' | 'group'>): Record<string, string> {
  const tenant = labelValue(i.tenant.name);
  const group = i.group ? labelValue(i.group) : undefined;
  return {
    [MANAGED_BY_LABEL]: MANAGED_BY,
    [COMPONENT_LABEL]: MIGRATION_COMPONENT,
    [TEMPLATE_HASH_LABEL]: i.hash,
    ...(tenant ? { [TENANT_LABEL]: tenant } : {}),
    ...(group ? { [MIGRATION_GROUP_LABEL]: group } : {}),
  };
}

/**
 * The Job. The pod is the `restricted` Pod Security profile (it runs in namespaces that enforce
 * it), has no ServiceAccount token, and gets the tenant's connection keys by secretKeyRef (each
 * optional: a secretTemplate may leave one out, and a missing key must not hold the pod in
 * CreateContainerConfigError until the deadline). Owned by the TenantDatabase: it goes with it.
 */
export function migrationJob(i: JobInput): k8s.V1Job {
  const t = i.template;
  const labels = migrationJobLabels(i);
  const secretEnv: k8s.V1EnvVar[] = MIGRATION_ENV_KEYS.map((key) => ({
    name: key,
    valueFrom: { secretKeyRef: { name: i.secretName, key, optional: true } },
  }));
  const list = (r: Record<string, string | undefined> | undefined) => {
    const out = Object.fromEntries(Object.entries(r ?? {}).filter((e): e is [string, string] => e[1] !== undefined));
    return Object.keys(out).length ? out : undefined;
  };
  const requests = list(t.resources?.requests);
  const limits = list(t.resources?.limits);
  const resources = requests || limits ? { ...(requests ? { requests } : {}), ...(limits ? { limits } : {}) } : undefined;
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: migrationJobName(i.tenant.name, i.hash),
      namespace: i.tenant.namespace,
      labels,
      ownerReferences: [controllerRef('TenantDatabase', i.tenant.name, i.tenant.uid)],
    },
    spec: {
      backoffLimit: t.backoffLimit,
      activeDeadlineSeconds: t.activeDeadlineSeconds,
      ttlSecondsAfterFinished: JOB_TTL_SECONDS,
      // A retry starts only once the failed pod has fully stopped: two runs of one migration never
      // overlap on the database.
      podReplacementPolicy: 'Failed',
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: {
            runAsNonRoot: true,
            ...(t.runAsUser !== undefined ? { runAsUser: t.runAsUser } : {}),
            ...(t.runAsGroup !== undefined ? { runAsGroup: t.runAsGroup } : {}),
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'migrate',
              image: t.image,
              ...(t.imagePullPolicy ? { imagePullPolicy: t.imagePullPolicy } : {}),
              ...(t.command ? { command: [...t.command] } : {}),
              ...(t.args ? { args: [...t.args] } : {}),
              // The tenant's keys first: the template's own variables may refer to them as $(DIRECT_URL).
              env: [...secretEnv, ...t.env.map((e) => ({ name: e.name, value: e.value }))],
              ...(resources ? { resources } : {}),
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              // The end of the log when the migration fails without writing a termination message.
              terminationMessagePolicy: 'FallbackToLogsOnError',
            },
          ],
        },
      },
    },
  };
}

export interface JobOutcome {
  phase: MigrationPhase;
  startedAt?: string | undefined;
  finishedAt?: string | undefined;
  message: string;
}

const iso = (d: Date | string | undefined): string | undefined =>
  d === undefined ? undefined : (d instanceof Date ? d.toISOString() : new Date(d).toISOString()).replace(/\.\d{3}Z$/, 'Z');

/** What a Job's status says of its migration: only the terminal conditions Complete and Failed end it. */
export function jobOutcome(job: k8s.V1Job): JobOutcome {
  const name = job.metadata?.name ?? '';
  const cond = (type: string) => job.status?.conditions?.find((c) => c.type === type && c.status === 'True');
  const startedAt = iso(job.status?.startTime);
  const complete = cond('Complete');
  if (complete)
    return {
      phase: 'Succeeded',
      startedAt,
      finishedAt: iso(job.status?.completionTime ?? complete.lastTransitionTime),
      message: `Job ${name} succeeded`,
    };
  const failed = cond('Failed');
  if (failed) {
    const why = [failed.reason, failed.message].filter(Boolean).join(': ');
    return {
      phase: 'Failed',
      startedAt,
      finishedAt: iso(failed.lastTransitionTime),
      message: `Job ${name} failed${why ? ` (${why})` : ''}`,
    };
  }
  const failing = cond('FailureTarget');
  if (failing)
    return { phase: 'Running', startedAt, message: `Job ${name} is failing (${failing.reason ?? 'FailureTarget'}); its pods are stopping` };
  return { phase: 'Running', startedAt, message: `Job ${name} is running` };
}

/** A Job the operator made for this tenant: controlled by the TenantDatabase of that uid. */
export function isJobOf(job: k8s.V1Job, tenantUid: string): boolean {
  return (job.metadata?.ownerReferences ?? []).some((r) => r.controller && r.kind === 'TenantDatabase' && r.uid === tenantUid);
}

/** Whether a Job is still running (neither Complete nor Failed). */
export const isActive = (job: k8s.V1Job): boolean => jobOutcome(job).phase === 'Running';
