/**
 * Pure decisions of the TenantDatabase controller: which server, which names. Each returns either a
 * value or a reason and message for status, so they are tested in tables without any client.
 */
import {
  MAX_SCHEMA,
  RESERVED_DATABASES,
  RESERVED_ROLES,
  RESERVED_SCHEMAS,
  deriveIdentifier,
  schemaAlias,
  shadowDatabaseName,
  legacyTwinRoleNames,
  twinRoleName,
  holderRoleName,
  HOLDER_SUFFIX,
} from '../../api/naming.js';
import type { CachedPostgresServer } from '../../api/cached.js';
import type { PostgresServer } from '../../api/postgresserver.js';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import { matchesSelector } from '../../api/common.js';
import type { OperatorContext, Resolved } from '../context.js';

/**
 * `servers` are those whose spec is valid; `invalid` those that exist with a spec the operator
 * refuses (a CRD older than the operator lets one in): such a server is broken, not missing.
 */
export function resolveServer(
  td: TenantDatabase,
  servers: readonly PostgresServer[],
  invalid: readonly CachedPostgresServer[] = [],
): Resolved<PostgresServer> {
  const ref = td.spec.serverRef?.name;
  if (ref) {
    const s = servers.find((x) => x.metadata.name === ref);
    if (s) return { ok: true, value: s };
    if (invalid.some((x) => x.metadata?.name === ref)) return serverInvalid(ref);
    return { ok: false, reason: 'ServerNotFound', message: `PostgresServer ${ref} does not exist` };
  }
  const defaults = servers.filter((x) => x.spec.default);
  if (defaults.length === 1 && defaults[0]) return { ok: true, value: defaults[0] };
  if (defaults.length === 0) {
    const broken = invalid.filter((x) => x.spec?.default === true);
    if (broken.length === 1) return serverInvalid(broken[0]?.metadata?.name ?? '');
    return { ok: false, reason: 'NoDefaultServer', message: 'spec.serverRef is empty and no PostgresServer has default: true' };
  }
  return {
    ok: false,
    reason: 'AmbiguousDefaultServer',
    message: `spec.serverRef is empty and several PostgresServers are marked default (${defaults
      .map((d) => d.metadata.name)
      .sort()
      .join(', ')}); set serverRef`,
  };
}

function serverInvalid(name: string): Resolved<PostgresServer> {
  return {
    ok: false,
    reason: 'ServerInvalid',
    message: `PostgresServer ${name} has an invalid spec (its Ready condition says why); the tenant is provisioned once it is fixed`,
  };
}

export interface TenantNames {
  isolation: 'Database' | 'Schema';
  /** The tenant's database; with isolation Schema the server's sharedDatabase ('' until the server is known). */
  database: string;
  /** The tenant's schema (isolation Schema only). */
  schema: string | undefined;
  role: string;
  shadow: string | undefined;
  secret: string;
  /** The PgBouncer alias tenants connect to: the database, or schema.<schema>. */
  alias: string;
}

/** The databases that are the tenant's own (none with isolation Schema: the shared one is everyone's). */
export function ownDatabases(names: TenantNames): string[] {
  return names.isolation === 'Schema' ? [] : [names.database, names.shadow].filter((d): d is string => !!d);
}

/** The names once the server is known: a schema tenant lives in the server's sharedDatabase. */
export function placeOnServer(names: TenantNames, server: PostgresServer): Resolved<TenantNames> {
  const shared = server.spec.sharedDatabase;
  if (names.isolation !== 'Schema') {
    // The shared database is every schema tenant's: no tenant may take its name for a database of its own.
    if (shared && (names.database === shared || names.shadow === shared))
      return {
        ok: false,
        reason: 'InvalidName',
        message: `database ${shared} is PostgresServer ${server.metadata.name}'s sharedDatabase; set another databaseName`,
      };
    return { ok: true, value: names };
  }
  if (!shared)
    return {
      ok: false,
      reason: 'NoSharedDatabase',
      message: `PostgresServer ${server.metadata.name} has no sharedDatabase, which isolation Schema needs; set spec.sharedDatabase on the server, or use isolation Database`,
    };
  return { ok: true, value: { ...names, database: shared } };
}

/**
 * Names come from the spec alone (status is output, and whoever may write it must not steer the
 * operator); that they did not change since the objects were made is checked against the
 * ownership markers on the server (`namesMatchMarkers`).
 */
export function resolveNames(td: TenantDatabase): Resolved<TenantNames> {
  const ns = td.metadata.namespace ?? '';
  const name = td.metadata.name;
  const derived = deriveIdentifier(ns, name);
  const role = td.spec.roleName ?? derived;
  if (td.spec.isolation === 'Schema') {
    // What the API server refuses, refused here too (a CRD older than this operator may let it in).
    const bad = td.spec.databaseName
      ? 'databaseName'
      : td.spec.shadowDatabase
        ? 'shadowDatabase'
        : td.spec.extensions.length
          ? 'extensions'
          : undefined;
    if (bad) return { ok: false, reason: 'InvalidSpec', message: `${bad} is only valid with isolation Database` };
    const schema = td.spec.schemaName ?? deriveIdentifier(ns, name, MAX_SCHEMA);
    if (RESERVED_SCHEMAS.has(schema) || schema.startsWith('pg_') || schema.length > MAX_SCHEMA)
      return { ok: false, reason: 'InvalidName', message: `schemaName ${schema} is reserved or longer than ${MAX_SCHEMA} bytes` };
    if (RESERVED_ROLES.has(role) || role.startsWith('pg_'))
      return { ok: false, reason: 'InvalidName', message: `roleName ${role} is reserved by PostgreSQL` };
    if (role.endsWith(HOLDER_SUFFIX)) return holderNameRefused(role);
    const secret = secretNameOf(td);
    if (!secret.ok) return secret;
    return {
      ok: true,
      value: { isolation: 'Schema', database: '', schema, role, shadow: undefined, secret: secret.value, alias: schemaAlias(schema) },
    };
  }
  const database = td.spec.databaseName ?? derived;
  if (RESERVED_DATABASES.has(database)) {
    return { ok: false, reason: 'InvalidName', message: `databaseName ${database} is reserved` };
  }
  if (RESERVED_ROLES.has(role) || role.startsWith('pg_')) {
    return { ok: false, reason: 'InvalidName', message: `roleName ${role} is reserved by PostgreSQL` };
  }
  if (role.endsWith(HOLDER_SUFFIX)) return holderNameRefused(role);
  let shadow: string | undefined;
  if (td.spec.shadowDatabase) {
    shadow = shadowDatabaseName(database);
    if (shadow.length > 63) {
      return { ok: false, reason: 'InvalidName', message: `${shadow} would exceed 63 bytes; use a databaseName of at most 56 bytes` };
    }
  }
  const secret = secretNameOf(td);
  if (!secret.ok) return secret;
  return { ok: true, value: { isolation: 'Database', database, schema: undefined, role, shadow, secret: secret.value, alias: database } };
}

/** A login role named like a holder (holderRoleName) could be another tenant's holder: refused, derived or not. */
function holderNameRefused(role: string): Resolved<never> {
  return {
    ok: false,
    reason: 'InvalidName',
    message: `role name ${role} ends in ${HOLDER_SUFFIX}, which names the role holding a read-only tenant's objects; set spec.roleName to another name`,
  };
}

function secretNameOf(td: TenantDatabase): Resolved<string> {
  const secret = td.spec.secretName ?? `${td.metadata.name}-db`;
  if (secret.length > 253) {
    return {
      ok: false,
      reason: 'InvalidName',
      message: `the default Secret name ${td.metadata.name}-db is longer than 253 characters; set spec.secretName`,
    };
  }
  return { ok: true, value: secret };
}

/** Whether the server admits TenantDatabases of this namespace (spec.allowedNamespaces). */
export function namespaceAllowed(ctx: Pick<OperatorContext, 'namespaces'>, server: PostgresServer, namespace: string): Resolved<true> {
  const a = server.spec.allowedNamespaces;
  if (a.from === 'All') return { ok: true, value: true };
  const ns = ctx.namespaces.get(namespace);
  if (ns && a.selector && matchesSelector(a.selector, ns.metadata?.labels)) return { ok: true, value: true };
  return {
    ok: false,
    reason: 'ServerNotAllowed',
    message: `PostgresServer ${server.metadata.name} admits only namespaces matching its allowedNamespaces selector, and namespace ${namespace} does not match`,
  };
}

/** Whether the objects carrying this tenant's marker on its server have the names its spec gives now. */
export function namesMatchMarkers(
  names: TenantNames,
  mine: { roles: ReadonlySet<string>; databases: ReadonlySet<string> } | undefined,
): Resolved<true> {
  // Its second login role (overlapping rotation), its read-only holder and its shadow database go
  // with the names. The `-2` twin holds a character no tenant name can have; the others are names a
  // tenant could choose for its main role or database (`<role>_2`, `<db>_shadow`), so they count
  // only beside the main one: a tenant `ns/app-2` (role ns_app_2) that adds roleName ns_app must not
  // have its role taken for ns_app's twin, nor `ns/foo-shadow` adding databaseName ns_foo its
  // database for ns_foo's shadow (which a spec without shadowDatabase then drops).
  const mainRole = mine?.roles.has(names.role) ?? false;
  const mainDatabase = mine?.databases.has(names.database) ?? false;
  for (const r of mine?.roles ?? []) {
    if (
      r !== names.role &&
      r !== twinRoleName(names.role) &&
      !(mainRole && (legacyTwinRoleNames(names.role).includes(r) || r === holderRoleName(names.role)))
    )
      return { ok: false, reason: 'ImmutableName', message: `the role is ${r}; roleName cannot change to ${names.role}` };
  }
  for (const d of mine?.databases ?? []) {
    if (d !== names.database && !(mainDatabase && d === shadowDatabaseName(names.database))) {
      return { ok: false, reason: 'ImmutableName', message: `the database is ${d}; databaseName cannot change to ${names.database}` };
    }
  }
  return { ok: true, value: true };
}

/**
 * How the names the spec gives now differ from those status recorded: one sentence each, none when
 * they agree. What `kubectl tenantdb plan` can tell without the server; the operator holds a tenant
 * to the names its objects' markers carry (namesMatchMarkers, in its claims step), since a
 * reconcile that failed records none in status.
 */
export function renamedFromStatus(
  names: Pick<TenantNames, 'role' | 'database' | 'schema'>,
  had: { roleName?: string | undefined; databaseName?: string | undefined; schemaName?: string | undefined } | undefined,
): string[] {
  return [
    had?.roleName && had.roleName !== names.role ? `the role is ${had.roleName}; roleName cannot change to ${names.role}` : '',
    had?.databaseName && names.schema === undefined && had.databaseName !== names.database
      ? `the database is ${had.databaseName}; databaseName cannot change to ${names.database}`
      : '',
    had?.schemaName && names.schema !== undefined && had.schemaName !== names.schema
      ? `the schema is ${had.schemaName}; schemaName cannot change to ${names.schema}`
      : '',
  ].filter(Boolean);
}
