import { Recorder, isRead, shown } from '../../src/pg/recording.js';
import { createRole, runTogether } from '../../src/pg/tenant-sql.js';

describe('observe: what passes as a read', () => {
  test.each([
    'SELECT 1',
    'SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1',
    'WITH x AS (SELECT 1) SELECT * FROM x',
    "SELECT 'insert into t' AS text_only",
  ])('%s is a read', (q) => expect(isRead(q)).toBe(true));

  test.each([
    'ALTER ROLE a LOGIN',
    'SELECT pg_catalog.pg_terminate_backend(1)',
    "SELECT pg_catalog.set_config('x', 'y', false)",
    'SELECT pg_try_advisory_lock(1)',
    'SELECT * FROM t FOR UPDATE',
    'SELECT * INTO newtable FROM t',
    'SELECT 1; DROP TABLE t',
    'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
    "SELECT pg_notify('c', 'x')",
    'SELECT nextval($1)',
    'SELECT pg_promote()',
    "SELECT pg_replication_origin_create('o')",
    "SELECT pg_logical_emit_message(true, 'p', 'x')",
    "SELECT pg_backup_start('b')",
    "SELECT dblink_exec('c', 'DROP TABLE t')",
    'SELECT "pg_terminate_backend"(1)',
  ])('%s is not', (q) => expect(isRead(q)).toBe(false));

  test('a plan line has values in place and never a password', () => {
    expect(shown("CREATE ROLE a LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi'")).toBe('CREATE ROLE a LOGIN PASSWORD <redacted>');
    expect(shown('ALTER ROLE "a" IN DATABASE "b" SET x TO $1', ["it's"])).toBe(`ALTER ROLE "a" IN DATABASE "b" SET x TO 'it''s'`);
    // escapeLiteral's form for a value with a backslash.
    expect(shown(`CREATE ROLE a PASSWORD E'x\\\\y''z' LOGIN`)).toBe('CREATE ROLE a PASSWORD <redacted> LOGIN');
  });

  test('writes are kept, not run; transaction control is neither', async () => {
    const ran: string[] = [];
    const rec = new Recorder();
    const q = rec.queryable({
      query: async (text: string) => (ran.push(text), { rows: [], rowCount: 0, command: '', oid: 0, fields: [] }),
    } as never);
    await q.query('BEGIN');
    await q.query('SELECT 1');
    await q.query('DROP ROLE x');
    await q.query('COMMIT');
    expect(ran).toEqual(['SELECT 1']);
    expect(rec.statements).toEqual(['DROP ROLE x']);
  });

  test('statements sent together are kept one line each, none run, the password redacted', async () => {
    const ran: string[] = [];
    const rec = new Recorder();
    const real = { query: async (text: string) => (ran.push(text), { rows: [], rowCount: 0, command: '', oid: 0, fields: [] }) };
    await createRole(rec.queryable(real as never), 'tenant_a', 'SCRAM-SHA-256$4096:abc$def:ghi', 5, 'managed by tenantdb; uid=u');
    expect(ran).toEqual([]);
    expect(rec.statements).toEqual([
      'CREATE ROLE "tenant_a" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT 5 PASSWORD <redacted>',
      `COMMENT ON ROLE "tenant_a" IS 'managed by tenantdb; uid=u'`,
      'GRANT "tenant_a" TO CURRENT_USER',
    ]);
    // Through a recording pool too.
    const pooled = new Recorder();
    await createRole(pooled.pool(real as never), 'tenant_b', 'SCRAM-SHA-256$4096:abc$def:ghi', 5, 'm');
    expect(pooled.statements).toHaveLength(3);
    expect(ran).toEqual([]);
  });

  test('nothing to send, or transaction control among them, is refused before anything is sent', async () => {
    const ran: string[] = [];
    const real = { query: async (text: string) => (ran.push(text), { rows: [], rowCount: 0, command: '', oid: 0, fields: [] }) };
    await expect(runTogether(real as never, [])).rejects.toThrow(/no statements/);
    for (const bad of ['COMMIT', ' begin', 'CREATE DATABASE "x"', 'DROP DATABASE "x"', 'ALTER SYSTEM SET x = 1', 'VACUUM'])
      await expect(runTogether(real as never, ['CREATE ROLE "a"', bad])).rejects.toThrow(/transaction/);
    expect(ran).toEqual([]);
  });

  test('without a session of its own, statements sent together go as one query', async () => {
    const ran: string[] = [];
    const real = { query: async (text: string) => (ran.push(text), { rows: [], rowCount: 0, command: '', oid: 0, fields: [] }) };
    await createRole(real as never, 'tenant_a', 'v', 5, 'm');
    expect(ran).toHaveLength(1);
    expect(ran[0]).toBe(
      `CREATE ROLE "tenant_a" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT 5 PASSWORD 'v';\n` +
        `COMMENT ON ROLE "tenant_a" IS 'm';\nGRANT "tenant_a" TO CURRENT_USER`,
    );
  });
});
