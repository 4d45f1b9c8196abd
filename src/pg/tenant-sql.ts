/**
 * All SQL the operator runs against a tenant's server, as small named functions.
 *
 * Three rules hold for every statement here, because a tenant is assumed hostile and controls
 * objects and settings in the databases it uses:
 * - Every catalog object is qualified with pg_catalog (and every admin session also pins
 *   search_path, see pg/connections.ts), so no name resolves to something a tenant created.
 * - DDL takes no parameters: identifiers go through `id` (escaped, and refused beyond 63 bytes,
 *   where PostgreSQL would silently truncate them into another object's name) and literals
 *   through escapeLiteral. Names are validated (api/naming, api/common) before they get here.
 * - Nothing runs tenant code: no statement calls a function, operator or view a tenant can define.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { LOGIN_CHECK_APP } from './connections.js';

const { escapeLiteral: lit } = pg;

/** PostgreSQL's NAMEDATALEN - 1. */
export const MAX_IDENTIFIER_BYTES = 63;

/** An escaped identifier; never one that PostgreSQL would truncate into a different name. */
export function id(name: string): string {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0 || bytes > MAX_IDENTIFIER_BYTES) {
    throw new RangeError(`identifier "${name.slice(0, 80)}" is ${bytes} bytes; PostgreSQL allows 1 to ${MAX_IDENTIFIER_BYTES}`);
  }
  return pg.escapeIdentifier(name);
}

export function fitsIdentifier(name: string): boolean {
  const bytes = Buffer.byteLength(name, 'utf8');
  return bytes > 0 && bytes <= MAX_IDENTIFIER_BYTES;
}

export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  /** How this session runs statements together, where it does not send them as one query (pg/recording). */
  [RUN_TOGETHER]?: (statements: readonly string[]) => Promise<void>;
}

export const RUN_TOGETHER = Symbol('runTogether');

/** What must not go into runTogether: transaction control (it would split the all-or-none) and what refuses a transaction. */
const NOT_TOGETHER =
  /^\s*(begin|commit|end|abort|rollback|savepoint|release|start\s+transaction|prepare\s+transaction|vacuum|(create|drop)\s+(database|tablespace)|alter\s+system|reindex\s+(database|system)|(create|drop)\s+index\s+concurrently)\b/i;

/**
 * Statements sent as one simple query (no parameters: node-postgres sends such a query over the
 * simple protocol, which alone takes several statements): one round trip instead of one each, and
 * none for BEGIN and COMMIT, and PostgreSQL runs them as one implicit transaction, all or none.
 * Each is built in this file from escaped names and literals, so joining them adds no statement of
 * anyone else's. A failing one is logged by the server with the whole text, as a failing single
 * statement was (a verifier is not a password).
 */
export async function runTogether(db: Queryable, statements: readonly string[]): Promise<void> {
  if (statements.length === 0) throw new Error('runTogether: no statements');
  for (const st of statements) {
    if (NOT_TOGETHER.test(st))
      throw new Error(`runTogether: not for a statement that controls or refuses a transaction: ${st.slice(0, 40)}`);
  }
  const own = db[RUN_TOGETHER];
  if (own) return own.call(db, statements);
  await db.query(statements.join(';\n'));
}

/** The ownership marker: a comment naming the TenantDatabase, parsed back by uid. */
export function ownerMarker(owner: { namespace: string; name: string; uid: string; server?: string | undefined }): string {
  return `managed by tenantdb; tenantdatabase=${owner.namespace}/${owner.name}; uid=${owner.uid}${owner.server ? `; server=${owner.server}` : ''}`;
}

/** The PostgresServer a marker names (markers written before it was recorded name none). */
export function markerServer(comment: string | null | undefined): string | undefined {
  if (!comment || !comment.startsWith('managed by tenantdb;')) return undefined;
  return /; server=([a-z0-9.-]{1,253})(;|$)/.exec(comment)?.[1];
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
  /** VALID UNTIL as epoch ms; Infinity when the password never expires. */
  validUntil: number;
}

interface RoleColumns {
  rolname: string;
  rolcanlogin: boolean;
  rolconnlimit: number;
  rolsuper: boolean;
  comment: string | null;
  until: string | null;
}

const ROLE_COLUMNS = `r.rolname, r.rolcanlogin, r.rolconnlimit, r.rolsuper, pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment,
            pg_catalog.date_part('epoch', r.rolvaliduntil)::pg_catalog.text AS until`;

function roleRowOf(row: RoleColumns): RoleRow {
  const until = row.until === null ? Infinity : Number(row.until) * 1000;
  return {
    name: row.rolname,
    canLogin: row.rolcanlogin,
    connLimit: row.rolconnlimit,
    superuser: row.rolsuper,
    comment: row.comment,
    validUntil: Number.isNaN(until) ? Infinity : until,
  };
}

export async function findRole(db: Queryable, role: string): Promise<RoleRow | undefined> {
  const r = await db.query<RoleColumns>(`SELECT ${ROLE_COLUMNS} FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1`, [
    role,
  ]);
  const row = r.rows[0];
  return row && roleRowOf(row);
}

export interface DatabaseRow {
  name: string;
  owner: string;
  /** Whether the session's own role (the admin) owns it. */
  ownedByAdmin: boolean;
  allowConnections: boolean;
  connLimit: number;
  comment: string | null;
  /** Grants as (grantee role name or 'PUBLIC', privilege); empty for a NULL (default) ACL. */
  grants: { grantee: string; privilege: string }[];
  /** Whether the ACL is NULL, which means the defaults (CONNECT and TEMPORARY for PUBLIC). */
  defaultAcl: boolean;
  /** Settings stored for every session in this database (ALTER DATABASE ... SET). */
  settings: string[];
}

/** The condition "database d is owned by `role`" (a role name, made a literal here), or by the session's user. */
const OWNED_BY = (role?: string) =>
  `d.datdba OPERATOR(pg_catalog.=) (SELECT u.oid FROM pg_catalog.pg_roles u WHERE u.rolname OPERATOR(pg_catalog.=) ${role === undefined ? 'CURRENT_USER' : lit(role)})`;

interface DatabaseColumns {
  datname: string;
  owner: string;
  mine: boolean;
  datallowconn: boolean;
  datconnlimit: number;
  comment: string | null;
  grants: { grantee: string; privilege: string }[] | null;
  nullacl: boolean;
  settings: string[] | null;
}

const DATABASE_COLUMNS = `d.datname, pg_catalog.pg_get_userbyid(d.datdba) AS owner,
            ${OWNED_BY()} AS mine,
            d.datallowconn, d.datconnlimit,
            pg_catalog.shobj_description(d.oid, 'pg_database') AS comment,
            (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                       'grantee', CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
                       'privilege', a.privilege_type))
               FROM pg_catalog.aclexplode(d.datacl) a) AS grants,
            d.datacl IS NULL AS nullacl,
            (SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
              WHERE s.setdatabase OPERATOR(pg_catalog.=) d.oid AND s.setrole OPERATOR(pg_catalog.=) 0) AS settings`;

function databaseRowOf(row: DatabaseColumns): DatabaseRow {
  return {
    name: row.datname,
    owner: row.owner,
    ownedByAdmin: row.mine,
    allowConnections: row.datallowconn,
    connLimit: row.datconnlimit,
    comment: row.comment,
    grants: row.grants ?? [],
    defaultAcl: row.nullacl,
    settings: row.settings ?? [],
  };
}

export async function findDatabase(db: Queryable, name: string): Promise<DatabaseRow | undefined> {
  const r = await db.query<DatabaseColumns>(
    `SELECT ${DATABASE_COLUMNS} FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) $1`,
    [name],
  );
  const row = r.rows[0];
  return row && databaseRowOf(row);
}

/**
 * A role and databases in one round trip (a new tenant's claims): each as findRole and findDatabase
 * read it, through JSON, whose values map back to the same types.
 */
export async function findRoleAndDatabases(
  db: Queryable,
  role: string,
  databases: readonly string[],
): Promise<{ role: RoleRow | undefined; databases: Map<string, DatabaseRow> }> {
  const r = await db.query<{ role: RoleColumns | null; databases: DatabaseColumns[] | null }>(
    `SELECT (SELECT pg_catalog.row_to_json(x) FROM (SELECT ${ROLE_COLUMNS}
               FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1) x) AS role,
            (SELECT pg_catalog.json_agg(x) FROM (SELECT ${DATABASE_COLUMNS}
               FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])) x) AS databases`,
    [role, databases],
  );
  const row = r.rows[0];
  return {
    role: row?.role ? roleRowOf(row.role) : undefined,
    databases: new Map((row?.databases ?? []).map((d) => [d.datname, databaseRowOf(d)])),
  };
}

/** Role creation, marker and the admin's membership in one transaction (one round trip): a crash leaves all or nothing. */
export async function createRole(
  db: Queryable,
  role: string,
  verifier: string,
  connLimit: number,
  marker: string,
  login = true,
): Promise<void> {
  await runTogether(db, [
    `CREATE ROLE ${id(role)} ${login ? 'LOGIN' : 'NOLOGIN'} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT ` +
      `CONNECTION LIMIT ${Number(connLimit)} PASSWORD ${lit(verifier)}`,
    `COMMENT ON ROLE ${id(role)} IS ${lit(marker)}`,
    // Handing the tenant its schema, taking over a database it owned and DROP OWNED need the
    // privileges of the role.
    `GRANT ${id(role)} TO CURRENT_USER`,
  ]);
}

export async function ensureAdminMembership(db: Queryable, role: string): Promise<void> {
  const r = await db.query<{ member: boolean }>(`SELECT pg_catalog.pg_has_role(CURRENT_USER, $1::text, 'MEMBER') AS member`, [role]);
  if (!r.rows[0]?.member) await db.query(`GRANT ${id(role)} TO CURRENT_USER`);
}

/** Until when the role's password is accepted (PostgreSQL refuses password logins after it); Infinity: always. */
export async function setRoleValidUntil(db: Queryable, role: string, until: number): Promise<void> {
  const at = Number.isFinite(until) ? new Date(until).toISOString() : 'infinity';
  await db.query(`ALTER ROLE ${id(role)} VALID UNTIL ${lit(at)}`);
}

/**
 * A tenant's second login role (overlapping rotation), in one transaction: created as a member of
 * the tenant role, acting as it from the start of every session (ALTER ROLE ... SET role), so what
 * it creates belongs to the tenant role; marked as the tenant's; the admin a member of it (to end
 * its sessions and drop it).
 */
export async function createTwinRole(
  db: Queryable,
  twin: string,
  group: string,
  verifier: string,
  connLimit: number,
  marker: string,
  login: boolean,
): Promise<void> {
  await runTogether(db, [
    `CREATE ROLE ${id(twin)} ${login ? 'LOGIN' : 'NOLOGIN'} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT ` +
      `CONNECTION LIMIT ${Number(connLimit)} PASSWORD ${lit(verifier)} IN ROLE ${id(group)}`,
    `COMMENT ON ROLE ${id(twin)} IS ${lit(marker)}`,
    `GRANT ${id(twin)} TO CURRENT_USER`,
    `ALTER ROLE ${id(twin)} SET role TO ${lit(group)}`,
  ]);
}

/** What an existing role holds that a tenant role must not (adoption of a role no tenantdb object created). */
export interface RoleRisks {
  superuser: boolean;
  /** Attributes past a tenant's: CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS. */
  attributes: string[];
  /** Roles it is a member of (their privileges would be the tenant's). */
  memberOf: string[];
  /** Roles that are members of it, the admin left out (they would reach the tenant's data). */
  members: string[];
  /** Databases it owns besides the one taken over (the tenant could drop them). */
  otherDatabases: string[];
  /** Databases (besides the one taken over) where it owns objects or holds privileges. */
  dependsIn: string[];
  /** Session defaults stored for it (ALTER ROLE ... SET), which a superuser may have set. */
  settings: number;
}

export async function roleRisks(db: Queryable, role: string, database: string): Promise<RoleRisks> {
  const r = await db.query<{
    rolsuper: boolean;
    createdb: boolean;
    createrole: boolean;
    repl: boolean;
    bypass: boolean;
    member_of: string[] | null;
    members: string[] | null;
    dbs: string[] | null;
    deps: string[] | null;
    settings: number;
  }>(
    `SELECT r.rolsuper, r.rolcreatedb AS createdb, r.rolcreaterole AS createrole, r.rolreplication AS repl, r.rolbypassrls AS bypass,
            (SELECT pg_catalog.array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_catalog.pg_auth_members m
               JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) m.roleid
              WHERE m.member OPERATOR(pg_catalog.=) r.oid) AS member_of,
            (SELECT pg_catalog.array_agg(u.rolname::text ORDER BY u.rolname) FROM pg_catalog.pg_auth_members m
               JOIN pg_catalog.pg_roles u ON u.oid OPERATOR(pg_catalog.=) m.member
              WHERE m.roleid OPERATOR(pg_catalog.=) r.oid AND u.rolname OPERATOR(pg_catalog.<>) CURRENT_USER) AS members,
            (SELECT pg_catalog.array_agg(d.datname::text ORDER BY d.datname) FROM pg_catalog.pg_database d
              WHERE d.datdba OPERATOR(pg_catalog.=) r.oid AND d.datname OPERATOR(pg_catalog.<>) $2) AS dbs,
            (SELECT pg_catalog.array_agg(DISTINCT d.datname::text) FROM pg_catalog.pg_shdepend s
               JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid
              WHERE s.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
                AND s.refobjid OPERATOR(pg_catalog.=) r.oid AND d.datname OPERATOR(pg_catalog.<>) $2) AS deps,
            (SELECT pg_catalog.count(*)::int FROM pg_catalog.pg_db_role_setting s WHERE s.setrole OPERATOR(pg_catalog.=) r.oid) AS settings
       FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1`,
    [role, database],
  );
  const row = r.rows[0];
  if (!row) return { superuser: false, attributes: [], memberOf: [], members: [], otherDatabases: [], dependsIn: [], settings: 0 };
  const attributes = [
    ...(row.createdb ? ['CREATEDB'] : []),
    ...(row.createrole ? ['CREATEROLE'] : []),
    ...(row.repl ? ['REPLICATION'] : []),
    ...(row.bypass ? ['BYPASSRLS'] : []),
  ];
  return {
    superuser: row.rolsuper,
    attributes,
    memberOf: row.member_of ?? [],
    members: row.members ?? [],
    otherDatabases: row.dbs ?? [],
    dependsIn: (row.deps ?? []).sort(),
    settings: Number(row.settings),
  };
}

/** A taken-over role, in one transaction: a tenant's attributes only, its password, the admin a member of it, its marker. */
export async function markAdoptedRole(
  client: pg.ClientBase,
  role: string,
  verifier: string,
  marker: string,
  strip: readonly string[],
): Promise<void> {
  // Only what it has: taking away REPLICATION or BYPASSRLS, even absent ones, needs a superuser.
  const off = strip
    .filter((a) => ['CREATEDB', 'CREATEROLE', 'REPLICATION', 'BYPASSRLS'].includes(a))
    .map((a) => ` NO${a}`)
    .join('');
  await client.query('BEGIN');
  try {
    await client.query(`ALTER ROLE ${id(role)}${off} INHERIT PASSWORD ${lit(verifier)}`);
    await ensureAdminMembership(client, role);
    await client.query(`COMMENT ON ROLE ${id(role)} IS ${lit(marker)}`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export async function commentOnRole(db: Queryable, role: string, marker: string): Promise<void> {
  await db.query(`COMMENT ON ROLE ${id(role)} IS ${lit(marker)}`);
}

/** Whether the twin is a member of the tenant role and its sessions start as it. */
export async function twinActsAs(db: Queryable, twin: string, group: string): Promise<boolean> {
  const r = await db.query<{ member: boolean; config: string[] | null }>(
    `SELECT pg_catalog.pg_has_role($1::text, $2::text, 'MEMBER') AS member,
            (SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
              WHERE s.setrole OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1)
                AND s.setdatabase OPERATOR(pg_catalog.=) 0) AS config`,
    [twin, group],
  );
  const row = r.rows[0];
  return !!row?.member && (row.config ?? []).includes(`role=${group}`);
}

export async function makeTwinActAs(db: Queryable, twin: string, group: string): Promise<void> {
  await db.query(`GRANT ${id(group)} TO ${id(twin)}`);
  await db.query(`ALTER ROLE ${id(twin)} SET role TO ${lit(group)}`);
}

export async function setRolePassword(db: Queryable, role: string, verifier: string): Promise<void> {
  await db.query(`ALTER ROLE ${id(role)} PASSWORD ${lit(verifier)}`);
}

export async function setRoleLogin(db: Queryable, role: string, login: boolean, connLimit: number): Promise<void> {
  await db.query(`ALTER ROLE ${id(role)} ${login ? 'LOGIN' : 'NOLOGIN'} CONNECTION LIMIT ${Number(connLimit)}`);
}

export async function disableLogin(db: Queryable, role: string): Promise<void> {
  await db.query(`ALTER ROLE ${id(role)} NOLOGIN`);
}

/**
 * Creates a database from template0: template1 may hold objects any role could put there (PUBLIC
 * can create in its public schema before PostgreSQL 15), and a session anyone holds open on
 * template1 would make CREATE DATABASE fail; template0 accepts no connections at all. The admin
 * owns it from the first moment, and it accepts no connections until the operator has marked it
 * and set its privileges: if the operator dies in between, that unmarked, closed database of the
 * admin's, named as the tenant's, is recognised as its own (provision.ts).
 */
export async function createDatabase(db: Queryable, name: string, connLimit: number): Promise<void> {
  await db.query(`CREATE DATABASE ${id(name)} TEMPLATE template0 ALLOW_CONNECTIONS false CONNECTION LIMIT ${Number(connLimit)}`);
}

export async function commentOnDatabase(db: Queryable, name: string, marker: string): Promise<void> {
  await db.query(`COMMENT ON DATABASE ${id(name)} IS ${lit(marker)}`);
}

/** The operator owns every tenant database, so that database-level settings stay its own. */
export async function takeDatabaseOwnership(db: Queryable, name: string): Promise<void> {
  await db.query(`ALTER DATABASE ${id(name)} OWNER TO CURRENT_USER`);
}

export async function resetDatabaseSettings(db: Queryable, name: string): Promise<void> {
  await db.query(`ALTER DATABASE ${id(name)} RESET ALL`);
}

export async function allowConnections(db: Queryable, name: string): Promise<void> {
  await db.query(`ALTER DATABASE ${id(name)} WITH ALLOW_CONNECTIONS true`);
}

export async function setDatabaseConnLimit(db: Queryable, name: string, connLimit: number): Promise<void> {
  await db.query(`ALTER DATABASE ${id(name)} CONNECTION LIMIT ${Number(connLimit)}`);
}

export async function revokeAllFrom(db: Queryable, database: string, grantee: string): Promise<void> {
  const who = grantee === 'PUBLIC' ? 'PUBLIC' : id(grantee);
  await db.query(`REVOKE ALL ON DATABASE ${id(database)} FROM ${who}`);
}

/** What the tenant role holds on its database: everything but ownership. */
export const TENANT_DATABASE_PRIVILEGES = ['CONNECT', 'CREATE', 'TEMPORARY'] as const;

export async function grantOwnPrivileges(db: Queryable, database: string): Promise<void> {
  await db.query(`GRANT CONNECT, CREATE, TEMPORARY ON DATABASE ${id(database)} TO CURRENT_USER`);
}

/** The owner of schema public in the session's database (undefined when there is none), and the session's own role. */
export async function publicSchemaOwner(db: Queryable): Promise<{ owner: string | undefined; me: string }> {
  const r = await db.query<{ owner: string | null; me: string }>(
    `SELECT (SELECT pg_catalog.pg_get_userbyid(n.nspowner) FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'public') AS owner,
            CURRENT_USER AS me`,
  );
  return { owner: r.rows[0]?.owner ?? undefined, me: r.rows[0]?.me ?? '' };
}

/** What openNewDatabase and markUnmarkedDatabase fail with when the database is not as they must find it. */
export const TOUCHED_SINCE_CREATE = '22012';

/**
 * The connection limit a tenant's database is created with, closed to connections, until its
 * opening sets the real one: a number from the TenantDatabase's uid (1 to 2^31 - 2), so that an
 * unmarked database a crash left between CREATE DATABASE and its marker is recognised by its
 * creator alone, never by another tenant naming the same database while it is being made. Only
 * the database's owner (the admin) can change it; another uid gives the same number once in 2^31.
 */
export function creationTag(uid: string): number {
  return 1 + (createHash('sha256').update(uid).digest().readUInt32BE(0) % 2147483646);
}

/** Plain SQL has no assertion: a division by zero (TOUCHED_SINCE_CREATE) aborts the query where `cond` is false. */
function assert(cond: string, from = ''): string {
  return `SELECT 1 OPERATOR(pg_catalog./) (CASE WHEN ${cond} THEN 1 ELSE 0 END)${from}`;
}

const DATABASE_BY_NAME = (name: string) => ` FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) ${lit(name)}`;
const CREATED_UNMARKED = (tag: number) =>
  `pg_catalog.shobj_description(d.oid, 'pg_database') IS NULL AND NOT d.datallowconn AND d.datconnlimit OPERATOR(pg_catalog.=) ${Number(tag)}
     AND ${OWNED_BY()}`;

/**
 * What a database createDatabase just made (with `tag`, creationTag) gets before anyone may
 * connect to it: its marker, no privileges for PUBLIC, the admin's own (CONNECT first of all: an
 * owner holds it through the ACL too), its connection limit, and connections allowed. One round
 * trip, all or none: if it fails, the database stays as CREATE DATABASE left it, unmarked, closed
 * and tagged, which its creator's next reconcile recognises (provision.ts). The tenant role is
 * granted nothing here: see handOverDatabase. First, a check that it is still so.
 */
export async function openNewDatabase(db: Queryable, name: string, marker: string, tag: number, connLimit: number): Promise<void> {
  await runTogether(db, [
    assert(CREATED_UNMARKED(tag), DATABASE_BY_NAME(name)),
    `COMMENT ON DATABASE ${id(name)} IS ${lit(marker)}`,
    `REVOKE ALL ON DATABASE ${id(name)} FROM PUBLIC`,
    `GRANT CONNECT, CREATE, TEMPORARY ON DATABASE ${id(name)} TO CURRENT_USER`,
    `ALTER DATABASE ${id(name)} WITH ALLOW_CONNECTIONS true CONNECTION LIMIT ${Number(connLimit)}`,
  ]);
}

/**
 * Marks a database that has no comment as the tenant's (`role`, `tag`), only if it still is what a
 * crash of its creator leaves (the admin's, closed, with the tenant's creationTag) or what an
 * earlier version left (owned by `role`): one transaction. Fails with TOUCHED_SINCE_CREATE
 * otherwise.
 */
export async function markUnmarkedDatabase(db: Queryable, name: string, role: string, marker: string, tag: number): Promise<void> {
  await runTogether(db, [
    assert(
      `(${CREATED_UNMARKED(tag)})
         OR (pg_catalog.shobj_description(d.oid, 'pg_database') IS NULL
             AND ${OWNED_BY(role)})`,
      DATABASE_BY_NAME(name),
    ),
    `COMMENT ON DATABASE ${id(name)} IS ${lit(marker)}`,
  ]);
}

/**
 * From a session inside the tenant's database (the admin's only one there): schema public to the
 * tenant role where `giveSchema`, then the tenant's CONNECT, CREATE and TEMPORARY on the database,
 * together, so the tenant cannot connect before its schema is its own. GRANT ... ON DATABASE acts
 * on the cluster's shared catalog, the same from any database.
 */
export async function handOverDatabase(db: Queryable, database: string, role: string, giveSchema: boolean): Promise<void> {
  const grant = `GRANT CONNECT, CREATE, TEMPORARY ON DATABASE ${id(database)} TO ${id(role)}`;
  if (!giveSchema) return void (await db.query(grant));
  await runTogether(db, [`ALTER SCHEMA public OWNER TO ${id(role)}`, grant]);
}

export interface ManagedObject {
  kind: 'role' | 'database';
  name: string;
  uid: string;
  comment: string;
}

/**
 * The markers of roles and databases, joined with pg_shdescription (world-readable) rather than
 * looked up one object at a time through shobj_description: one pass over each catalog.
 */
const MARKED_ROLES = `pg_catalog.pg_roles r JOIN pg_catalog.pg_shdescription c
        ON c.objoid OPERATOR(pg_catalog.=) r.oid AND c.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND c.description OPERATOR(pg_catalog.~~) 'managed by tenantdb;%'`;
const MARKED_DATABASES = `pg_catalog.pg_database d JOIN pg_catalog.pg_shdescription c
        ON c.objoid OPERATOR(pg_catalog.=) d.oid AND c.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_database'::pg_catalog.regclass
       AND c.description OPERATOR(pg_catalog.~~) 'managed by tenantdb;%'`;

function managedOf(rows: { kind: string; name: string; comment: string | null }[]): ManagedObject[] {
  const out: ManagedObject[] = [];
  for (const row of rows) {
    const uid = markerUid(row.comment);
    if (uid && row.comment && (row.kind === 'role' || row.kind === 'database'))
      out.push({ kind: row.kind, name: row.name, uid, comment: row.comment });
  }
  return out;
}

/**
 * Every role and database carrying a tenantdb marker, in one catalog read; with `uid`, only those
 * whose marker names that TenantDatabase (the marker's text narrows it on the server; markerUid
 * confirms each).
 */
export async function managedObjects(db: Queryable, uid?: string): Promise<ManagedObject[]> {
  const only = uid === undefined ? '' : ' AND pg_catalog.strpos(c.description, $1) OPERATOR(pg_catalog.>) 0';
  const r = await db.query<{ kind: 'role' | 'database'; name: string; comment: string }>(
    `SELECT 'role' AS kind, r.rolname AS name, c.description AS comment FROM ${MARKED_ROLES}${only}
     UNION ALL
     SELECT 'database', d.datname, c.description FROM ${MARKED_DATABASES}${only}`,
    uid === undefined ? [] : [`; uid=${uid}`],
  );
  return managedOf(r.rows).filter((o) => uid === undefined || o.uid === uid);
}

/** Marked objects by the TenantDatabase uid their marker names: its roles and its databases. */
export function markersByUid(objects: readonly ManagedObject[]): Map<string, { roles: Set<string>; databases: Set<string> }> {
  const out = new Map<string, { roles: Set<string>; databases: Set<string> }>();
  for (const o of objects) {
    let e = out.get(o.uid);
    if (!e) out.set(o.uid, (e = { roles: new Set(), databases: new Set() }));
    (o.kind === 'role' ? e.roles : e.databases).add(o.name);
  }
  return out;
}

export interface CatalogSnapshot {
  roles: Map<string, { canLogin: boolean; connLimit: number }>;
  databases: Map<string, { connLimit: number; ownedByAdmin: boolean; allowConn: boolean; sizeBytes: number | undefined }>;
  /** Sessions per role, the operator's own login checks left out. */
  sessions: Map<string, number>;
  /** The schemas of marked roles in the server's sharedDatabase: owner, and size when it could be read. */
  schemas?: Map<string, { owner: string; sizeBytes: number | undefined }> | undefined;
  /** The size of template0, which a database just made from it has too (read with the others). */
  templateSizeBytes?: number | undefined;
}

/**
 * What a server's re-check needs of every tenant on it, in two queries for all of them: every
 * marked role and database with its marker and attributes (and sizes), then sessions per role. A
 * tenant whose objects look as they should here is not visited one by one. Sizes walk every file of
 * every database (pg_database_size stats each one): without `withSizes` they are left undefined.
 */
export async function serverCatalog(db: Queryable, withSizes = true): Promise<{ managed: ManagedObject[]; snapshot: CatalogSnapshot }> {
  const size = `CASE WHEN $1 AND pg_catalog.has_database_privilege(d.oid, 'CONNECT') THEN pg_catalog.pg_database_size(d.oid)::pg_catalog.text END`;
  const r = await db.query<{
    kind: 'role' | 'database' | 'template';
    name: string;
    comment: string | null;
    login: boolean | null;
    lim: number | null;
    allow: boolean | null;
    mine: boolean | null;
    size: string | null;
  }>(
    `SELECT 'role' AS kind, r.rolname AS name, c.description AS comment, r.rolcanlogin AS login, r.rolconnlimit AS lim,
            NULL::pg_catalog.bool AS allow, NULL::pg_catalog.bool AS mine, NULL::pg_catalog.text AS size
       FROM ${MARKED_ROLES}
     UNION ALL
     SELECT 'database', d.datname, c.description, NULL, d.datconnlimit, d.datallowconn,
            ${OWNED_BY()},
            ${size}
       FROM ${MARKED_DATABASES}
     UNION ALL
     SELECT 'template', d.datname, NULL, NULL, NULL, NULL, NULL, ${size}
       FROM pg_catalog.pg_database d WHERE $1 AND d.datname OPERATOR(pg_catalog.=) 'template0'`,
    [withSizes],
  );
  const sessions = await db.query<{ name: string; n: string }>(
    `SELECT a.usename AS name, pg_catalog.count(*)::text AS n FROM pg_catalog.pg_stat_activity a
      WHERE a.usename IS NOT NULL AND a.application_name IS DISTINCT FROM $1 GROUP BY a.usename`,
    [LOGIN_CHECK_APP],
  );
  const sizeOf = (v: string | null) => (v === null ? undefined : Number(v));
  const snapshot: CatalogSnapshot = { roles: new Map(), databases: new Map(), sessions: new Map() };
  for (const row of r.rows) {
    if (row.kind === 'role') snapshot.roles.set(row.name, { canLogin: !!row.login, connLimit: row.lim ?? -1 });
    else if (row.kind === 'database')
      snapshot.databases.set(row.name, {
        connLimit: row.lim ?? -1,
        ownedByAdmin: !!row.mine,
        allowConn: !!row.allow,
        sizeBytes: sizeOf(row.size),
      });
    else snapshot.templateSizeBytes = sizeOf(row.size);
  }
  for (const s of sessions.rows) snapshot.sessions.set(s.name, Number(s.n));
  return { managed: managedOf(r.rows), snapshot };
}

/** Which of these roles carry a tenantdb marker (one lookup by name, not a scan of every role). */
export async function managedAmong(db: Queryable, roles: readonly string[]): Promise<Set<string>> {
  if (roles.length === 0) return new Set();
  const r = await db.query<{ name: string }>(
    `SELECT r.rolname AS name FROM pg_catalog.pg_roles r
      WHERE r.rolname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
        AND pg_catalog.shobj_description(r.oid, 'pg_authid') OPERATOR(pg_catalog.~~) 'managed by tenantdb;%'`,
    [roles],
  );
  return new Set(r.rows.map((x) => x.name));
}

export async function installedExtensions(db: Queryable): Promise<Set<string>> {
  const r = await db.query<{ extname: string }>('SELECT e.extname FROM pg_catalog.pg_extension e');
  return new Set(r.rows.map((x) => x.extname));
}

/** In the tenant's own session: the tenant creates and owns it (trusted extensions need no superuser). */
export async function createExtension(db: Queryable, extension: string): Promise<void> {
  await db.query(`CREATE EXTENSION IF NOT EXISTS ${id(extension)}`);
}

export async function terminateRoleSessions(db: Queryable, role: string): Promise<number> {
  const r = await db.query<{ n: string }>(
    `SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(a.pid))::text AS n FROM pg_catalog.pg_stat_activity a
      WHERE a.usename OPERATOR(pg_catalog.=) $1 AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()`,
    [role],
  );
  return Number(r.rows[0]?.n ?? 0);
}

export async function dropDatabase(db: Queryable, name: string): Promise<void> {
  await db.query(`DROP DATABASE IF EXISTS ${id(name)} WITH (FORCE)`);
}

/** The comment suffix of a role whose TenantDatabase is gone but that could not be dropped yet. */
export const TOMBSTONE = '; deleted';

/**
 * Renames a role that cannot be dropped yet to a name of its own, marked as deleted: the
 * TenantDatabase can go and its name be used again, and the server's re-check drops the role once
 * nothing depends on it any more.
 */
export async function tombstoneRole(db: Queryable, role: string, tomb: string, marker: string): Promise<void> {
  await db.query(`ALTER ROLE ${id(role)} NOLOGIN`);
  await db.query(`ALTER ROLE ${id(role)} RENAME TO ${id(tomb)}`);
  await db.query(`COMMENT ON ROLE ${id(tomb)} IS ${lit(marker + TOMBSTONE)}`);
}

export async function dropRole(db: Queryable, role: string): Promise<void> {
  await db.query(`DROP ROLE IF EXISTS ${id(role)}`);
}

/**
 * Databases where something depends on the role: objects it owns, privileges others granted it,
 * default privileges naming it. Each must be cleared (DROP OWNED, in that database) before DROP
 * ROLE can succeed; another tenant can create such a dependency on purpose. '' stands for the
 * shared objects (databases, tablespaces), which any database's DROP OWNED clears.
 */
export async function databasesDependingOnRole(db: Queryable, role: string): Promise<{ name: string; allowConnections: boolean }[]> {
  const r = await db.query<{ datname: string | null; datallowconn: boolean | null }>(
    `SELECT DISTINCT d.datname, d.datallowconn
       FROM pg_catalog.pg_shdepend s
       LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid
      WHERE s.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
        AND s.refobjid OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1)
        AND s.deptype OPERATOR(pg_catalog.<>) 'p'`,
    [role],
  );
  return r.rows
    .map((x) => ({ name: x.datname ?? '', allowConnections: x.datallowconn ?? true }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
}

/**
 * Drops what the role owns in the session's database and revokes everything granted to it there,
 * waiting at most `lockTimeout` for the locks it needs. A transaction: `db` must be one session (a
 * client), never a pool.
 */
export async function dropOwned(db: Queryable, role: string, lockTimeout = '5s'): Promise<void> {
  await db.query('BEGIN');
  try {
    await db.query(`SET LOCAL lock_timeout = ${lit(lockTimeout)}`);
    await db.query(`DROP OWNED BY ${id(role)}`);
    await db.query('COMMIT');
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Ends the sessions of tenant roles (marked ones) in a database; resolves to how many. */
export async function terminateTenantSessionsIn(db: Queryable, database: string): Promise<number> {
  const r = await db.query<{ n: string }>(
    `SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(a.pid))::text AS n
       FROM pg_catalog.pg_stat_activity a JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.usesysid
      WHERE a.datname OPERATOR(pg_catalog.=) $1 AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
        AND pg_catalog.shobj_description(r.oid, 'pg_authid') OPERATOR(pg_catalog.~~) 'managed by tenantdb;%'`,
    [database],
  );
  return Number(r.rows[0]?.n ?? 0);
}

/**
 * Ends the sessions in a database whose role no longer exists (dropped by hand while they ran): a
 * pooler reusing such a server connection for the re-created role gets "invalid role OID" on every
 * query until the connection is gone.
 */
export async function terminateOrphanedSessionsIn(db: Queryable, database: string): Promise<number> {
  const r = await db.query<{ n: string }>(
    `SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(a.pid))::text AS n
       FROM pg_catalog.pg_stat_activity a
      WHERE a.datname OPERATOR(pg_catalog.=) $1 AND a.usesysid IS NOT NULL AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) a.usesysid)`,
    [database],
  );
  return Number(r.rows[0]?.n ?? 0);
}

/** Size and sessions of a tenant; the operator's own login checks are not the tenant's sessions. */
export interface UsageRow {
  sizeBytes: number;
  activeConnections: number;
}

export async function usage(db: Queryable, database: string, role: string): Promise<UsageRow> {
  const r = await db.query<{ size: string | null; conns: string }>(
    `SELECT pg_catalog.pg_database_size(d.oid)::text AS size,
            (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a
              WHERE a.usename OPERATOR(pg_catalog.=) $2 AND a.application_name IS DISTINCT FROM $3)::text AS conns
       FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) $1`,
    [database, role, LOGIN_CHECK_APP],
  );
  const row = r.rows[0];
  return { sizeBytes: Number(row?.size ?? 0), activeConnections: Number(row?.conns ?? 0) };
}

/** The major version in a server_version string ("15.4", "17.2 (Debian 17.2-1)"); 0 when unknown. */
export function majorOf(version: string | undefined): number {
  const m = /^(\d+)/.exec(version ?? '');
  return m ? Number(m[1]) : 0;
}

export interface AdminRights {
  superuser: boolean;
  createdb: boolean;
  createrole: boolean;
}

export interface ConnectionSlots {
  maxConnections: number;
  /** superuser_reserved_connections: slots only superusers may use. */
  superuserReserved: number;
  /** reserved_connections (PostgreSQL 16+): slots for pg_use_reserved_connections members; 0 before 16. */
  reserved: number;
  /** Whether the admin may use the reserved slots (PostgreSQL 16+). */
  adminMayUseReserved: boolean;
  superuser: boolean;
}

export interface ServerFacts {
  version: string;
  rights: AdminRights;
  /** Schemas of the session's database in which PUBLIC (every role, tenants included) may create objects, sorted. */
  publicCreate: string[];
  slots: ConnectionSlots;
}

/**
 * What the server's re-check reads besides the catalog, in one query: its version, the admin's
 * rights, the schemas of the session's database PUBLIC may create in, and its connection slots.
 * The tenant path reads the same (a connection budget's slots, the schemas a read-only tenant's
 * database leaves open): one cheap query, one place for its SQL.
 */
export async function serverFacts(db: Queryable): Promise<ServerFacts> {
  const r = await db.query<{
    version: string;
    su: boolean | null;
    cdb: boolean | null;
    crole: boolean | null;
    pub: string[] | null;
    max: string;
    sure: string;
    res: string | null;
    may: boolean | null;
  }>(
    `SELECT pg_catalog.current_setting('server_version') AS version,
            a.rolsuper AS su, a.rolcreatedb AS cdb, a.rolcreaterole AS crole,
            (SELECT pg_catalog.json_agg(n.nspname ORDER BY n.nspname)
               FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) x
              WHERE x.grantee OPERATOR(pg_catalog.=) 0 AND x.privilege_type OPERATOR(pg_catalog.=) 'CREATE') AS pub,
            pg_catalog.current_setting('max_connections') AS max,
            pg_catalog.current_setting('superuser_reserved_connections') AS sure,
            pg_catalog.current_setting('reserved_connections', true) AS res,
            CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) 'pg_use_reserved_connections')
                 THEN pg_catalog.pg_has_role(CURRENT_USER, 'pg_use_reserved_connections', 'USAGE') END AS may
       FROM (SELECT 1) one
       LEFT JOIN pg_catalog.pg_roles a ON a.rolname OPERATOR(pg_catalog.=) CURRENT_USER`,
  );
  const row = r.rows[0];
  const superuser = !!row?.su;
  return {
    version: row?.version ?? 'unknown',
    rights: { superuser, createdb: !!row?.cdb, createrole: !!row?.crole },
    publicCreate: row?.pub ?? [],
    slots: {
      maxConnections: Number(row?.max ?? 100),
      superuserReserved: Number(row?.sure ?? 3),
      reserved: Number(row?.res ?? 0),
      adminMayUseReserved: !!row?.may,
      superuser,
    },
  };
}

/** The sum of connection limits of the tenant roles on a server (-1, no limit, counts as maxConnections). */
export async function tenantConnectionLimits(db: Queryable): Promise<Map<string, number>> {
  const r = await db.query<{ rolname: string; rolconnlimit: number }>(
    `SELECT r.rolname, r.rolconnlimit FROM ${MARKED_ROLES} WHERE r.rolcanlogin`,
  );
  return new Map(r.rows.map((x) => [x.rolname, x.rolconnlimit]));
}

// Schema per tenant: statements in the server's shared database, run in an admin session inside it.

/** The marker of a shared database: it names the server, no tenant (no uid: nothing deletes it). */
export function sharedDatabaseMarker(server: string): string {
  return `managed by tenantdb; shared database of postgresserver=${server}`;
}

/** What a schema tenant's role holds on the shared database: no CREATE, which would let it make schemas. */
export const SCHEMA_TENANT_DATABASE_PRIVILEGES = ['CONNECT', 'TEMPORARY'] as const;

export async function grantSchemaTenantPrivileges(db: Queryable, database: string, role: string): Promise<void> {
  await db.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${id(database)} TO ${id(role)}`);
}

export async function revokeCreateOnDatabase(db: Queryable, database: string, grantee: string): Promise<void> {
  await db.query(`REVOKE CREATE ON DATABASE ${id(database)} FROM ${grantee === 'PUBLIC' ? 'PUBLIC' : id(grantee)}`);
}

export interface SchemaRow {
  name: string;
  owner: string;
  /** Grants other than the owner's own, as (grantee or 'PUBLIC', privilege). */
  grants: { grantee: string; privilege: string }[];
}

/** A schema of the session's database. */
export async function findSchema(db: Queryable, schema: string): Promise<SchemaRow | undefined> {
  const r = await db.query<{ owner: string; grants: { grantee: string; privilege: string }[] | null }>(
    `SELECT pg_catalog.pg_get_userbyid(n.nspowner) AS owner,
            (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                       'grantee', CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
                       'privilege', a.privilege_type))
               FROM pg_catalog.aclexplode(n.nspacl) a WHERE a.grantee OPERATOR(pg_catalog.<>) n.nspowner) AS grants
       FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) $1`,
    [schema],
  );
  const row = r.rows[0];
  return row && { name: schema, owner: row.owner, grants: row.grants ?? [] };
}

/** The schema, owned by the tenant's role from the first moment (the admin is a member of that role). */
export async function createSchema(db: Queryable, schema: string, role: string): Promise<void> {
  await db.query(`CREATE SCHEMA ${id(schema)} AUTHORIZATION ${id(role)}`);
}

/** Performed as the schema's owner (the admin is a member of the tenant role), whoever granted it. */
export async function revokeSchemaFrom(db: Queryable, schema: string, grantee: string): Promise<void> {
  // CASCADE: what the grantee passed on with a grant option goes too (and nothing is left to refuse it).
  await db.query(`REVOKE ALL ON SCHEMA ${id(schema)} FROM ${grantee === 'PUBLIC' ? 'PUBLIC' : id(grantee)} CASCADE`);
}

/** Drops a tenant's schema and all in it, waiting at most `lockTimeout` for its locks. `db` is one session. */
export async function dropSchema(db: Queryable, schema: string, lockTimeout = '5s'): Promise<void> {
  await db.query('BEGIN');
  try {
    await db.query(`SET LOCAL lock_timeout = ${lit(lockTimeout)}`);
    await db.query(`DROP SCHEMA IF EXISTS ${id(schema)} CASCADE`);
    await db.query('COMMIT');
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Drops a schema of very many relations in pieces: one DROP SCHEMA ... CASCADE locks every object
 * in one transaction, which past a few thousand exhausts the server's shared lock table (and fails
 * other sessions' statements while it lasts). Relations go `batch` at a time, partitions before
 * their parents, each batch its own transaction; then the schema. `db` is one session.
 */
export async function dropSchemaInBatches(db: Queryable, schema: string, batch = 200, lockTimeout = '5s'): Promise<void> {
  const kinds: Record<string, string> = { r: 'TABLE', p: 'TABLE', f: 'FOREIGN TABLE', m: 'MATERIALIZED VIEW', v: 'VIEW' };
  for (;;) {
    // regclass output is the qualified, quoted name.
    const r = await db.query<{ rel: string; kind: string }>(
      `SELECT c.oid::pg_catalog.regclass::text AS rel, c.relkind::text AS kind
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relkind IN ('r', 'p', 'f', 'm', 'v')
        ORDER BY c.relispartition DESC, c.oid LIMIT $2`,
      [schema, batch],
    );
    if (r.rows.length === 0) break;
    await db.query('BEGIN');
    try {
      await db.query(`SET LOCAL lock_timeout = ${lit(lockTimeout)}`);
      for (const x of r.rows) await db.query(`DROP ${kinds[x.kind] ?? 'TABLE'} IF EXISTS ${x.rel} CASCADE`);
      await db.query('COMMIT');
    } catch (err) {
      await db.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }
  await dropSchema(db, schema, lockTimeout);
}

/** The settings stored for a role in one database (ALTER ROLE ... IN DATABASE ... SET), as name=value. */
export async function roleSettingsIn(db: Queryable, role: string, database: string): Promise<string[]> {
  const r = await db.query<{ setconfig: string[] | null }>(
    `SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
      WHERE s.setrole OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1)
        AND s.setdatabase OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) $2)`,
    [role, database],
  );
  return r.rows[0]?.setconfig ?? [];
}

/** The session defaults a TenantDatabase may set (spec.settings), as PostgreSQL names them, lower-cased. */
export const TENANT_SETTINGS = [
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'idle_session_timeout',
  'work_mem',
  'maintenance_work_mem',
  'temp_buffers',
  'timezone',
  'default_transaction_isolation',
] as const;
export type TenantSetting = (typeof TENANT_SETTINGS)[number];

/** Whether a stored `name=value` entry is one of TENANT_SETTINGS. */
export const isTenantSetting = (entry: string): boolean =>
  (TENANT_SETTINGS as readonly string[]).includes(entry.slice(0, Math.max(0, entry.indexOf('='))).toLowerCase());

/** Sets (or, undefined, resets) one of TENANT_SETTINGS for a role in a database. */
export async function setRoleSettingIn(
  db: Queryable,
  role: string,
  database: string,
  name: TenantSetting,
  value: string | undefined,
): Promise<void> {
  if (!(TENANT_SETTINGS as readonly string[]).includes(name)) throw new Error(`${name} is not a setting tenants may have`);
  const target = `ALTER ROLE ${id(role)} IN DATABASE ${id(database)}`;
  await db.query(value === undefined ? `${target} RESET ${name}` : `${target} SET ${name} TO ${lit(value)}`);
}

/** The search_path setting as PostgreSQL stores it for `SET search_path TO <schema>`. */
export function searchPathSetting(schema: string): string {
  return `search_path=${id(schema)}`;
}

/** Every session of the role in that database starts with its own schema, and only it, on the path. */
export async function setRoleSearchPath(db: Queryable, role: string, database: string, schema: string): Promise<void> {
  await db.query(`ALTER ROLE ${id(role)} IN DATABASE ${id(database)} RESET ALL`);
  await db.query(`ALTER ROLE ${id(role)} IN DATABASE ${id(database)} SET search_path TO ${id(schema)}`);
}

/** What PUBLIC (every role, tenants included) holds on a schema of the session's database. */
export async function schemaPublicPrivileges(db: Queryable, schema: string): Promise<string[]> {
  const r = await db.query<{ p: string }>(
    `SELECT a.privilege_type AS p FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
      WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND a.grantee OPERATOR(pg_catalog.=) 0`,
    [schema],
  );
  return r.rows.map((x) => x.p);
}

/** The schemas of the session's database owned by marked roles, with their owners: no lock taken. */
export async function markedSchemas(db: Queryable): Promise<Map<string, string>> {
  const r = await db.query<{ name: string; owner: string }>(
    `SELECT n.nspname AS name, r.rolname AS owner
       FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
      WHERE pg_catalog.shobj_description(r.oid, 'pg_authid') OPERATOR(pg_catalog.~~) 'managed by tenantdb;%'`,
  );
  return new Map(r.rows.map((x) => [x.name, x.owner]));
}

/**
 * Sizes of the schemas owned by marked roles in the session's database: tables,
 * materialized views and sequences with their indexes and TOAST. Sizing a relation takes a share
 * lock on it, which a tenant holding an exclusive lock would keep waiting, and a schema of very many
 * relations takes long: past `lockTimeout` or `timeout`, or on any other error, the planner's page
 * counts (as of the last VACUUM or ANALYZE, TOAST included) stand in, which need no lock. Never
 * throws for a tenant's doing: sizes are an observation, and a failure leaves them out.
 */
export async function schemaSizes(client: Queryable, lockTimeout = '500ms', timeout = '5s'): Promise<Map<string, number>> {
  const from = `FROM pg_catalog.pg_namespace n
       JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
       LEFT JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relkind IN ('r', 'm', 'i', 'S')
      WHERE pg_catalog.shobj_description(r.oid, 'pg_authid') OPERATOR(pg_catalog.~~) 'managed by tenantdb;%'
      GROUP BY n.nspname`;
  // Tables, materialized views and sequences, each with its indexes and TOAST (which pg_total_relation_size adds).
  const exact = `SELECT n.nspname AS name,
            pg_catalog.sum(CASE WHEN c.relkind IN ('r', 'm', 'S') THEN pg_catalog.pg_total_relation_size(c.oid) END)::text AS size ${from}`;
  // Page counts of the same relations and their indexes, plus their TOAST tables (which live in pg_toast).
  const estimate = `SELECT n.nspname AS name,
            ((pg_catalog.sum(c.relpages::bigint) OPERATOR(pg_catalog.+) pg_catalog.sum(COALESCE(t.relpages, 0)::bigint))
              OPERATOR(pg_catalog.*) pg_catalog.current_setting('block_size')::bigint)::text AS size
       FROM pg_catalog.pg_namespace n
       JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
       LEFT JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relkind IN ('r', 'm', 'i', 'S')
       LEFT JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) c.reltoastrelid
      WHERE pg_catalog.shobj_description(r.oid, 'pg_authid') OPERATOR(pg_catalog.~~) 'managed by tenantdb;%'
      GROUP BY n.nspname`;
  const read = async (text: string, settings: string) => {
    await client.query('BEGIN');
    try {
      await client.query(settings);
      const r = await client.query<{ name: string; size: string | null }>(text);
      await client.query('COMMIT');
      return new Map(r.rows.map((x) => [x.name, Number(x.size ?? 0)]));
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  };
  try {
    return await read(exact, `SET LOCAL lock_timeout = ${lit(lockTimeout)}; SET LOCAL statement_timeout = ${lit(timeout)}`);
  } catch {
    try {
      return await read(estimate, `SET LOCAL statement_timeout = ${lit(timeout)}`);
    } catch {
      return new Map();
    }
  }
}

/** Sessions of a role, the operator's own login checks left out. */
export async function roleSessions(db: Queryable, role: string): Promise<number> {
  const r = await db.query<{ n: string }>(
    `SELECT pg_catalog.count(*)::text AS n FROM pg_catalog.pg_stat_activity a
      WHERE a.usename OPERATOR(pg_catalog.=) $1 AND a.application_name IS DISTINCT FROM $2`,
    [role, LOGIN_CHECK_APP],
  );
  return Number(r.rows[0]?.n ?? 0);
}

/**
 * Ends the sessions of marked roles that hold locks on relations of a schema in the session's
 * database: another tenant can keep a share lock on a tenant's partitions (pg_partition_tree takes
 * one without any privilege) in a transaction it leaves open, which would hold up a DROP SCHEMA.
 */
export async function terminateSchemaLockHolders(db: Queryable, schema: string): Promise<number> {
  const r = await db.query<{ n: string }>(
    `SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(h.pid))::text AS n FROM (
       SELECT DISTINCT l.pid FROM pg_catalog.pg_locks l
         JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.relation
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
         JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
         JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.usesysid
        WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
          AND pg_catalog.shobj_description(r.oid, 'pg_authid') OPERATOR(pg_catalog.~~) 'managed by tenantdb;%') h`,
    [schema],
  );
  return Number(r.rows[0]?.n ?? 0);
}
