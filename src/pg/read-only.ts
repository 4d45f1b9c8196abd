/**
 * A read-only tenant, in SQL. An owner can always write its tables and grant itself back whatever is
 * revoked, so a tenant becomes read-only by no longer owning anything: its objects go to its holder
 * role (NOLOGIN, marked as the tenant's, see holderRoleName) and its login role gets read grants.
 * Every statement runs in an admin session pinned to pg_catalog (pg/connections), every name is
 * quoted and every catalog operator qualified: the tenant owns objects in these databases and must
 * not be able to shadow anything the operator's session resolves.
 */
import pg from 'pg';
import { id, type Queryable } from './tenant-sql.js';

const { escapeLiteral: lit } = pg;

/** What the tenant may still do while read-only: read, or (past a quota) also delete to get under it. */
export type ReadOnlyMode = 'Read' | 'ReadAndDelete';

export async function createHolderRole(client: pg.ClientBase, holder: string, marker: string): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`CREATE ROLE ${id(holder)} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT`);
    await client.query(`COMMENT ON ROLE ${id(holder)} IS ${lit(marker)}`);
    // REASSIGN OWNED needs the privileges of both roles.
    await client.query(`GRANT ${id(holder)} TO CURRENT_USER`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** How the session's database stands for a read-only tenant: what is out of place, if anything. */
export interface ReadOnlyState {
  /** Objects the login role owns (beyond SECURITY DEFINER routines and temporary tables). */
  loginOwns: number;
  /** Objects the holder owns. */
  holderOwns: number;
  /** SECURITY DEFINER routines the holder owns: they would run with the rights of every table's owner. */
  holderDefiners: boolean;
  /** Relations of the holder the login cannot read, or may change beyond what the mode allows. */
  grantsWrong: boolean;
}

const OWNED_BY = (param: string, skipDefiners: boolean) => `
  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_shdepend d
    WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
      AND d.deptype OPERATOR(pg_catalog.=) 'o'
      AND d.dbid OPERATOR(pg_catalog.=) (SELECT o.oid FROM pg_catalog.pg_database o WHERE o.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
      AND d.refobjid OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ${param})
      ${
        skipDefiners
          ? `AND NOT (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) d.objid AND p.prosecdef))
             AND NOT (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) d.objid AND c.relpersistence OPERATOR(pg_catalog.=) 't'))`
          : ''
      })::int`;

/** Privileges a read-only login may not hold on the holder's relations (PUBLIC's count: they are the login's too). */
const FORBIDDEN: Record<ReadOnlyMode, string> = {
  Read: 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER',
  ReadAndDelete: 'INSERT, UPDATE, REFERENCES, TRIGGER',
};

/** The state of the session's database for a login role and its holder; `mode` undefined: read-write is wanted. */
export async function readOnlyState(db: Queryable, login: string, holder: string, mode: ReadOnlyMode | undefined): Promise<ReadOnlyState> {
  const r = await db.query<{ login_owns: number; holder_owns: number; definers: boolean; wrong: boolean }>(
    `SELECT ${OWNED_BY('$1', true)} AS login_owns,
            ${OWNED_BY('$2', false)} AS holder_owns,
            EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles h ON h.oid OPERATOR(pg_catalog.=) p.proowner
                     WHERE h.rolname OPERATOR(pg_catalog.=) $2 AND p.prosecdef) AS definers,
            $3::text IS NOT NULL AND EXISTS (
              SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles h ON h.oid OPERATOR(pg_catalog.=) c.relowner
               WHERE h.rolname OPERATOR(pg_catalog.=) $2 AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p', 'v', 'm', 'f']::"char"[])
                 AND (NOT pg_catalog.has_table_privilege($1::text, c.oid, 'SELECT')
                      OR pg_catalog.has_table_privilege($1::text, c.oid, $3::text)
                      OR ($4::bool AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::"char"[])
                          AND NOT pg_catalog.has_table_privilege($1::text, c.oid, 'DELETE')))) AS wrong`,
    [login, holder, mode ? FORBIDDEN[mode] : null, mode === 'ReadAndDelete'],
  );
  const row = r.rows[0];
  return {
    loginOwns: row?.login_owns ?? 0,
    holderOwns: row?.holder_owns ?? 0,
    holderDefiners: !!row?.definers,
    grantsWrong: !!row?.wrong,
  };
}

/** Whether the session's database is as `mode` wants it (undefined: read-write). */
export function inPlace(s: ReadOnlyState, mode: ReadOnlyMode | undefined): boolean {
  return mode ? s.loginOwns === 0 && !s.holderDefiners && !s.grantsWrong : s.holderOwns === 0;
}

/**
 * Makes the tenant read-only in the session's database, in one transaction: everything the login
 * owns goes to the holder; SECURITY DEFINER routines go back to the login (owned by the holder
 * they would write with the owner's rights; owned by the login they run with its read rights, and
 * keep their SECURITY DEFINER for when writes come back); in each schema where the holder owns
 * relations, the login and PUBLIC lose every table privilege, and the login gets SELECT (and,
 * ReadAndDelete, DELETE and TRUNCATE), SELECT on sequences, EXECUTE on routines, USAGE on the
 * holder's schemas. Creating in the database is taken away by the caller (ensureDatabase).
 */
export async function makeReadOnly(client: Queryable, login: string, holder: string, mode: ReadOnlyMode): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`REASSIGN OWNED BY ${id(login)} TO ${id(holder)}`);
    const definers = await client.query<{ sig: string; kind: string; schema: string }>(
      `SELECT p.oid::pg_catalog.regprocedure::text AS sig, p.prokind::text AS kind, n.nspname AS schema
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles h ON h.oid OPERATOR(pg_catalog.=) p.proowner
              JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
        WHERE h.rolname OPERATOR(pg_catalog.=) $1 AND p.prosecdef`,
      [holder],
    );
    // A new owner needs CREATE on the routine's schema: lent and taken back inside this
    // transaction, so no session of the tenant ever sees it.
    const lent = [...new Set(definers.rows.map((d) => d.schema))];
    for (const schema of lent) await client.query(`GRANT CREATE ON SCHEMA ${id(schema)} TO ${id(login)}`);
    // regprocedure's text is the routine's qualified, quoted signature, as PostgreSQL prints it.
    for (const d of definers.rows) await client.query(`ALTER ${d.kind === 'p' ? 'PROCEDURE' : 'FUNCTION'} ${d.sig} OWNER TO ${id(login)}`);
    for (const schema of lent) await client.query(`REVOKE CREATE ON SCHEMA ${id(schema)} FROM ${id(login)}`);
    const schemas = await client.query<{ name: string; owned: boolean }>(
      `SELECT n.nspname AS name, n.nspowner OPERATOR(pg_catalog.=) h.oid AS owned
         FROM pg_catalog.pg_namespace n, pg_catalog.pg_roles h
        WHERE h.rolname OPERATOR(pg_catalog.=) $1
          AND (n.nspowner OPERATOR(pg_catalog.=) h.oid
               OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relowner OPERATOR(pg_catalog.=) h.oid
                             AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p', 'v', 'm', 'f', 'S']::"char"[])))
        ORDER BY n.nspname`,
      [holder],
    );
    const rights = mode === 'ReadAndDelete' ? 'SELECT, DELETE, TRUNCATE' : 'SELECT';
    for (const s of schemas.rows) {
      const n = id(s.name);
      if (s.owned) await client.query(`GRANT USAGE ON SCHEMA ${n} TO ${id(login)}`);
      await client.query(`REVOKE ALL ON ALL TABLES IN SCHEMA ${n} FROM PUBLIC, ${id(login)}`);
      await client.query(`GRANT ${rights} ON ALL TABLES IN SCHEMA ${n} TO ${id(login)}`);
      await client.query(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ${n} FROM PUBLIC, ${id(login)}`);
      await client.query(`GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${n} TO ${id(login)}`);
      await client.query(`GRANT EXECUTE ON ALL ROUTINES IN SCHEMA ${n} TO ${id(login)}`);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Gives the tenant back what its holder holds in the session's database: it owns (and may write) all of it again. */
export async function makeReadWrite(db: Queryable, login: string, holder: string): Promise<void> {
  await db.query(`REASSIGN OWNED BY ${id(holder)} TO ${id(login)}`);
}
