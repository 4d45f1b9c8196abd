/**
 * managementPolicy Observe on a real PostgreSQL: the operator reads the server and the Secret,
 * writes nothing, and reports the exact statements a managed reconcile would run; switched to
 * Manage, it runs them. Deleting an observed tenant touches nothing on the server.
 */
import type { Proc } from '../env/process.js';
import { waitFor } from '../env/ports.js';
import {
  applyTenant,
  askPlan,
  cluster,
  condition,
  deleteTenant,
  ensureDefaultServer,
  getTenant,
  namespace,
  operator,
  queryWith,
  readSecretData,
  superQuery,
  tenantIdentity,
  tenantReady,
  waitForCondition,
  waitTenantGone,
  type Obj,
} from './harness.js';

const c = cluster();
let op: Proc;
const NS = 'watched';

beforeAll(async () => {
  op = operator(c, 'observe');
  await namespace(c, NS);
  await ensureDefaultServer(c);
}, 120_000);

afterAll(async () => {
  await op?.stop();
});

const planOf = (t: Obj | undefined): string[] => (t?.status as { observation?: { plan?: string[] } } | undefined)?.observation?.plan ?? [];

test('a tenant observed before it exists: the plan says what would be created, and nothing is', async () => {
  await applyTenant(c, NS, 'fresh', { managementPolicy: 'Observe', connectionLimit: 4 });
  const t = await waitForCondition(() => getTenant(c, NS, 'fresh'), 'Ready', 'False', 'Drifted', 30_000);
  const plan = planOf(t);
  expect(plan[0]).toMatch(/^CREATE ROLE "?watched_fresh"? LOGIN .*CONNECTION LIMIT 4 PASSWORD <redacted>$/);
  expect(plan.join('\n')).toMatch(/COMMENT ON ROLE "?watched_fresh"? IS 'managed by tenantdb; tenantdatabase=watched\/fresh;/);
  expect(plan.join('\n')).toMatch(/CREATE DATABASE "?watched_fresh"?/);
  expect(plan.join('\n')).not.toMatch(/SCRAM-SHA-256\$/);
  // What follows CREATE DATABASE needs the database: the plan says where it stops, and why.
  expect(plan.at(-1)).toMatch(/^the plan stops here: database "?watched_fresh"? does not exist until the statements above run/);
  expect(condition(t, 'Stalled')?.status).toBe('True');
  expect(await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'watched_fresh'")).toEqual([]);
  expect(await superQuery(c, "SELECT 1 FROM pg_database WHERE datname = 'watched_fresh'")).toEqual([]);
  expect(await readSecretData(c, NS, 'fresh-db')).toBeUndefined();
  expect(t?.metadata?.finalizers ?? []).toEqual([]);
});

test('a managed tenant observed: drift and spec changes are planned, not made; Manage makes them; Observe in sync says so', async () => {
  await applyTenant(c, NS, 'app', { connectionLimit: 5, deletionPolicy: 'Delete' });
  await tenantReady(c, NS, 'app');
  const s = (await readSecretData(c, NS, 'app-db')) ?? {};
  await applyTenant(c, NS, 'app', { connectionLimit: 5, deletionPolicy: 'Delete', managementPolicy: 'Observe' });
  const synced = await waitForCondition(() => getTenant(c, NS, 'app'), 'Ready', 'True', 'InSync', 30_000);
  expect(planOf(synced)).toEqual([]);

  // Drift made by hand, and a spec change, while observed.
  await superQuery(c, 'ALTER ROLE watched_app CONNECTION LIMIT 50');
  await applyTenant(c, NS, 'app', {
    connectionLimit: 7,
    deletionPolicy: 'Delete',
    managementPolicy: 'Observe',
    settings: { statement_timeout: '5s' },
  });
  const drifted = await waitForCondition(() => getTenant(c, NS, 'app'), 'Ready', 'False', 'Drifted', 30_000);
  const plan = planOf(drifted).join('\n');
  expect(plan).toMatch(/ALTER ROLE "?watched_app"? LOGIN CONNECTION LIMIT 7/);
  expect(plan).toMatch(/ALTER DATABASE "?watched_app"? CONNECTION LIMIT 7|ALTER DATABASE "?watched_app"? WITH CONNECTION LIMIT 7/);
  expect(plan).toMatch(/ALTER ROLE "?watched_app"? IN DATABASE "?watched_app"? SET statement_timeout TO '5s'/);
  // Nothing was made: the hand-made limit and the old settings are there, and the tenant still logs in.
  expect(await superQuery(c, "SELECT rolconnlimit AS l FROM pg_roles WHERE rolname = 'watched_app'")).toEqual([{ l: 50 }]);
  expect(await queryWith(s.DIRECT_URL ?? '', "SELECT current_setting('statement_timeout') AS st")).toEqual([{ st: '0' }]);

  // Managed again: what the plan said is done.
  await applyTenant(c, NS, 'app', { connectionLimit: 7, deletionPolicy: 'Delete', settings: { statement_timeout: '5s' } });
  await waitFor('the plan carried out', async () => {
    const [r] = await superQuery(c, "SELECT rolconnlimit AS l FROM pg_roles WHERE rolname = 'watched_app'");
    return r?.l === 7 ? true : undefined;
  });
  await tenantReady(c, NS, 'app');
  expect(await queryWith(s.DIRECT_URL ?? '', "SELECT current_setting('statement_timeout') AS st")).toEqual([{ st: '5s' }]);

  // Observed once more, nothing differs: in sync. Deleting it then keeps database and role
  // (deletionPolicy Delete does not run for an observed tenant), with login off.
  await applyTenant(c, NS, 'app', {
    connectionLimit: 7,
    deletionPolicy: 'Delete',
    managementPolicy: 'Observe',
    settings: { statement_timeout: '5s' },
  });
  await waitForCondition(() => getTenant(c, NS, 'app'), 'Ready', 'True', 'InSync', 30_000);
  await deleteTenant(c, NS, 'app');
  await waitTenantGone(c, NS, 'app');
  // Its data stays; the login it had while managed does not outlive the object.
  expect(await superQuery(c, "SELECT rolcanlogin AS l FROM pg_roles WHERE rolname = 'watched_app'")).toEqual([{ l: false }]);
  expect(await superQuery(c, "SELECT 1 AS x FROM pg_database WHERE datname = 'watched_app'")).toEqual([{ x: 1 }]);
}, 120_000);

test("a TenantDatabasePlan, asked by a team with its own token: the exact SQL of a spec not applied and of a change, nothing written; another's role is a Conflict", async () => {
  const team = await tenantIdentity(c, 'planners');
  // Not applied yet: what would be created, with the marker's uid left for the real object.
  const fresh = await askPlan(team.custom, 'planners', 'shop', { connectionLimit: 3 });
  expect(fresh.tenantExists).toBe(false);
  expect(fresh.result?.reason).toBe('Planned');
  const sql = (fresh.sql ?? []).join('\n');
  expect(fresh.sql?.[0]).toMatch(/^CREATE ROLE "?planners_shop"? LOGIN .*CONNECTION LIMIT 3 PASSWORD <redacted>$/);
  expect(sql).toMatch(/CREATE DATABASE "?planners_shop"?/);
  expect(sql).toMatch(/uid=<uid of the new TenantDatabase>/);
  expect(sql).not.toMatch(/SCRAM-SHA-256\$/);
  expect((fresh.secret ?? []).join('\n')).toMatch(/create Secret shop-db/);
  expect(await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'planners_shop'")).toEqual([]);

  // Applied: what the plan said is what the operator did.
  await team.apply('TenantDatabase', 'shop', { connectionLimit: 3 });
  await tenantReady(c, 'planners', 'shop');
  expect(await superQuery(c, "SELECT rolconnlimit AS l FROM pg_roles WHERE rolname = 'planners_shop'")).toEqual([{ l: 3 }]);
  expect(await superQuery(c, "SELECT datconnlimit AS l FROM pg_database WHERE datname = 'planners_shop'")).toEqual([{ l: 3 }]);

  // The same spec again: nothing to do. A change: its statements, and nothing changed.
  const same = await askPlan(team.custom, 'planners', 'shop', { connectionLimit: 3 });
  expect(same).toMatchObject({ tenantExists: true, result: { reason: 'Planned' }, sql: [], secret: [] });
  const change = await askPlan(team.custom, 'planners', 'shop', { connectionLimit: 6, settings: { lock_timeout: '2s' } });
  const changed = (change.sql ?? []).join('\n');
  expect(changed).toMatch(/ALTER ROLE "?planners_shop"? LOGIN CONNECTION LIMIT 6/);
  expect(changed).toMatch(/ALTER ROLE "?planners_shop"? IN DATABASE "?planners_shop"? SET lock_timeout TO '2s'/);
  expect(changed).not.toMatch(/CREATE/);
  expect(await superQuery(c, "SELECT rolconnlimit AS l FROM pg_roles WHERE rolname = 'planners_shop'")).toEqual([{ l: 3 }]);
  await team.apply('TenantDatabase', 'shop', { connectionLimit: 6, settings: { lock_timeout: '2s' } });
  await waitFor('the change carried out', async () => {
    const [r] = await superQuery(c, "SELECT rolconnlimit AS l FROM pg_roles WHERE rolname = 'planners_shop'");
    return r?.l === 6 ? true : undefined;
  });

  // Another namespace's role: the plan ends where applying would, at a Conflict, and says nothing
  // about that role beyond it; the victim is untouched.
  await applyTenant(c, NS, 'victim', {});
  await tenantReady(c, NS, 'victim');
  const victim = (await readSecretData(c, NS, 'victim-db')) ?? {};
  const thief = await askPlan(team.custom, 'planners', 'thief', { roleName: 'watched_victim', suspend: true });
  expect(thief.result?.reason).toBe('Conflict');
  expect(thief.sql).toEqual([]);
  expect(await queryWith(victim.DIRECT_URL ?? '', 'SELECT current_user AS u')).toEqual([{ u: 'watched_victim' }]);
  // A team cannot plan in a namespace not its own.
  await expect(askPlan(team.custom, NS, 'victim', { suspend: true })).rejects.toMatchObject({ code: 403 });
}, 180_000);
