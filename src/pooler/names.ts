/**
 * Names that are syntax, not names, in the files the pooler and the server read. A tenant chooses its
 * database and role names, so one named like a keyword would change what a rule means: a database
 * `all` in an HBA rule matches every database, and a `[databases]` entry `pgbouncer` (PgBouncer's
 * console) stops PgBouncer reading the rest of the file while RELOAD still reports success.
 */

/** Keywords in the database or user column of pg_hba.conf and of PgBouncer's HBA file. */
export const HBA_KEYWORDS: ReadonlySet<string> = new Set(['all', 'sameuser', 'samerole', 'samegroup', 'replication']);

/** PgBouncer's admin console: no tenant alias, no tenant HBA rule may name it. */
export const CONSOLE_DATABASE = 'pgbouncer';

/** A PostgreSQL identifier as the operator creates them (and as the files carry them, unquoted). */
export const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * A tenant's second login role (api/naming's twinRoleName): an identifier and `-2`, or a prefix,
 * `-`, a 24-digit hash and `-2` (an 8-digit one as an earlier release named it); 63 bytes at most. A role name only: `-` ends no token in either
 * HBA file, and PgBouncer's userlist quotes it.
 */
export const TWIN_ROLE = /^(?:[a-z_][a-z0-9_]{0,60}|[a-z_][a-z0-9_]{0,35}-[0-9a-f]{24}|[a-z_][a-z0-9_]{0,51}-[0-9a-f]{8})-2$/;

export type NameUse = 'alias' | 'database' | 'role';

/** Why a name cannot appear in the pooler's or the server's files in that place; undefined when it can. */
/**
 * The alias of a schema tenant (api/naming's schemaAlias): `schema.` and its schema's name, 63 bytes
 * at most (PgBouncer's limit). The dot keeps it apart from every database name.
 */
export const SCHEMA_ALIAS = /^schema\.[a-z_][a-z0-9_]{0,55}$/;

/** The alias of a TenantGroup's login (api/naming's groupAlias): `group.` and the role's name. */
export const GROUP_ALIAS = /^group\.[a-z_][a-z0-9_]{0,56}$/;

export function nameProblem(use: NameUse, name: string): string | undefined {
  if (use === 'alias' && (SCHEMA_ALIAS.test(name) || GROUP_ALIAS.test(name))) return undefined;
  if (use === 'role' && TWIN_ROLE.test(name)) return undefined;
  if (!IDENT.test(name)) return `${use} ${JSON.stringify(name)} is not a lower case identifier of at most 63 bytes`;
  if (HBA_KEYWORDS.has(name)) return `${use} ${name} is an HBA keyword`;
  if (use === 'alias' && name === CONSOLE_DATABASE) return `alias ${name} is PgBouncer's admin console`;
  return undefined;
}
