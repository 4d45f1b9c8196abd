/**
 * A TenantGroup's group login (schema mode): one credential and one pool that reach every member's
 * schema and no other. The team acts through its own namespace-confined token; the backend logs in
 * with what the registry Secret gives, through the real PgBouncer and directly.
 */
import pg from 'pg';
import type { Pooler } from '../env/pgbouncer.js';
import { waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import {
  cluster,
  condition,
  operator,
  queryFrom,
  readSecretData,
  sqlError,
  startPooledServer,
  superQuery,
  tenantIdentity,
  tenantReady,
  waitForCondition,
  type Obj,
  type Tenant,
} from './harness.js';

const c = cluster();
const SERVER = 'grouped';
const SHARED = 'group_shared';
let op: Proc;
let pooler: Pooler;
let team: Tenant;
let outsider: Tenant;

const getGroup = async (ns: string, name: string): Promise<Obj | undefined> =>
  (await c.custom
    .getNamespacedCustomObject({ group: 'tenantdb.dev', version: 'v1alpha1', namespace: ns, plural: 'tenantgroups', name })
    .catch(() => undefined)) as Obj | undefined;

const schemaSpec = { isolation: 'Schema', serverRef: { name: SERVER }, deletionPolicy: 'Delete' };
const shops = { labels: { app: 'shops' } };

async function session(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Runs statements in one transaction routed to `schema` as a search_path backend does through a transaction pooler. */
async function inSchema(url: string, schema: string, ...statements: string[]): Promise<pg.QueryResultRow[]> {
  const client = await session(url);
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL search_path TO ${pg.escapeIdentifier(schema)}`);
    let rows: pg.QueryResultRow[] = [];
    for (const s of statements) rows = (await client.query(s)).rows;
    await client.query('COMMIT');
    return rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const refused = (p: Promise<unknown>) =>
  p.then(
    () => 'allowed',
    (err: unknown) => sqlError(err),
  );

beforeAll(async () => {
  op = operator(c, 'group-login', '5s');
  pooler = await startPooledServer(c, SERVER, { sharedDatabase: SHARED, alwaysAllowedCidrs: ['127.0.0.1/32'] });
  team = await tenantIdentity(c, 'glogin');
  outsider = await tenantIdentity(c, 'glogin-other');
  await team.apply('TenantDatabase', 'acme', schemaSpec, shops);
  await team.apply('TenantDatabase', 'globex', schemaSpec, shops);
  await team.apply('TenantDatabase', 'loner', schemaSpec);
  await team.apply('TenantDatabase', 'dbmode', { serverRef: { name: SERVER }, deletionPolicy: 'Delete' }, shops);
  await outsider.apply('TenantDatabase', 'acme', schemaSpec, shops);
  for (const [ns, n] of [
    ['glogin', 'acme'],
    ['glogin', 'globex'],
    ['glogin', 'loner'],
    ['glogin', 'dbmode'],
    ['glogin-other', 'acme'],
  ] as const)
    await tenantReady(c, ns, n, 90_000);
  // Each tenant puts a row in its own schema with its own credentials.
  for (const [ns, n] of [
    ['glogin', 'acme'],
    ['glogin', 'globex'],
    ['glogin', 'loner'],
    ['glogin-other', 'acme'],
  ] as const) {
    const own = (await readSecretData(c, ns, `${n}-db`))!;
    const client = await session(own.DIRECT_URL ?? '');
    await client.query(`CREATE TABLE items (id int PRIMARY KEY, owner text); INSERT INTO items VALUES (1, '${ns}/${n}')`);
    await client.end();
  }
}, 300_000);

afterAll(async () => {
  await op?.stop();
  await pooler?.stop();
});

test('the group login reads and writes every member schema, directly and through the pooler, and nothing else', async () => {
  await team.apply('TenantGroup', 'shops', {
    selector: { matchLabels: { app: 'shops' } },
    groupLogin: { enabled: true, serverRef: { name: SERVER } },
  });
  const g = await waitForCondition(() => getGroup('glogin', 'shops'), 'GroupLoginReady', 'True', 'MembersNotReached', 90_000);
  expect(condition(g, 'Ready')?.status).toBe('True');
  const st = (g.status as { groupLogin: { roleName: string; reached: string[]; notReached: { name: string; reason: string }[] } })
    .groupLogin;
  expect(st.roleName).toBe('glogin_shops_group');
  expect(st.reached).toEqual(['acme', 'globex']);
  expect(st.notReached).toEqual([{ name: 'dbmode', reason: expect.stringContaining('isolation Database') }]);

  const r = (await readSecretData(c, 'glogin', 'shops-tenants'))!;
  expect(r['group-username']).toBe('glogin_shops_group');
  expect(r['group-pooled-uri']).toContain(`/${encodeURIComponent('group.glogin_shops_group')}?`);
  expect(r['group-uri']).toContain(encodeURIComponent(r['group-password'] ?? ''));
  expect(JSON.parse(r['tenants.json'] ?? '{}').group).toMatchObject({ user: 'glogin_shops_group', members: ['acme', 'globex'] });
  const direct = r['group-uri'] ?? '';
  const pooled = r['group-pooled-uri'] ?? '';

  for (const url of [direct, pooled]) {
    for (const schema of ['glogin_acme', 'glogin_globex']) {
      const rows = await inSchema(
        url,
        schema,
        'INSERT INTO items VALUES (2, current_user) ON CONFLICT (id) DO NOTHING',
        'SELECT count(*)::int AS n, current_user AS u FROM items',
      );
      expect(rows[0]).toEqual({ n: 2, u: 'glogin_shops_group' });
    }
    // A schema not in the group: the same namespace's, and another namespace's of the same name and labels.
    for (const schema of ['glogin_loner', 'glogin_other_acme']) {
      // On the path it is skipped (no USAGE); named, it is refused.
      expect(await refused(inSchema(url, schema, 'SELECT * FROM items'))).toBe('42P01');
      expect(await refused(inSchema(url, 'public', `SELECT * FROM ${schema}.items`))).toBe('42501');
    }
    expect(await refused(inSchema(url, 'public', 'CREATE SCHEMA mine'))).toBe('42501');
  }
  // Plain SET search_path on a direct session works as for any role; with no path set, nothing resolves.
  const client = await session(direct);
  try {
    expect(await refused(client.query('SELECT * FROM items'))).toBe('42P01');
    await client.query('SET search_path TO glogin_globex');
    expect((await client.query('SELECT owner FROM items WHERE id = 1')).rows[0]?.owner).toBe('glogin/globex');
  } finally {
    await client.end();
  }
}, 180_000);

test('a member unlabelled loses the group login at once; labelled back, it is reached again', async () => {
  const r = (await readSecretData(c, 'glogin', 'shops-tenants'))!;
  const direct = r['group-uri'] ?? '';
  // A session open across the change is ended (one that did SET ROLE to the member would keep its
  // rights); a new one is refused.
  const open = await session(direct);
  try {
    await open.query('SET search_path TO glogin_acme');
    expect((await open.query('SELECT count(*)::int AS n FROM items')).rows[0]?.n).toBeGreaterThan(0);
    await team.apply('TenantDatabase', 'acme', schemaSpec, { labels: { app: 'other' } });
    const t0 = Date.now();
    await waitFor(
      'acme out of the group login',
      async () => ((await refused(open.query('SELECT 1 FROM glogin_acme.items LIMIT 1'))) !== 'allowed' ? true : undefined),
      20_000,
    );
    expect(Date.now() - t0).toBeLessThan(10_000);
  } finally {
    await open.end();
  }
  expect(await refused(inSchema(r['group-pooled-uri'] ?? '', 'public', 'SELECT * FROM glogin_acme.items'))).toBe('42501');
  expect((await inSchema(r['group-pooled-uri'] ?? '', 'glogin_globex', 'SELECT count(*)::int AS n FROM items'))[0]?.n).toBe(2);
  await team.apply('TenantDatabase', 'acme', schemaSpec, shops);
  await waitFor(
    'acme back in the group login',
    async () => ((await refused(inSchema(direct, 'glogin_acme', 'SELECT 1 FROM items'))) === 'allowed' ? true : undefined),
    20_000,
  );
}, 90_000);

test("the group login logs in through the pooler only from where every reached member's allow-list allows", async () => {
  const r = (await readSecretData(c, 'glogin', 'shops-tenants'))!;
  const pooled = r['group-pooled-uri'] ?? '';
  expect((await queryFrom('127.0.0.2', pooled))[0]?.u).toBe('glogin_shops_group');
  await team.apply('IpWhitelist', 'globex-office', { tenantDatabaseRef: { name: 'globex' }, entries: [{ cidr: '127.0.0.0/29' }] });
  await team.apply('IpWhitelist', 'acme-office', { tenantDatabaseRef: { name: 'acme' }, entries: [{ cidr: '127.0.0.3/32' }] });
  // globex allows 127.0.0.0/29, acme only 127.0.0.3: the group login only 127.0.0.3 (and the always-allowed 127.0.0.1).
  await waitFor(
    '127.0.0.2 refused',
    async () => ((await refused(queryFrom('127.0.0.2', pooled))) !== 'allowed' ? true : undefined),
    30_000,
  );
  expect((await queryFrom('127.0.0.3', pooled))[0]?.u).toBe('glogin_shops_group');
  expect(await refused(queryFrom('127.0.0.4', pooled))).not.toBe('allowed');
  // acme leaves the group: globex's list alone applies.
  await team.apply('TenantDatabase', 'acme', schemaSpec, { labels: { app: 'other' } });
  await waitFor(
    '127.0.0.4 allowed',
    async () => ((await refused(queryFrom('127.0.0.4', pooled))) === 'allowed' ? true : undefined),
    30_000,
  );
  expect(await refused(queryFrom('127.0.0.9', pooled))).not.toBe('allowed');
  await team.apply('TenantDatabase', 'acme', schemaSpec, shops);
  for (const w of ['globex-office', 'acme-office'])
    await team.custom.deleteNamespacedCustomObject({
      group: 'tenantdb.dev',
      version: 'v1alpha1',
      namespace: 'glogin',
      plural: 'ipwhitelists',
      name: w,
    });
  await waitFor(
    '127.0.0.2 allowed again',
    async () => ((await refused(queryFrom('127.0.0.2', pooled))) === 'allowed' ? true : undefined),
    30_000,
  );
}, 150_000);

test('a hostile team cannot get the group login to reach another namespace, nor take over a role', async () => {
  // Another namespace's group naming the first group's role: a Conflict, the role untouched.
  await outsider.apply('TenantGroup', 'steal', {
    selector: { matchLabels: { app: 'shops' } },
    groupLogin: { enabled: true, serverRef: { name: SERVER }, roleName: 'glogin_shops_group' },
  });
  const g = await waitForCondition(() => getGroup('glogin-other', 'steal'), 'GroupLoginReady', 'False', 'Conflict', 60_000);
  expect(condition(g, 'Ready')?.status).toBe('False');
  // Its own group login reaches its own namespace's acme only.
  await outsider.apply('TenantGroup', 'mine', {
    selector: { matchLabels: { app: 'shops' } },
    groupLogin: { enabled: true, serverRef: { name: SERVER } },
  });
  await waitForCondition(() => getGroup('glogin-other', 'mine'), 'GroupLoginReady', 'True', 'Ready', 90_000);
  const theirs = (await outsider.core.readNamespacedSecret({ name: 'mine-tenants', namespace: 'glogin-other' })).data ?? {};
  const url = Buffer.from(theirs['group-uri'] ?? '', 'base64').toString();
  expect((await inSchema(url, 'glogin_other_acme', 'SELECT owner FROM items'))[0]?.owner).toBe('glogin-other/acme');
  for (const schema of ['glogin_acme', 'glogin_globex'])
    expect(await refused(inSchema(url, 'public', `SELECT * FROM ${schema}.items`))).toBe('42501');
  // With its own tenant's SQL: granting membership in another tenant's role, or a group role to itself, is refused.
  const own = (await readSecretData(c, 'glogin-other', 'acme-db'))!;
  const tenant = await session(own.DIRECT_URL ?? '');
  const memberOf = async (role: string) =>
    (
      await superQuery<{ r: string }>(
        c,
        `SELECT g.rolname AS r FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1`,
        [role],
      )
    ).map((m) => m.r);
  try {
    expect(await refused(tenant.query('GRANT glogin_acme TO glogin_other_mine_group'))).toBe('42501');
    expect(await refused(tenant.query('GRANT glogin_shops_group TO glogin_other_acme'))).toBe('42501');
    // PostgreSQL 15 lets a role's own session grant membership in itself: the group role takes none it was not given.
    if ((await refused(tenant.query('GRANT glogin_other_acme TO glogin_shops_group'))) === 'allowed')
      await waitFor(
        'the foreign membership revoked',
        async () => ((await memberOf('glogin_shops_group')).includes('glogin_other_acme') ? undefined : true),
        20_000,
      );
  } finally {
    await tenant.end();
  }
  expect(await memberOf('glogin_other_mine_group')).toEqual(['glogin_other_acme']);
  expect((await memberOf('glogin_shops_group')).sort()).toEqual(['glogin_acme', 'glogin_globex']);
}, 150_000);

test("the group's deletion drops its role and ends its sessions", async () => {
  const r = (await readSecretData(c, 'glogin', 'shops-tenants'))!;
  const open = await session(r['group-uri'] ?? '');
  // What the group login created in a member schema stays there, handed to the member.
  await open.query('CREATE TABLE glogin_globex.made_by_group (x int)');
  const ended = new Promise<void>((resolve) => open.on('error', () => resolve()));
  await team.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: 'glogin',
    plural: 'tenantgroups',
    name: 'shops',
  });
  await waitFor('the group gone', async () => ((await getGroup('glogin', 'shops')) ? undefined : true), 60_000);
  expect(await superQuery(c, `SELECT 1 FROM pg_roles WHERE rolname = 'glogin_shops_group'`)).toEqual([]);
  await Promise.race([ended, refused(open.query('SELECT 1'))]);
  expect(await refused(open.query('SELECT 1'))).not.toBe('allowed');
  await open.end().catch(() => undefined);
  const owner = await superQuery<{ o: string }>(
    c,
    `SELECT tableowner AS o FROM pg_tables WHERE schemaname = 'glogin_globex' AND tablename = 'made_by_group'`,
    [],
    SHARED,
  );
  expect(owner).toEqual([{ o: 'glogin_globex' }]);
  expect(await refused(session(r['group-uri'] ?? ''))).not.toBe('allowed');
}, 120_000);
