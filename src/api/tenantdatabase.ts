import { z } from 'zod';
import { cel, duration, extensionName, conditions, k8sName, objectMeta, pgIdentifier, pgMemory, pgTime } from './common.js';
import { migrationStatus, tenantMigration } from './migration.js';
import { HOLDER_SUFFIX, MAX_SCHEMA, RESERVED_DATABASES, RESERVED_ROLES, RESERVED_SCHEMAS, SCHEMA_ALIAS_PREFIX } from './naming.js';

const celList = (xs: Iterable<string>) =>
  `[${[...xs]
    .sort()
    .map((x) => `'${x}'`)
    .join(', ')}]`;
const notReserved = (field: string, reserved: ReadonlySet<string>, extra = '') => ({
  rule: `!(self in ${celList(reserved)})${extra}`,
  message: `${field} must not be one of ${[...reserved].sort().join(', ')}${extra ? ' or start with pg_' : ''}: they are reserved by PostgreSQL or are keywords in the pooler and HBA files`,
});

const HOLDER_MESSAGE = `roleName must not end in ${HOLDER_SUFFIX}: that is the name of the role holding a read-only tenant's objects`;

export const tenantDatabaseSpec = z
  .object({
    serverRef: z
      .object({ name: k8sName('serverRef.name').describe('Name of the PostgresServer.') })
      .optional()
      .describe('The PostgresServer to provision on. When omitted, the server marked default is used. Cannot change once set.')
      .meta(cel({ rule: 'self == oldSelf', message: 'serverRef cannot be changed; create a new TenantDatabase on the other server' })),
    isolation: z
      .enum(['Database', 'Schema'])
      .default('Database')
      .describe("Database: a database of its own. Schema: a schema in the server's sharedDatabase.")
      .meta(cel({ rule: 'self == oldSelf', message: 'isolation cannot be changed' })),
    databaseName: pgIdentifier('databaseName')
      .refine((v) => !RESERVED_DATABASES.has(v), {
        message: `databaseName must not be one of ${[...RESERVED_DATABASES].sort().join(', ')}`,
      })
      .optional()
      .describe('Name of the database. Derived from namespace and name when omitted. Cannot change once set.')
      .meta(cel({ rule: 'self == oldSelf', message: 'databaseName cannot be changed' }, notReserved('databaseName', RESERVED_DATABASES))),
    schemaName: pgIdentifier('schemaName')
      .max(
        MAX_SCHEMA,
        `schemaName must be at most ${MAX_SCHEMA} bytes, so that its pooler alias ${SCHEMA_ALIAS_PREFIX}<schemaName> fits in 63`,
      )
      .refine((v) => !RESERVED_SCHEMAS.has(v) && !v.startsWith('pg_'), {
        message: `schemaName must not be one of ${[...RESERVED_SCHEMAS].sort().join(', ')} or start with pg_`,
      })
      .optional()
      .describe(
        `Name of the schema (isolation Schema only), at most ${MAX_SCHEMA} bytes. Derived from namespace and name when omitted. Cannot change once set.`,
      )
      .meta(
        cel(
          { rule: 'self == oldSelf', message: 'schemaName cannot be changed' },
          notReserved('schemaName', RESERVED_SCHEMAS, " && !self.startsWith('pg_')"),
        ),
      ),
    roleName: pgIdentifier('roleName')
      .refine((v) => !RESERVED_ROLES.has(v) && !v.startsWith('pg_'), {
        message: `roleName must not be one of ${[...RESERVED_ROLES].sort().join(', ')} or start with pg_`,
      })
      .refine((v) => !v.endsWith(HOLDER_SUFFIX), { message: HOLDER_MESSAGE })
      .optional()
      .describe('Name of the login role. Derived from namespace and name when omitted. Cannot change once set.')
      .meta(
        cel(
          { rule: 'self == oldSelf', message: 'roleName cannot be changed' },
          notReserved('roleName', RESERVED_ROLES, " && !self.startsWith('pg_')"),
          { rule: `!self.endsWith('${HOLDER_SUFFIX}')`, message: HOLDER_MESSAGE },
        ),
      ),
    connectionLimit: z
      .number()
      .int()
      .min(-1)
      .max(100000)
      .refine((v) => v !== 0, { message: 'connectionLimit is -1 (the server default) or at least 1; to stop logins use suspend' })
      .default(-1)
      .describe(
        "Most concurrent direct connections of the role and to the database. -1 (the default) means the server's connectionLimits.default; more than its connectionLimits.max is refused. 0 is refused (nobody, the operator included, could connect to the database): spec.suspend stops a tenant's logins.",
      )
      .meta(cel({ rule: 'self != 0', message: 'connectionLimit is -1 (the server default) or at least 1; to stop logins use suspend' })),
    pooling: z
      .object({
        enabled: z.boolean().default(true).describe('Whether the tenant gets a PgBouncer pool.'),
        poolMode: z
          .enum(['session', 'transaction', 'statement'])
          .default('transaction')
          .describe("PgBouncer pool_mode of the tenant's pool."),
        poolSize: z.number().int().min(1).max(10000).default(10).describe('PgBouncer pool_size: server connections per pool.'),
        maxDbConnections: z
          .number()
          .int()
          .min(0)
          .max(100000)
          .default(0)
          .describe("PgBouncer max_db_connections for the tenant's database; 0 means no limit."),
        maxClientConnections: z
          .number()
          .int()
          .min(-1)
          .max(100000)
          .refine((v) => v !== 0, { message: 'pooling.maxClientConnections is -1 (the server default) or at least 1' })
          .default(-1)
          .describe(
            "Most client connections PgBouncer accepts for the tenant's pool at once (0 is refused: PgBouncer reads it as no limit). -1 (the default) means the server's pooler.clientLimits.default; more than its pooler.clientLimits.max is refused. Needs PgBouncer 1.24 or newer; an older one serves the tenant without the cap and the PostgresServer says so.",
          )
          .meta(cel({ rule: 'self != 0', message: 'pooling.maxClientConnections is -1 (the server default) or at least 1' })),
      })
      .prefault({})
      .describe("The tenant's PgBouncer pool."),
    extensions: z
      .array(extensionName.describe('An extension name.'))
      .max(32)
      .default([])
      .describe("Extensions to create in the tenant database; each must be in the server's allowedExtensions."),
    shadowDatabase: z.boolean().default(false).describe('Whether to create a separate <database>_shadow database for Prisma migrate dev.'),
    secretName: k8sName('secretName').optional().describe('Name of the Secret with the connection details. Defaults to <name>-db.'),
    secretTemplate: z
      .object({
        presets: z
          .array(z.enum(['Vercel', 'Spring']).describe('A preset: Vercel or Spring.'))
          .max(2)
          .default([])
          .describe(
            'Extra keys in the shapes some platforms read. Vercel: POSTGRES_URL, POSTGRES_PRISMA_URL, POSTGRES_URL_NON_POOLING, POSTGRES_HOST, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DATABASE. Spring: SPRING_DATASOURCE_URL, SPRING_DATASOURCE_USERNAME, SPRING_DATASOURCE_PASSWORD.',
          ),
        keys: z
          .record(
            z
              .string()
              .min(1)
              .max(253)
              .regex(/^[-._a-zA-Z0-9]+$/, 'a Secret key is made of letters, digits, -, _ and .'),
            z.string().max(4096),
          )
          .default({})
          .describe(
            'Keys of your own, each a text in which $(key) stands for the value of one of the Secret\'s standard keys (e.g. "$(pooled-uri)&application_name=billing"), and $$ for a $. They may not replace a standard key.',
          )
          .meta(cel({ rule: 'size(self) <= 32', message: 'secretTemplate.keys holds at most 32 keys' })),
      })
      .prefault({})
      .describe('What the Secret holds beyond its standard keys.'),
    suspend: z
      .boolean()
      .default(false)
      .describe(
        'Suspends the tenant, keeping all its data: its role may not log in, directly or through the pooler (PgBouncer drops its password, so new pooled logins are refused too). Open sessions go on unless endSessionsOnSuspend is set. Set it back to false to resume.',
      ),
    endSessionsOnSuspend: z
      .boolean()
      .default(false)
      .describe("With suspend: also end the tenant role's open sessions on the server (direct ones, and the pooler's server connections)."),
    quota: z
      .object({
        size: z
          .string()
          .max(20)
          .regex(/^[1-9][0-9]{0,12}(Ki|Mi|Gi|Ti)?$/, 'quota.size must be a size such as 500Mi, 10Gi or 1Ti')
          .describe('The most the database (isolation Schema: the schema) may hold, such as 10Gi.'),
        action: z
          .enum(['Report', 'ReadOnly'])
          .default('Report')
          .describe(
            'What happens past the quota. Report: the condition QuotaExceeded=True and a Warning Event, writes go on. ReadOnly: the same, and the tenant becomes read-only except that it may TRUNCATE its tables that have no triggers (to get back under the quota; not DELETE, which would run rules and triggers with the rights of the owner); it may write again once its size is back under the quota.',
          ),
      })
      .optional()
      .describe(
        'A size quota: past it the tenant gets the condition QuotaExceeded=True and a Warning Event, and with action ReadOnly it loses its writes. Sizes are measured at each full look and by the periodic re-check (every half resync period), so a quota is crossed by what a tenant writes in that time.',
      ),
    readOnly: z
      .boolean()
      .default(false)
      .describe(
        'Makes the tenant read-only, keeping its data and its logins: it may read everything it has, and may not insert, update, delete, create or drop anything (its objects are held by the role <roleName>_hold meanwhile, and it holds read grants). Its open sessions are ended when it switches (clients reconnect under the new rights). Set it back to false to write again: the data is untouched either way (privileges granted to PUBLIC on its objects are not restored). Needs a roleName of at most 58 bytes.',
      ),
    settings: z
      .object({
        statement_timeout: pgTime('settings.statement_timeout')
          .optional()
          .describe('Longest a statement may run (e.g. 30s, 5min; 0: no limit).'),
        lock_timeout: pgTime('settings.lock_timeout').optional().describe('Longest a statement waits for a lock.'),
        idle_in_transaction_session_timeout: pgTime('settings.idle_in_transaction_session_timeout')
          .optional()
          .describe('Ends a session idle inside a transaction for longer than this.'),
        idle_session_timeout: pgTime('settings.idle_session_timeout')
          .optional()
          .describe('Ends a session idle outside a transaction for longer than this.'),
        work_mem: pgMemory('settings.work_mem').optional().describe('Memory per sort or hash before spilling to disk (e.g. 16MB).'),
        maintenance_work_mem: pgMemory('settings.maintenance_work_mem')
          .optional()
          .describe('Memory for VACUUM, CREATE INDEX and the like.'),
        temp_buffers: pgMemory('settings.temp_buffers').optional().describe('Memory per session for temporary tables.'),
        timezone: z
          .string()
          .max(64)
          .regex(/^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/, 'settings.timezone must be a time zone name such as UTC or Europe/Paris')
          .optional()
          .describe('The session time zone (e.g. UTC, Europe/Paris).'),
        default_transaction_isolation: z
          .enum(['read committed', 'repeatable read', 'serializable'])
          .optional()
          .describe('The isolation level of new transactions.'),
      })
      .prefault({})
      .describe(
        "Session defaults for the tenant's login roles in its database (ALTER ROLE ... IN DATABASE ... SET), set and put back by the operator; a setting left out is reset. Only these, which any session may change for itself: they are defaults, not limits. PostgreSQL checks each value (a bad one is in status).",
      ),
    adoption: z
      .object({
        from: z
          .enum(['Retained', 'Unmanaged'])
          .describe(
            'Retained: take over the role, database or schema this operator kept (deletionPolicy Retain) for an earlier TenantDatabase of the same namespace and name (a GitOps re-create). Unmanaged: take over a role and database (or schema) no tenantdb object created, named by roleName and databaseName (or schemaName), which must be set; the role may not be a superuser nor a member of any role, and loses CREATEDB, CREATEROLE, REPLICATION and BYPASSRLS; a database it owns is handed to the operator (the role keeps CONNECT, CREATE and TEMPORARY).',
          ),
        passwordSecretRef: z
          .object({
            name: k8sName('adoption.passwordSecretRef.name').describe("A Secret in the TenantDatabase's namespace."),
            key: z
              .string()
              .min(1)
              .max(253)
              .regex(/^[-._a-zA-Z0-9]+$/, 'a Secret key is made of letters, digits, -, _ and .')
              .default('password')
              .describe('The key holding the password.'),
          })
          .optional()
          .describe(
            "Keeps the role's current password (read from this Secret once, when the role is taken over); without it the role gets a new one.",
          ),
      })
      .optional()
      .describe(
        'Takes over existing objects instead of refusing them as a Conflict. Nothing is adopted unless named here; a Conflict that adoption could resolve says what to write.',
      ),
    passwordRotation: z
      .object({
        strategy: z
          .enum(['InPlace', 'Overlap'])
          .default('InPlace')
          .describe(
            'InPlace: a rotation gives the role a new password at once; sessions open go on, new logins with the old password fail. Overlap: the tenant has two login roles, <roleName> and <roleName>-2 (a twin made by an earlier release keeps its name <roleName>_2), both acting as <roleName> (objects stay owned by it); a rotation gives the idle one a new password, switches the Secret to it once it logs in directly and through the pooler, and lets the old one log in until gracePeriod ends (VALID UNTIL, enforced by PostgreSQL even while the operator is down). A rotation asked while a grace period runs waits for its end.',
          ),
        gracePeriod: duration('passwordRotation.gracePeriod', 5, 30 * 24 * 3600)
          .default('1h')
          .describe(
            'With Overlap: how long the previous credentials keep working after a rotation (Go duration: 90s, 15m, 1h; 5s to 720h).',
          ),
        interval: duration('passwordRotation.interval', 60, 366 * 24 * 3600)
          .optional()
          .describe(
            'Rotates the password on a schedule: when the current one is this old (Go duration such as 720h; 1m to 8784h). With Overlap it must be longer than gracePeriod.',
          ),
      })
      .prefault({})
      .describe('How the password rotates: on demand (the tenantdb.dev/rotate-password annotation) and on a schedule.')
      .meta(
        cel({
          rule: "!has(self.interval) || !has(self.gracePeriod) || !has(self.strategy) || self.strategy != 'Overlap' || duration(self.interval) > duration(self.gracePeriod)",
          message: 'passwordRotation.interval must be longer than gracePeriod with strategy Overlap',
        }),
      ),
    managementPolicy: z
      .enum(['Manage', 'Observe'])
      .default('Manage')
      .describe(
        'Manage: the operator makes what exists match the spec. Observe: it reads the server and the Secret, writes nothing there nor in the Secret, and reports in status.observation the exact statements it would run (passwords left out) and the changes it would make to the Secret; Ready says whether they match. Deleting an observed TenantDatabase drops nothing, whatever the deletionPolicy; login roles it made while managed lose their login. The limits of the platform (admission, connection ceilings) still act. The pooler keeps serving what it served (its config follows the spec and the Secret, as for every tenant).',
      ),
    deletionPolicy: z
      .enum(['Retain', 'Delete'])
      .default('Retain')
      .describe('Retain: on deletion keep database and role, with login disabled. Delete: end sessions and drop both.'),
    migration: tenantMigration.optional(),
  })
  .describe('The tenant database the operator provisions.')
  .meta(
    cel(
      {
        rule: "!has(self.schemaName) || self.isolation == 'Schema'",
        message: 'schemaName is only valid with isolation Schema',
      },
      {
        rule: 'has(oldSelf.schemaName) == has(self.schemaName)',
        message: 'schemaName cannot be added or removed once the TenantDatabase exists',
      },
      {
        rule: "!has(self.isolation) || self.isolation != 'Schema' || !has(self.databaseName)",
        message: "databaseName is not valid with isolation Schema: the schema lives in the server's sharedDatabase",
      },
      {
        rule: "!has(self.isolation) || self.isolation != 'Schema' || !has(self.shadowDatabase) || !self.shadowDatabase",
        message: 'shadowDatabase is only valid with isolation Database (a shadow for a schema tenant would be a database of its own)',
      },
      {
        rule: "!has(self.isolation) || self.isolation != 'Schema' || !has(self.extensions) || size(self.extensions) == 0",
        message: "extensions are only valid with isolation Database: in a shared database an extension would be every tenant's",
      },
      {
        rule: "!has(self.adoption) || self.adoption.from != 'Unmanaged' || (has(self.roleName) && (has(self.isolation) && self.isolation == 'Schema' ? has(self.schemaName) : has(self.databaseName)))",
        message:
          'adoption from Unmanaged takes only what is named: set roleName, and databaseName (isolation Database) or schemaName (isolation Schema)',
      },
      {
        rule: '!has(self.shadowDatabase) || !self.shadowDatabase || !has(self.databaseName) || size(self.databaseName) <= 56',
        message: 'databaseName must be at most 56 bytes when shadowDatabase is true, so that <databaseName>_shadow fits in 63',
      },
    ),
  );

export const tenantDatabaseStatus = z
  .object({
    conditions,
    observedGeneration: z.number().int().optional().describe('The generation the status was computed for.'),
    serverName: z.string().max(253).optional().describe('The PostgresServer in use.'),
    databaseName: z.string().max(63).optional().describe('The database the tenant uses.'),
    schemaName: z.string().max(63).optional().describe('The schema the tenant uses (isolation Schema).'),
    roleName: z.string().max(63).optional().describe("The tenant's login role."),
    secretName: z.string().max(253).optional().describe('The Secret with the connection details.'),
    sizeBytes: z.number().int().optional().describe('Size of the tenant database in bytes, refreshed periodically.'),
    activeConnections: z.number().int().optional().describe('Sessions of the tenant role on the server, refreshed periodically.'),
    passwordChangedAt: z
      .string()
      .max(64)
      .optional()
      .describe("When the operator last set the role's password on the server (creation, rotation or repair), RFC 3339."),
    passwordRotatedFor: z
      .string()
      .max(256)
      .optional()
      .describe(
        'The last rotation request (the tenantdb.dev/rotate-password annotation) that the role carries: set once the new password is in force.',
      ),
    credentials: z
      .object({
        loginRole: z.string().max(63).optional().describe('The login role the Secret holds now.'),
        generation: z.number().int().optional().describe('How many times the password was rotated.'),
        rotatedAt: z.string().max(64).optional().describe('When the password was last rotated or first set, RFC 3339.'),
        previousLoginRole: z
          .string()
          .max(63)
          .optional()
          .describe('With Overlap: the login role used before the last rotation, while its grace period runs.'),
        previousValidUntil: z.string().max(64).optional().describe("When the previous login role's password stops working, RFC 3339."),
        nextRotationAt: z
          .string()
          .max(64)
          .optional()
          .describe('When the scheduled rotation (passwordRotation.interval) comes due, RFC 3339.'),
        rotationWaitsUntil: z
          .string()
          .max(64)
          .optional()
          .describe("A rotation asked while the previous login's grace period runs waits until then, RFC 3339."),
        switchError: z
          .string()
          .max(1024)
          .optional()
          .describe('Why the last switch to the other login role did not complete (the Secret kept the current one).'),
      })
      .optional()
      .describe("The tenant's credentials: which login role is in use, their age and rotation."),
    observation: z
      .object({
        observedAt: z.string().max(64).optional().describe('When the server and the Secret were last read, RFC 3339.'),
        inSync: z.boolean().optional().describe('Whether nothing would change.'),
        plan: z
          .array(z.string().max(1024))
          .max(101)
          .optional()
          .describe(
            'What a managed reconcile would do now: the SQL statements in their order (passwords left out), then changes to the Secret. At most 100 lines; a last line says how many more.',
          ),
      })
      .optional()
      .describe('With managementPolicy Observe: what the operator would do, computed from the live server without changing anything.'),
    migration: migrationStatus.optional(),
  })
  .describe('The observed state of the tenant database.');

export const tenantDatabase = z.object({
  apiVersion: z.string(),
  kind: z.literal('TenantDatabase'),
  metadata: objectMeta,
  spec: tenantDatabaseSpec,
  status: tenantDatabaseStatus.optional(),
});
export type TenantDatabase = z.infer<typeof tenantDatabase>;
export type TenantDatabaseSpec = z.infer<typeof tenantDatabaseSpec>;
export type TenantDatabaseStatus = z.infer<typeof tenantDatabaseStatus>;
