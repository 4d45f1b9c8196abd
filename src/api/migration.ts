/**
 * The migration Job template a TenantDatabase (one tenant) or a TenantGroup (every member) names.
 *
 * Deliberately narrow. Whoever may edit a TenantDatabase makes the operator create a Job in that
 * namespace, so the template offers nothing that such a person could not otherwise reach: no
 * volumes, no serviceAccountName (a pod may run as any ServiceAccount of its namespace, and the
 * operator would lend its own right to create pods to someone who may only write TenantDatabases),
 * no env from other Secrets or ConfigMaps (valueFrom), no host namespaces, no privileges. What the
 * Job gets of the tenant is its own Secret's connection keys, by secretKeyRef: the password never
 * appears in the Job's spec.
 */
import { z } from 'zod';
import { cel } from './common.js';

/** The tenant Secret's keys every migration pod gets as environment variables (secretKeyRef). */
export const MIGRATION_ENV_KEYS = [
  'DIRECT_URL',
  'DATABASE_URL',
  'SHADOW_DATABASE_URL',
  'PRISMA_DIRECT_URL',
  'PRISMA_DATABASE_URL',
  'PGHOST',
  'PGPORT',
  'PGDATABASE',
  'PGUSER',
  'PGPASSWORD',
  'PGSSLMODE',
] as const;

const quantity = z
  .string()
  .max(32)
  .regex(/^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/, 'a quantity such as 100m, 256Mi or 1');

const resourceList = z
  .object({
    cpu: quantity.optional().describe('CPU, e.g. 100m.'),
    memory: quantity.optional().describe('Memory, e.g. 256Mi.'),
    'ephemeral-storage': quantity.optional().describe('Local scratch space, e.g. 1Gi.'),
  })
  .strict();

const envName = z
  .string()
  .min(1)
  .max(128)
  .regex(
    /^[-._a-zA-Z][-._a-zA-Z0-9]*$/,
    'an environment variable name is made of letters, digits, -, _ and . and does not start with a digit',
  )
  .refine((n) => !(MIGRATION_ENV_KEYS as readonly string[]).includes(n), {
    message: `env must not set ${MIGRATION_ENV_KEYS.join(', ')}: the operator sets them from the tenant's Secret`,
  })
  .meta(
    cel({
      rule: `!(self in [${MIGRATION_ENV_KEYS.map((k) => `'${k}'`).join(', ')}])`,
      message: `env must not set ${MIGRATION_ENV_KEYS.join(', ')}: the operator sets them from the tenant's Secret`,
    }),
  );

const arg = z.string().max(16384);

/** The fields that make the Job: a change to any of them is a new migration run. */
export const migrationTemplateFields = {
  image: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[^\s]+$/, 'an image reference has no white space')
    .describe('The image that runs the migration, e.g. acme/api-migrate:1.4.2 (a digest pins it).'),
  imagePullPolicy: z
    .enum(['Always', 'IfNotPresent', 'Never'])
    .optional()
    .describe("The container's image pull policy; Kubernetes' default when omitted."),
  command: z.array(arg).max(64).optional().describe("The container's entrypoint; the image's when omitted."),
  args: z.array(arg).max(256).optional().describe("Arguments to the entrypoint; the image's when omitted."),
  env: z
    .array(
      z
        .object({
          name: envName.describe('The variable name.'),
          value: z.string().max(32768).default('').describe('Its value. $(VAR) refers to an earlier variable, as in a container.'),
        })
        .strict()
        .describe('One plain environment variable.'),
    )
    .max(64)
    .default([])
    .describe(
      `More environment variables (plain values only). The operator adds ${MIGRATION_ENV_KEYS.join(', ')} from the tenant's Secret.`,
    ),
  resources: z
    .object({
      requests: resourceList.optional().describe('What the pod is scheduled with.'),
      limits: resourceList.optional().describe('What the container may use at most.'),
    })
    .strict()
    .optional()
    .describe("The container's resources (a namespace's ResourceQuota may require them)."),
  runAsUser: z
    .number()
    .int()
    .min(1)
    .max(2147483647)
    .optional()
    .describe('The numeric user to run as, for images whose user is root or not numeric. Never 0: the pod runs as non-root.'),
  runAsGroup: z.number().int().min(1).max(2147483647).optional().describe('The numeric group to run as.'),
  backoffLimit: z
    .number()
    .int()
    .min(0)
    .max(10)
    .default(0)
    .describe('Retries of a failed migration pod before the migration counts as failed (0: the first failure is final).'),
  activeDeadlineSeconds: z
    .number()
    .int()
    .min(10)
    .max(7 * 24 * 3600)
    .default(1800)
    .describe(
      'How long the migration may run, retries included, before it counts as failed; it also ends a pod that cannot start (an image that cannot be pulled).',
    ),
};

export const migrationTemplate = z.object(migrationTemplateFields).strict();
export type MigrationTemplate = z.infer<typeof migrationTemplate>;

export const gateReady = z
  .boolean()
  .default(true)
  .describe(
    "Whether the tenant is Ready only once the migration of the current template has succeeded (Ready=False with reason MigrationPending, MigrationRunning or MigrationFailed until then). With false the migration's progress shows only in status.migration and the Migrated condition.",
  );

export const tenantMigration = z
  .object({ ...migrationTemplateFields, gateReady })
  .strict()
  .describe(
    "A migration Job run against this tenant: when it is first provisioned, whenever the template changes, and when the tenantdb.dev/retry-migration annotation changes. The Job runs in the tenant's namespace with the tenant's connection keys (DIRECT_URL and the others) from its Secret. Takes precedence over a TenantGroup's migration.",
  );

export const groupMigration = z
  .object({
    ...migrationTemplateFields,
    gateReady,
    maxParallel: z.number().int().min(1).max(100).default(1).describe('How many members migrate at the same time.'),
    stopOnFailure: z
      .boolean()
      .default(true)
      .describe(
        "Stop the rollout at the first failed member: no other member's migration starts until the template changes or the failed member is retried (tenantdb.dev/retry-migration). With false the others go on.",
      ),
  })
  .strict()
  .describe(
    "A migration Job rolled across the members, in the order of their names, at most maxParallel at a time: for each member when it is provisioned and whenever the template changes. Each Job runs in the member's namespace with the member's connection keys from its Secret. A member with a migration of its own runs that one instead.",
  );

export const migrationPhase = z.enum(['Pending', 'Running', 'Succeeded', 'Failed']);
export type MigrationPhase = z.infer<typeof migrationPhase>;

export const migrationStatus = z
  .object({
    source: z.string().max(300).optional().describe('Whose template it is: TenantDatabase, or TenantGroup/<name>.'),
    templateHash: z.string().max(64).optional().describe('The hash of the template (and retry annotation) this migration is for.'),
    phase: migrationPhase.optional().describe('Pending, Running, Succeeded or Failed.'),
    jobName: z.string().max(63).optional().describe("The Job that runs it, in the tenant's namespace."),
    startedAt: z.string().max(64).optional().describe('When the Job started, RFC 3339.'),
    finishedAt: z.string().max(64).optional().describe('When the Job succeeded or failed, RFC 3339.'),
    message: z.string().max(1024).optional().describe('What is happening or what went wrong.'),
  })
  .describe("The tenant's migration for its current template.");
export type MigrationStatus = z.infer<typeof migrationStatus>;

export const rolloutStatus = z
  .object({
    templateHash: z.string().max(64).optional().describe("The hash of the group's template."),
    members: z.number().int().optional().describe('Members the rollout concerns (those without a migration of their own).'),
    succeeded: z.number().int().optional().describe('Members whose migration of this template succeeded.'),
    running: z.number().int().optional().describe('Members whose migration runs now.'),
    failed: z.number().int().optional().describe('Members whose migration of this template failed.'),
    pending: z.number().int().optional().describe('Members still to migrate.'),
    halted: z.boolean().optional().describe('Whether the rollout stopped at a failure (stopOnFailure).'),
    failedTenant: z.string().max(253).optional().describe('The first failed member.'),
    failedJob: z.string().max(63).optional().describe("Its Job, in the group's namespace."),
    message: z.string().max(1024).optional().describe('A summary for a person.'),
  })
  .describe("The rollout of the group's migration.");
export type RolloutStatus = z.infer<typeof rolloutStatus>;
