import { z } from 'zod';
import { groupMigration, rolloutStatus } from './migration.js';
import { cel, conditions, k8sName, labelSelector, objectMeta, pgIdentifier } from './common.js';
import { GROUP_ALIAS_PREFIX, HOLDER_SUFFIX, MAX_GROUP_ROLE, RESERVED_ROLES } from './naming.js';

/** A key of a Secret, as the API server accepts it. */
const secretKey = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[-._a-zA-Z0-9]+$/, 'a Secret key is made of letters, digits, -, _ and .');

const ROLE_RULES = `groupLogin.roleName must not be one of ${[...RESERVED_ROLES].sort().join(', ')}, start with pg_, or end in ${HOLDER_SUFFIX} (the name of a read-only tenant's holder role)`;

/**
 * One login role for a backend that routes by search_path in a schema-per-tenant shared database:
 * one credential and one pool that reach every member schema.
 */
export const groupLogin = z
  .object({
    enabled: z.boolean().default(false).describe('Creates the group login role; false (or removing groupLogin) drops it.'),
    serverRef: z
      .object({ name: k8sName('groupLogin.serverRef.name').describe('Name of the PostgresServer.') })
      .optional()
      .describe(
        'The PostgresServer whose sharedDatabase the group login works in; the default server when omitted. Members on another server are not reached. Cannot change once set.',
      )
      .meta(cel({ rule: 'self == oldSelf', message: 'groupLogin.serverRef cannot be changed' })),
    roleName: pgIdentifier('groupLogin.roleName')
      .max(
        MAX_GROUP_ROLE,
        `groupLogin.roleName must be at most ${MAX_GROUP_ROLE} bytes, so that its pooler alias ${GROUP_ALIAS_PREFIX}<roleName> fits in 63`,
      )
      .refine((v) => !RESERVED_ROLES.has(v) && !v.startsWith('pg_') && !v.endsWith(HOLDER_SUFFIX), {
        message: ROLE_RULES,
      })
      .optional()
      .describe(
        `Name of the group's login role, at most ${MAX_GROUP_ROLE} bytes. <namespace>_<name>_group when omitted. A role of that name that this group did not create is never taken over (Conflict). Cannot change once set.`,
      )
      .meta(
        cel(
          { rule: 'self == oldSelf', message: 'groupLogin.roleName cannot be changed' },
          {
            rule: `!(self in [${[...RESERVED_ROLES]
              .sort()
              .map((r) => `'${r}'`)
              .join(', ')}]) && !self.startsWith('pg_') && !self.endsWith('${HOLDER_SUFFIX}')`,
            message: ROLE_RULES,
          },
        ),
      ),
    connectionLimit: z
      .number()
      .int()
      .min(1)
      .max(10000)
      .default(20)
      .describe('CONNECTION LIMIT of the group role: its direct and pooled server connections together.'),
    pooling: z
      .object({
        poolMode: z
          .enum(['session', 'transaction', 'statement'])
          .default('transaction')
          .describe(
            'PgBouncer pool_mode of the group pool. In transaction mode a server connection serves many clients: route with SET LOCAL search_path inside each transaction (a plain SET stays on the server connection for the next client).',
          ),
        poolSize: z.number().int().min(1).max(10000).default(10).describe('PgBouncer pool_size: server connections of the group pool.'),
      })
      .default({ poolMode: 'transaction', poolSize: 10 })
      .describe('The PgBouncer pool of the group login (alias group.<roleName> on the shared database).'),
  })
  .describe(
    "Isolation Schema only: one login role that may work in every member's schema and in no other. It is a member of each reached member's role, so it holds exactly what that member's own login holds (a read-only member stays read-only) and loses it the moment the member leaves. Its credentials go into the registry Secret (group-username, group-password, group-uri, group-pooled-uri, group-jdbc-uri).",
  );
export type GroupLogin = z.infer<typeof groupLogin>;

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
    groupLogin: groupLogin.optional(),
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
    groupLogin: z
      .object({
        roleName: z.string().max(63).optional().describe('The group login role.'),
        serverName: z.string().max(253).optional().describe('The PostgresServer it lives on.'),
        reached: z.array(z.string().max(253)).max(1000).optional().describe('The members whose schema it reaches.'),
        notReached: z
          .array(
            z.object({
              name: z.string().max(253).describe('The member.'),
              reason: z.string().max(1024).describe('Why it is not reached.'),
            }),
          )
          .max(1000)
          .optional()
          .describe('The members it does not reach, and why.'),
      })
      .optional()
      .describe('What the group login reaches.'),
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
