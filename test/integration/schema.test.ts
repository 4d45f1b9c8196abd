/**
 * Schema per tenant: two teams, each through its own ServiceAccount token, get a schema each in the
 * server's shared database. Team "sch-evil" then attacks team "sch-victim" with every SQL its own
 * Secret allows; the superuser only looks. Pooled logins go through a real PgBouncer loaded by the
 * real agent.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import pg from 'pg';
import { OPERATOR_NAMESPACE } from '../env/cluster.js';
import type { Pooler } from '../env/pgbouncer.js';
import { waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import {
  apiMessage,
  applyServer,
  cluster,
  condition,
  ensureDefaultServer,
  getServer,
  getTenant,
  operator,
  queryFrom,
  queryWith,
  readSecretData,
  sqlError,
  startServerPooler,
  superQuery,
  tenantIdentity,
  tenantReady,
  waitForCondition,
  waitTenantGone,
  type Tenant,
} from './harness.js';

const c = cluster();
const SERVER = 'schemas';
const SHARED = 'tenants_shared';
let op: Proc;
let pooler: Pooler;
let evil: Tenant;
let victim: Tenant;

beforeAll(async () => {
  op = operator(c, 'schema', '2s');
  pooler = await startServerPooler(c, SERVER);
  await applyServer(c, SERVER, {
    host: c.env.pg.host,
    port: c.env.pg.port,
    sslMode: 'disable',
    adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: `${SERVER}-admin` },
    pooler: { host: pooler.host, port: pooler.port, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: `${SERVER}-pgbouncer` } },
    alwaysAllowedCidrs: ['127.0.0.1/32'],
    sharedDatabase: SHARED,
  });
  await waitForCondition(() => getServer(c, SERVER), 'PoolerReady', 'True');
  evil = await tenantIdentity(c, 'sch-evil');
  victim = await tenantIdentity(c, 'sch-victim');
  const spec = { isolation: 'Schema', serverRef: { name: SERVER }, deletionPolicy: 'Delete' };
  await evil.apply('TenantDatabase', 'app', spec);
  await victim.apply('TenantDatabase', 'app', spec);
  await tenantReady(c, 'sch-evil', 'app', 90_000);
  await tenantReady(c, 'sch-victim', 'app', 90_000);
}, 240_000);

afterAll(async () => {
  await op?.stop();
  await pooler?.stop();
});

/** The tenant's own Secret, read with its own token. */
async function ownSecret(t: Tenant, name = 'app'): Promise<Record<string, string>> {
  const s = await t.core.readNamespacedSecret({ name: `${name}-db`, namespace: t.namespace });
  return Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

async function session(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** The SQLSTATE a statement fails with, or 'ok'. */
async function outcome(client: pg.Client, text: string): Promise<string> {
  try {
    await client.query(text);
    return 'ok';
  } catch (err) {
    return sqlError(err);
  }
}

test('a schema of its own in the shared database, reached directly and through its pooler alias', async () => {
  const td = await getTenant(c, 'sch-victim', 'app');
  expect(td?.status).toMatchObject({ databaseName: SHARED, schemaName: 'sch_victim_app', roleName: 'sch_victim_app' });
  expect(condition(td, 'PoolerReady')).toMatchObject({ status: 'True', reason: 'Confirmed' });
  const s = await ownSecret(victim);
  expect(s.schema).toBe('sch_victim_app');
  expect(s['pooler-database']).toBe('schema.sch_victim_app');
  expect(new URL(s.DATABASE_URL ?? '').pathname).toBe('/schema.sch_victim_app');
  expect(new URL(s.DIRECT_URL ?? '').pathname).toBe(`/${SHARED}`);
  for (const url of [s.DATABASE_URL, s.DIRECT_URL]) {
    const rows = await queryWith(url ?? '', 'SELECT current_database() AS d, current_schema() AS s, current_user AS u');
    expect(rows[0]).toEqual({ d: SHARED, s: 'sch_victim_app', u: 'sch_victim_app' });
  }
  // Prisma's keys name the schema; libpq (psql here) takes every URL meant for everyone unchanged.
  expect(new URL(s.PRISMA_DATABASE_URL ?? '').searchParams.get('schema')).toBe('sch_victim_app');
  expect(new URL(s.PRISMA_DIRECT_URL ?? '').searchParams.get('schema')).toBe('sch_victim_app');
  for (const key of ['DATABASE_URL', 'DIRECT_URL', 'uri', 'pooled-uri']) {
    const { stdout } = await promisify(execFile)('psql', [s[key] ?? '', '-XAtc', 'SELECT current_schema()']);
    expect(stdout.trim()).toBe('sch_victim_app');
  }
});

test('a hostile schema tenant can neither read, change nor squat anything of another', async () => {
  const victimUrl = (await ownSecret(victim)).DIRECT_URL ?? '';
  const evilUrl = (await ownSecret(evil)).DIRECT_URL ?? '';
  const v = await session(victimUrl);
  const e = await session(evilUrl);
  try {
    await v.query('CREATE TABLE ledger (id int PRIMARY KEY, amount numeric)');
    await v.query('INSERT INTO ledger VALUES (1, 100)');
    // Unqualified names resolve in the tenant's own schema.
    expect(await outcome(e, 'CREATE TABLE notes (t text)')).toBe('ok');
    const attacks: [string, string][] = [
      ['SELECT * FROM sch_victim_app.ledger', '42501'],
      ['INSERT INTO sch_victim_app.ledger VALUES (2, 1)', '42501'],
      ['CREATE TABLE sch_victim_app.planted (x int)', '42501'],
      ['CREATE FUNCTION sch_victim_app.now() RETURNS int LANGUAGE sql AS $$SELECT 1$$', '42501'],
      ['DROP TABLE sch_victim_app.ledger', '42501'],
      ['DROP SCHEMA sch_victim_app CASCADE', '42501'],
      ['ALTER SCHEMA sch_victim_app RENAME TO gone', '42501'],
      ['ALTER SCHEMA sch_evil_app RENAME TO sch_other', '42501'],
      ['CREATE SCHEMA squat', '42501'],
      ['CREATE TABLE public.planted (x int)', '42501'],
      ['ALTER ROLE sch_victim_app SET search_path = sch_evil_app', '42501'],
      ['ALTER DATABASE tenants_shared SET search_path = sch_evil_app', '42501'],
      ['CREATE EXTENSION hstore', '42501'],
    ];
    for (const [text, code] of attacks) expect([text, await outcome(e, text)]).toEqual([text, code]);
    const pid = (await v.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    expect(await outcome(e, `SELECT pg_terminate_backend(${Number(pid)})`)).toBe('42501');
    // What a tenant can list (documented): other schemas' and tables' names in the catalogs.
    const listed = await e.query<{ n: string }>(
      "SELECT n.nspname AS n FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid WHERE c.relname = 'ledger'",
    );
    expect(listed.rows.map((r) => r.n)).toEqual(['sch_victim_app']);
    // The victim's data is as it left it.
    expect((await v.query('SELECT amount FROM ledger')).rows).toEqual([{ amount: '100' }]);
  } finally {
    await v.end();
    await e.end();
  }
});

test('privileges a tenant hands another tenant on its schema are taken back', async () => {
  const e = await session((await ownSecret(evil)).DIRECT_URL ?? '');
  try {
    await e.query('CREATE TABLE shared_bait (x int)');
    await e.query('GRANT USAGE, CREATE ON SCHEMA sch_evil_app TO sch_victim_app, PUBLIC');
    await e.query('GRANT ALL ON shared_bait TO PUBLIC');
    // The next full look at the tenant (the periodic deep one, every 12th re-check) revokes them.
    await waitFor(
      'the grants on the schema to be revoked',
      async () => {
        const acl = await superQuery<{ acl: string | null }>(
          c,
          "SELECT nspacl::text AS acl FROM pg_namespace WHERE nspname = 'sch_evil_app'",
          [],
          SHARED,
        );
        const text = acl[0]?.acl ?? '';
        return !text.includes('sch_victim_app=') && !/(^|[{,])=/.test(text);
      },
      60_000,
    );
  } finally {
    await e.end();
  }
  const v = await session((await ownSecret(victim)).DIRECT_URL ?? '');
  try {
    expect(await outcome(v, 'SELECT * FROM sch_evil_app.shared_bait')).toBe('42501');
  } finally {
    await v.end();
  }
});

test("one schema tenant's allow-list closes its own alias, not the other tenants' of the shared database", async () => {
  await evil.apply('IpWhitelist', 'office', {
    tenantDatabaseRef: { name: 'app' },
    entries: [{ cidr: '127.0.0.5/32', description: 'office' }],
  });
  await waitForCondition(() => getTenant(c, 'sch-evil', 'app'), 'AccessRulesApplied', 'True', 'Enforced');
  const evilPooled = (await ownSecret(evil)).DATABASE_URL ?? '';
  const victimPooled = (await ownSecret(victim)).DATABASE_URL ?? '';
  await expect(queryFrom('127.0.0.6', evilPooled)).rejects.toThrow();
  expect((await queryFrom('127.0.0.5', evilPooled))[0]).toEqual({ u: 'sch_evil_app' });
  expect((await queryFrom('127.0.0.6', victimPooled))[0]).toEqual({ u: 'sch_victim_app' });
});

test('status shows the size of the schema and the sessions of the role', async () => {
  const v = await session((await ownSecret(victim)).DIRECT_URL ?? '');
  try {
    await v.query("CREATE TABLE blob AS SELECT g AS id, repeat('x', 500) AS body FROM generate_series(1, 10000) g");
    const td = await waitFor(
      'size and sessions in status',
      async () => {
        const t = await getTenant(c, 'sch-victim', 'app');
        const st = t?.status as { sizeBytes?: number; activeConnections?: number } | undefined;
        return (st?.sizeBytes ?? 0) > 4_000_000 && (st?.activeConnections ?? 0) >= 1 ? st : undefined;
      },
      60_000,
    );
    expect(td.sizeBytes).toBeLessThan(64_000_000);
  } finally {
    await v.end();
  }
});

test('the API server refuses what a schema tenant cannot have, read through the team token', async () => {
  const refused = async (spec: Record<string, unknown>) =>
    evil.apply('TenantDatabase', 'bad', { isolation: 'Schema', serverRef: { name: SERVER }, ...spec }).then(
      () => 'accepted',
      (err: unknown) => apiMessage(err),
    );
  expect(await refused({ databaseName: 'mine' })).toMatch(/databaseName is not valid with isolation Schema/);
  expect(await refused({ extensions: ['hstore'] })).toMatch(/extensions are only valid with isolation Database/);
  expect(await refused({ shadowDatabase: true })).toMatch(/shadowDatabase is only valid with isolation Database/);
  expect(await refused({ schemaName: 'public' })).toMatch(/schemaName must not be one of/);
  expect(await refused({ schemaName: 'pg_catalog' })).toMatch(/schemaName must not be one of/);
  expect(await refused({ schemaName: 'x'.repeat(57) })).toMatch(/spec\.schemaName: Too long: may not be more than 56 bytes/);
  // A tenant that exists cannot point itself at another schema afterwards (its pooler alias would follow).
  const patched = await evil.custom
    .patchNamespacedCustomObject(
      {
        group: 'tenantdb.dev',
        version: 'v1alpha1',
        namespace: 'sch-evil',
        plural: 'tenantdatabases',
        name: 'app',
        body: { spec: { schemaName: 'sch_victim_app' } },
      },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    )
    .then(
      () => 'accepted',
      (err: unknown) => apiMessage(err),
    );
  expect(patched).toMatch(/schemaName cannot be added or removed/);
});

test("a tenant naming another tenant's schema gets a Conflict and nothing changes", async () => {
  await evil.apply('TenantDatabase', 'squat', { isolation: 'Schema', serverRef: { name: SERVER }, schemaName: 'sch_victim_app' });
  const td = await waitForCondition(() => getTenant(c, 'sch-evil', 'squat'), 'Ready', 'False', 'Conflict');
  expect(condition(td, 'Stalled')?.status).toBe('True');
  const owner = await superQuery<{ o: string }>(
    c,
    "SELECT pg_get_userbyid(nspowner) AS o FROM pg_namespace WHERE nspname = 'sch_victim_app'",
    [],
    SHARED,
  );
  expect(owner).toEqual([{ o: 'sch_victim_app' }]);
  expect(await readSecretData(c, 'sch-evil', 'squat-db')).toBeUndefined();
});

test('a server without sharedDatabase refuses schema tenants in status', async () => {
  await ensureDefaultServer(c);
  await evil.apply('TenantDatabase', 'nowhere', { isolation: 'Schema' });
  const td = await waitForCondition(() => getTenant(c, 'sch-evil', 'nowhere'), 'Ready', 'False', 'NoSharedDatabase');
  expect(condition(td, 'Ready')?.message).toMatch(/sharedDatabase/);
  await expect(
    applyServer(c, SERVER, {
      host: c.env.pg.host,
      port: c.env.pg.port,
      sslMode: 'disable',
      adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: `${SERVER}-admin` },
      sharedDatabase: 'elsewhere',
    }).then(
      () => 'accepted',
      (err: unknown) => apiMessage(err),
    ),
  ).resolves.toMatch(/sharedDatabase cannot change once set/);
});

test('Delete drops the schema and the role; Retain keeps the schema with login off; the other tenant goes on', async () => {
  await victim.apply('TenantDatabase', 'kept', { isolation: 'Schema', serverRef: { name: SERVER } });
  await tenantReady(c, 'sch-victim', 'kept');
  const keptUrl = (await ownSecret(victim, 'kept')).DIRECT_URL ?? '';
  await queryWith(keptUrl, 'CREATE TABLE precious (x int)');
  await victim.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: 'sch-victim',
    plural: 'tenantdatabases',
    name: 'kept',
  });
  await waitTenantGone(c, 'sch-victim', 'kept');
  const kept = await superQuery<{ n: string }>(
    c,
    "SELECT relname AS n FROM pg_class WHERE relnamespace = 'sch_victim_kept'::regnamespace",
    [],
    SHARED,
  );
  expect(kept).toEqual([{ n: 'precious' }]);
  expect(await superQuery(c, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'sch_victim_kept'")).toEqual([{ rolcanlogin: false }]);

  await evil.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: 'sch-evil',
    plural: 'tenantdatabases',
    name: 'app',
  });
  await waitTenantGone(c, 'sch-evil', 'app');
  expect(await superQuery(c, "SELECT 1 FROM pg_namespace WHERE nspname = 'sch_evil_app'", [], SHARED)).toEqual([]);
  expect(await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'sch_evil_app'")).toEqual([]);
  const s = await ownSecret(victim);
  expect((await queryWith(s.DATABASE_URL ?? '', 'SELECT count(*)::int AS n FROM ledger'))[0]).toEqual({ n: 1 });
});

test('Delete finishes for a schema of more relations than one transaction can lock', async () => {
  await victim.apply('TenantDatabase', 'huge', { isolation: 'Schema', serverRef: { name: SERVER }, deletionPolicy: 'Delete' });
  await tenantReady(c, 'sch-victim', 'huge');
  const v = await session((await ownSecret(victim, 'huge')).DIRECT_URL ?? '');
  try {
    // 8,000 tables with an index and TOAST: some 32,000 locks in one DROP, past what a server of
    // 300 connections and 64 locks per transaction holds. Created in pieces (a CREATE locks too).
    for (let i = 0; i < 8000; i += 500)
      await v.query(
        `DO $$ BEGIN FOR i IN ${i}..${i + 499} LOOP EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, body text)', i); END LOOP; END $$`,
      );
  } finally {
    await v.end();
  }
  await victim.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: 'sch-victim',
    plural: 'tenantdatabases',
    name: 'huge',
  });
  await waitTenantGone(c, 'sch-victim', 'huge', 120_000);
  expect(await superQuery(c, "SELECT 1 FROM pg_namespace WHERE nspname = 'sch_victim_huge'", [], SHARED)).toEqual([]);
  expect(await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'sch_victim_huge'")).toEqual([]);
}, 240_000);
