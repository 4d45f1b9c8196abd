import { z } from 'zod';
import { conditions, k8sName, objectMeta } from './common.js';
import { tenantDatabaseSpec } from './tenantdatabase.js';

/**
 * A request for a plan: what the operator would do, on the live server, for a TenantDatabase of this
 * namespace with this spec (applied already or not). The operator answers in status and changes
 * nothing; the plan is deleted a while after it is answered.
 */
export const tenantDatabasePlanSpec = z
  .object({
    tenantDatabase: z
      .object({
        name: k8sName('tenantDatabase.name')
          .max(253)
          .describe('The name of the TenantDatabase, in the namespace of this plan (it need not exist).'),
        spec: tenantDatabaseSpec.describe('The spec to plan for, as it would be applied.'),
      })
      .describe('The TenantDatabase to plan for.'),
  })
  .describe('The TenantDatabase spec to plan for.');

const lines = (what: string) => z.array(z.string()).max(200).optional().describe(what);

export const tenantDatabasePlanStatus = z
  .object({
    conditions,
    observedGeneration: z.number().int().optional().describe('The generation the plan was computed for.'),
    plannedAt: z.string().optional().describe('When the plan was computed (RFC 3339).'),
    tenantExists: z.boolean().optional().describe('Whether the TenantDatabase existed when the plan was computed.'),
    result: z
      .object({
        reason: z.string().describe('The Ready reason the TenantDatabase would report after the plan ran.'),
        message: z.string().describe('What it would say.'),
      })
      .optional()
      .describe(
        'Where the plan ends: Planned when the steps reached their end, else the refusal the operator would report (Conflict, NamespaceNotAllowed, ...).',
      ),
    sql: lines('The exact statements a managed reconcile would run now, in order; passwords shown as PASSWORD <redacted>.'),
    secret: lines('The changes to the Secret, by key name (never a value).'),
    pooler: lines(
      'Lines of the PgBouncer configuration (databases.ini, userlist.txt, hba.conf) that would be removed (-) or added (+); verifiers redacted.',
    ),
    serverHba: lines("Lines of the server's pg_hba.conf tenant block that would be removed (-) or added (+) (spec.hba.mode Agent only)."),
    notes: lines('What the plan does not show exactly, and why.'),
  })
  .describe('The plan, once computed.');

export const tenantDatabasePlan = z.object({
  apiVersion: z.string(),
  kind: z.literal('TenantDatabasePlan'),
  metadata: objectMeta,
  spec: tenantDatabasePlanSpec,
  status: tenantDatabasePlanStatus.optional(),
});
export type TenantDatabasePlan = z.infer<typeof tenantDatabasePlan>;
export type TenantDatabasePlanStatus = z.infer<typeof tenantDatabasePlanStatus>;
