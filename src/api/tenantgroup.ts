import { z } from 'zod';
import { groupMigration, rolloutStatus } from './migration.js';
import { cel, conditions, k8sName, labelSelector, objectMeta } from './common.js';

/** A key of a Secret, as the API server accepts it. */
const secretKey = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[-._a-zA-Z0-9]+$/, 'a Secret key is made of letters, digits, -, _ and .');

export const tenantGroupSpec = z
  .object({
    selector: labelSelector.describe(
      'The TenantDatabases of this namespace that are members: those whose labels match. TenantDatabases of other namespaces never are.',
    ),
    secretName: k8sName('secretName')
      .optional()
      .describe('Name of the Secret the operator writes the registry into. Defaults to <name>-tenants.'),
    env: z
      .array(
        z
          .object({
            key: z
              .string()
              .min(1)
              .max(200)
              .regex(/^[-._a-zA-Z0-9$()]+$/, 'a key template is made of letters, digits, -, _, . and $(NAME) or $(name)')
              .describe(
                "The key of each member, where $(NAME) stands for the member's name in upper case with every character other than a letter or a digit turned into _, and $(name) for its name as it is; e.g. MERCHANT_$(NAME)_DATABASE_URL.",
              ),
            from: secretKey.describe("The key of the member's own Secret whose value it gets, e.g. DATABASE_URL or DIRECT_URL."),
          })
          .describe('One key per member.'),
      )
      .max(8)
      .default([])
      .describe('Keys per member in the registry Secret, for backends that read one environment variable per tenant.'),
    migration: groupMigration.optional(),
  })
  .describe("A live registry of TenantDatabases for one backend: one Secret with every member's connection information.")
  .meta(
    cel({
      rule: 'self.env.all(e, e.key.contains("$(NAME)") || e.key.contains("$(name)"))',
      message: 'each env key must contain $(NAME) or $(name)',
    }),
  );

export const tenantGroupStatus = z
  .object({
    conditions,
    observedGeneration: z.number().int().optional().describe('The generation the status was computed for.'),
    secretName: z.string().max(253).optional().describe('The registry Secret.'),
    members: z.number().int().optional().describe('How many TenantDatabases the registry lists.'),
    ready: z.number().int().optional().describe('How many of them are Ready.'),
    bytes: z.number().int().optional().describe("The size of the registry Secret's data; a Secret holds at most 1 MiB."),
    rollout: rolloutStatus.optional(),
  })
  .describe('The observed state of the group.');

export const tenantGroup = z.object({
  apiVersion: z.string(),
  kind: z.literal('TenantGroup'),
  metadata: objectMeta,
  spec: tenantGroupSpec,
  status: tenantGroupStatus.optional(),
});
export type TenantGroup = z.infer<typeof tenantGroup>;
