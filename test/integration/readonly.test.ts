/**
 * Read-only tenants on a real PostgreSQL and PgBouncer: spec.readOnly keeps reads working, directly
 * and through the pooler, and refuses every write a tenant could try (its own SECURITY DEFINER
 * function, a grant to PUBLIC, taking its tables back, the holder role); turned off, everything is
 * as it was. A quota with action ReadOnly switches a tenant to reads plus DELETE/TRUNCATE past it,
 * and back once it is under. The tenant acts through its own ServiceAccount token.
 */
import pg from 'pg';
import type { Pooler } from '../env/pgbouncer.js';
import type { Proc } from '../env/process.js';
import { waitFor } from '../env/ports.js';
import {
  apiMessage,
  cluster,
  condition,
  getTenant,
  operator,
  queryWith,
  readSecretData,
  sqlError,
  startPooledServer,
  superQuery,
  tenantIdentity,
  tenantReady,
  waitForCondition,
  type Tenant,
} from './harness.js';

const c = cluster();
let op: Proc;
let pooler: Pooler;
let team: Tenant;
const SERVER = 'frozen';
const NS = 'frozen';

beforeAll(async () => {
  op = operator(c, 'readonly');
  team = await tenantIdentity(c, NS);
  pooler = await startPooledServer(c, SERVER, { sharedDatabase: 'frozen_shared' });
}, 120_000);

afterAll(async () => {
  await op?.stop();
  await pooler?.stop();
});

/** The SQLSTATE a statement fails with, or 'ok'. */
async function outcome(url: string, text: string): Promise<string> {
  try {
    await queryWith(url, text);
    return 'ok';
  } catch (err) {
    return sqlError(err);
  }
}

const INSUFFICIENT = '42501';

/** What a hostile read-only tenant tries: every one must be refused (insufficient privilege). */
const WRITES = (role: string, schema: string) => [
  `INSERT INTO ${schema}.items VALUES (100, 'x')`,
  `UPDATE ${schema}.items SET v = 'y'`,
  `DELETE FROM ${schema}.items`,
  `TRUNCATE ${schema}.items`,
  `CREATE TABLE ${schema}.more (n int)`,
  `DROP TABLE ${schema}.items`,
  `ALTER TABLE ${schema}.items ADD COLUMN w int`,
  `CREATE INDEX ON ${schema}.items (v)`,
  `SELECT nextval('${schema}.counter')`,
  `SELECT ${schema}.add_item(7)`,
  // (A GRANT without the grant option only warns; the INSERT after it is what must fail.)
  `GRANT INSERT ON ${schema}.items TO ${role}; INSERT INTO ${schema}.items VALUES (101, 'x')`,
  `ALTER TABLE ${schema}.items OWNER TO ${role}`,
  `REASSIGN OWNED BY ${role}_hold TO ${role}`,
  `SET ROLE ${role}_hold`,
  `CREATE SCHEMA sneaky`,
];

async function prepare(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE TABLE ${schema}.items (n int PRIMARY KEY, v text)`);
    await client.query(`INSERT INTO ${schema}.items VALUES (1, 'one'), (2, 'two')`);
    await client.query(`CREATE SEQUENCE ${schema}.counter`);
    await client.query(`SELECT nextval('${schema}.counter')`);
    await client.query(`CREATE VIEW ${schema}.names AS SELECT v FROM ${schema}.items`);
    // Runs with its owner's rights: owned by whoever owns the tables, it would write past read-only.
    await client.query(
      `CREATE FUNCTION ${schema}.add_item(k int) RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = ${schema}, pg_temp
         AS $$ INSERT INTO ${schema}.items VALUES (k, 'added') RETURNING n $$`,
    );
    await client.query(`GRANT INSERT, UPDATE, DELETE ON ${schema}.items TO PUBLIC`);
  } finally {
    await client.end();
  }
}

test.each([
  ['Database', 'db', 'public'],
  ['Schema', 'sch', ''],
])(
  'isolation %s: readOnly keeps reads, directly and pooled, refuses every write, and is undone without loss',
  async (isolation, name, schemaIn) => {
    const base = { serverRef: { name: SERVER }, isolation, passwordRotation: { strategy: 'Overlap', gracePeriod: '5s' } };
    await team.apply('TenantDatabase', name, base);
    await tenantReady(c, NS, name);
    const s = (await readSecretData(c, NS, `${name}-db`)) ?? {};
    const schema = schemaIn || (s.schema ?? '');
    const role = s.username ?? '';
    await prepare(s.DIRECT_URL ?? '', schema);
    // A session open before the switch.
    const held = new pg.Client({ connectionString: s.DIRECT_URL });
    held.on('error', () => undefined);
    await held.connect();

    await team.apply('TenantDatabase', name, { ...base, readOnly: true });
    const t = await waitForCondition(() => getTenant(c, NS, name), 'ReadOnly', 'True', 'Requested', 30_000);
    await waitForCondition(() => getTenant(c, NS, name), 'Ready', 'True', 'ReadOnly', 30_000);
    expect(condition(t, 'ReadOnly')?.message).toMatch(/spec.readOnly/);

    for (const url of [s.DIRECT_URL ?? '', s.DATABASE_URL ?? '']) {
      expect(await queryWith(url, `SELECT n, v FROM ${schema}.items ORDER BY n`)).toEqual([
        { n: 1, v: 'one' },
        { n: 2, v: 'two' },
      ]);
      expect(await queryWith(url, `SELECT count(*)::int AS k FROM ${schema}.names`)).toEqual([{ k: 2 }]);
      expect(await queryWith(url, `SELECT last_value::int AS l FROM ${schema}.counter`)).toEqual([{ l: 1 }]);
      // Its own temporary tables are its session's, not data: allowed.
      expect(await outcome(url, 'CREATE TEMP TABLE scratch AS SELECT 1 AS x')).toBe('ok');
    }
    for (const w of WRITES(role, schema)) expect([w, await outcome(s.DIRECT_URL ?? '', w)]).toEqual([w, INSUFFICIENT]);
    for (const w of WRITES(role, schema).slice(0, 4)) expect([w, await outcome(s.DATABASE_URL ?? '', w)]).toEqual([w, INSUFFICIENT]);
    // The session open before the switch was ended with it (its locks could have held the switch off).
    await expect(held.query(`INSERT INTO ${schema}.items VALUES (50, 'held')`)).rejects.toThrow(/terminat|connection/);

    // Its own Event trail says what happened.
    const ev = await c.core.listNamespacedEvent({ namespace: NS, fieldSelector: `involvedObject.name=${name}` });
    expect(ev.items.some((e) => e.reason === 'ReadOnly' && /read-only/.test(e.message ?? ''))).toBe(true);

    // The second login role (after a rotation) is just as read-only.
    await team.apply('TenantDatabase', name, { ...base, readOnly: true }, { annotations: { 'tenantdb.dev/rotate-password': 'r1' } });
    const rotated = await waitFor(
      'the switch to the second login role',
      async () => {
        const x = await readSecretData(c, NS, `${name}-db`);
        return x && x.username !== role ? x : undefined;
      },
      30_000,
    );
    expect(await outcome(rotated.DIRECT_URL ?? '', `INSERT INTO ${schema}.items VALUES (60, 'twin')`)).toBe(INSUFFICIENT);
    expect(await queryWith(rotated.DATABASE_URL ?? '', `SELECT count(*)::int AS k FROM ${schema}.items`)).toEqual([{ k: 2 }]);

    // Back to read-write: the same rows, the function a SECURITY DEFINER that works, the tables the tenant's.
    await team.apply('TenantDatabase', name, base, { annotations: { 'tenantdb.dev/rotate-password': 'r1' } });
    await waitForCondition(() => getTenant(c, NS, name), 'ReadOnly', 'False', 'ReadWrite', 30_000);
    await waitForCondition(() => getTenant(c, NS, name), 'Ready', 'True', 'Provisioned', 30_000);
    for (const url of [rotated.DIRECT_URL ?? '', rotated.DATABASE_URL ?? ''])
      expect(await outcome(url, `INSERT INTO ${schema}.items VALUES (${url === rotated.DIRECT_URL ? 3 : 4}, 'back')`)).toBe('ok');
    expect(await queryWith(rotated.DIRECT_URL ?? '', `SELECT ${schema}.add_item(5) AS n`)).toEqual([{ n: 5 }]);
    expect(await queryWith(rotated.DIRECT_URL ?? '', `SELECT count(*)::int AS k FROM ${schema}.items`)).toEqual([{ k: 5 }]);
    const owners = await superQuery<{ owner: string }>(
      c,
      `SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1`,
      [schema],
      s.database,
    );
    expect(owners).toEqual([{ owner: role }]);
    const definer = await superQuery<{ d: boolean; owner: string }>(
      c,
      `SELECT prosecdef AS d, pg_get_userbyid(proowner) AS owner FROM pg_proc WHERE proname = 'add_item'`,
      [],
      s.database,
    );
    expect(definer).toEqual([{ d: true, owner: role }]);
    await held.end().catch(() => undefined);
  },
  150_000,
);

test('a role name ending in _hold is refused: it would be the name of another tenant holder role', async () => {
  const refused = await team.apply('TenantDatabase', 'squat', { serverRef: { name: SERVER }, roleName: 'frozen_db_hold' }).then(
    () => 'applied',
    (err: unknown) => apiMessage(err),
  );
  expect(refused).toMatch(/must not end in _hold/);
  // A derived name (namespace frozen, name hold) ending in it is refused in status.
  await team.apply('TenantDatabase', 'hold', { serverRef: { name: SERVER } });
  const t = await waitForCondition(() => getTenant(c, NS, 'hold'), 'Ready', 'False', 'InvalidName', 30_000);
  expect(condition(t, 'Ready')?.message).toMatch(/ends in _hold/);
});

test('quota with action ReadOnly: past it reads and TRUNCATE only; back under it, writes again', async () => {
  const spec = (extra: Record<string, unknown> = {}) => ({
    serverRef: { name: SERVER },
    quota: { size: '40Mi', action: 'ReadOnly' },
    ...extra,
  });
  await team.apply('TenantDatabase', 'big', spec());
  const ready = await tenantReady(c, NS, 'big');
  expect(condition(ready, 'ReadOnly')).toMatchObject({ status: 'False', reason: 'ReadWrite' });
  const s = (await readSecretData(c, NS, 'big-db')) ?? {};
  await queryWith(s.DIRECT_URL ?? '', 'CREATE TABLE blob AS SELECT g, repeat(md5(g::text), 20) AS pad FROM generate_series(1, 80000) g');
  await queryWith(s.DIRECT_URL ?? '', 'CREATE TABLE keep (n int)');
  // A full look (a spec change) measures again.
  await team.apply('TenantDatabase', 'big', spec({ settings: { timezone: 'UTC' } }));
  const over = await waitForCondition(() => getTenant(c, NS, 'big'), 'ReadOnly', 'True', 'QuotaExceeded', 30_000);
  expect(condition(over, 'QuotaExceeded')?.status).toBe('True');
  expect(condition(over, 'Ready')).toMatchObject({ status: 'True', reason: 'ReadOnly' });
  for (const url of [s.DIRECT_URL ?? '', s.DATABASE_URL ?? '']) {
    expect(await outcome(url, 'INSERT INTO keep VALUES (1)')).toBe(INSUFFICIENT);
    expect(await outcome(url, 'CREATE TABLE more (n int)')).toBe(INSUFFICIENT);
    expect(await queryWith(url, 'SELECT count(*)::int AS k FROM blob')).toEqual([{ k: 80000 }]);
  }
  // Not DELETE (it would run rules and triggers with the holder's rights); TRUNCATE frees the space.
  expect(await outcome(s.DIRECT_URL ?? '', 'DELETE FROM blob WHERE g <= 10')).toBe(INSUFFICIENT);
  expect(await outcome(s.DIRECT_URL ?? '', 'TRUNCATE blob')).toBe('ok');
  // Under the quota again: the next full look gives writes back.
  await team.apply('TenantDatabase', 'big', spec({ settings: { timezone: 'Europe/Paris' } }));
  await waitForCondition(() => getTenant(c, NS, 'big'), 'ReadOnly', 'False', 'ReadWrite', 60_000);
  expect(await outcome(s.DIRECT_URL ?? '', 'INSERT INTO keep VALUES (1)')).toBe('ok');
  expect(await outcome(s.DATABASE_URL ?? '', 'INSERT INTO keep VALUES (2)')).toBe('ok');
}, 120_000);

test('what a tenant prepares while it may write gives it no write once read-only, nor stops the switch', async () => {
  const base = { serverRef: { name: SERVER }, passwordRotation: { strategy: 'Overlap', gracePeriod: '1h' } };
  await team.apply('TenantDatabase', 'sly', base);
  await tenantReady(c, NS, 'sly');
  const first = (await readSecretData(c, NS, 'sly-db')) ?? {};
  await queryWith(first.DIRECT_URL ?? '', 'CREATE TABLE t (n int); CREATE TABLE log (n int)');
  // Its second login role (after a rotation) acting as itself: objects and grants of its own.
  await team.apply('TenantDatabase', 'sly', base, { annotations: { 'tenantdb.dev/rotate-password': 'r1' } });
  const second = await waitFor(
    'the switch to the second login role',
    async () => {
      const x = await readSecretData(c, NS, 'sly-db');
      return x && x.username !== first.username ? x : undefined;
    },
    30_000,
  );
  // Its name (<role>-2) is quoted where SQL names it.
  const twin = second.username ?? '';
  await queryWith(
    first.DIRECT_URL ?? '',
    [
      `GRANT INSERT, UPDATE ON t TO "${twin}" WITH GRANT OPTION`,
      `GRANT CREATE ON SCHEMA public TO "${twin}" WITH GRANT OPTION`,
      // A rule that writes when rows are deleted, and default privileges that outlive the switch.
      'CREATE RULE on_delete AS ON DELETE TO t DO ALSO INSERT INTO log VALUES (old.n)',
      'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC',
      // A routine moved into a schema made after it (its schema would be handed over after it).
      'CREATE SCHEMA s1; CREATE FUNCTION s1.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; CREATE SCHEMA s2; ALTER FUNCTION s1.f() SET SCHEMA s2',
    ].join('; '),
  );
  await queryWith(second.DIRECT_URL ?? '', 'RESET ROLE; CREATE TABLE public.own (n int)');
  // A session holding a temporary function and a lock on t, left open.
  const holder = new pg.Client({ connectionString: first.DIRECT_URL });
  holder.on('error', () => undefined);
  await holder.connect();
  await holder.query('CREATE FUNCTION pg_temp.tf() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$');
  await holder.query('BEGIN; LOCK TABLE t IN ACCESS SHARE MODE');

  await team.apply('TenantDatabase', 'sly', { ...base, readOnly: true }, { annotations: { 'tenantdb.dev/rotate-password': 'r1' } });
  await waitForCondition(() => getTenant(c, NS, 'sly'), 'Ready', 'True', 'ReadOnly', 60_000);
  for (const [url, text] of [
    [first.DIRECT_URL, 'INSERT INTO t VALUES (1)'],
    [second.DIRECT_URL, 'INSERT INTO t VALUES (1)'],
    [second.DIRECT_URL, 'RESET ROLE; INSERT INTO t VALUES (1)'],
    [second.DIRECT_URL, 'RESET ROLE; INSERT INTO public.own VALUES (1)'],
    [
      second.DIRECT_URL,
      `RESET ROLE; GRANT INSERT ON t TO ${first.username ?? ''}; SET ROLE ${first.username ?? ''}; INSERT INTO t VALUES (1)`,
    ],
    [second.DIRECT_URL, 'RESET ROLE; CREATE TABLE public.more (n int)'],
    [first.DIRECT_URL, 'DELETE FROM t'],
  ] as const)
    expect([text, await outcome(url ?? '', text)]).toEqual([text, INSUFFICIENT]);
  // Default privileges the login still has do not make the operator switch again and again.
  const made = async () =>
    (await c.core.listNamespacedEvent({ namespace: NS, fieldSelector: 'involvedObject.name=sly' })).items.filter(
      (e) => e.reason === 'ReadOnly',
    ).length;
  const before = await made();
  await team.apply(
    'TenantDatabase',
    'sly',
    { ...base, readOnly: true, settings: { timezone: 'UTC' } },
    { annotations: { 'tenantdb.dev/rotate-password': 'r1' } },
  );
  await waitFor('the next full look', async () => {
    const t = await getTenant(c, NS, 'sly');
    return t?.status?.observedGeneration === t?.metadata?.generation && condition(t, 'Ready')?.reason === 'ReadOnly' ? true : undefined;
  });
  expect(await made()).toBe(before);
  await holder.end().catch(() => undefined);
}, 150_000);
