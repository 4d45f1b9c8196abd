import { z } from 'zod';
import {
  cel,
  extensionName,
  cidr,
  conditions,
  hostName,
  k8sName,
  labelSelector,
  objectMeta,
  pgIdentifier,
  port,
  secretRef,
} from './common.js';
import { RESERVED_DATABASES } from './naming.js';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

/** A count of connections in a server's bounds (a default or a ceiling). */
const connectionCount = (dflt: number, description: string) => z.number().int().min(1).max(100000).default(dflt).describe(description);

export const postgresServerSpec = z
  .object({
    host: hostName.describe('Host name or IP address the operator uses to reach the server.'),
    port: port.default(5432).describe('TCP port of the server.'),
    sslMode: z
      .enum(SSL_MODES)
      .default('require')
      .describe("libpq sslmode for the operator's connections and for the connection strings it writes."),
    caSecretRef: secretRef
      .optional()
      .describe('A Secret whose key ca.crt holds the CA that signed the server certificate (for verify-ca and verify-full).'),
    adminSecretRef: secretRef.describe(
      'A Secret with keys username and password of an admin role with CREATEDB and CREATEROLE (superuser is not needed).',
    ),
    default: z
      .boolean()
      .default(false)
      .describe('Whether TenantDatabases without serverRef use this server. At most one server should be the default.'),
    publicHost: hostName
      .optional()
      .describe('Host name written into tenant connection strings, when tenants reach the server under another name than the operator.'),
    pooler: z
      .object({
        host: hostName.describe('Host name of PgBouncer as tenants reach it.'),
        port: port.default(6432).describe('TCP port of PgBouncer.'),
        adminSecretRef: secretRef
          .optional()
          .describe('A Secret with keys username and password of a PgBouncer admin_users entry, for SHOW and RELOAD.'),
        configSecretRef: secretRef
          .optional()
          .describe('The Secret the operator writes the rendered PgBouncer configuration into, for the agent beside PgBouncer.'),
        clientLimits: z
          .object({
            default: connectionCount(
              200,
              'Client connections PgBouncer accepts per tenant whose pooling.maxClientConnections is omitted or -1.',
            ),
            max: connectionCount(2000, 'The highest pooling.maxClientConnections a tenant may ask for; more is refused.'),
          })
          .prefault({})
          .describe(
            "Bounds for each tenant's client connections to PgBouncer (max_db_client_connections, PgBouncer 1.24+), so that no tenant can take every client slot (max_client_conn) of a shared pooler.",
          )
          .meta(
            cel({
              rule: '!has(self.default) || !has(self.max) || self.default <= self.max',
              message: 'pooler.clientLimits.default must not exceed pooler.clientLimits.max',
            }),
          ),
      })
      .optional()
      .describe('The PgBouncer in front of this server.'),
    hba: z
      .object({
        mode: z
          .enum(['None', 'Agent'])
          .default('None')
          .describe("None: the server's pg_hba.conf is not managed. Agent: a tenantdb agent beside a self-hosted server manages it."),
        configSecretRef: secretRef
          .optional()
          .describe(
            "The Secret the operator writes the tenant rules into, for the agent beside PostgreSQL. Defaults to <server>-hba in the operator's namespace.",
          ),
      })
      .optional()
      .describe("Management of the server's own pg_hba.conf."),
    alwaysAllowedCidrs: z
      .array(cidr.describe('A CIDR.'))
      .max(64)
      .optional()
      .describe('CIDRs that may always log in to every tenant, whatever its IpWhitelists say (e.g. the pod network).'),
    sharedDatabase: pgIdentifier('sharedDatabase')
      .refine((v) => !RESERVED_DATABASES.has(v), {
        message: `sharedDatabase must not be one of ${[...RESERVED_DATABASES].sort().join(', ')}`,
      })
      .optional()
      .describe(
        'The database that holds one schema per tenant for TenantDatabases with isolation Schema. The operator creates it when missing (an existing one must be owned by the admin role). Cannot change or be removed once set: the schemas of its tenants live there.',
      )
      .meta(
        cel(
          { rule: 'self == oldSelf', message: 'sharedDatabase cannot change once set: the schemas of its tenants live there' },
          {
            rule: `!(self in [${[...RESERVED_DATABASES]
              .sort()
              .map((x) => `'${x}'`)
              .join(', ')}])`,
            message: `sharedDatabase must not be one of ${[...RESERVED_DATABASES].sort().join(', ')}`,
          },
        ),
      ),
    allowedExtensions: z
      .array(extensionName.describe('An extension name.'))
      .max(64)
      .default([])
      .describe('Extensions tenants may ask for in spec.extensions.'),
    allowedNamespaces: z
      .object({
        from: z
          .enum(['All', 'Selector'])
          .default('All')
          .describe('All: TenantDatabases of every namespace may use this server. Selector: only those of namespaces matching selector.'),
        selector: labelSelector
          .optional()
          .describe('With from Selector: the labels a namespace must carry for its TenantDatabases to use this server.'),
      })
      .prefault({})
      .describe(
        'Which namespaces may provision on this server, like Gateway API allowedRoutes. Namespace labels are set by cluster admins, not by tenants. Others get Ready=False, reason ServerNotAllowed, and nothing on this server.',
      )
      .meta(
        cel({
          rule: "!has(self.from) || self.from != 'Selector' || has(self.selector)",
          message: 'allowedNamespaces.selector is required when from is Selector',
        }),
      ),
    connectionLimits: z
      .object({
        default: connectionCount(20, 'Connection limit of a tenant whose connectionLimit is omitted or -1.'),
        max: connectionCount(100, 'The highest connectionLimit a tenant may ask for; more is refused.'),
        enforceBudget: z
          .boolean()
          .default(false)
          .describe(
            "Whether a tenant is refused (ConnectionBudgetExceeded) when its limit would take the sum of all tenants' limits, plus the operator's own sessions, past the connections the server leaves to non-superusers. Without it the sum may overcommit; the AdminReserve condition says whether the operator keeps a way in.",
          ),
      })
      .prefault({})
      .describe('Bounds for tenant connection limits, so that no tenant can take every connection of the server.')
      .meta(
        cel({
          rule: '!has(self.default) || !has(self.max) || self.default <= self.max',
          message: 'connectionLimits.default must not exceed connectionLimits.max',
        }),
      ),
    maxTenants: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('The most TenantDatabases this server accepts; more are refused with reason CapacityExceeded.'),
    unmanagedAdoption: z
      .array(
        z
          .object({
            role: pgIdentifier('unmanagedAdoption[].role').describe('A role on this server that no tenantdb object created.'),
            namespace: k8sName('unmanagedAdoption[].namespace').max(63).describe('The namespace whose TenantDatabase may take it over.'),
          })
          .describe('One role, and the namespace that may take it over.'),
      )
      .max(1000)
      .default([])
      .describe(
        'Which hand-made roles (with the database or schema they own) a TenantDatabase may take over (spec.adoption.from: Unmanaged), and from which namespace. A tenant names what it takes; this list, written by whoever may edit the server, says it may: a tenant must never take a role that is not meant for it. Empty (the default): no unmanaged adoption.',
      ),
  })
  .describe('Where the server is and how the operator reaches it.')
  .meta(
    cel(
      {
        rule: "!has(self.sslMode) || !(self.sslMode in ['verify-ca', 'verify-full']) || has(self.caSecretRef)",
        message: 'caSecretRef is required when sslMode is verify-ca or verify-full',
      },
      {
        rule: '!has(oldSelf.sharedDatabase) || has(self.sharedDatabase)',
        message: 'sharedDatabase cannot be removed once set: the schemas of its tenants live there',
      },
    ),
  );

export const postgresServerStatus = z
  .object({
    conditions,
    observedGeneration: z.number().int().optional().describe('The generation the status was computed for.'),
    version: z.string().max(256).optional().describe("The server's version as it reports it (server_version)."),
    tenantCount: z.number().int().optional().describe('How many TenantDatabases use this server.'),
    pooler: z
      .object({
        version: z.string().max(64).describe('The PgBouncer version its admin console reports.'),
        maxPreparedStatements: z
          .number()
          .int()
          .describe(
            "PgBouncer's max_prepared_statements: above 0, named prepared statements work in transaction pooling (PgBouncer 1.21+), and tenant Secrets carry no client workarounds for it.",
          ),
      })
      .optional()
      .describe('What the PgBouncer in front of this server supports, as read from its admin console.'),
  })
  .describe('The observed state of the server.');

export const postgresServer = z.object({
  apiVersion: z.string(),
  kind: z.literal('PostgresServer'),
  metadata: objectMeta,
  spec: postgresServerSpec,
  status: postgresServerStatus.optional(),
});
export type PostgresServer = z.infer<typeof postgresServer>;

const parsedOfCached = new WeakMap<object, ReturnType<typeof postgresServer.safeParse>>();
/**
 * postgresServer.safeParse of an object from the informer's cache, once per object: the cache holds
 * a new object for each version, and every tenant's reconcile reads the servers (a parse of the
 * schema costs about a millisecond). The result is shared: read it, never change it.
 */
export function parseCachedServer(raw: unknown): ReturnType<typeof postgresServer.safeParse> {
  if (!raw || typeof raw !== 'object') return postgresServer.safeParse(raw);
  let r = parsedOfCached.get(raw);
  if (!r) {
    r = postgresServer.safeParse(raw);
    parsedOfCached.set(raw, r);
  }
  return r;
}
export type PostgresServerSpec = z.infer<typeof postgresServerSpec>;
export type PostgresServerStatus = z.infer<typeof postgresServerStatus>;

export const postgresServerNameSchema = k8sName('name');
