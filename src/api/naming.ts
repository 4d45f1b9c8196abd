import { createHash } from 'node:crypto';

/**
 * Words that mean something in the files tenantdb renders: in pg_hba.conf and PgBouncer's hba the
 * database and user columns take `all`, `sameuser`, `samerole`, `samegroup` and `replication` as
 * keywords, and a PgBouncer database named `pgbouncer` is its admin console (an entry with that name
 * stops PgBouncer reading the rest of its file). A tenant name that is one of them would turn into
 * syntax that opens or closes other tenants' doors, so none may be used.
 */
export const CONFIG_KEYWORDS = ['all', 'sameuser', 'samerole', 'samegroup', 'replication', 'pgbouncer'] as const;

/** Names PostgreSQL reserves for roles, and databases no tenant may take. */
export const RESERVED_ROLES = new Set<string>([
  'public',
  'none',
  'current_user',
  'session_user',
  'current_role',
  'postgres',
  ...CONFIG_KEYWORDS,
]);
export const RESERVED_DATABASES = new Set<string>(['postgres', 'template0', 'template1', ...CONFIG_KEYWORDS]);

/** Room left for the `_shadow` suffix, so every derived database name can get a shadow database. */
export const MAX_DERIVED = 63 - '_shadow'.length;

function shortHash(input: string, digits = 8): string {
  return createHash('sha256').update(input).digest('hex').slice(0, digits);
}

/**
 * Derives a PostgreSQL identifier from a namespace and a name: lower case, [a-z0-9_], at most
 * `max` bytes. A longer name keeps a prefix and gets a hash of the full name, so two long names
 * never collapse into one by truncation. A name that would start with a digit or with the
 * reserved `pg_` prefix gets `t_` in front.
 */
export function deriveIdentifier(namespace: string, name: string, max = MAX_DERIVED): string {
  const full = `${namespace}_${name}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  let id = /^[a-z_]/.test(full) && !full.startsWith('pg_') ? full : `t_${full}`;
  if (id.length > max) {
    const suffix = `_${shortHash(`${namespace}/${name}`)}`;
    id = id.slice(0, max - suffix.length).replace(/_+$/, '') + suffix;
  }
  return id;
}

export function shadowDatabaseName(database: string): string {
  return `${database}_shadow`;
}

/**
 * Schemas no tenant may take: PostgreSQL's own (`pg_` is refused by CREATE SCHEMA) and `public`, which
 * a shared database keeps for the platform.
 */
export const RESERVED_SCHEMAS = new Set<string>(['public', 'information_schema']);

/**
 * A schema tenant's PgBouncer alias: `schema.<name>`. A database name cannot hold a dot, so no alias
 * of a schema tenant can ever be another tenant's database; PgBouncer takes names of up to 63 bytes,
 * hence schema names of at most 56.
 */
export const SCHEMA_ALIAS_PREFIX = 'schema.';
export const MAX_SCHEMA = 63 - SCHEMA_ALIAS_PREFIX.length;

export function schemaAlias(schema: string): string {
  return `${SCHEMA_ALIAS_PREFIX}${schema}`;
}

/**
 * The role that holds a read-only tenant's objects: `<role>_hold`, or, past 63 bytes, a prefix, a
 * hash and `_hold`. While the tenant is read-only (spec.readOnly, or a quota that switches to it) its
 * schemas, tables and the rest belong to this role, which cannot log in, and the tenant's login role
 * holds only read grants on them (an owner can always write and re-grant, so reads-only for the
 * owner itself cannot be had from PostgreSQL). No tenant login role may end in `_hold`
 * (`HOLDER_SUFFIX`), so no tenant can take the name of another's holder.
 */
export const HOLDER_SUFFIX = '_hold';
export function holderRoleName(role: string): string {
  return suffixed(role, HOLDER_SUFFIX);
}

/**
 * The second login role of a tenant whose passwords rotate with overlap: `<role>-2`, or, when that
 * would pass 63 bytes, `<prefix>-<hash>-2` (36 bytes of the role and 24 hex digits of a hash of all
 * of it). It is a member of the tenant's role and acts as it (its sessions start with SET ROLE to
 * it), so whatever either login creates is owned by the one tenant role. The `-` is what keeps the
 * name the tenant's: no name a tenant can choose or derive holds one (roleName is
 * `[a-z_][a-z0-9_]*`, derived names too), so no other tenant can take it first and hold this one's
 * rotation in Conflict. The hashed form has two, so it is not the plain form of any other role
 * either (with `_<hash>` it would be: a tenant could name its role `<prefix>_<hash>`), and its hash
 * is long enough that no tenant can search out another role name with the same prefix and hash
 * (96 bits; with 8 digits, 2^32 tries, minutes on one machine, found a second name with the same twin).
 */
export const TWIN_SUFFIX = '-2';
const TWIN_HASH_DIGITS = 24;
export function twinRoleName(role: string): string {
  const plain = `${role}${TWIN_SUFFIX}`;
  if (plain.length <= 63) return plain;
  const suffix = `-${shortHash(role, TWIN_HASH_DIGITS)}${TWIN_SUFFIX}`;
  return role.slice(0, 63 - suffix.length) + suffix;
}

/**
 * The names earlier releases gave a second login role: `<role>_2` (hashed past 63 bytes with `_`),
 * and, for a role of 62 or 63 bytes, `<prefix>-<8 hex digits>-2`. A tenant that has one, marked as
 * its own, keeps it as its second login (an existing role cannot be taken by anyone else); no new
 * twin gets these names.
 */
export function legacyTwinRoleNames(role: string): string[] {
  const names = [suffixed(role, '_2')];
  if (`${role}${TWIN_SUFFIX}`.length > 63) {
    const suffix = `-${shortHash(role)}${TWIN_SUFFIX}`;
    names.push(role.slice(0, 63 - suffix.length) + suffix);
  }
  return names;
}

function suffixed(role: string, end: string): string {
  const plain = `${role}${end}`;
  if (plain.length <= 63) return plain;
  const suffix = `_${shortHash(role)}${end}`;
  return role.slice(0, 63 - suffix.length).replace(/_+$/, '') + suffix;
}

/**
 * A TenantGroup's login role has a PgBouncer alias of its own on the shared database:
 * `group.<role>`. Like a schema alias it holds a dot, so it is never a database's name, and its
 * prefix keeps it apart from every schema alias.
 */
export const GROUP_ALIAS_PREFIX = 'group.';
export const MAX_GROUP_ROLE = 63 - GROUP_ALIAS_PREFIX.length;

export function groupAlias(role: string): string {
  return `${GROUP_ALIAS_PREFIX}${role}`;
}

/** The group login role when the TenantGroup names none: `<namespace>_<name>_group`, hashed past MAX_GROUP_ROLE. */
export function groupRoleName(namespace: string, name: string): string {
  return deriveIdentifier(namespace, `${name}_group`, MAX_GROUP_ROLE);
}
