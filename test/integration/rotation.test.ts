/**
 * Rotation without downtime (passwordRotation.strategy Overlap), against a real PostgreSQL, a real
 * PgBouncer loaded by the real agent and the operator at its default resync: clients that read the
 * Secret before each login never fail, directly or through the pooler, across several rotations;
 * the previous credentials work until their grace period ends and are refused after it.
 */
import * as k8s from '@kubernetes/client-node';
import pg from 'pg';
import type { Pooler } from '../env/pgbouncer.js';
import type { Proc } from '../env/process.js';
import { apply } from '../env/cluster.js';
import { waitFor } from '../env/ports.js';
import { verifierFor } from '../../src/controllers/postgresserver/pooler-plan.js';
import { createTwinRole, ownerMarker } from '../../src/pg/tenant-sql.js';
import {
  applyTenant,
  cluster,
  getTenant,
  namespace,
  operator,
  queryFrom,
  newPassword,
  queryWith,
  readSecretData,
  rotatePassword,
  startPooledServer,
  superQuery,
  tenantIdentity,
  tenantReady,
  waitForCondition,
  type Obj,
} from './harness.js';

const c = cluster();
let op: Proc;
let pooler: Pooler;
const SERVER = 'rotating';
const NS = 'rot';
const GRACE_S = 6;

const rotate = (name: string, value: string) => rotatePassword(c, NS, name, value);
const credentials = (o: Obj | undefined) => (o?.status as { credentials?: Record<string, unknown> } | undefined)?.credentials ?? {};
const works = (url: string) =>
  queryWith(url, 'SELECT 1 AS one').then(
    () => true,
    () => false,
  );

beforeAll(async () => {
  op = operator(c, 'rotation');
  await namespace(c, NS);
  pooler = await startPooledServer(c, SERVER);
}, 120_000);

afterAll(async () => {
  await op?.stop();
  await pooler?.stop();
});

test('clients that re-read the Secret never fail across rotations; old credentials work through the grace period, then are refused', async () => {
  await applyTenant(c, NS, 'shop', {
    serverRef: { name: SERVER },
    pooling: { poolMode: 'transaction', poolSize: 3 },
    passwordRotation: { strategy: 'Overlap', gracePeriod: `${GRACE_S}s` },
  });
  await tenantReady(c, NS, 'shop');
  const first = (await readSecretData(c, NS, 'shop-db')) ?? {};
  expect(first.username).toBe('rot_shop');

  // Two clients in a loop, each reading the Secret before every login: one direct, one pooled.
  const failures: string[] = [];
  const seen = new Set<string>();
  let stop = false;
  let logins = 0;
  const loop = async (key: 'DIRECT_URL' | 'DATABASE_URL') => {
    while (!stop) {
      const s = (await readSecretData(c, NS, 'shop-db')) ?? {};
      seen.add(s.username ?? '');
      try {
        const rows = await queryWith(s[key] ?? '', 'SELECT current_user AS u, session_user AS s');
        // Whichever login role the Secret names, the session acts as the tenant's role.
        if (rows[0]?.u !== 'rot_shop' || rows[0]?.s !== s.username) failures.push(`${key}: ${JSON.stringify(rows[0])}`);
        logins++;
      } catch (err) {
        failures.push(`${key} as ${s.username}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const loops = [loop('DIRECT_URL'), loop('DATABASE_URL')];

  // A session opened before the first rotation goes on through the grace period.
  const open = new pg.Client({ connectionString: first.DIRECT_URL });
  open.on('error', () => undefined);
  await open.connect();

  let before = first;
  let generation = 0;
  const retired: Record<string, string>[] = [];
  try {
    for (const n of [1, 2, 3]) {
      await rotate('shop', `r${n}`);
      const after = await newPassword(c, NS, 'shop-db', before.password, 60_000, 100);
      // The Secret switched to the other login role, and the previous one still logs in.
      expect(after.username).not.toBe(before.username);
      expect(await works(before.DIRECT_URL ?? '')).toBe(true);
      expect(await works(before.DATABASE_URL ?? '')).toBe(true);
      generation++;
      const td = await waitFor(
        'status of the rotation',
        async () => {
          const t = await getTenant(c, NS, 'shop');
          return credentials(t).generation === generation ? t : undefined;
        },
        30_000,
      );
      expect(credentials(td)).toMatchObject({ loginRole: after.username, previousLoginRole: before.username });
      if (n === 1) expect((await open.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      if (n < 3) {
        // Asked again during the grace period: it waits for the end of it.
        await rotate('shop', `r${n}-early`);
        await waitFor('the early request to be seen', async () => credentials(await getTenant(c, NS, 'shop')).rotationWaitsUntil, 15_000);
        expect((await readSecretData(c, NS, 'shop-db'))?.password).toBe(after.password);
        // Then it happens once the grace period is over.
        retired.push(before);
        const next = await newPassword(c, NS, 'shop-db', after.password, (GRACE_S + 30) * 1000, 100);
        expect(next.username).toBe(after.username === 'rot_shop' ? 'rot_shop-2' : 'rot_shop');
        generation++;
        retired.push(after);
        before = next;
      } else {
        retired.push(before);
        before = after;
      }
    }
    // Past the last grace period: the previous credentials are refused, directly and pooled.
    const last = retired[retired.length - 1] ?? {};
    await waitFor('the old password to be refused directly', async () => !(await works(last.DIRECT_URL ?? '')) || undefined, 30_000);
    await waitFor('the old password to be refused by the pooler', async () => !(await works(last.DATABASE_URL ?? '')) || undefined, 30_000);
    // The session opened with the first credentials was ended with its grace period.
    await expect(open.query('SELECT 1')).rejects.toThrow();
  } finally {
    stop = true;
    await Promise.all(loops);
    await open.end().catch(() => undefined);
  }
  expect(failures).toEqual([]);
  expect(logins).toBeGreaterThan(20);
  expect(seen).toEqual(new Set(['rot_shop', 'rot_shop-2']));
  // Every credential ever handed out but the current one is refused now.
  for (const s of [first, ...retired]) {
    if (s.password === before.password) continue;
    expect(await works(s.DIRECT_URL ?? '')).toBe(false);
  }
  // Both login roles act as the tenant role: what either creates belongs to it.
  await queryWith(before.DIRECT_URL ?? '', 'CREATE TABLE made_by_login (id int)');
  const owner = await superQuery(c, "SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_login'", [], before.database);
  expect(owner[0]?.tableowner).toBe('rot_shop');
  // Only the login role in use may log in now; the other one is retired.
  await waitFor(
    'the other login role to be retired',
    async () => {
      const roles = await superQuery(c, "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('rot_shop', 'rot_shop-2') ORDER BY 1");
      return roles.length === 2 && roles.every((r) => r.rolcanlogin === (r.rolname === before.username)) ? true : undefined;
    },
    30_000,
  );
}, 240_000);

test("a tenant that names another tenant's role in its rotation state, or takes its name as a second login, reaches nothing of it", async () => {
  const victim = await tenantIdentity(c, 'rvictim');
  const evil = await tenantIdentity(c, 'revil');
  await victim.apply('TenantDatabase', 'app', { serverRef: { name: SERVER }, roleName: 'clash_2' });
  await evil.apply('TenantDatabase', 'app', { serverRef: { name: SERVER }, roleName: 'clash' });
  await tenantReady(c, 'rvictim', 'app');
  await tenantReady(c, 'revil', 'app');
  const vs = await victim.core.readNamespacedSecret({ name: 'app-db', namespace: 'rvictim' });
  const open = new pg.Client({ connectionString: Buffer.from(vs.data?.DIRECT_URL ?? '', 'base64').toString('utf8') });
  open.on('error', () => undefined);
  await open.connect();
  try {
    // Its own Secret, written with its own token: the victim's role as its "previous login", expired.
    const forged = JSON.stringify({
      role: 'clash_2',
      until: '2001-01-01T00:00:00.000Z',
      verifier: verifierFor('x', 'clash_2', 'p'.repeat(30)),
    });
    await evil.core.patchNamespacedSecret(
      { name: 'app-db', namespace: 'revil', body: { metadata: { annotations: { 'tenantdb.dev/previous-login': forged } } } },
      k8s.setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    // A full reconcile of the evil tenant (a rotation is one), then another look.
    await evil.apply(
      'TenantDatabase',
      'app',
      { serverRef: { name: SERVER }, roleName: 'clash' },
      { annotations: { 'tenantdb.dev/rotate-password': 'e1' } },
    );
    await waitFor(
      'the evil tenant rotated',
      async () => (await getTenant(c, 'revil', 'app'))?.status?.passwordRotatedFor === 'e1' || undefined,
      30_000,
    );
    expect((await open.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    const role = await superQuery(c, "SELECT rolcanlogin, rolvaliduntil FROM pg_roles WHERE rolname = 'clash_2'");
    expect(role[0]).toEqual({ rolcanlogin: true, rolvaliduntil: null });
    const pool = await readSecretData(c, 'rvictim', 'app-db');
    expect(await works(pool?.DATABASE_URL ?? '')).toBe(true);

    // Overlapping rotation: the evil tenant's second login is clash-2, a name no tenant can hold;
    // the victim's clash_2 is not taken for it, and stays as it was.
    await evil.apply('TenantDatabase', 'app', {
      serverRef: { name: SERVER },
      roleName: 'clash',
      passwordRotation: { strategy: 'Overlap' },
    });
    await waitFor(
      "the evil tenant's second login",
      async () => (await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'clash-2'")).length === 1 || undefined,
      30_000,
    );
    await tenantReady(c, 'revil', 'app');
    expect((await open.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    const after = await superQuery(
      c,
      "SELECT rolcanlogin, rolvaliduntil, pg_has_role('clash_2', 'clash', 'MEMBER') AS m FROM pg_roles WHERE rolname = 'clash_2'",
    );
    expect(after[0]).toEqual({ rolcanlogin: true, rolvaliduntil: null, m: false });
    // Its rotation switches to clash-2, which logs in and acts as clash.
    await evil.apply(
      'TenantDatabase',
      'app',
      { serverRef: { name: SERVER }, roleName: 'clash', passwordRotation: { strategy: 'Overlap' } },
      { annotations: { 'tenantdb.dev/rotate-password': 'e2' } },
    );
    const switched = await waitFor(
      'the evil tenant switched to its second login',
      async () => {
        const es = await evil.core.readNamespacedSecret({ name: 'app-db', namespace: 'revil' });
        const user = Buffer.from(es.data?.username ?? '', 'base64').toString('utf8');
        return user === 'clash-2' ? Buffer.from(es.data?.DIRECT_URL ?? '', 'base64').toString('utf8') : undefined;
      },
      30_000,
    );
    expect(await queryWith(switched, 'SELECT current_user AS u, session_user AS s')).toEqual([{ u: 'clash', s: 'clash-2' }]);
    expect((await open.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    // Nor can a tenant ask for a role of a twin's shape: the API server refuses it, as the tenant.
    await expect(evil.apply('TenantDatabase', 'other', { serverRef: { name: SERVER }, roleName: 'clash-2' })).rejects.toMatchObject({
      code: 422,
    });
  } finally {
    await open.end().catch(() => undefined);
  }
}, 120_000);

test("a second login an earlier release made (<role>_2, marked as the tenant's) stays its twin: the rotation switches to it", async () => {
  await applyTenant(c, NS, 'legacy', { serverRef: { name: SERVER } });
  const td = await tenantReady(c, NS, 'legacy');
  // What an earlier release left: the twin under its old name, made by the admin as it made it then.
  const p = c.env.pg;
  const admin = new pg.Client({ host: p.host, port: p.port, user: p.admin.user, password: p.admin.password, database: 'postgres' });
  await admin.connect();
  try {
    const marker = ownerMarker({ namespace: NS, name: 'legacy', uid: td.metadata.uid, server: SERVER });
    await createTwinRole(
      admin,
      'rot_legacy_2',
      'rot_legacy',
      verifierFor(td.metadata.uid, 'rot_legacy_2', 'x'.repeat(30)),
      20,
      marker,
      false,
    );
  } finally {
    await admin.end();
  }
  const before = (await readSecretData(c, NS, 'legacy-db')) ?? {};
  await applyTenant(c, NS, 'legacy', {
    serverRef: { name: SERVER },
    passwordRotation: { strategy: 'Overlap', gracePeriod: `${GRACE_S}s` },
  });
  await rotate('legacy', 'l1');
  const after = await newPassword(c, NS, 'legacy-db', before.password, 60_000, 200);
  expect(after.username).toBe('rot_legacy_2');
  for (const url of [after.DIRECT_URL ?? '', after.DATABASE_URL ?? ''])
    expect(await queryWith(url, 'SELECT current_user AS u, session_user AS s')).toEqual([{ u: 'rot_legacy', s: 'rot_legacy_2' }]);
  expect(await works(before.DIRECT_URL ?? '')).toBe(true);
  expect(await superQuery(c, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'rot\\_legacy%' ORDER BY 1")).toEqual([
    { rolname: 'rot_legacy' },
    { rolname: 'rot_legacy_2' },
  ]);
}, 120_000);

test("with an allow-list the pooler's HBA rules name both login roles: the second one passes from listed addresses only", async () => {
  await applyTenant(c, NS, 'listed', { serverRef: { name: SERVER }, passwordRotation: { strategy: 'Overlap', gracePeriod: '1h' } });
  await tenantReady(c, NS, 'listed');
  await apply(c.kc, [
    {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'IpWhitelist',
      metadata: { name: 'listed-office', namespace: NS },
      // 127.0.0.1: the operator's own login checks through the pooler.
      spec: { tenantDatabaseRef: { name: 'listed' }, entries: [{ cidr: '127.0.0.1/32' }, { cidr: '127.0.0.2/32' }] },
    } as never,
  ]);
  await waitForCondition(() => getTenant(c, NS, 'listed'), 'AccessRulesApplied', 'True');
  const before = (await readSecretData(c, NS, 'listed-db')) ?? {};
  await rotate('listed', 'w1');
  const after = await newPassword(c, NS, 'listed-db', before.password, 60_000, 200);
  expect(after.username).toBe('rot_listed-2');
  expect(await queryFrom('127.0.0.2', after.DATABASE_URL ?? '', 'SELECT current_user AS u, session_user AS s')).toEqual([
    { u: 'rot_listed', s: 'rot_listed-2' },
  ]);
  await expect(queryFrom('127.0.0.3', after.DATABASE_URL ?? '')).rejects.toThrow();
  // The previous login, in its grace period, is named by the rules too.
  expect(await queryFrom('127.0.0.2', before.DATABASE_URL ?? '')).toEqual([{ u: 'rot_listed' }]);
  await expect(queryFrom('127.0.0.3', before.DATABASE_URL ?? '')).rejects.toThrow();
}, 120_000);

test('passwordRotation.interval rotates on its own, with no annotation, and says when the next one is due', async () => {
  await applyTenant(c, NS, 'sched', { serverRef: { name: SERVER }, passwordRotation: { interval: '1m' } });
  const td = await tenantReady(c, NS, 'sched');
  const first = (await readSecretData(c, NS, 'sched-db')) ?? {};
  const due = Date.parse(String(credentials(td).nextRotationAt));
  expect(due - Date.parse(String(credentials(td).rotatedAt))).toBe(60_000);
  const after = await newPassword(c, NS, 'sched-db', first.password, 120_000, 500);
  expect(Date.now()).toBeGreaterThanOrEqual(due);
  // InPlace: the Secret first, then the role, then the pooler's userlist (within seconds).
  await waitFor('the new password directly', async () => (await works(after.DIRECT_URL ?? '')) || undefined, 15_000);
  await waitFor('the new password through the pooler', async () => (await works(after.DATABASE_URL ?? '')) || undefined, 15_000);
  const t = await waitFor('status of the scheduled rotation', async () => {
    const x = await getTenant(c, NS, 'sched');
    return credentials(x).generation === 1 ? x : undefined;
  });
  expect(Date.parse(String(credentials(t).nextRotationAt))).toBeGreaterThan(due + 30_000);
}, 180_000);

test('deleting an Overlap tenant takes both login roles: dropped with Delete, login off with Retain', async () => {
  for (const policy of ['Delete', 'Retain']) {
    const name = `gone-${policy.toLowerCase()}`;
    await applyTenant(c, NS, name, {
      serverRef: { name: SERVER },
      deletionPolicy: policy,
      passwordRotation: { strategy: 'Overlap', gracePeriod: '1h' },
    });
    await tenantReady(c, NS, name);
    const before = (await readSecretData(c, NS, `${name}-db`)) ?? {};
    await rotate(name, 'd1');
    await waitFor(
      'the switch',
      async () => ((await readSecretData(c, NS, `${name}-db`))?.username ?? before.username) !== before.username || undefined,
      30_000,
    );
    const role = `rot_${name.replace('-', '_')}`;
    await c.custom.deleteNamespacedCustomObject({
      group: 'tenantdb.dev',
      version: 'v1alpha1',
      namespace: NS,
      plural: 'tenantdatabases',
      name,
    });
    await waitFor('the tenant gone', async () => !(await getTenant(c, NS, name)) || undefined, 60_000);
    const roles = await superQuery(c, 'SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ($1, $2) ORDER BY 1', [
      role,
      `${role}-2`,
    ]);
    if (policy === 'Delete') expect(roles).toEqual([]);
    else
      expect(roles).toEqual([
        { rolname: role, rolcanlogin: false },
        { rolname: `${role}-2`, rolcanlogin: false },
      ]);
  }
}, 120_000);
