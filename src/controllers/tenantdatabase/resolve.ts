/**
 * Pure decisions of the TenantDatabase controller: which server, which names. Each returns either a
 * value or a reason and message for status, so they are tested in tables without any client.
 */
import { RESERVED_DATABASES, RESERVED_ROLES, deriveIdentifier, shadowDatabaseName } from '../../api/naming.js';
import type { PostgresServer } from '../../api/postgresserver.js';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import { matchesSelector } from '../../api/common.js';
import type { OperatorContext, Resolved } from '../context.js';

export function resolveServer(td: TenantDatabase, servers: readonly PostgresServer[]): Resolved<PostgresServer> {
  const ref = td.spec.serverRef?.name;
  if (ref) {
    const s = servers.find((x) => x.metadata.name === ref);
    return s ? { ok: true, value: s } : { ok: false, reason: 'ServerNotFound', message: `PostgresServer ${ref} does not exist` };
  }
  const defaults = servers.filter((x) => x.spec.default);
  if (defaults.length === 1 && defaults[0]) return { ok: true, value: defaults[0] };
  if (defaults.length === 0) {
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

export interface TenantNames {
  database: string;
  role: string;
  shadow: string | undefined;
  secret: string;
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
  const database = td.spec.databaseName ?? derived;
  const role = td.spec.roleName ?? derived;
  if (RESERVED_DATABASES.has(database)) {
    return { ok: false, reason: 'InvalidName', message: `databaseName ${database} is reserved` };
  }
  if (RESERVED_ROLES.has(role) || role.startsWith('pg_')) {
    return { ok: false, reason: 'InvalidName', message: `roleName ${role} is reserved by PostgreSQL` };
  }
  let shadow: string | undefined;
  if (td.spec.shadowDatabase) {
    shadow = shadowDatabaseName(database);
    if (shadow.length > 63) {
      return { ok: false, reason: 'InvalidName', message: `${shadow} would exceed 63 bytes; use a databaseName of at most 56 bytes` };
    }
  }
  const secret = td.spec.secretName ?? `${name}-db`;
  if (secret.length > 253) {
    return {
      ok: false,
      reason: 'InvalidName',
      message: `the default Secret name ${name}-db is longer than 253 characters; set spec.secretName`,
    };
  }
  return { ok: true, value: { database, role, shadow, secret } };
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
  for (const r of mine?.roles ?? []) {
    if (r !== names.role)
      return { ok: false, reason: 'ImmutableName', message: `the role is ${r}; roleName cannot change to ${names.role}` };
  }
  for (const d of mine?.databases ?? []) {
    if (d !== names.database && d !== shadowDatabaseName(names.database)) {
      return { ok: false, reason: 'ImmutableName', message: `the database is ${d}; databaseName cannot change to ${names.database}` };
    }
  }
  return { ok: true, value: true };
}
