/**
 * A PostgresServer whose spec became invalid is broken, not gone: its tenants' deletions wait for it
 * (finalizer kept, role untouched) and run their policy once it is repaired.
 *
 * The CRDs and the operator's zod schemas agree, so the API server refuses such a spec. This file
 * runs its own control plane whose PostgresServer CRD stores any spec, as a CRD older than the
 * operator or one edited by hand would.
 */
import pg from 'pg';
import { waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import { createServerObjects } from '../env/sandbox.js';
import {
  applyServer,
  applyTenant,
  condition,
  deleteTenant,
  getServer,
  getTenant,
  namespace,
  operator,
  ownCluster,
  queryWith,
  readSecretData,
  superQuery,
  tenantReady,
  waitForCondition,
  waitTenantGone,
  type Obj,
  type OwnCluster,
} from './harness.js';

const NS = 'srvinvalid';
const SERVER = 'fragile';
let c: OwnCluster;
let op: Proc | undefined;

beforeAll(async () => {
  c = await ownCluster('srvinvalid', { looseSpecs: ['PostgresServer'] });
  // A short re-check: the periodic reconcile runs many times while the server is broken.
  op = operator(c, 'srvinvalid', '3s');
  await namespace(c, NS);
}, 180_000);

afterAll(async () => {
  await op?.stop();
  await c?.stop();
});

/** What a person sees of the role: login, limit, password verifier, expiry and the ownership marker. */
const roleState = async (role: string) =>
  (
    await superQuery(
      c,
      "SELECT rolcanlogin, rolconnlimit, rolpassword, rolvaliduntil, shobj_description(oid, 'pg_authid') AS marker FROM pg_authid WHERE rolname = $1",
      [role],
    )
  )[0];
const databaseExists = async (db: string) => (await superQuery(c, 'SELECT 1 FROM pg_database WHERE datname = $1', [db])).length === 1;
const events = async (name: string) =>
  (await c.core.listNamespacedEvent({ namespace: NS, fieldSelector: `involvedObject.name=${name}` })).items;
const loginError = async (uri: string) =>
  queryWith(uri).then(
    () => undefined,
    (err: unknown) => (err as { code?: string }).code ?? String(err),
  );
const noStackTrace = (text: string | undefined) => {
  expect(text).toBeTruthy();
  expect(text).not.toMatch(/\n\s*at |\.ts:\d+|\.js:\d+/);
};

/** The tenant once its status says that its deletion waits for the server; fails at once if it is released. */
async function deletionWaiting(name: string): Promise<Obj> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const td = await getTenant(c, NS, name);
    if (!td) throw new Error(`TenantDatabase ${NS}/${name} was released while PostgresServer ${SERVER} is invalid`);
    if (td.metadata.deletionTimestamp && condition(td, 'Ready')?.reason === 'ServerInvalid') return td;
    if (Date.now() > deadline)
      throw new Error(`${NS}/${name} does not say why its deletion waits: ${JSON.stringify(td.status?.conditions)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('a tenant on a server whose spec became invalid keeps its finalizer and role until the server is repaired', async () => {
  const p = c.env.pg;
  await createServerObjects(c.kc, { host: p.host, port: p.port, admin: p.admin } as never, SERVER);
  const server = await waitForCondition(() => getServer(c, SERVER), 'Ready', 'True');
  const goodSpec = server.spec;
  expect(goodSpec.alwaysAllowedCidrs).toBeUndefined();

  const tenants = { keep: 'Retain', drop: 'Delete' } as const;
  const before: Record<string, { role: string; database: string; uri: string; state: Record<string, unknown> | undefined }> = {};
  for (const [name, deletionPolicy] of Object.entries(tenants))
    await applyTenant(c, NS, name, { serverRef: { name: SERVER }, deletionPolicy });
  for (const name of Object.keys(tenants)) {
    const td = await tenantReady(c, NS, name);
    const role = String(td.status?.roleName);
    const database = String(td.status?.databaseName);
    const uri = (await readSecretData(c, NS, `${name}-db`))?.DIRECT_URL ?? '';
    expect(td.status?.serverName).toBe(SERVER);
    expect(td.metadata.finalizers).toContain('tenantdb.dev/finalizer');
    expect((await queryWith(uri))[0]).toEqual({ u: role, d: database });
    before[name] = { role, database, uri, state: await roleState(role) };
    expect(before[name]?.state?.rolcanlogin).toBe(true);
  }

  // A spec the operator refuses (a CIDR with a /33 mask), stored because this CRD does not check it.
  await applyServer(c, SERVER, { ...goodSpec, alwaysAllowedCidrs: ['10.0.0.0/33'] });
  expect((await getServer(c, SERVER))?.spec.alwaysAllowedCidrs).toEqual(['10.0.0.0/33']);
  const broken = await waitForCondition(() => getServer(c, SERVER), 'Ready', 'False', 'InvalidSpec');
  expect(condition(broken, 'Ready')?.message).toMatch(/alwaysAllowedCidrs.*must be a CIDR/);
  noStackTrace(condition(broken, 'Ready')?.message);
  expect(condition(broken, 'Stalled')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });

  // A new tenant on it is told why it cannot be provisioned, and nothing is created for it.
  await applyTenant(c, NS, 'late', { serverRef: { name: SERVER }, deletionPolicy: 'Delete' });
  const late = await waitForCondition(() => getTenant(c, NS, 'late'), 'Ready', 'False', 'ServerInvalid');
  expect(condition(late, 'Ready')?.message).toMatch(new RegExp(`PostgresServer ${SERVER} has an invalid spec`));
  noStackTrace(condition(late, 'Ready')?.message);
  expect(await roleState(`${NS}_late`)).toBeUndefined();

  for (const name of Object.keys(tenants)) await deleteTenant(c, NS, name);
  const waiting: Record<string, Obj> = {};
  for (const [name, policy] of Object.entries(tenants)) {
    waiting[name] = await deletionWaiting(name);
    const message = condition(waiting[name], 'Ready')?.message;
    expect(message).toBe(
      `deletion (${policy}) is waiting: PostgresServer ${SERVER} has an invalid spec; the deletion policy runs once it is fixed`,
    );
    noStackTrace(message);
    const warning = await waitFor(
      `a ServerInvalid Event for ${name}`,
      async () => (await events(name)).find((e) => e.reason === 'ServerInvalid'),
      30_000,
    );
    expect(warning.type).toBe('Warning');
    noStackTrace(warning.message);
  }
  // Several re-checks and retries later, nothing has moved, status included (once the first
  // failure report is in).
  await new Promise((r) => setTimeout(r, 2000));
  for (const name of Object.keys(tenants)) waiting[name] = (await getTenant(c, NS, name)) ?? waiting[name]!;
  const versions = Object.fromEntries(Object.entries(waiting).map(([n, td]) => [n, td.metadata.resourceVersion]));
  await new Promise((r) => setTimeout(r, 10_000));
  for (const [name, b] of Object.entries(before)) {
    const td = await getTenant(c, NS, name);
    expect(td?.metadata.resourceVersion).toBe(versions[name]);
    expect(td?.metadata.finalizers).toContain('tenantdb.dev/finalizer');
    expect(condition(td, 'Ready')?.reason).toBe('ServerInvalid');
    expect(await roleState(b.role)).toEqual(b.state);
    expect(await databaseExists(b.database)).toBe(true);
    expect((await queryWith(b.uri))[0]).toEqual({ u: b.role, d: b.database });
    expect((await events(name)).map((e) => e.reason)).not.toEqual(
      expect.arrayContaining([expect.stringMatching(/^(ServerGone|LoginDisabled|Retained|DatabaseDeleted|RoleDeleted)$/)]),
    );
  }

  // Repaired: the server is Ready again and each deletion runs its policy.
  await applyServer(c, SERVER, goodSpec);
  expect((await getServer(c, SERVER))?.spec.alwaysAllowedCidrs).toBeUndefined();
  await waitForCondition(() => getServer(c, SERVER), 'Ready', 'True');
  for (const name of Object.keys(tenants)) await waitTenantGone(c, NS, name);

  const keep = before.keep!;
  expect(await roleState(keep.role)).toMatchObject({
    rolcanlogin: false,
    rolpassword: keep.state?.rolpassword,
    marker: keep.state?.marker,
  });
  expect(await databaseExists(keep.database)).toBe(true);
  expect(await loginError(keep.uri)).toBe('28000');
  const drop = before.drop!;
  expect(await roleState(drop.role)).toBeUndefined();
  expect(await databaseExists(drop.database)).toBe(false);
  expect(await loginError(drop.uri)).toBe('28P01');
  expect((await events('keep')).map((e) => e.reason)).toEqual(expect.arrayContaining(['LoginDisabled', 'Retained']));
  expect((await events('drop')).map((e) => e.reason)).toEqual(expect.arrayContaining(['DatabaseDeleted', 'RoleDeleted']));

  // The tenant that waited is provisioned now.
  const ready = await tenantReady(c, NS, 'late');
  expect(ready.status?.serverName).toBe(SERVER);

  // What this file leaves on the shared PostgreSQL goes.
  await superQuery(c, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(keep.database)}`);
  await superQuery(c, `DROP ROLE IF EXISTS ${pg.escapeIdentifier(keep.role)}`);
  await deleteTenant(c, NS, 'late');
  await waitTenantGone(c, NS, 'late');
}, 300_000);
