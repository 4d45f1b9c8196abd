import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Proc } from '../env/process.js';
import {
  apiMessage,
  applyTenant,
  cluster,
  condition,
  ensureDefaultServer,
  getTenant,
  namespace,
  operator,
  queryWith,
  readSecretData,
  superQuery,
  tenantReady,
  waitForCondition,
} from './harness.js';

const c = cluster();
let op: Proc;

beforeAll(async () => {
  op = operator(c, 'tenant');
  await ensureDefaultServer(c);
  await namespace(c, 'shop');
  await namespace(c, 'billing');
}, 120_000);

afterAll(async () => {
  await op?.stop();
});

const SECRET_KEYS = [
  'type',
  'provider',
  'username',
  'jdbc-url',
  'pooled-jdbc-uri',
  'PRISMA_DATABASE_URL',
  'host',
  'port',
  'database',
  'user',
  'password',
  'pooler-host',
  'pooler-port',
  'uri',
  'pooled-uri',
  'jdbc-uri',
  'DATABASE_URL',
  'DIRECT_URL',
  'PGHOST',
  'PGPORT',
  'PGDATABASE',
  'PGUSER',
  'PGPASSWORD',
  'PGSSLMODE',
];

describe('a TenantDatabase with defaults', () => {
  let secret: Record<string, string>;

  beforeAll(async () => {
    await applyTenant(c, 'shop', 'orders', { extensions: ['pgcrypto', 'uuid-ossp'], connectionLimit: 7 });
    const td = await tenantReady(c, 'shop', 'orders');
    expect(td.status?.databaseName).toBe('shop_orders');
    expect(td.status?.roleName).toBe('shop_orders');
    expect(td.status?.secretName).toBe('orders-db');
    expect(td.status?.serverName).toBe('default');
    secret = (await readSecretData(c, 'shop', 'orders-db')) ?? {};
  }, 90_000);

  test('writes every documented key into the Secret, with a long random password', () => {
    for (const k of SECRET_KEYS) expect(secret[k]).toBeDefined();
    expect(secret.password).toMatch(/^[A-Za-z0-9_-]{24,}$/);
    expect(secret.database).toBe('shop_orders');
    expect(secret.DATABASE_URL).toBe(secret.uri);
    expect(secret['jdbc-uri']).toMatch(/^jdbc:postgresql:\/\/127\.0\.0\.1:\d+\/shop_orders\?user=shop_orders&password=/);
    expect(secret.SHADOW_DATABASE_URL).toBeUndefined();
  });

  test('the Secret is owned by the TenantDatabase and labelled as managed', async () => {
    const s = await c.core.readNamespacedSecret({ name: 'orders-db', namespace: 'shop' });
    const td = await getTenant(c, 'shop', 'orders');
    expect(s.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('tenantdb');
    expect(s.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'TenantDatabase',
      name: 'orders',
      uid: td?.metadata.uid,
      controller: true,
    });
  });

  test('an application logs in with DATABASE_URL (node-pg)', async () => {
    const rows = await queryWith(secret.DATABASE_URL ?? '');
    expect(rows[0]).toEqual({ u: 'shop_orders', d: 'shop_orders' });
  });

  test('psql logs in with the PG* variables alone, as envFrom provides them', () => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
    for (const k of ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD', 'PGSSLMODE']) env[k] = secret[k];
    const out = execFileSync('psql', ['-XAtc', "select current_user || '@' || current_database()"], { env, encoding: 'utf8' });
    expect(out.trim()).toBe('shop_orders@shop_orders');
  });

  test('psql logs in with the uri', () => {
    const out = execFileSync('psql', [secret.uri ?? '', '-XAtc', 'select 1'], { env: { PATH: process.env.PATH }, encoding: 'utf8' });
    expect(out.trim()).toBe('1');
  });

  test('the role is an ordinary login role with the connection limit; the operator owns the database, the role its schema', async () => {
    const [role] = await superQuery(
      c,
      "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolconnlimit, rolpassword FROM pg_authid WHERE rolname = 'shop_orders'",
    );
    expect(role).toMatchObject({ rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolcanlogin: true, rolconnlimit: 7 });
    expect(String(role?.rolpassword)).toMatch(/^SCRAM-SHA-256\$4096:/);
    const [db] = await superQuery(
      c,
      "SELECT pg_get_userbyid(datdba) AS owner, datconnlimit FROM pg_database WHERE datname = 'shop_orders'",
    );
    expect(db).toEqual({ owner: c.env.pg.admin.user, datconnlimit: 7 });
    const [schema] = await superQuery(
      c,
      "SELECT pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = 'public'",
      [],
      'shop_orders',
    );
    expect(schema?.owner).toBe('shop_orders');
    const [rights] = await superQuery(
      c,
      "SELECT has_database_privilege('shop_orders', 'shop_orders', 'CONNECT, CREATE, TEMPORARY') AS ok, has_database_privilege('public', 'shop_orders', 'CONNECT') AS pub",
    );
    expect(rights).toEqual({ ok: true, pub: false });
  });

  test('the requested extensions exist in the tenant database, owned by the tenant', async () => {
    const rows = await superQuery(
      c,
      "SELECT extname, pg_get_userbyid(extowner) AS owner FROM pg_extension WHERE extname IN ('pgcrypto', 'uuid-ossp') ORDER BY 1",
      [],
      'shop_orders',
    );
    expect(rows).toEqual([
      { extname: 'pgcrypto', owner: 'shop_orders' },
      { extname: 'uuid-ossp', owner: 'shop_orders' },
    ]);
  });

  test('another tenant cannot connect to this database', async () => {
    await applyTenant(c, 'billing', 'orders');
    await tenantReady(c, 'billing', 'orders');
    const other = (await readSecretData(c, 'billing', 'orders-db')) ?? {};
    expect(other.database).toBe('billing_orders');
    const intoShop = (other.uri ?? '').replace('/billing_orders?', '/shop_orders?');
    await expect(queryWith(intoShop)).rejects.toMatchObject({ code: '42501' });
  });

  test('the operator never logs a password', async () => {
    const { readFileSync } = await import('node:fs');
    const log = readFileSync(`${c.env.dir}/operator-tenant.log`, 'utf8');
    expect(log.length).toBeGreaterThan(0);
    expect(log).not.toContain(secret.password);
  });

  test('every change is in the Events of the TenantDatabase', async () => {
    const td = await getTenant(c, 'shop', 'orders');
    const events = await c.core.listNamespacedEvent({ namespace: 'shop', fieldSelector: `involvedObject.uid=${td?.metadata.uid}` });
    const reasons = events.items.map((e) => e.reason);
    // A new tenant's objects and its readiness are one Event that names each of them.
    expect(reasons).toContain('Provisioned');
    const provisioned = events.items.find((e) => e.reason === 'Provisioned')?.message ?? '';
    for (const change of [
      /Created Secret orders-db/,
      /Created role shop_orders/,
      /Created database shop_orders/,
      /Created extensions/,
      /; Ready: /,
    ])
      expect(provisioned).toMatch(change);
    expect(events.items.map((e) => e.message).join('\n')).toMatch(/Created role shop_orders/);
  });

  test('periodic re-checks of an unchanged tenant write nothing', async () => {
    const before = await getTenant(c, 'shop', 'orders');
    const rv = (before as unknown as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    await new Promise((r) => setTimeout(r, 7000)); // more than two re-checks (3 s)
    const after = await getTenant(c, 'shop', 'orders');
    expect((after as unknown as { metadata: { resourceVersion: string } }).metadata.resourceVersion).toBe(rv);
    const s = await c.core.readNamespacedSecret({ name: 'orders-db', namespace: 'shop' });
    await new Promise((r) => setTimeout(r, 3500));
    expect((await c.core.readNamespacedSecret({ name: 'orders-db', namespace: 'shop' })).metadata?.resourceVersion).toBe(
      s.metadata?.resourceVersion,
    );
  }, 30_000);

  test('status reports size and connections, conditions and observedGeneration', async () => {
    const td = await getTenant(c, 'shop', 'orders');
    expect(Number(td?.status?.sizeBytes)).toBeGreaterThan(1_000_000);
    expect(td?.status?.observedGeneration).toBe(td?.metadata.generation);
    for (const t of ['DatabaseReady', 'RoleReady', 'SecretReady', 'PoolerReady', 'AccessRulesApplied']) {
      expect(condition(td, t)?.status).toBe('True');
    }
  });
});

describe('names', () => {
  test('a long name gets a hash suffix and stays within 63 bytes; unusual characters become underscores', async () => {
    const name = `x.${'very-long-name-'.repeat(6)}end`;
    await applyTenant(c, 'shop', name);
    const td = await tenantReady(c, 'shop', name);
    const db = String(td.status?.databaseName);
    expect(db.length).toBeLessThanOrEqual(56);
    expect(db).toMatch(/^shop_x_very_long_name_.*_[0-9a-f]{8}$/);
    const s = await readSecretData(c, 'shop', `${name}-db`);
    const rows = await queryWith(s?.DATABASE_URL ?? '');
    expect(rows[0]?.d).toBe(db);
  });

  test('explicit names and a shadow database for Prisma', async () => {
    await applyTenant(c, 'shop', 'catalog', {
      databaseName: 'catalog',
      roleName: 'catalog_app',
      shadowDatabase: true,
      secretName: 'catalog-conn',
    });
    const td = await tenantReady(c, 'shop', 'catalog');
    expect(td.status).toMatchObject({ databaseName: 'catalog', roleName: 'catalog_app', secretName: 'catalog-conn' });
    const s = (await readSecretData(c, 'shop', 'catalog-conn')) ?? {};
    expect((await queryWith(s.SHADOW_DATABASE_URL ?? ''))[0]).toEqual({ u: 'catalog_app', d: 'catalog_shadow' });
    // Prisma drops and recreates objects in the shadow database: the tenant must own it.
    await queryWith(s.SHADOW_DATABASE_URL ?? '', 'CREATE TABLE t (id int); DROP TABLE t');
  });

  test('secretTemplate: presets and keys of your own reach the Secret; a bad placeholder is refused in status', async () => {
    await applyTenant(c, 'shop', 'web', {
      secretTemplate: { presets: ['Vercel', 'Spring'], keys: { BILLING_URL: '$(DIRECT_URL)&application_name=billing' } },
    });
    await tenantReady(c, 'shop', 'web');
    const s = (await readSecretData(c, 'shop', 'web-db')) ?? {};
    expect(s.POSTGRES_URL_NON_POOLING).toBe(s.DIRECT_URL);
    expect(s.SPRING_DATASOURCE_USERNAME).toBe(s.user);
    // The key of its own is a URL libpq takes as it is.
    expect((await queryWith(s.BILLING_URL ?? '', "SELECT current_setting('application_name') AS a"))[0]).toEqual({ a: 'billing' });
    await applyTenant(c, 'shop', 'web', { secretTemplate: { keys: { X: '$(nope)' } } });
    const td = await waitForCondition(() => getTenant(c, 'shop', 'web'), 'Ready', 'False', 'SecretTemplateInvalid');
    expect(condition(td, 'Ready')?.message).toContain('$(nope) is not a key of the Secret');
    // The Secret keeps what it had; nothing is half-written.
    expect((await readSecretData(c, 'shop', 'web-db'))?.BILLING_URL).toBe(s.BILLING_URL);
  });

  test('a namespace starting with a digit gets a valid identifier', async () => {
    await namespace(c, '42team');
    await applyTenant(c, '42team', 'app');
    const td = await tenantReady(c, '42team', 'app');
    expect(td.status?.databaseName).toBe('t_42team_app');
  });
});

describe('bad input', () => {
  const rejects = async (spec: Record<string, unknown>, message: RegExp) => {
    let err: unknown;
    try {
      await applyTenant(c, 'shop', 'bad', spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeDefined();
    expect(String((err as { body?: unknown }).body ?? err)).toMatch(message);
  };

  test('the API server refuses invalid names, limits and combinations with a message', async () => {
    await rejects({ databaseName: 'Robert"; DROP TABLE x' }, /databaseName/);
    await rejects({ roleName: 'a'.repeat(64) }, /roleName/);
    await rejects({ connectionLimit: -5 }, /connectionLimit/);
    await rejects({ schemaName: 'abc' }, /schemaName is only valid with isolation Schema/);
    await rejects({ databaseName: 'd'.repeat(60), shadowDatabase: true }, /at most 56 bytes/);
    await rejects({ deletionPolicy: 'Destroy' }, /deletionPolicy/);
    await rejects({ pooling: { poolMode: 'batch' } }, /poolMode/);
  });

  test('names cannot change once set', async () => {
    await applyTenant(c, 'shop', 'fixed', { databaseName: 'fixed_db' });
    await tenantReady(c, 'shop', 'fixed');
    await expect(applyTenant(c, 'shop', 'fixed', { databaseName: 'other_db' })).rejects.toMatchObject({
      body: expect.stringMatching(/databaseName cannot be changed/),
    });
  });

  test('an extension the server does not allow is refused in status, nothing is created', async () => {
    await applyTenant(c, 'shop', 'plv8', { extensions: ['plv8'] });
    const td = await waitForCondition(() => getTenant(c, 'shop', 'plv8'), 'Ready', 'False', 'ExtensionNotAllowed');
    expect(condition(td, 'Ready')?.message).toContain('plv8');
    expect(await superQuery(c, "SELECT 1 FROM pg_database WHERE datname = 'shop_plv8'")).toHaveLength(0);
  });

  test('kstatus: kubectl wait tells a stalled tenant from a ready one, and sees it recover', async () => {
    const { controlPlaneBinaries } = await import('../env/controlplane.js');
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const kubectl = async (...args: string[]) =>
      (await promisify(execFile)(join(controlPlaneBinaries(), 'kubectl'), ['--kubeconfig', c.env.adminKubeconfig, '-n', 'shop', ...args]))
        .stdout;
    await applyTenant(c, 'shop', 'waiter', { extensions: ['plv8'] });
    await kubectl('wait', '--for=condition=Stalled', 'tenantdatabase/waiter', '--timeout=60s');
    let td = await getTenant(c, 'shop', 'waiter');
    expect(condition(td, 'Stalled')).toMatchObject({ status: 'True', reason: 'ExtensionNotAllowed' });
    expect(condition(td, 'Reconciling')?.status).toBe('False');
    expect(condition(td, 'Ready')?.status).toBe('False');
    expect(td?.status?.observedGeneration).toBe(td?.metadata.generation);
    await applyTenant(c, 'shop', 'waiter', { extensions: [] });
    await kubectl('wait', '--for=condition=Ready', 'tenantdatabase/waiter', '--timeout=90s');
    td = await getTenant(c, 'shop', 'waiter');
    expect(condition(td, 'Stalled')?.status).toBe('False');
    expect(condition(td, 'Reconciling')?.status).toBe('False');
    expect(td?.status?.observedGeneration).toBe(td?.metadata.generation);
    expect(td?.metadata.generation).toBeGreaterThan(1);
  });

  test('a reserved role name is refused by the API server', async () => {
    const err = await applyTenant(c, 'shop', 'pgrole', { roleName: 'pg_monitor' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(apiMessage(err)).toMatch(/roleName must not be one of .* or start with pg_/);
  });

  test('a server that does not exist is reported', async () => {
    await applyTenant(c, 'shop', 'nowhere', { serverRef: { name: 'missing' } });
    const td = await waitForCondition(() => getTenant(c, 'shop', 'nowhere'), 'Ready', 'False', 'ServerNotFound');
    expect(condition(td, 'Ready')?.message).toContain('missing');
  });

  test('a Secret name already used by something else is a conflict, and that Secret is left alone', async () => {
    await c.core.createNamespacedSecret({ namespace: 'shop', body: { metadata: { name: 'taken' }, stringData: { mine: 'yes' } } });
    await applyTenant(c, 'shop', 'taker', { secretName: 'taken' });
    await waitForCondition(() => getTenant(c, 'shop', 'taker'), 'Ready', 'False', 'Conflict');
    expect(await readSecretData(c, 'shop', 'taken')).toEqual({ mine: 'yes' });
    await expect(superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'shop_taker'")).resolves.toHaveLength(0);
  });

  test('the Secret password works only for its own role', async () => {
    const s = (await readSecretData(c, 'shop', 'orders-db')) ?? {};
    const wrongUser = (s.uri ?? '').replace('shop_orders:', 'billing_orders:');
    await expect(queryWith(wrongUser)).rejects.toMatchObject({ code: '28P01' });
  });
});
