/**
 * All SQL the TenantDatabase controller runs, as small named functions. DDL takes no parameters,
 * so every identifier goes through escapeIdentifier and every literal through escapeLiteral; names
 * are validated (api/naming, api/common) before they get here.
 */
import pg from 'pg';
import { LOGIN_CHECK_APP } from './connections.js';

const { escapeIdentifier: ident, escapeLiteral: lit } = pg;

export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** The ownership marker: a comment naming the TenantDatabase, parsed back by uid. */
export function ownerMarker(owner: { namespace: string; name: string; uid: string }): string {
  return `managed by tenantdb; tenantdatabase=${owner.namespace}/${owner.name}; uid=${owner.uid}`;
}

export function markerUid(comment: string | null | undefined): string | undefined {
  if (!comment || !comment.startsWith('managed by tenantdb;')) return undefined;
  return /uid=([0-9a-fA-F-]{1,64})/.exec(comment)?.[1];
}

export interface RoleRow {
  name: string;
  canLogin: boolean;
  connLimit: number;
  superuser: boolean;
  comment: string | null;
}

export async function findRole(db: Queryable, role: string): Promise<RoleRow | undefined> {
  const r = await db.query<{ rolname: string; rolcanlogin: boolean; rolconnlimit: number; rolsuper: boolean; comment: string | null }>(
    `SELECT rolname, rolcanlogin, rolconnlimit, rolsuper, shobj_description(oid, 'pg_authid') AS comment
       FROM pg_roles WHERE rolname = $1`,
    [role],
  );
  const row = r.rows[0];
  return row && { name: row.rolname, canLogin: row.rolcanlogin, connLimit: row.rolconnlimit, superuser: row.rolsuper, comment: row.comment };
}

export interface DatabaseRow {
  name: string;
  owner: string;
  connLimit: number;
  comment: string | null;
  /** Grants as (grantee role name or 'PUBLIC', privilege). */
  grants: { grantee: string; privilege: string }[];
}

export async function findDatabase(db: Queryable, name: string): Promise<DatabaseRow | undefined> {
  const r = await db.query<{ datname: string; owner: string; datconnlimit: number; comment: string | null; grants: { grantee: string; privilege: string }[] | null }>(
    `SELECT d.datname, pg_get_userbyid(d.datdba) AS owner, d.datconnlimit,
            shobj_description(d.oid, 'pg_database') AS comment,
            (SELECT json_agg(json_build_object(
                       'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                       'privilege', a.privilege_type))
               FROM aclexplode(d.datacl) a) AS grants
       FROM pg_database d WHERE d.datname = $1`,
    [name],
  );
  const row = r.rows[0];
  return row && { name: row.datname, owner: row.owner, connLimit: row.datconnlimit, comment: row.comment, grants: row.grants ?? [] };
}

/** Role creation, marker and the admin's membership in one transaction: a crash leaves all or nothing. */
export async function createRole(client: pg.ClientBase, role: string, verifier: string, connLimit: number, marker: string): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(
      `CREATE ROLE ${ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT ` +
        `CONNECTION LIMIT ${Number(connLimit)} PASSWORD ${lit(verifier)}`,
    );
    await client.query(`COMMENT ON ROLE ${ident(role)} IS ${lit(marker)}`);
    // CREATE DATABASE ... OWNER and acting as the owner need membership in the role.
    await client.query(`GRANT ${ident(role)} TO CURRENT_USER`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export async function ensureAdminMembership(db: Queryable, role: string): Promise<void> {
  const r = await db.query<{ member: boolean }>(`SELECT pg_has_role(CURRENT_USER, $1, 'MEMBER') AS member`, [role]);
  if (!r.rows[0]?.member) await db.query(`GRANT ${ident(role)} TO CURRENT_USER`);
}

export async function setRolePassword(db: Queryable, role: string, verifier: string): Promise<void> {
  await db.query(`ALTER ROLE ${ident(role)} PASSWORD ${lit(verifier)}`);
}

export async function setRoleLogin(db: Queryable, role: string, login: boolean, connLimit: number): Promise<void> {
  await db.query(`ALTER ROLE ${ident(role)} ${login ? 'LOGIN' : 'NOLOGIN'} CONNECTION LIMIT ${Number(connLimit)}`);
}

export async function disableLogin(db: Queryable, role: string): Promise<void> {
  await db.query(`ALTER ROLE ${ident(role)} NOLOGIN`);
}

export async function createDatabase(db: Queryable, name: string, owner: string, connLimit: number): Promise<void> {
  await db.query(`CREATE DATABASE ${ident(name)} OWNER ${ident(owner)} CONNECTION LIMIT ${Number(connLimit)}`);
}

export async function commentOnDatabase(db: Queryable, name: string, marker: string): Promise<void> {
  await db.query(`COMMENT ON DATABASE ${ident(name)} IS ${lit(marker)}`);
}

export async function setDatabaseOwner(db: Queryable, name: string, owner: string): Promise<void> {
  await db.query(`ALTER DATABASE ${ident(name)} OWNER TO ${ident(owner)}`);
}

export async function setDatabaseConnLimit(db: Queryable, name: string, connLimit: number): Promise<void> {
  await db.query(`ALTER DATABASE ${ident(name)} CONNECTION LIMIT ${Number(connLimit)}`);
}

export async function revokeAllFrom(db: Queryable, database: string, grantee: string): Promise<void> {
  const who = grantee === 'PUBLIC' ? 'PUBLIC' : ident(grantee);
  await db.query(`REVOKE ALL ON DATABASE ${ident(database)} FROM ${who}`);
}

export async function grantAllTo(db: Queryable, database: string, role: string): Promise<void> {
  await db.query(`GRANT ALL ON DATABASE ${ident(database)} TO ${ident(role)}`);
}

/** Names of roles that carry a tenantdb marker: other tenants, whose grants on this database are revoked. */
export async function managedRoleNames(db: Queryable): Promise<Set<string>> {
  const r = await db.query<{ rolname: string }>(
    `SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE 'managed by tenantdb;%'`,
  );
  return new Set(r.rows.map((x) => x.rolname));
}

export async function installedExtensions(db: Queryable): Promise<Set<string>> {
  const r = await db.query<{ extname: string }>('SELECT extname FROM pg_extension');
  return new Set(r.rows.map((x) => x.extname));
}

/** Creates the extension as the tenant role, so the tenant owns it (trusted extensions need no superuser). */
export async function createExtensionAs(client: pg.ClientBase, role: string, extension: string): Promise<void> {
  await client.query(`SET ROLE ${ident(role)}`);
  try {
    await client.query(`CREATE EXTENSION IF NOT EXISTS ${ident(extension)}`);
  } finally {
    await client.query('RESET ROLE');
  }
}

export async function terminateRoleSessions(db: Queryable, role: string): Promise<number> {
  const r = await db.query<{ n: string }>(
    `SELECT count(pg_terminate_backend(pid))::text AS n FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`,
    [role],
  );
  return Number(r.rows[0]?.n ?? 0);
}

export async function dropDatabase(db: Queryable, name: string): Promise<void> {
  await db.query(`DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`);
}

export async function dropRole(db: Queryable, role: string): Promise<void> {
  await db.query(`DROP ROLE IF EXISTS ${ident(role)}`);
}

/** Size and sessions of a tenant; the operator's own login checks are not the tenant's sessions. */
export interface UsageRow {
  sizeBytes: number;
  activeConnections: number;
}

export async function usage(db: Queryable, database: string, role: string): Promise<UsageRow> {
  const r = await db.query<{ size: string | null; conns: string }>(
    `SELECT pg_database_size(d.oid)::text AS size,
            (SELECT count(*) FROM pg_stat_activity
              WHERE usename = $2 AND application_name IS DISTINCT FROM $3)::text AS conns
       FROM pg_database d WHERE d.datname = $1`,
    [database, role, LOGIN_CHECK_APP],
  );
  const row = r.rows[0];
  return { sizeBytes: Number(row?.size ?? 0), activeConnections: Number(row?.conns ?? 0) };
}

export async function serverVersion(db: Queryable): Promise<string> {
  const r = await db.query<{ server_version: string }>('SHOW server_version');
  return r.rows[0]?.server_version ?? 'unknown';
}

export interface AdminRights {
  superuser: boolean;
  createdb: boolean;
  createrole: boolean;
}

export async function adminRights(db: Queryable): Promise<AdminRights> {
  const r = await db.query<{ rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean }>(
    'SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = CURRENT_USER',
  );
  const row = r.rows[0];
  return { superuser: !!row?.rolsuper, createdb: !!row?.rolcreatedb, createrole: !!row?.rolcreaterole };
}
