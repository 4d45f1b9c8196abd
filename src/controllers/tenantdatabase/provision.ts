/**
 * The steps that make the server match a TenantDatabase: role, databases, privileges, extensions.
 * Each looks first and changes only what differs; each change is reported back for the event trail.
 * Nothing is altered or dropped unless its ownership marker names this TenantDatabase.
 */
import type pg from 'pg';
import { SQLSTATE, describePgError, sqlState } from '../../pg/errors.js';
import * as sql from '../../pg/tenant-sql.js';
import { TerminalError } from '../../runtime/errors.js';

export interface Owner {
  namespace: string;
  name: string;
  uid: string;
}

export type Claim = { state: 'absent' } | { state: 'ours' } | { state: 'foreign'; message: string };

function foreignMessage(what: string, name: string, comment: string | null): string {
  const other = comment && /tenantdatabase=(\S+);/.exec(comment)?.[1];
  return other
    ? `${what} ${name} already belongs to TenantDatabase ${other}`
    : `${what} ${name} already exists and is not managed by tenantdb`;
}

export async function claimOfRole(db: sql.Queryable, role: string, uid: string): Promise<Claim> {
  const row = await sql.findRole(db, role);
  if (!row) return { state: 'absent' };
  if (sql.markerUid(row.comment) === uid) return { state: 'ours' };
  return { state: 'foreign', message: foreignMessage('role', role, row.comment) };
}

/**
 * A database is ours when its marker carries our uid, or when it has no marker and is owned by our
 * role: CREATE DATABASE cannot share a transaction with its COMMENT, so a crash between the two
 * leaves exactly that state.
 */
export async function claimOfDatabase(db: sql.Queryable, database: string, role: string, uid: string, roleIsOurs: boolean): Promise<Claim> {
  const row = await sql.findDatabase(db, database);
  if (!row) return { state: 'absent' };
  const marked = sql.markerUid(row.comment);
  if (marked === uid) return { state: 'ours' };
  if (!marked && !row.comment && roleIsOurs && row.owner === role) return { state: 'ours' };
  return { state: 'foreign', message: foreignMessage('database', database, row.comment) };
}

export interface RoleSpec {
  role: string;
  verifier: string;
  connectionLimit: number;
}

export async function ensureRole(pool: pg.Pool, owner: Owner, r: RoleSpec): Promise<string[]> {
  const changes: string[] = [];
  const row = await sql.findRole(pool, r.role);
  if (!row) {
    const client = await pool.connect();
    try {
      await sql.createRole(client, r.role, r.verifier, r.connectionLimit, sql.ownerMarker(owner));
    } catch (err) {
      const code = sqlState(err);
      if (code === SQLSTATE.duplicateObject || code === SQLSTATE.uniqueViolation) {
        throw new Error(`role ${r.role} was created concurrently; re-checking ownership`);
      }
      throw err;
    } finally {
      client.release();
    }
    return [`Created role ${r.role}`];
  }
  if (row.superuser) throw new TerminalError('Conflict', `role ${r.role} is a superuser; tenantdb will not manage it`);
  await sql.ensureAdminMembership(pool, r.role);
  if (!row.canLogin || row.connLimit !== r.connectionLimit) {
    await sql.setRoleLogin(pool, r.role, true, r.connectionLimit);
    changes.push(`Set login and connection limit ${r.connectionLimit} on role ${r.role}`);
  }
  return changes;
}

export interface DatabaseSpec {
  database: string;
  role: string;
  connectionLimit: number;
}

/** Creates the database if missing and repairs owner, marker, connection limit and privileges. */
export async function ensureDatabase(pool: pg.Pool, owner: Owner, d: DatabaseSpec): Promise<string[]> {
  const changes: string[] = [];
  let row = await sql.findDatabase(pool, d.database);
  if (!row) {
    try {
      await sql.createDatabase(pool, d.database, d.role, d.connectionLimit);
      changes.push(`Created database ${d.database}`);
    } catch (err) {
      const code = sqlState(err);
      if (code === SQLSTATE.duplicateDatabase || code === SQLSTATE.uniqueViolation) {
        throw new Error(`database ${d.database} was created concurrently; re-checking ownership`);
      }
      if (code === SQLSTATE.objectInUse) throw new Error(`CREATE DATABASE ${d.database} failed, the template is in use; will retry`);
      throw err;
    }
    row = await sql.findDatabase(pool, d.database);
    if (!row) throw new Error(`database ${d.database} vanished right after it was created`);
  }
  if (!sql.markerUid(row.comment)) {
    await sql.commentOnDatabase(pool, d.database, sql.ownerMarker(owner));
  }
  if (row.owner !== d.role) {
    await sql.setDatabaseOwner(pool, d.database, d.role);
    changes.push(`Set owner of database ${d.database} to ${d.role}`);
  }
  if (row.connLimit !== d.connectionLimit) {
    await sql.setDatabaseConnLimit(pool, d.database, d.connectionLimit);
    changes.push(`Set connection limit of database ${d.database} to ${d.connectionLimit}`);
  }
  changes.push(...(await ensureDatabasePrivileges(pool, row, d.role)));
  return changes;
}

/**
 * Only the tenant role may connect: PUBLIC holds nothing and no other tenant's role holds anything.
 * Grants to roles that tenantdb does not manage (a human's read-only role, say) are left alone.
 */
async function ensureDatabasePrivileges(pool: pg.Pool, row: sql.DatabaseRow, role: string): Promise<string[]> {
  const changes: string[] = [];
  const grantees = new Set(row.grants.map((g) => g.grantee));
  if (grantees.has('PUBLIC')) {
    await sql.revokeAllFrom(pool, row.name, 'PUBLIC');
    changes.push(`Revoked privileges of PUBLIC on database ${row.name}`);
  }
  const managed = await sql.managedRoleNames(pool);
  for (const g of [...grantees].sort()) {
    if (g !== 'PUBLIC' && g !== role && managed.has(g)) {
      await sql.revokeAllFrom(pool, row.name, g);
      changes.push(`Revoked privileges of role ${g} on database ${row.name}`);
    }
  }
  // The owner holds every privilege unless the ACL was edited to take one away.
  if (row.grants.length > 0) {
    const own = new Set(row.grants.filter((g) => g.grantee === role).map((g) => g.privilege));
    if (!['CONNECT', 'CREATE', 'TEMPORARY'].every((p) => own.has(p))) {
      await sql.grantAllTo(pool, row.name, role);
      changes.push(`Granted all privileges on database ${row.name} to ${role}`);
    }
  } else {
    // A NULL ACL means the defaults, which include CONNECT for PUBLIC: make it explicit.
    await sql.revokeAllFrom(pool, row.name, 'PUBLIC');
  }
  return changes;
}

export async function dropShadowIfOurs(pool: pg.Pool, shadow: string, role: string, uid: string): Promise<string[]> {
  const claim = await claimOfDatabase(pool, shadow, role, uid, true);
  if (claim.state !== 'ours') return [];
  await sql.dropDatabase(pool, shadow);
  return [`Dropped shadow database ${shadow}`];
}

export interface ExtensionOutcome {
  created: string[];
  failed: { name: string; message: string }[];
}

export async function ensureExtensions(client: pg.Client, role: string, wanted: readonly string[]): Promise<ExtensionOutcome> {
  const have = await sql.installedExtensions(client);
  const out: ExtensionOutcome = { created: [], failed: [] };
  for (const ext of wanted) {
    if (have.has(ext)) continue;
    try {
      await sql.createExtensionAs(client, role, ext);
      out.created.push(ext);
    } catch (err) {
      out.failed.push({ name: ext, message: describePgError(err) });
    }
  }
  return out;
}
