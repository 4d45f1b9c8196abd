/**
 * The steps that make the server match a TenantDatabase: role, databases, privileges, extensions.
 * Each looks first and changes only what differs; each change is reported back for the event trail.
 * Nothing is altered or dropped unless its ownership marker names this TenantDatabase.
 */
import type pg from 'pg';
import { holderRoleName } from '../../api/naming.js';
import * as ro from '../../pg/read-only.js';
import { SQLSTATE, describePgError, sqlState } from '../../pg/errors.js';
import * as sql from '../../pg/tenant-sql.js';
import { RetryableError, TerminalError } from '../../runtime/errors.js';

export interface Owner {
  namespace: string;
  name: string;
  uid: string;
  /** The PostgresServer, recorded in the markers so that retained objects still count against it. */
  server?: string | undefined;
}

/**
 * A database looked up right after this session's CREATE DATABASE was not there: in a recorded plan,
 * where statements are written down and not run, that is how far the plan can see.
 */
export class NotThereAfterCreate extends Error {
  constructor(readonly what: string) {
    super(`${what} vanished right after it was created`);
    this.name = 'NotThereAfterCreate';
  }
}

export type Claim =
  | { state: 'absent' }
  /** `unmarked`: recognised without a marker, which only markUnmarkedDatabase may then write. */
  | { state: 'ours'; unmarked?: boolean }
  | { state: 'foreign'; message: string };

function foreignMessage(what: string, name: string, comment: string | null): string {
  const other = comment && /tenantdatabase=(\S+);/.exec(comment)?.[1];
  return other
    ? `${what} ${name} already belongs to TenantDatabase ${other}`
    : `${what} ${name} already exists and is not managed by tenantdb`;
}

export function roleClaimOf(row: sql.RoleRow | undefined, role: string, uid: string): Claim {
  if (!row) return { state: 'absent' };
  if (sql.markerUid(row.comment) === uid) return { state: 'ours' };
  return { state: 'foreign', message: foreignMessage('role', role, row.comment) };
}

/**
 * A database is ours when its marker carries our uid, or, while our role exists, when it has no
 * comment and is either the admin's and closed to connections (how CREATE DATABASE leaves it: it
 * cannot share a transaction with its COMMENT, so a crash between the two leaves exactly that) or
 * owned by our role (how an earlier version left it). Such a recognition is only a reading: another
 * tenant naming the same database may be creating it right now, so nothing is done to it before
 * markIfUnmarked has made it ours.
 */
export async function claimOfDatabase(db: sql.Queryable, database: string, role: string, uid: string, roleIsOurs: boolean): Promise<Claim> {
  return databaseClaimOf(await sql.findDatabase(db, database), database, role, uid, roleIsOurs);
}

export function databaseClaimOf(row: sql.DatabaseRow | undefined, database: string, role: string, uid: string, roleIsOurs: boolean): Claim {
  if (!row) return { state: 'absent' };
  const marked = sql.markerUid(row.comment);
  if (marked === uid) return { state: 'ours' };
  if (!marked && !row.comment && roleIsOurs) {
    if ((row.ownedByAdmin && !row.allowConnections && row.connLimit === sql.creationTag(uid)) || row.owner === role)
      return { state: 'ours', unmarked: true };
    if (row.ownedByAdmin && !row.allowConnections)
      return {
        state: 'foreign',
        message: `database ${database} is being created for another TenantDatabase (or was left unmarked by a crash of a tenantdb older than its creation tags: drop it if it is empty)`,
      };
  }
  return { state: 'foreign', message: foreignMessage('database', database, row.comment) };
}

/**
 * Marks a database recognised without a marker (markUnmarkedDatabase) before anything is done to
 * it; false when it is no longer as recognised (marked, opened, or not the admin's with our tag).
 */
export async function markIfUnmarked(pool: sql.Queryable, database: string, role: string, owner: Owner): Promise<boolean> {
  try {
    await sql.markUnmarkedDatabase(pool, database, role, sql.ownerMarker(owner), sql.creationTag(owner.uid));
    return true;
  } catch (err) {
    if (sqlState(err) === sql.TOUCHED_SINCE_CREATE) return false;
    throw err;
  }
}

export interface RoleSpec {
  role: string;
  verifier: string;
  connectionLimit: number;
  /** False while the tenant is suspended (and for a login role not in use). */
  login: boolean;
  /** Until when its password is accepted (epoch ms, VALID UNTIL); Infinity or undefined: always. */
  validUntil?: number | undefined;
}

/**
 * `absent`: the caller looked in this same reconcile and found no such role, so it is created
 * without a second look (one made meanwhile fails the CREATE as a duplicate, handled below).
 */
export async function ensureRole(pool: pg.Pool, owner: Owner, r: RoleSpec, absent = false): Promise<string[]> {
  const changes: string[] = [];
  const row = absent ? undefined : await sql.findRole(pool, r.role);
  if (!row) {
    // On a session of its own: a failed CREATE leaves it usable (the implicit transaction is over)
    // and the look that tells whose role it is needs no new one.
    const client = await pool.connect();
    try {
      await sql.createRole(client, r.role, r.verifier, r.connectionLimit, sql.ownerMarker(owner), r.login);
    } catch (err) {
      const code = sqlState(err);
      if (code === SQLSTATE.duplicateObject || code === SQLSTATE.uniqueViolation) {
        // Someone else created it between our look and our CREATE: theirs, not a failure of ours.
        const again = await sql.findRole(client, r.role);
        if (again && sql.markerUid(again.comment) !== owner.uid)
          throw new TerminalError('Conflict', foreignMessage('role', r.role, again.comment));
        throw new RetryableError('Conflict', `role ${r.role} was created concurrently; looking again`);
      }
      throw err;
    } finally {
      client.release();
    }
    return [`Created role ${r.role}${r.login ? '' : ' with login off (suspended)'}`];
  }
  if (row.superuser) throw new TerminalError('Conflict', `role ${r.role} is a superuser; tenantdb will not manage it`);
  await sql.ensureAdminMembership(pool, r.role);
  if (row.canLogin !== r.login || row.connLimit !== r.connectionLimit) {
    await sql.setRoleLogin(pool, r.role, r.login, r.connectionLimit);
    if (row.canLogin !== r.login) changes.push(`${r.login ? 'Resumed' : 'Suspended'} login of role ${r.role}`);
    if (row.connLimit !== r.connectionLimit) changes.push(`Set connection limit ${r.connectionLimit} on role ${r.role}`);
  }
  const until = r.validUntil ?? Infinity;
  // Only where it matters: a role without login keeps whatever deadline it had.
  if (r.login && Math.abs(row.validUntil - until) >= 1000 && !(row.validUntil === Infinity && until === Infinity)) {
    await sql.setRoleValidUntil(pool, r.role, until);
    changes.push(
      Number.isFinite(until)
        ? `Set the password of role ${r.role} to expire at ${new Date(until).toISOString()}`
        : `Set the password of role ${r.role} to never expire`,
    );
  }
  return changes;
}

export interface TwinSpec extends RoleSpec {
  /** The tenant role the twin is a member of and acts as. */
  group: string;
}

/**
 * The tenant's second login role (overlapping rotation): created when missing (marked as the
 * tenant's, a member of the tenant role, acting as it), repaired when its membership or its
 * SET role was taken away, then its login, limit and deadline as for the tenant role.
 */
export async function ensureTwinRole(pool: pg.Pool, owner: Owner, t: TwinSpec): Promise<string[]> {
  const row = await sql.findRole(pool, t.role);
  if (!row) {
    // On a session of its own: a failed CREATE leaves it usable (the implicit transaction is over)
    // and the look that tells whose role it is needs no new one.
    const client = await pool.connect();
    try {
      await sql.createTwinRole(client, t.role, t.group, t.verifier, t.connectionLimit, sql.ownerMarker(owner), t.login);
    } catch (err) {
      const code = sqlState(err);
      if (code === SQLSTATE.duplicateObject || code === SQLSTATE.uniqueViolation) {
        const again = await sql.findRole(client, t.role);
        if (again && sql.markerUid(again.comment) !== owner.uid)
          throw new TerminalError('Conflict', foreignMessage('role', t.role, again.comment));
        throw new RetryableError('Conflict', `role ${t.role} was created concurrently; looking again`);
      }
      throw err;
    } finally {
      client.release();
    }
    const changes = [`Created role ${t.role}, a second login acting as ${t.group}`];
    if (t.validUntil !== undefined && Number.isFinite(t.validUntil)) changes.push(...(await ensureRole(pool, owner, t)));
    return changes;
  }
  if (sql.markerUid(row.comment) !== owner.uid)
    throw new TerminalError(
      'Conflict',
      `${foreignMessage('role', t.role, row.comment)}: it is the name of this tenant's second login role (passwordRotation.strategy Overlap); set another roleName`,
    );
  const changes: string[] = [];
  if (!(await sql.twinActsAs(pool, t.role, t.group))) {
    await sql.makeTwinActAs(pool, t.role, t.group);
    changes.push(`Repaired role ${t.role}: a member of ${t.group}, acting as it`);
  }
  return [...changes, ...(await ensureRole(pool, owner, t))];
}

export interface DatabaseSpec {
  database: string;
  role: string;
  connectionLimit: number;
  /** Read-only: the tenant role holds CONNECT and TEMPORARY, not CREATE. */
  readOnly?: boolean;
}

/** A session of the admin inside one database of the server (settings pinned, see pg/connections). */
export type InDatabase = <T>(database: string, fn: (db: sql.Queryable) => Promise<T>) => Promise<T>;

/**
 * Creates the database if missing and repairs marker, owner, settings, connection limit and
 * privileges. The operator owns the database and the tenant role holds CONNECT, CREATE and
 * TEMPORARY on it and owns its schema public: so the tenant can do all it needs, while settings
 * that apply to every session in the database (ALTER DATABASE ... SET, the operator's sessions
 * included) stay the operator's. A database an older version gave to the tenant role is taken
 * over and its settings reset.
 */
export async function ensureDatabase(
  pool: pg.Pool,
  inDatabase: InDatabase,
  owner: Owner,
  d: DatabaseSpec,
  opts: {
    absent?: boolean;
    recording?: boolean;
    /**
     * The server is PostgreSQL 15 or later (as its status says): schema public of a database just
     * made from template0 belongs to pg_database_owner, the admin, and is given without a look.
     */
    publicOwnedByDatabaseOwner?: boolean;
  } = {},
): Promise<string[]> {
  const changes: string[] = [];
  // (`absent`: as for ensureRole; a database made meanwhile fails the CREATE as a duplicate.)
  let row = opts.absent ? undefined : await sql.findDatabase(pool, d.database);
  let created = false;
  if (!row) {
    // Closed, and tagged as this tenant's until its marker is written (creationTag).
    const tag = sql.creationTag(owner.uid);
    try {
      await sql.createDatabase(pool, d.database, tag);
      created = true;
      changes.push(`Created database ${d.database}`);
    } catch (err) {
      const code = sqlState(err);
      if (code === SQLSTATE.duplicateDatabase || code === SQLSTATE.uniqueViolation) {
        // Someone else created it between our look and our CREATE (another tenant naming the same
        // database): a Conflict, said at once rather than as a failed reconcile.
        // Its creator writes its marker right after CREATE DATABASE: until then, look again soon.
        const again = await sql.findDatabase(pool, d.database);
        const marked = sql.markerUid(again?.comment);
        if (marked && marked !== owner.uid)
          throw new TerminalError('Conflict', foreignMessage('database', d.database, again?.comment ?? null));
        throw new RetryableError('Conflict', `database ${d.database} was created concurrently; looking again`);
      }
      throw err;
    }
    if (opts.recording) {
      // A plan's CREATE did not run: the look finds nothing, and the plan ends there.
      row = await sql.findDatabase(pool, d.database);
      if (!row) throw new NotThereAfterCreate(`database ${d.database}`);
    } else {
      // Just made by this session, so known without a look: the admin's, closed, no ACL, no
      // settings. Marked, closed to PUBLIC, given its limit and opened in one round trip.
      const marker = sql.ownerMarker(owner);
      try {
        await sql.openNewDatabase(pool, d.database, marker, tag, d.connectionLimit);
      } catch (err) {
        if (sqlState(err) !== sql.TOUCHED_SINCE_CREATE) throw err;
        // Changed by someone else since our CREATE: whose it is now, the next look says.
        throw new RetryableError('Conflict', `database ${d.database} was changed by someone else right after its creation; looking again`);
      }
      row = {
        name: d.database,
        owner: '',
        ownedByAdmin: true,
        allowConnections: true,
        connLimit: d.connectionLimit,
        comment: marker,
        grants: [],
        defaultAcl: false,
        settings: [],
      };
    }
  }
  const marked = sql.markerUid(row.comment);
  if (marked && marked !== owner.uid) {
    // Recognised as ours by the claim while it had no marker, marked by its creator since.
    throw new TerminalError('Conflict', foreignMessage('database', d.database, row.comment));
  }
  if (!marked) {
    // Recognised without a marker (its creator crashed before marking it, or an earlier version
    // made it): marked only if it still is as the claim saw it, in one transaction.
    if (!(await markIfUnmarked(pool, d.database, d.role, owner)))
      throw new RetryableError('Conflict', `database ${d.database} is being created or changed by someone else; looking again`);
  }
  if (!row.ownedByAdmin) {
    await sql.takeDatabaseOwnership(pool, d.database);
    changes.push(`Took ownership of database ${d.database} from ${row.owner}; the tenant keeps CONNECT, CREATE and TEMPORARY`);
    // As owner, the tenant could have changed anything up to this moment: look again.
    row = (await sql.findDatabase(pool, d.database)) ?? row;
  }
  if (row.settings.length > 0) {
    await sql.resetDatabaseSettings(pool, d.database);
    changes.push(`Reset ${row.settings.length} per-database setting(s) of ${d.database}`);
  }
  if (row.connLimit !== d.connectionLimit) {
    await sql.setDatabaseConnLimit(pool, d.database, d.connectionLimit);
    changes.push(`Set connection limit of database ${d.database} to ${d.connectionLimit}`);
  }
  changes.push(
    ...(await ensureDatabasePrivileges(pool, inDatabase, row, d.role, !!d.readOnly, created, created && !!opts.publicOwnedByDatabaseOwner)),
  );
  return changes;
}

/**
 * PUBLIC holds nothing and no other tenant's role holds anything; the tenant role holds CONNECT,
 * CREATE and TEMPORARY. Grants to roles that tenantdb does not manage (a human's read-only role,
 * say) are left alone. The tenant's grant comes last: until then it cannot connect, so the
 * operator's one session inside (handing over schema public) meets nothing of the tenant's.
 */
async function ensureDatabasePrivileges(
  pool: pg.Pool,
  inDatabase: InDatabase,
  row: sql.DatabaseRow,
  role: string,
  readOnly: boolean,
  /** Just made and opened by openNewDatabase, which granted the admin its own privileges. */
  created: boolean,
  /** Schema public is known to be the database owner's (see ensureDatabase): no look inside first. */
  publicIsOwners = false,
): Promise<string[]> {
  const changes: string[] = [];
  const grantees = new Set(row.grants.map((g) => g.grantee));
  if (row.defaultAcl || grantees.has('PUBLIC')) {
    // A NULL ACL means the defaults, which include CONNECT for PUBLIC.
    await sql.revokeAllFrom(pool, row.name, 'PUBLIC');
    if (!row.defaultAcl) changes.push(`Revoked privileges of PUBLIC on database ${row.name}`);
  }
  const managed = await sql.managedAmong(
    pool,
    [...grantees].filter((g) => g !== 'PUBLIC' && g !== role),
  );
  for (const g of [...grantees].sort()) {
    if (g !== 'PUBLIC' && g !== role && managed.has(g)) {
      await sql.revokeAllFrom(pool, row.name, g);
      changes.push(`Revoked privileges of role ${g} on database ${row.name}`);
    }
  }
  if (!row.allowConnections) await sql.allowConnections(pool, row.name);
  const own = new Set(row.grants.filter((g) => g.grantee === role).map((g) => g.privilege));
  if (readOnly) {
    // A read-only tenant may not create schemas; it keeps CONNECT and TEMPORARY (temporary tables
    // are its session's own, not data).
    if (own.has('CREATE')) {
      await sql.revokeCreateOnDatabase(pool, row.name, role);
      changes.push(`Revoked CREATE on database ${row.name} from ${role} (read-only)`);
    }
    if (!sql.SCHEMA_TENANT_DATABASE_PRIVILEGES.every((p) => own.has(p))) {
      await sql.grantSchemaTenantPrivileges(pool, row.name, role);
      changes.push(`Granted CONNECT and TEMPORARY on database ${row.name} to ${role}`);
    }
    return changes;
  }
  if (!sql.TENANT_DATABASE_PRIVILEGES.every((p) => own.has(p))) {
    // An edited ACL may have taken CONNECT from the owner too.
    if (!created) await sql.grantOwnPrivileges(pool, row.name);
    await inDatabase(row.name, async (db) => {
      // From template0, schema public belongs to pg_database_owner (PostgreSQL 15+), that is the
      // operator; before 15 to the bootstrap superuser, with CREATE for PUBLIC, which only this
      // tenant can connect to use. A schema the tenant already owns or replaced is left as it is.
      // (The first statement of a new session in a new database loads its catalog caches: a look
      // costs the server about as much as the hand-over itself.)
      const give =
        publicIsOwners ||
        (await sql.publicSchemaOwner(db).then(({ owner: schemaOwner, me }) => schemaOwner === 'pg_database_owner' || schemaOwner === me));
      await sql.handOverDatabase(db, row.name, role, give);
      if (give) changes.push(`Gave schema public of ${row.name} to ${role}`);
    });
    changes.push(`Granted CONNECT, CREATE and TEMPORARY on database ${row.name} to ${role}`);
  }
  return changes;
}

/**
 * Drops the shadow database a tenant no longer asks for. A name PostgreSQL would truncate is never
 * looked up: `<63-byte name>_shadow` truncates back to the tenant's own database.
 */
export async function dropShadowIfOurs(pool: pg.Pool, shadow: string, role: string, owner: Owner): Promise<string[]> {
  if (!sql.fitsIdentifier(shadow)) return [];
  const claim = await claimOfDatabase(pool, shadow, role, owner.uid, true);
  if (claim.state !== 'ours') return [];
  if (claim.unmarked && !(await markIfUnmarked(pool, shadow, role, owner))) return [];
  await sql.dropDatabase(pool, shadow);
  return [`Dropped shadow database ${shadow}`];
}

export interface ExtensionOutcome {
  created: string[];
  failed: { name: string; message: string }[];
}

/**
 * Runs in the tenant's own login session, never the admin's: creating an extension as the tenant
 * inside an admin session (SET ROLE) would let code the tenant planted call RESET ROLE and
 * continue as the admin.
 */
export async function ensureExtensions(tenantSession: sql.Queryable, wanted: readonly string[]): Promise<ExtensionOutcome> {
  const out: ExtensionOutcome = { created: [], failed: [] };
  if (wanted.length === 0) return out;
  const have = await sql.installedExtensions(tenantSession);
  for (const ext of wanted) {
    if (have.has(ext)) continue;
    try {
      await sql.createExtension(tenantSession, ext);
      out.created.push(ext);
    } catch (err) {
      out.failed.push({ name: ext, message: describePgError(err) });
    }
  }
  return out;
}

/**
 * Clears what other roles granted to a role about to be dropped, in every database that records a
 * dependency on it: another tenant granting it a privilege on one of its tables must not pin the
 * deletion. The operator owns tenant databases, so a tenant that fills its own database's
 * connection limit to keep the operator out gets the limit lifted for the moment it takes.
 * Returns what could not be cleared; DROP ROLE then says precisely what is left.
 */
export async function clearRoleDependencies(
  pool: pg.Pool,
  inDatabase: InDatabase,
  role: string,
  everyones: ReadonlySet<string> = new Set(['postgres']),
): Promise<string[]> {
  const problems: string[] = [];
  for (const d of await sql.databasesDependingOnRole(pool, role)) {
    if (d.name === '') {
      // dropOwned is a transaction: one client of the pool for all of it.
      const client = await pool.connect();
      try {
        await sql.dropOwned(client, role);
      } finally {
        client.release();
      }
      continue;
    }
    if (!d.allowConnections) {
      problems.push(`database ${d.name} accepts no connections`);
      continue;
    }
    // A tenant holding a lock on what it granted (an open transaction) would keep DROP OWNED
    // waiting: its sessions in that database are ended and DROP OWNED runs once more.
    const run = () =>
      inDatabase(d.name, async (db) => {
        try {
          await sql.dropOwned(db, role);
        } catch (err) {
          // Never in the admin or the shared database, where every tenant may have sessions: there it is reported.
          if (sqlState(err) !== SQLSTATE.lockNotAvailable || everyones.has(d.name)) throw err;
          await sql.terminateTenantSessionsIn(db, d.name);
          await sql.dropOwned(db, role);
        }
      });
    try {
      await run();
    } catch (err) {
      const row = sqlState(err) === SQLSTATE.tooManyConnections ? await sql.findDatabase(pool, d.name) : undefined;
      if (!row?.ownedByAdmin) {
        problems.push(`database ${d.name}: ${describePgError(err)}`);
        continue;
      }
      await sql.setDatabaseConnLimit(pool, d.name, -1);
      try {
        await run();
      } catch (again) {
        problems.push(`database ${d.name}: ${describePgError(again)}`);
      } finally {
        await sql.setDatabaseConnLimit(pool, d.name, row.connLimit);
      }
    }
  }
  return problems;
}

// Schema per tenant.

/** A schema is ours when our role (ours by its marker) owns it: only its owner could hand it on. */
export async function claimOfSchema(
  pool: pg.Pool,
  inDatabase: InDatabase,
  database: string,
  schema: string,
  role: string,
  roleIsOurs: boolean,
  uid: string,
): Promise<Claim> {
  if (!(await sql.findDatabase(pool, database))?.allowConnections) return { state: 'absent' };
  const row = await inDatabase(database, (db) => sql.findSchema(db, schema));
  if (!row) return { state: 'absent' };
  if (row.owner === role && roleIsOurs) return { state: 'ours' };
  // A read-only tenant's schema is held by its holder role, which carries the tenant's marker.
  if (row.owner === holderRoleName(role) && roleIsOurs && sql.markerUid((await sql.findRole(pool, row.owner))?.comment) === uid)
    return { state: 'ours' };
  return { state: 'foreign', message: `schema ${schema} of database ${database} already exists and belongs to role ${row.owner}` };
}

export interface SchemaSpec {
  /** The server's sharedDatabase. */
  database: string;
  schema: string;
  role: string;
  /** The PostgresServer, named in the shared database's marker. */
  server: string;
}

/**
 * The shared database (created when missing: the admin's, closed to PUBLIC, schema public closed
 * to PUBLIC), the tenant's schema owned by its role, nobody else's privileges on that schema, the
 * role's search_path in that database, and CONNECT and TEMPORARY for the role there, never CREATE
 * (which would let it make schemas, and so squat another tenant's name). CONNECT comes last.
 */
export async function ensureSchemaTenant(pool: pg.Pool, inDatabase: InDatabase, s: SchemaSpec): Promise<string[]> {
  const changes: string[] = [];
  let row = await sql.findDatabase(pool, s.database);
  let created = false;
  if (!row) {
    try {
      await sql.createDatabase(pool, s.database, -1);
      created = true;
      changes.push(`Created shared database ${s.database}`);
    } catch (err) {
      const code = sqlState(err);
      if (code !== SQLSTATE.duplicateDatabase && code !== SQLSTATE.uniqueViolation) throw err;
    }
    row = await sql.findDatabase(pool, s.database);
    if (!row) throw new NotThereAfterCreate(`shared database ${s.database}`);
  }
  if (sql.markerUid(row.comment))
    throw new TerminalError('Conflict', `sharedDatabase ${s.database} is a tenant's own database, not a shared one`);
  if (!row.ownedByAdmin)
    throw new TerminalError(
      'SharedDatabaseNotOwned',
      `shared database ${s.database} is owned by ${row.owner}, not by the operator's admin role; run ALTER DATABASE ${s.database} OWNER TO <admin role> (the owner decides who may connect and create schemas there)`,
    );
  if (!row.comment) await sql.commentOnDatabase(pool, s.database, sql.sharedDatabaseMarker(s.server));
  if (row.defaultAcl || row.grants.some((g) => g.grantee === 'PUBLIC')) {
    await sql.revokeAllFrom(pool, s.database, 'PUBLIC');
    if (!row.defaultAcl) changes.push(`Revoked privileges of PUBLIC on shared database ${s.database}`);
  }
  // CREATE on the database lets a role make schemas: no tenant role keeps it there.
  const creators = row.grants.filter((g) => g.privilege === 'CREATE' && g.grantee !== 'PUBLIC').map((g) => g.grantee);
  for (const g of await sql.managedAmong(pool, creators)) {
    await sql.revokeCreateOnDatabase(pool, s.database, g);
    changes.push(`Revoked CREATE on shared database ${s.database} from ${g}`);
  }
  if (!row.allowConnections) await sql.allowConnections(pool, s.database);

  await inDatabase(s.database, async (db) => {
    // Schema public: nobody but the admin creates there (the default before PostgreSQL 15), and in
    // a database the operator made, nobody else uses it at all.
    const pub = await sql.schemaPublicPrivileges(db, 'public');
    if (created && pub.length) await sql.revokeSchemaFrom(db, 'public', 'PUBLIC');
    else if (pub.includes('CREATE')) await db.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
    if (pub.includes('CREATE')) {
      // Before PostgreSQL 15 (and in databases upgraded from then) schema public belongs to the
      // bootstrap superuser, and the admin's REVOKE changes nothing (a warning, not an error).
      if ((await sql.schemaPublicPrivileges(db, 'public')).includes('CREATE'))
        throw new TerminalError(
          'SharedPublicSchemaOpen',
          `every role may create objects in schema public of shared database ${s.database}, and the admin role cannot change that (schema public belongs to another role): as a superuser, run REVOKE CREATE ON SCHEMA public FROM PUBLIC in ${s.database}; schema tenants wait until then`,
        );
      changes.push(`Revoked CREATE on schema public of ${s.database} from PUBLIC`);
    }
    const schema = await sql.findSchema(db, s.schema);
    if (!schema) {
      await sql.createSchema(db, s.schema, s.role);
      changes.push(`Created schema ${s.schema} in ${s.database}, owned by ${s.role}`);
    } else if (schema.owner !== s.role && schema.owner !== holderRoleName(s.role)) {
      // (Its holder was proven the tenant's by the claim.)
      throw new TerminalError('Conflict', `schema ${s.schema} of database ${s.database} belongs to role ${schema.owner}`);
    } else {
      // What the tenant granted others (PUBLIC, other tenants) is taken back: each schema is its own.
      // (A read-only tenant's own USAGE, granted by its holder, stays.)
      const grantees = [...new Set(schema.grants.map((g) => g.grantee))].filter((g) => g !== s.role);
      const managed = await sql.managedAmong(
        db,
        grantees.filter((g) => g !== 'PUBLIC'),
      );
      for (const g of grantees.sort()) {
        if (g !== 'PUBLIC' && !managed.has(g)) continue;
        await sql.revokeSchemaFrom(db, s.schema, g);
        changes.push(`Revoked privileges of ${g} on schema ${s.schema}`);
      }
    }
    if (!searchPathOnly(await sql.roleSettingsIn(db, s.role, s.database), s.schema)) {
      await sql.setRoleSearchPath(db, s.role, s.database, s.schema);
      changes.push(`Set search_path of role ${s.role} in ${s.database} to ${s.schema}`);
    }
  });

  const own = new Set(row.grants.filter((g) => g.grantee === s.role).map((g) => g.privilege));
  if (own.has('CREATE')) await sql.revokeCreateOnDatabase(pool, s.database, s.role);
  if (!sql.SCHEMA_TENANT_DATABASE_PRIVILEGES.every((p) => own.has(p))) {
    await sql.grantSchemaTenantPrivileges(pool, s.database, s.role);
    changes.push(`Granted CONNECT and TEMPORARY on shared database ${s.database} to ${s.role}`);
  }
  return changes;
}

/** The twin's search_path in the shared database, as its tenant role's (isolation Schema). */
export async function ensureTwinSearchPath(inDatabase: InDatabase, twin: string, database: string, schema: string): Promise<string[]> {
  return inDatabase(database, async (db) => {
    if (searchPathOnly(await sql.roleSettingsIn(db, twin, database), schema)) return [];
    await sql.setRoleSearchPath(db, twin, database, schema);
    return [`Set search_path of role ${twin} in ${database} to ${schema}`];
  });
}

/**
 * Whether a schema tenant's login role has, in the shared database, its schema as search_path and
 * nothing else but spec.settings (which ensureRoleSettings looks after).
 */
function searchPathOnly(settings: readonly string[], schema: string): boolean {
  const paths = [`search_path=${schema}`, sql.searchPathSetting(schema)];
  const rest = settings.filter((x) => !sql.isTenantSetting(x));
  return rest.length === 1 && paths.includes(rest[0] ?? '');
}

/**
 * spec.settings for one login role in its database: each setting the spec names is set to its value,
 * each it leaves out is reset; other settings are not touched. Only what differs is written.
 */
export async function ensureRoleSettings(
  db: sql.Queryable,
  role: string,
  database: string,
  wanted: Partial<Record<sql.TenantSetting, string | undefined>>,
): Promise<string[]> {
  const have = new Map(
    (await sql.roleSettingsIn(db, role, database)).map((x) => {
      const i = x.indexOf('=');
      return [x.slice(0, i).toLowerCase(), x.slice(i + 1)] as const;
    }),
  );
  const changes: string[] = [];
  for (const name of sql.TENANT_SETTINGS) {
    const want = wanted[name];
    if (want === have.get(name)) continue;
    try {
      await sql.setRoleSettingIn(db, role, database, name, want);
    } catch (err) {
      // A value PostgreSQL refuses (out of range, an unknown time zone) waits for a spec change.
      if (sqlState(err) === SQLSTATE.invalidParameterValue)
        throw new TerminalError('InvalidSetting', `settings.${name}: ${describePgError(err)}`);
      throw err;
    }
    changes.push(
      want === undefined ? `Reset ${name} of role ${role} in ${database}` : `Set ${name} to ${want} for role ${role} in ${database}`,
    );
  }
  return changes;
}

/**
 * The holder of a read-only tenant's objects (see holderRoleName): created when first needed, never
 * one that is not marked as this tenant's.
 */
export async function ensureHolderRole(pool: pg.Pool, owner: Owner, role: string): Promise<string[]> {
  const holder = holderRoleName(role);
  const row = await sql.findRole(pool, holder);
  if (row) {
    if (sql.markerUid(row.comment) !== owner.uid)
      throw new TerminalError(
        'Conflict',
        `${foreignMessage('role', holder, row.comment)}: it is the name of the role that holds this tenant's objects while it is read-only`,
      );
    if (row.canLogin) await sql.disableLogin(pool, holder);
    return [];
  }
  const client = await pool.connect();
  try {
    await ro.createHolderRole(client, holder, sql.ownerMarker(owner));
  } catch (err) {
    const code = sqlState(err);
    if (code === SQLSTATE.duplicateObject || code === SQLSTATE.uniqueViolation)
      throw new RetryableError('Conflict', `role ${holder} was created concurrently; looking again`);
    throw err;
  } finally {
    client.release();
  }
  return [`Created role ${holder} to hold the tenant's objects while it is read-only`];
}

/**
 * Read-only or read-write in one of the tenant's databases (the shared one for a schema tenant:
 * there the login owns only its schema and what is in it). Looks first and writes only what is out
 * of place. Returns what it changed, and, read-only, the schemas where PUBLIC (so the tenant) may
 * still create objects and the admin cannot stop it (schema public before PostgreSQL 15, owned by
 * the bootstrap superuser): a table created there would be the tenant's, and writable.
 */
export async function ensureAccessMode(
  inDatabase: InDatabase,
  database: string,
  login: string,
  twin: string,
  mode: ro.ReadOnlyMode | undefined,
): Promise<{ changes: string[]; open: string[] }> {
  const holder = holderRoleName(login);
  // The second login role of overlapping rotation acts as the first, but may act as itself too
  // (RESET ROLE): what it owns or was granted counts the same. Only the tenant's own twin
  // (credentials.ts loginRolesOf): a role of the name an earlier release gave twins may be another
  // tenant's, whose sessions and objects are not this tenant's to touch.
  const logins = [login, twin];
  return inDatabase(database, async (db) => {
    const state = await ro.readOnlyState(db, logins, holder, mode);
    const changes: string[] = [];
    if (!mode) {
      if (ro.inPlace(state, mode)) return { changes, open: [] };
      await ro.makeReadWrite(db, login, holder);
      return { changes: [`Returned ${state.holderOwns} object(s) in ${database} to role ${login}: it may write again`], open: [] };
    }
    if (!ro.inPlace(state, mode)) {
      // Their open sessions would hold locks and temporary objects the switch cannot pass: ended
      // (clients reconnect, under the new rights). One session (inDatabase) then runs the switch
      // in one transaction: all of it or nothing.
      const ended = await ro.endLoginSessions(db, logins);
      await ro.makeReadOnly(db, logins, holder, mode);
      changes.push(
        state.loginOwns
          ? `Made role ${login} read-only in ${database}${mode === 'ReadAndTruncate' ? ' (it may still truncate its tables)' : ''}: ${state.loginOwns} object(s) now held by ${holder}${ended ? `; ended ${ended} session(s)` : ''}`
          : `Repaired the read-only grants of role ${login} in ${database}${ended ? `; ended ${ended} session(s)` : ''}`,
      );
    }
    let open = (await sql.serverFacts(db)).publicCreate;
    if (open.length) {
      // Revoked where the admin can (a schema of the holder's); a schema of the bootstrap superuser only warns.
      for (const schema of open) await db.query(`REVOKE CREATE ON SCHEMA ${sql.id(schema)} FROM PUBLIC`);
      const still = (await sql.serverFacts(db)).publicCreate;
      for (const schema of open.filter((x) => !still.includes(x)))
        changes.push(`Revoked CREATE on schema ${schema} of ${database} from PUBLIC (read-only)`);
      open = still;
    }
    return { changes, open };
  });
}
