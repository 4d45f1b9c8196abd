/** Conflicts, deletion under both policies, and drift repaired by the periodic re-check. */
import type { Proc } from '../env/process.js';
import { waitFor } from '../env/ports.js';
import {
  applyTenant,
  cluster,
  condition,
  deleteTenant,
  dropRoleByHand,
  ensureDefaultServer,
  getTenant,
  namespace,
  operator,
  queryWith,
  readSecretData,
  superQuery,
  tenantReady,
  waitForCondition,
  waitTenantGone,
} from './harness.js';

const c = cluster();
let op: Proc;

beforeAll(async () => {
  op = operator(c, 'lifecycle', '2s');
  await ensureDefaultServer(c);
  for (const ns of ['life-a', 'life-b']) await namespace(c, ns);
}, 120_000);

afterAll(async () => {
  await op?.stop();
});

const roleExists = async (role: string) =>
  (await superQuery(c, 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [role]))[0] as { rolcanlogin: boolean } | undefined;
const dbExists = async (db: string) => (await superQuery(c, 'SELECT 1 FROM pg_database WHERE datname = $1', [db])).length === 1;

describe('a second claim on a name', () => {
  test('a TenantDatabase in another namespace asking for a taken database is a Conflict and changes nothing', async () => {
    await applyTenant(c, 'life-a', 'first', { databaseName: 'shared_name', roleName: 'shared_role' });
    await tenantReady(c, 'life-a', 'first');
    const before = (await readSecretData(c, 'life-a', 'first-db')) ?? {};
    const [verifierBefore] = await superQuery(c, "SELECT rolpassword FROM pg_authid WHERE rolname = 'shared_role'");

    await applyTenant(c, 'life-b', 'second', { databaseName: 'shared_name', roleName: 'shared_role' });
    const td = await waitForCondition(() => getTenant(c, 'life-b', 'second'), 'Ready', 'False', 'Conflict');
    expect(condition(td, 'Ready')?.message).toMatch(/belongs to TenantDatabase life-a\/first/);
    expect(await readSecretData(c, 'life-b', 'second-db')).toBeUndefined();
    const [verifierAfter] = await superQuery(c, "SELECT rolpassword FROM pg_authid WHERE rolname = 'shared_role'");
    expect(verifierAfter).toEqual(verifierBefore);
    expect((await queryWith(before.DATABASE_URL ?? ''))[0]).toEqual({ u: 'shared_role', d: 'shared_name' });

    // Deleting the loser must not touch the winner's database or role.
    await applyTenant(c, 'life-b', 'second', { databaseName: 'shared_name', roleName: 'shared_role', deletionPolicy: 'Delete' });
    await deleteTenant(c, 'life-b', 'second');
    await waitTenantGone(c, 'life-b', 'second');
    expect(await dbExists('shared_name')).toBe(true);
    expect((await queryWith(before.DATABASE_URL ?? ''))[0]).toEqual({ u: 'shared_role', d: 'shared_name' });
  });

  test('two names that map to one identifier: the second is a Conflict, and naming it explicitly resolves it', async () => {
    await namespace(c, 'col-x');
    await namespace(c, 'col');
    await applyTenant(c, 'col-x', 'app');
    await tenantReady(c, 'col-x', 'app');
    await applyTenant(c, 'col', 'x-app');
    const td = await waitForCondition(() => getTenant(c, 'col', 'x-app'), 'Ready', 'False', 'Conflict');
    expect(condition(td, 'Ready')?.message).toMatch(/col_x_app already belongs to TenantDatabase col-x\/app/);
    expect(td.status?.databaseName).toBeUndefined();
    await applyTenant(c, 'col', 'x-app', { databaseName: 'col_x_app_2', roleName: 'col_x_app_2' });
    const ok = await tenantReady(c, 'col', 'x-app');
    expect(ok.status?.databaseName).toBe('col_x_app_2');
  });

  test('a database a human created is never adopted', async () => {
    await superQuery(c, 'CREATE DATABASE handmade');
    await applyTenant(c, 'life-a', 'handmade', { databaseName: 'handmade' });
    const td = await waitForCondition(() => getTenant(c, 'life-a', 'handmade'), 'Ready', 'False', 'Conflict');
    expect(condition(td, 'Ready')?.message).toMatch(/not managed by tenantdb/);
    const [row] = await superQuery(c, "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'handmade'");
    expect(row?.owner).toBe('postgres');
  });
});

describe('deletion', () => {
  test('Retain keeps database and role with login disabled and ends sessions; the Secret goes', async () => {
    await applyTenant(c, 'life-a', 'keep', { deletionPolicy: 'Retain' });
    await tenantReady(c, 'life-a', 'keep');
    const s = (await readSecretData(c, 'life-a', 'keep-db')) ?? {};
    await queryWith(s.DATABASE_URL ?? '', "CREATE TABLE precious (v text); INSERT INTO precious VALUES ('data')");
    await deleteTenant(c, 'life-a', 'keep');
    await waitTenantGone(c, 'life-a', 'keep');
    expect(await dbExists('life_a_keep')).toBe(true);
    expect(await roleExists('life_a_keep')).toEqual({ rolcanlogin: false });
    expect(await superQuery(c, 'SELECT v FROM precious', [], 'life_a_keep')).toEqual([{ v: 'data' }]);
    await expect(queryWith(s.DATABASE_URL ?? '')).rejects.toMatchObject({ code: '28000' });
    await waitFor('the Secret to be garbage-collected', async () => !(await readSecretData(c, 'life-a', 'keep-db')), 30_000);
  });

  test('Delete ends open sessions and drops database, shadow database and role', async () => {
    await applyTenant(c, 'life-a', 'drop', { deletionPolicy: 'Delete', shadowDatabase: true });
    await tenantReady(c, 'life-a', 'drop');
    const s = (await readSecretData(c, 'life-a', 'drop-db')) ?? {};
    const pg = await import('pg');
    const open = new pg.default.Client({ connectionString: s.DATABASE_URL });
    open.on('error', () => undefined);
    await open.connect();
    await deleteTenant(c, 'life-a', 'drop');
    await waitTenantGone(c, 'life-a', 'drop');
    expect(await dbExists('life_a_drop')).toBe(false);
    expect(await dbExists('life_a_drop_shadow')).toBe(false);
    expect(await roleExists('life_a_drop')).toBeUndefined();
    await expect(open.query('SELECT 1')).rejects.toBeDefined();
    await open.end().catch(() => undefined);
    await waitFor('the Secret to be garbage-collected', async () => !(await readSecretData(c, 'life-a', 'drop-db')), 30_000);
  });
});

test("deleting a namespace runs each tenant's deletion policy before the namespace goes", async () => {
  await namespace(c, 'doomed');
  await applyTenant(c, 'doomed', 'scratch', { deletionPolicy: 'Delete' });
  await applyTenant(c, 'doomed', 'ledger', { deletionPolicy: 'Retain' });
  await tenantReady(c, 'doomed', 'scratch');
  await tenantReady(c, 'doomed', 'ledger');
  await c.core.deleteNamespace({ name: 'doomed' });
  await waitFor(
    'the namespace to be gone',
    async () =>
      (await c.core.readNamespace({ name: 'doomed' }).then(
        () => false,
        () => true,
      )) || undefined,
    90_000,
    500,
  );
  expect(await dbExists('doomed_scratch')).toBe(false);
  expect(await roleExists('doomed_scratch')).toBeUndefined();
  expect(await dbExists('doomed_ledger')).toBe(true);
  expect(await roleExists('doomed_ledger')).toEqual({ rolcanlogin: false });
}, 120_000);

describe('drift is repaired on the periodic re-check', () => {
  let secret: Record<string, string>;
  beforeAll(async () => {
    await applyTenant(c, 'life-a', 'drift');
    await tenantReady(c, 'life-a', 'drift');
    secret = (await readSecretData(c, 'life-a', 'drift-db')) ?? {};
  });

  const works = async (s: Record<string, string>) =>
    waitFor(
      'a login with the Secret',
      async () =>
        (await queryWith(s.DATABASE_URL ?? '').then(
          () => true,
          () => false,
        )) || undefined,
      30_000,
      500,
    );

  test("a role dropped by hand comes back and the Secret's password works again", async () => {
    await dropRoleByHand(c, 'life_a_drift', 'life_a_drift');
    await works(secret);
    const [db] = await superQuery(
      c,
      "SELECT pg_get_userbyid(datdba) AS owner, has_database_privilege('life_a_drift', datname, 'CONNECT, CREATE, TEMPORARY') AS rights FROM pg_database WHERE datname = 'life_a_drift'",
    );
    expect(db).toEqual({ owner: c.env.pg.admin.user, rights: true });
    expect((await readSecretData(c, 'life-a', 'drift-db'))?.password).toBe(secret.password);
  });

  test('a password changed by hand is put back from the Secret', async () => {
    await superQuery(c, "ALTER ROLE life_a_drift PASSWORD 'changed-by-hand'");
    await expect(queryWith(secret.DATABASE_URL ?? '')).rejects.toMatchObject({ code: '28P01' });
    await works(secret);
  });

  test('an edited Secret is restored, keeping its password', async () => {
    await c.core.patchNamespacedSecret(
      {
        name: 'drift-db',
        namespace: 'life-a',
        body: {
          data: { DATABASE_URL: Buffer.from('postgresql://wrong').toString('base64'), host: Buffer.from('elsewhere').toString('base64') },
        },
      },
      (await import('@kubernetes/client-node')).setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    await waitFor(
      'the Secret to be restored',
      async () => (await readSecretData(c, 'life-a', 'drift-db'))?.DATABASE_URL === secret.DATABASE_URL || undefined,
      30_000,
    );
    expect(await readSecretData(c, 'life-a', 'drift-db')).toEqual(secret);
  });

  test('a new secretName moves the connection details, keeping the password, and removes the old Secret', async () => {
    const before = (await readSecretData(c, 'life-a', 'drift-db')) ?? {};
    await applyTenant(c, 'life-a', 'drift', { secretName: 'drift-conn' });
    const moved = await waitFor('the new Secret', () => readSecretData(c, 'life-a', 'drift-conn'), 30_000);
    expect(moved.password).toBe(before.password);
    await waitFor('the old Secret to go', async () => !(await readSecretData(c, 'life-a', 'drift-db')) || undefined, 30_000);
    await applyTenant(c, 'life-a', 'drift', {});
    await waitFor('the Secret to move back', () => readSecretData(c, 'life-a', 'drift-db'), 30_000);
    expect((await readSecretData(c, 'life-a', 'drift-db'))?.password).toBe(before.password);
    await waitFor('drift-conn to go', async () => !(await readSecretData(c, 'life-a', 'drift-conn')) || undefined, 30_000);
  });

  test('a deleted Secret is recreated with a password that works', async () => {
    await c.core.deleteNamespacedSecret({ name: 'drift-db', namespace: 'life-a' });
    const fresh = await waitFor('the Secret to be recreated', () => readSecretData(c, 'life-a', 'drift-db'), 30_000);
    await works(fresh);
    await tenantReady(c, 'life-a', 'drift');
  });

  test('CONNECT granted to PUBLIC by hand is revoked', async () => {
    await superQuery(c, 'GRANT CONNECT ON DATABASE life_a_drift TO PUBLIC');
    await waitFor(
      'PUBLIC to lose CONNECT',
      async () =>
        (await superQuery(c, "SELECT has_database_privilege('public', 'life_a_drift', 'CONNECT') AS p"))[0]?.p === false || undefined,
      30_000,
    );
  });

  test('another tenant granted access by hand loses it', async () => {
    await applyTenant(c, 'life-b', 'intruder');
    await tenantReady(c, 'life-b', 'intruder');
    await superQuery(c, 'GRANT CONNECT ON DATABASE life_a_drift TO life_b_intruder');
    await waitFor(
      'the grant to be revoked',
      async () =>
        (await superQuery(c, "SELECT has_database_privilege('life_b_intruder', 'life_a_drift', 'CONNECT') AS p"))[0]?.p === false ||
        undefined,
      30_000,
    );
  });

  test('a login disabled by hand is enabled again', async () => {
    await superQuery(c, 'ALTER ROLE life_a_drift NOLOGIN');
    await waitFor('login to be enabled', async () => (await roleExists('life_a_drift'))?.rolcanlogin || undefined, 30_000);
  });
});
