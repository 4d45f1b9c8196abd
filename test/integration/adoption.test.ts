/**
 * Adoption, against a real PostgreSQL and a real PgBouncer: a GitOps re-create of a Retain tenant
 * takes back its database with its data only when asked (spec.adoption.from: Retained), and a
 * hand-made role and database are taken over only when named (from: Unmanaged), keeping the role's
 * password when passwordSecretRef says so. Until asked, each is a Conflict that says what to write.
 */
import { readFileSync } from 'node:fs';
import type { Pooler } from '../env/pgbouncer.js';
import type { Proc } from '../env/process.js';
import { apply } from '../env/cluster.js';
import {
  applyServer,
  applyTenant,
  cluster,
  condition,
  deleteTenant,
  getTenant,
  namespace,
  operator,
  queryWith,
  readSecretData,
  startPooledServer,
  pooledServerSpec,
  superQuery,
  tenantReady,
  waitForCondition,
  waitTenantGone,
} from './harness.js';

const c = cluster();
let op: Proc;
let pooler: Pooler;
const SERVER = 'adopting';
const NS = 'adopt';

beforeAll(async () => {
  op = operator(c, 'adoption');
  await namespace(c, NS);
  pooler = await startPooledServer(c, SERVER);
}, 120_000);

afterAll(async () => {
  await op?.stop();
  await pooler?.stop();
});

const tenantOf = (name: string) => () => getTenant(c, NS, name);
const serverSpec = () => pooledServerSpec(c, SERVER, pooler);

test('a re-created Retain tenant gets its database back, with its data, once it asks for it', async () => {
  const spec = { serverRef: { name: SERVER }, deletionPolicy: 'Retain' };
  await applyTenant(c, NS, 'ledger', spec);
  await tenantReady(c, NS, 'ledger');
  const before = (await readSecretData(c, NS, 'ledger-db')) ?? {};
  await queryWith(before.DIRECT_URL ?? '', 'CREATE TABLE entries (id int); INSERT INTO entries VALUES (42)');
  await deleteTenant(c, NS, 'ledger');
  await waitTenantGone(c, NS, 'ledger');

  // The same manifest again: the kept objects are not taken by accident.
  await applyTenant(c, NS, 'ledger', spec);
  const refused = await waitForCondition(tenantOf('ledger'), 'Ready', 'False', 'Conflict');
  expect(condition(refused, 'Ready')?.message).toMatch(/kept \(deletionPolicy Retain\).*set spec\.adoption\.from: Retained/);
  expect(condition(refused, 'Stalled')?.status).toBe('True');

  await applyTenant(c, NS, 'ledger', { ...spec, adoption: { from: 'Retained' } });
  const td = await tenantReady(c, NS, 'ledger');
  // In one go: the databases the role's adoption re-marked are not then taken for someone else's.
  // In one go: the reconcile that takes the role back keeps the databases it re-marked as its own
  // and writes the Secret with the role's new password (no later reconcile repairs it).
  const lines = readFileSync(op.logFile, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"key":"adopt/ledger"'))
    .map((l) => JSON.parse(l) as { reconcileId: string; msg: string });
  const adoptedIn = lines.find((l) => l.msg.startsWith('Adopted role'))?.reconcileId;
  expect(adoptedIn).toBeDefined();
  expect(lines.filter((l) => l.reconcileId === adoptedIn).map((l) => l.msg)).toContainEqual(
    expect.stringMatching(/^(Created|Updated) Secret/),
  );
  expect(lines.map((l) => l.msg).filter((m) => m.startsWith('Repaired password'))).toEqual([]);
  const after = (await readSecretData(c, NS, 'ledger-db')) ?? {};
  expect(after.password).not.toBe(before.password);
  // The data is there, directly and through the pooler (the role's verifier is the pooler's again).
  expect(await queryWith(after.DIRECT_URL ?? '', 'SELECT id FROM entries')).toEqual([{ id: 42 }]);
  expect(await queryWith(after.DATABASE_URL ?? '', 'SELECT id FROM entries')).toEqual([{ id: 42 }]);
  const marks = await superQuery(
    c,
    "SELECT shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = $1 UNION ALL SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $2",
    [after.username, after.database],
  );
  expect(marks.map((m) => m.c)).toEqual([
    expect.stringContaining(`uid=${td.metadata.uid}`),
    expect.stringContaining(`uid=${td.metadata.uid}`),
  ]);
}, 120_000);

test('a hand-made role and database are taken over only when named, keeping the password; a role with more than a tenant may have is refused', async () => {
  const pw = 'Legacy_password_0123456789abcdef';
  await superQuery(c, `CREATE ROLE legacy_app LOGIN CREATEDB PASSWORD '${pw}'`);
  await superQuery(c, 'CREATE DATABASE legacy_db OWNER legacy_app');
  await superQuery(
    c,
    'CREATE TABLE orders (id int); INSERT INTO orders VALUES (7); ALTER TABLE orders OWNER TO legacy_app',
    [],
    'legacy_db',
  );
  await apply(c.kc, [
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'legacy-credentials', namespace: NS }, stringData: { pass: pw } } as never,
  ]);
  const spec = { serverRef: { name: SERVER }, roleName: 'legacy_app', databaseName: 'legacy_db' };

  await applyTenant(c, NS, 'legacy', spec);
  const refused = await waitForCondition(tenantOf('legacy'), 'Ready', 'False', 'Conflict');
  expect(condition(refused, 'Ready')?.message).toMatch(/not managed by tenantdb; to take it over, set spec\.adoption\.from: Unmanaged/);
  // Nothing was touched while it was refused.
  expect(
    await superQuery(c, "SELECT rolcreatedb, shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = 'legacy_app'"),
  ).toEqual([{ rolcreatedb: true, c: null }]);

  // Asking is not enough: the server's owner must let this namespace take this role.
  await applyTenant(c, NS, 'legacy', {
    ...spec,
    adoption: { from: 'Unmanaged', passwordSecretRef: { name: 'legacy-credentials', key: 'pass' } },
  });
  const notAllowed = await waitForCondition(tenantOf('legacy'), 'Ready', 'False', 'AdoptionNotAllowed');
  expect(condition(notAllowed, 'Ready')?.message).toMatch(/adds \{role: legacy_app, namespace: adopt\} to its spec\.unmanagedAdoption/);
  expect(await superQuery(c, "SELECT shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = 'legacy_app'")).toEqual([
    { c: null },
  ]);
  await applyServer(c, SERVER, {
    ...serverSpec(),
    unmanagedAdoption: [
      { role: 'legacy_app', namespace: NS },
      { role: 'risky_app', namespace: NS },
    ],
  });
  await tenantReady(c, NS, 'legacy');
  const s = (await readSecretData(c, NS, 'legacy-db')) ?? {};
  expect(s.password).toBe(pw);
  expect(await queryWith(s.DIRECT_URL ?? '', 'SELECT id FROM orders')).toEqual([{ id: 7 }]);
  expect(await queryWith(s.DATABASE_URL ?? '', 'SELECT id FROM orders')).toEqual([{ id: 7 }]);
  const role = await superQuery(
    c,
    "SELECT rolcreatedb, shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = 'legacy_app'",
  );
  expect(role[0]).toMatchObject({ rolcreatedb: false, c: expect.stringContaining('managed by tenantdb') });
  const db = await superQuery(c, "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'legacy_db'");
  expect(db[0]?.owner).toBe(c.env.pg.admin.user);

  // A role that is a member of another role would bring that role's privileges: refused, untouched.
  await superQuery(c, 'CREATE ROLE risky_app LOGIN');
  await superQuery(c, 'CREATE DATABASE risky_db OWNER risky_app');
  await superQuery(c, 'GRANT pg_read_all_data TO risky_app');
  await applyTenant(c, NS, 'risky', {
    serverRef: { name: SERVER },
    roleName: 'risky_app',
    databaseName: 'risky_db',
    adoption: { from: 'Unmanaged' },
  });
  const risky = await waitForCondition(tenantOf('risky'), 'Ready', 'False', 'AdoptionRefused');
  expect(condition(risky, 'Ready')?.message).toMatch(/is a member of pg_read_all_data \(REVOKE pg_read_all_data FROM risky_app\)/);
  expect(await superQuery(c, "SELECT shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = 'risky_app'")).toEqual([
    { c: null },
  ]);
}, 120_000);

test("a database is never taken over without the role that owns it: not one of the admin's, even with consent", async () => {
  await superQuery(c, `CREATE DATABASE platform_db OWNER ${c.env.pg.admin.user}`);
  await applyServer(c, SERVER, { ...serverSpec(), unmanagedAdoption: [{ role: 'fresh_role', namespace: NS }] });
  await applyTenant(c, NS, 'grab', {
    serverRef: { name: SERVER },
    roleName: 'fresh_role',
    databaseName: 'platform_db',
    adoption: { from: 'Unmanaged' },
  });
  const t = await waitForCondition(tenantOf('grab'), 'Ready', 'False', 'Conflict');
  expect(condition(t, 'Ready')?.message).toMatch(/taken over only with the role that owns it/);
  const db = await superQuery(
    c,
    "SELECT shobj_description(oid, 'pg_database') AS c, datacl::text AS acl FROM pg_database WHERE datname = 'platform_db'",
  );
  expect(db).toEqual([{ c: null, acl: null }]);
}, 60_000);
