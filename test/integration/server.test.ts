/** A PostgresServer reports, with a reason a person can act on, why it cannot be used. */
import type { Proc } from '../env/process.js';
import { OPERATOR_NAMESPACE } from '../env/cluster.js';
import { freePort } from '../env/ports.js';
import {
  applyServer,
  applyTenant,
  cluster,
  condition,
  getServer,
  getTenant,
  namespace,
  operator,
  superQuery,
  waitForCondition,
} from './harness.js';

const c = cluster();
let op: Proc;

beforeAll(async () => {
  op = operator(c, 'server');
  await namespace(c, 'srv');
}, 60_000);

afterAll(async () => {
  await op?.stop();
});

const base = () => ({ host: c.env.pg.host, port: c.env.pg.port, sslMode: 'disable' });
const secret = async (name: string, data: Record<string, string>) => {
  await c.core
    .createNamespacedSecret({ namespace: OPERATOR_NAMESPACE, body: { metadata: { name }, stringData: data } })
    .catch(async (err: { code?: number }) => {
      if (err.code !== 409) throw err;
      await c.core.replaceNamespacedSecret({ name, namespace: OPERATOR_NAMESPACE, body: { metadata: { name }, stringData: data } });
    });
};
const notReady = (name: string, reason: string) => waitForCondition(() => getServer(c, name), 'Ready', 'False', reason);

test('a wrong admin password is AuthenticationFailed', async () => {
  await secret('wrong-pass', { username: c.env.pg.admin.user, password: 'not-the-password' });
  await applyServer(c, 'wrong-pass', { ...base(), adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'wrong-pass' } });
  const s = await notReady('wrong-pass', 'AuthenticationFailed');
  expect(condition(s, 'Connected')?.status).toBe('False');
  expect(condition(s, 'Ready')?.message).not.toContain('not-the-password');
});

test('an unreachable server is Unreachable', async () => {
  await secret('unreachable', { username: 'x', password: 'y' });
  await applyServer(c, 'unreachable', {
    host: '127.0.0.1',
    port: await freePort(),
    sslMode: 'disable',
    adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'unreachable' },
  });
  const s = await notReady('unreachable', 'Unreachable');
  expect(condition(s, 'Ready')?.message).toMatch(/cannot reach 127\.0\.0\.1:\d+/);
});

test('a missing admin Secret is AdminSecretNotFound, and a Secret without keys is AdminSecretInvalid', async () => {
  await applyServer(c, 'no-secret', { ...base(), adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'does-not-exist' } });
  await notReady('no-secret', 'AdminSecretNotFound');
  await secret('half', { username: 'only' });
  await applyServer(c, 'half', { ...base(), adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'half' } });
  await notReady('half', 'AdminSecretInvalid');
});

test('an admin without CREATEROLE is InsufficientPrivileges', async () => {
  await superQuery(c, 'DROP ROLE IF EXISTS weak_admin');
  await superQuery(c, "CREATE ROLE weak_admin LOGIN CREATEDB PASSWORD 'weak-admin-password-1234'");
  await secret('weak', { username: 'weak_admin', password: 'weak-admin-password-1234' });
  await applyServer(c, 'weak', { ...base(), adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'weak' } });
  const s = await notReady('weak', 'InsufficientPrivileges');
  expect(condition(s, 'Ready')?.message).toContain('CREATEROLE');
  expect(condition(s, 'Connected')?.status).toBe('True');
});

test('a good server is Ready with its version, and a tenant on a broken one says why', async () => {
  await secret('good', { username: c.env.pg.admin.user, password: c.env.pg.admin.password });
  await applyServer(c, 'good', { ...base(), adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'good' } });
  const s = await waitForCondition(() => getServer(c, 'good'), 'Ready', 'True');
  expect(String(s.status?.version)).toMatch(/^\d+/);
  await applyTenant(c, 'srv', 'on-broken', { serverRef: { name: 'wrong-pass' } });
  const td = await waitForCondition(() => getTenant(c, 'srv', 'on-broken'), 'Ready', 'False', 'ServerUnreachable');
  expect(condition(td, 'Ready')?.message).toMatch(/password authentication failed/);
});

test('the API server refuses a bad server spec', async () => {
  await expect(
    applyServer(c, 'bad-cidr', {
      ...base(),
      adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'good' },
      alwaysAllowedCidrs: ['10.0.0.0/33'],
    }),
  ).rejects.toMatchObject({
    body: expect.stringMatching(/CIDR/),
  });
  await expect(
    applyServer(c, 'bad-tls', { ...base(), sslMode: 'verify-full', adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'good' } }),
  ).rejects.toMatchObject({
    body: expect.stringMatching(/caSecretRef is required/),
  });
  await expect(
    applyServer(c, 'bad-port', { ...base(), port: 70000, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'good' } }),
  ).rejects.toMatchObject({
    body: expect.stringMatching(/port/),
  });
});

test('an IpWhitelist with a bad CIDR is refused by the API server', async () => {
  const { apply } = await import('../env/cluster.js');
  await expect(
    apply(c.kc, [
      {
        apiVersion: 'tenantdb.dev/v1alpha1',
        kind: 'IpWhitelist',
        metadata: { name: 'bad', namespace: 'srv' },
        spec: { tenantDatabaseRef: { name: 'x' }, entries: [{ cidr: '300.1.2.3/8' }] },
      } as never,
    ]),
  ).rejects.toMatchObject({ body: expect.stringMatching(/must be a CIDR/) });
});

test('maxTenants: a tenant past the limit waits with CapacityExceeded and gets in when a place frees', async () => {
  await secret('small', { username: c.env.pg.admin.user, password: c.env.pg.admin.password });
  await applyServer(c, 'small', { ...base(), adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'small' }, maxTenants: 1 });
  await waitForCondition(() => getServer(c, 'small'), 'Ready', 'True');
  await applyTenant(c, 'srv', 'first-in', { serverRef: { name: 'small' }, deletionPolicy: 'Delete' });
  await waitForCondition(() => getTenant(c, 'srv', 'first-in'), 'Ready', 'True');
  await applyTenant(c, 'srv', 'second-in', { serverRef: { name: 'small' } });
  const td = await waitForCondition(() => getTenant(c, 'srv', 'second-in'), 'Ready', 'False', 'CapacityExceeded');
  expect(condition(td, 'Ready')?.message).toMatch(/maximum of 1 tenants/);
  expect(await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'srv_second_in'")).toHaveLength(0);
  await c.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: 'srv',
    plural: 'tenantdatabases',
    name: 'first-in',
  });
  await waitForCondition(() => getTenant(c, 'srv', 'second-in'), 'Ready', 'True', undefined, 60_000);
});

test('maxTenants holds exactly when many tenants are applied at once, and retained databases still count', async () => {
  await secret('tiny', { username: c.env.pg.admin.user, password: c.env.pg.admin.password });
  await applyServer(c, 'tiny', { ...base(), adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'tiny' }, maxTenants: 3 });
  await waitForCondition(() => getServer(c, 'tiny'), 'Ready', 'True');
  const names = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
  await Promise.all(names.map((n) => applyTenant(c, 'srv', n, { serverRef: { name: 'tiny' } })));
  const { waitFor } = await import('../env/ports.js');
  const ready = async () => {
    const all = await Promise.all(names.map((n) => getTenant(c, 'srv', n)));
    return all.map((t) => condition(t, 'Ready')?.reason);
  };
  const reasons = await waitFor(
    'every tenant to be admitted or refused',
    async () => {
      const r = await ready();
      return r.every((x) => x === 'Provisioned' || x === 'CapacityExceeded') ? r : undefined;
    },
    90_000,
  );
  expect(reasons.filter((x) => x === 'Provisioned')).toHaveLength(3);
  const roles = await superQuery(c, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'srv_p_'");
  expect(roles).toHaveLength(3);
  // A retained tenant keeps its database and its place.
  const first = names[reasons.indexOf('Provisioned')] ?? '';
  await c.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: 'srv',
    plural: 'tenantdatabases',
    name: first,
  });
  await waitFor('the retained tenant to go', async () => !(await getTenant(c, 'srv', first)) || undefined, 60_000);
  await new Promise((r) => setTimeout(r, 4000));
  expect((await ready()).filter((x) => x === 'Provisioned')).toHaveLength(2);
  expect(await superQuery(c, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'srv_p_'")).toHaveLength(3);
  for (const n of names.filter((x) => x !== first))
    await c.custom.deleteNamespacedCustomObject({
      group: 'tenantdb.dev',
      version: 'v1alpha1',
      namespace: 'srv',
      plural: 'tenantdatabases',
      name: n,
    });
});

test('a server in use cannot be deleted until its tenants are gone', async () => {
  await c.custom.deleteClusterCustomObject({ group: 'tenantdb.dev', version: 'v1alpha1', plural: 'postgresservers', name: 'small' });
  const s = await waitForCondition(() => getServer(c, 'small'), 'Ready', 'False', 'DeletionBlocked');
  expect(condition(s, 'Ready')?.message).toMatch(/srv\/second-in/);
  await c.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: 'srv',
    plural: 'tenantdatabases',
    name: 'second-in',
  });
  const { waitFor } = await import('../env/ports.js');
  await waitFor('the server to go', async () => !(await getServer(c, 'small')) || undefined, 60_000);
  // Retain: the tenant's database outlives both objects.
  expect(await superQuery(c, "SELECT 1 FROM pg_database WHERE datname = 'srv_second_in'")).toHaveLength(1);
});
