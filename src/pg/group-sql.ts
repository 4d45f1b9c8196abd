/**
 * The SQL of a TenantGroup's login role, as small named functions, under the same rules as
 * tenant-sql.ts: catalog names qualified, identifiers escaped, no tenant code run.
 *
 * How the group role reaches the member schemas: it is made a member of each reached member's own
 * role (GRANT <member role> TO <group role>), not given privileges on each schema and table.
 * - It then holds exactly what that member's own login holds, never more: a read-only member (its
 *   objects held by <role>_hold, its login holding read grants) stays read-only through the group,
 *   a suspended member is simply not granted, and the tenant's own schema ACL stays the tenant
 *   controller's to enforce.
 * - Joining and leaving are one GRANT and one REVOKE, effective at the next statement (privileges
 *   follow membership at check time; on leaving, the group's own grants in the member's schemas go
 *   and its sessions are ended, since one that did SET ROLE keeps the member's rights); per-object grants would leave residue
 *   on every table the member created, and default privileges to keep in step with each member.
 * - Only the member role is granted, never its twin (<role>-2) or holder: the twin is a member of
 *   the member role (so the group gets nothing through it), and the holder's objects are the
 *   member's only as far as the member's read grants say.
 * - The group role is a member of nothing else: every other membership found is revoked, so
 *   nobody (e.g. a tenant granting itself to it on PostgreSQL 15, where a role's session may grant
 *   membership in itself) widens what the group login reaches.
 * What membership gives beyond a member's data stays within that member: its schema's ownership
 * (the group login could drop it, as the member can). Members are TenantDatabases of the group's
 * own namespace only, so one team's backend holds one team's tenants.
 */
import pg from 'pg';
import { id, type Queryable } from './tenant-sql.js';

const { escapeLiteral: lit } = pg;

/** The ownership marker of a group's role; markerUid and markerServer parse it like a tenant's. */
export function groupMarker(owner: { namespace: string; name: string; uid: string; server: string }): string {
  return `managed by tenantdb; tenantgroup=${owner.namespace}/${owner.name}; uid=${owner.uid}; server=${owner.server}`;
}

/** The roles the group role is a member of, with who granted each. */
export async function membershipsOf(db: Queryable, role: string): Promise<{ role: string; grantor: string }[]> {
  const r = await db.query<{ role: string; grantor: string }>(
    `SELECT g.rolname AS role, pg_catalog.pg_get_userbyid(m.grantor) AS grantor
       FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) m.roleid
      WHERE m.member OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1)`,
    [role],
  );
  return r.rows;
}

export async function grantMembership(db: Queryable, memberRole: string, groupRole: string): Promise<void> {
  await db.query(`GRANT ${id(memberRole)} TO ${id(groupRole)}`);
}

/**
 * Revokes every grant of `memberRole` to `groupRole`, whoever made it (PostgreSQL 16 keeps one per
 * grantor, and a plain REVOKE takes only the admin's own).
 */
export async function revokeMembership(db: Queryable, memberRole: string, groupRole: string): Promise<void> {
  await db.query(`REVOKE ${id(memberRole)} FROM ${id(groupRole)}`);
  for (const m of await membershipsOf(db, groupRole)) {
    if (m.role !== memberRole) continue;
    await db.query(`REVOKE ${id(memberRole)} FROM ${id(groupRole)} GRANTED BY ${id(m.grantor)}`);
  }
}

/** No schema until the backend routes: unqualified names fail rather than land in public. */
export const GROUP_SEARCH_PATH = 'search_path=""';

export async function setEmptySearchPath(db: Queryable, role: string, database: string): Promise<void> {
  await db.query(`ALTER ROLE ${id(role)} IN DATABASE ${id(database)} SET search_path TO ''`);
}

/**
 * Hands the objects the group role created in a schema (tables, views, sequences, types, routines)
 * to the schema's owner, in the session's database, before the group leaves it or is dropped:
 * they are the member's data, and DROP OWNED would drop them. Sequences that belong to a column
 * and indexes follow their table. `owners`: only in the schemas these roles own; undefined: in
 * every schema but the system ones.
 */
export async function handOverObjects(db: Queryable, groupRole: string, owners?: readonly string[]): Promise<number> {
  const r = await db.query<{ stmt: string }>(
    `WITH g AS (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1),
          ns AS (SELECT n.oid, n.nspowner FROM pg_catalog.pg_namespace n
                  WHERE n.nspname OPERATOR(pg_catalog.!~~) 'pg\\_%' AND n.nspname OPERATOR(pg_catalog.<>) 'information_schema'
                    AND ($2::text[] IS NULL OR pg_catalog.pg_get_userbyid(n.nspowner) OPERATOR(pg_catalog.=) ANY ($2::text[]))
                    AND n.nspowner OPERATOR(pg_catalog.<>) (SELECT oid FROM g))
     SELECT pg_catalog.format('ALTER %s %s OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                             WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
              c.oid::pg_catalog.regclass::text, pg_catalog.pg_get_userbyid(ns.nspowner)) AS stmt
       FROM pg_catalog.pg_class c JOIN ns ON ns.oid OPERATOR(pg_catalog.=) c.relnamespace
      WHERE c.relowner OPERATOR(pg_catalog.=) (SELECT oid FROM g) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                           AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype IN ('a', 'i'))
     UNION ALL
     SELECT pg_catalog.format('ALTER ROUTINE %s OWNER TO %I', p.oid::pg_catalog.regprocedure::text, pg_catalog.pg_get_userbyid(ns.nspowner))
       FROM pg_catalog.pg_proc p JOIN ns ON ns.oid OPERATOR(pg_catalog.=) p.pronamespace
      WHERE p.proowner OPERATOR(pg_catalog.=) (SELECT oid FROM g)
     UNION ALL
     SELECT pg_catalog.format('ALTER TYPE %s OWNER TO %I', t.oid::pg_catalog.regtype::text, pg_catalog.pg_get_userbyid(ns.nspowner))
       FROM pg_catalog.pg_type t JOIN ns ON ns.oid OPERATOR(pg_catalog.=) t.typnamespace
      WHERE t.typowner OPERATOR(pg_catalog.=) (SELECT oid FROM g) AND t.typtype IN ('c', 'd', 'e', 'r', 'm')
        AND (t.typrelid OPERATOR(pg_catalog.=) 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.typrelid) OPERATOR(pg_catalog.=) 'c')`,
    [groupRole, owners ? [...owners] : null],
  );
  for (const x of r.rows) await db.query(x.stmt);
  return r.rows.length;
}

/** The group role's settings in one database, as name=value. */
export async function searchPathStored(db: Queryable, role: string, database: string): Promise<boolean> {
  const r = await db.query<{ setconfig: string[] | null }>(
    `SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
      WHERE s.setrole OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1)
        AND s.setdatabase OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) $2)`,
    [role, database],
  );
  return (r.rows[0]?.setconfig ?? []).includes(GROUP_SEARCH_PATH);
}

/** Roles carrying this group's marker (its uid), e.g. one left by an earlier roleName. */
export async function rolesMarkedWith(db: Queryable, uid: string): Promise<string[]> {
  const r = await db.query<{ name: string }>(
    `SELECT r.rolname AS name FROM pg_catalog.pg_roles r
      WHERE pg_catalog.shobj_description(r.oid, 'pg_authid') OPERATOR(pg_catalog.~~) ${lit('managed by tenantdb; tenantgroup=%')}
        AND pg_catalog.shobj_description(r.oid, 'pg_authid') OPERATOR(pg_catalog.~~) ('%; uid=' OPERATOR(pg_catalog.||) $1 OPERATOR(pg_catalog.||) ';%')`,
    [uid],
  );
  return r.rows.map((x) => x.name);
}

/**
 * Takes from the group role every privilege on the schemas these roles own and on what is in them
 * (granted while it acted as their owner), with CASCADE: what it passed on goes too.
 */
export async function revokeGrantsInSchemasOf(db: Queryable, groupRole: string, owners: readonly string[]): Promise<void> {
  const r = await db.query<{ name: string }>(
    `SELECT n.nspname AS name FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) n.nspowner
      WHERE o.rolname OPERATOR(pg_catalog.=) ANY ($1::text[]) ORDER BY 1`,
    [[...owners]],
  );
  const g = id(groupRole);
  for (const { name } of r.rows) {
    const n = id(name);
    await db.query(`REVOKE ALL ON SCHEMA ${n} FROM ${g} CASCADE`);
    await db.query(`REVOKE ALL ON ALL TABLES IN SCHEMA ${n} FROM ${g} CASCADE`);
    await db.query(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ${n} FROM ${g} CASCADE`);
    await db.query(`REVOKE ALL ON ALL ROUTINES IN SCHEMA ${n} FROM ${g} CASCADE`);
  }
}
