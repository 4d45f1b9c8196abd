/**
 * A read-only tenant, in SQL. An owner can always write its tables and grant itself back whatever is
 * revoked, so a tenant becomes read-only by no longer owning anything: its objects go to its holder
 * role (NOLOGIN, marked as the tenant's, see holderRoleName) and its login role gets read grants.
 * Every statement runs in an admin session pinned to pg_catalog (pg/connections), every name is
 * quoted and every catalog operator qualified: the tenant owns objects in these databases and must
 * not be able to shadow anything the operator's session resolves.
 */
import pg from 'pg';
import { id, runTogether, type Queryable } from './tenant-sql.js';

const { escapeLiteral: lit } = pg;

/**
 * What the tenant may still do while read-only: read, or (past a quota) also TRUNCATE its tables to
 * get back under it. Not DELETE: a DELETE fires the rules, triggers and foreign-key actions made
 * while the tenant owned its tables, and those run with the owner's (the holder's) rights; a
 * TRUNCATE is granted only on tables without triggers, and fires no rules nor foreign-key actions.
 */
export type ReadOnlyMode = 'Read' | 'ReadAndTruncate';

export async function createHolderRole(db: Queryable, holder: string, marker: string): Promise<void> {
  await runTogether(db, [
    `CREATE ROLE ${id(holder)} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT`,
    `COMMENT ON ROLE ${id(holder)} IS ${lit(marker)}`,
    // REASSIGN OWNED needs the privileges of both roles.
    `GRANT ${id(holder)} TO CURRENT_USER`,
  ]);
}

/** How the session's database stands for a read-only tenant: what is out of place, if anything. */
export interface ReadOnlyState {
  /**
   * Objects the tenant's login roles own (beyond SECURITY DEFINER routines, default privileges and
   * what lives in temporary schemas, which goes with its session).
   */
  loginOwns: number;
  /** Objects the holder owns. */
  holderOwns: number;
  /** SECURITY DEFINER routines the holder owns: they would run with the rights of every table's owner. */
  holderDefiners: boolean;
  /** The holder's relations, sequences or schemas where a login role holds more than reading (or cannot read). */
  grantsWrong: boolean;
}

const ROLE_OIDS = (param: string) =>
  `SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY (${param}::text[])`;

const OWNED_BY = (param: string, skip: boolean) => `
  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_shdepend d
    WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
      AND d.deptype OPERATOR(pg_catalog.=) 'o'
      AND d.dbid OPERATOR(pg_catalog.=) (SELECT o.oid FROM pg_catalog.pg_database o WHERE o.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
      AND d.refobjid IN (${ROLE_OIDS(param)})
      ${
        skip
          ? `AND d.classid OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog.pg_default_acl'::pg_catalog.regclass, 'pg_catalog.pg_user_mapping'::pg_catalog.regclass])
             AND NOT (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) d.objid
                   AND (p.prosecdef OR pg_catalog.pg_is_other_temp_schema(p.pronamespace) OR p.pronamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())))
             AND NOT (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) d.objid AND c.relpersistence OPERATOR(pg_catalog.=) 't'))
             AND NOT (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) d.objid AND pg_catalog.pg_is_other_temp_schema(t.typnamespace)))`
          : ''
      })::int`;

/** ALTER … OWNER TO the holder for relations in its schemas that another role (one the admin acts for) owns. */
const FOREIGN_RELATIONS = `SELECT pg_catalog.format('ALTER %s %s OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                             WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
              c.oid::pg_catalog.regclass::text, h.rolname) AS stmt
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              JOIN pg_catalog.pg_roles h ON h.oid OPERATOR(pg_catalog.=) n.nspowner
        WHERE h.rolname OPERATOR(pg_catalog.=) $1 AND c.relowner OPERATOR(pg_catalog.<>) h.oid
          AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p', 'v', 'm', 'S', 'f']::"char"[])
          AND pg_catalog.pg_has_role(CURRENT_USER, c.relowner, 'USAGE')
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                           WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                             AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) ANY (ARRAY['a', 'i']::"char"[]))`;

/** Privileges a login may not hold on the holder's relations (PUBLIC's count: they are the login's too). */
const FORBIDDEN: Record<ReadOnlyMode, string> = {
  Read: 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER',
  ReadAndTruncate: 'INSERT, UPDATE, DELETE, REFERENCES, TRIGGER',
};

/**
 * The state of the session's database for the tenant's login roles (the first is the one that
 * owns its objects when it may write; a second one, of overlapping rotation, acts as it) and its
 * holder; `mode` undefined: read-write is wanted.
 */
export async function readOnlyState(
  db: Queryable,
  logins: readonly string[],
  holder: string,
  mode: ReadOnlyMode | undefined,
): Promise<ReadOnlyState> {
  const r = await db.query<{ login_owns: number; holder_owns: number; definers: boolean; wrong: boolean }>(
    `WITH h AS (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $2),
          l AS (SELECT r.rolname AS name FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY ($1::text[]))
     SELECT ${OWNED_BY('$1', true)} AS login_owns,
            ${OWNED_BY('ARRAY[$2]', false)} AS holder_owns,
            EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.proowner OPERATOR(pg_catalog.=) (SELECT oid FROM h) AND p.prosecdef) AS definers,
            $3::text IS NOT NULL AND (
              EXISTS (
                SELECT 1 FROM pg_catalog.pg_class c, l
                 WHERE c.relowner OPERATOR(pg_catalog.=) (SELECT oid FROM h)
                   AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p', 'v', 'm', 'f']::"char"[])
                   AND ((l.name OPERATOR(pg_catalog.=) ($1::text[])[1] AND NOT pg_catalog.has_table_privilege(l.name, c.oid, 'SELECT'))
                        OR pg_catalog.has_table_privilege(l.name, c.oid, $3::text)))
              OR EXISTS (
                SELECT 1 FROM pg_catalog.pg_class c, l
                 WHERE c.relowner OPERATOR(pg_catalog.=) (SELECT oid FROM h) AND c.relkind OPERATOR(pg_catalog.=) 'S'
                   AND pg_catalog.has_sequence_privilege(l.name, c.oid, 'USAGE, UPDATE'))
              OR EXISTS (
                SELECT 1 FROM pg_catalog.pg_namespace n, l
                 WHERE n.nspowner OPERATOR(pg_catalog.=) (SELECT oid FROM h) AND pg_catalog.has_schema_privilege(l.name, n.oid, 'CREATE'))
              OR EXISTS (${FOREIGN_RELATIONS.replace('$1', '$2')})) AS wrong`,
    [logins, holder, mode ? FORBIDDEN[mode] : null],
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
 * Makes the tenant read-only in the session's database, in one transaction: the schemas its login
 * roles own go to the holder first (a routine moved into a schema made after it would otherwise be
 * handed over before its schema, and refused), then everything else they own; SECURITY DEFINER
 * routines go back to the first login (owned by the holder they would write with the owner's
 * rights; owned by the login they run with its read rights, and keep SECURITY DEFINER for later);
 * on the holder's schemas, relations and sequences the logins and PUBLIC lose every privilege (with
 * CASCADE: what they passed on with a grant option goes too), and the first login gets USAGE,
 * SELECT (and, ReadAndTruncate, TRUNCATE on tables without triggers), EXECUTE on routines, SELECT
 * on the holder's large objects. Creating in the database is taken away by the caller
 * (ensureDatabase). The caller ends the logins' sessions first: their locks and temporary objects
 * would make this fail.
 */
export async function makeReadOnly(client: Queryable, logins: readonly string[], holder: string, mode: ReadOnlyMode): Promise<void> {
  const [login] = logins;
  if (!login) throw new Error('makeReadOnly needs a login role');
  await client.query('BEGIN');
  try {
    const present = (
      await client.query<{ name: string }>(
        `SELECT r.rolname AS name FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY ($1::text[]) ORDER BY r.rolname OPERATOR(pg_catalog.=) $2 DESC`,
        [logins, login],
      )
    ).rows.map((x) => x.name);
    const all = present.map(id).join(', ');
    const own = await client.query<{ name: string }>(
      `SELECT n.nspname AS name FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
        WHERE r.rolname OPERATOR(pg_catalog.=) ANY ($1::text[]) ORDER BY 1`,
      [present],
    );
    for (const x of own.rows) await client.query(`ALTER SCHEMA ${id(x.name)} OWNER TO ${id(holder)}`);
    await client.query(`REASSIGN OWNED BY ${all} TO ${id(holder)}`);
    // Relations other roles made in the tenant's schemas (a TenantGroup's login acting as a member)
    // are held too: owned by those roles they would stay writable.
    const foreign = await client.query<{ stmt: string }>(FOREIGN_RELATIONS, [holder]);
    for (const f of foreign.rows) await client.query(f.stmt);
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
    for (const s of schemas.rows) {
      const n = id(s.name);
      if (s.owned) {
        await client.query(`REVOKE ALL ON SCHEMA ${n} FROM PUBLIC, ${all} CASCADE`);
        await client.query(`GRANT USAGE ON SCHEMA ${n} TO ${id(login)}`);
      }
      await client.query(`REVOKE ALL ON ALL TABLES IN SCHEMA ${n} FROM PUBLIC, ${all} CASCADE`);
      await client.query(`GRANT SELECT ON ALL TABLES IN SCHEMA ${n} TO ${id(login)}`);
      await client.query(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ${n} FROM PUBLIC, ${all} CASCADE`);
      await client.query(`GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${n} TO ${id(login)}`);
      await client.query(`GRANT EXECUTE ON ALL ROUTINES IN SCHEMA ${n} TO ${id(login)}`);
    }
    if (mode === 'ReadAndTruncate') {
      const tables = await client.query<{ name: string }>(
        `SELECT c.oid::pg_catalog.regclass::text AS name FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles h ON h.oid OPERATOR(pg_catalog.=) c.relowner
          WHERE h.rolname OPERATOR(pg_catalog.=) $1 AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::"char"[])
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid AND NOT t.tgisinternal)`,
        [holder],
      );
      // regclass's text is the table's qualified, quoted name.
      for (const t of tables.rows) await client.query(`GRANT TRUNCATE ON TABLE ${t.name} TO ${id(login)}`);
    }
    const objects = await client.query<{ oid: string }>(
      `SELECT m.oid::text AS oid FROM pg_catalog.pg_largeobject_metadata m JOIN pg_catalog.pg_roles h ON h.oid OPERATOR(pg_catalog.=) m.lomowner
        WHERE h.rolname OPERATOR(pg_catalog.=) $1`,
      [holder],
    );
    for (const o of objects.rows) await client.query(`GRANT SELECT ON LARGE OBJECT ${Number(o.oid)} TO ${id(login)}`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Ends the sessions of the tenant's login roles (waiting up to 5 s for each to go, with its locks and temporary objects). */
export async function endLoginSessions(db: Queryable, logins: readonly string[]): Promise<number> {
  const r = await db.query<{ n: string }>(
    `SELECT pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(a.pid, 5000))::text AS n FROM pg_catalog.pg_stat_activity a
      WHERE a.usename OPERATOR(pg_catalog.=) ANY ($1::text[]) AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()`,
    [logins],
  );
  return Number(r.rows[0]?.n ?? 0);
}

/** Gives the tenant back what its holder holds in the session's database: it owns (and may write) all of it again. */
export async function makeReadWrite(db: Queryable, login: string, holder: string): Promise<void> {
  await db.query(`REASSIGN OWNED BY ${id(holder)} TO ${id(login)}`);
}
