/**
 * TenantGroup: a backend's live registry of its tenants. The team acts through its own
 * namespace-confined token; the registry is read as the backend would, from the Secret.
 */
import type { Proc } from '../env/process.js';
import { waitFor } from '../env/ports.js';
import {
  cluster,
  condition,
  ensureDefaultServer,
  operator,
  queryWith,
  readSecretData,
  tenantIdentity,
  tenantReady,
  waitForCondition,
  type Obj,
  type Tenant,
} from './harness.js';

const c = cluster();
let op: Proc;
let team: Tenant;
let other: Tenant;

const getGroup = async (ns: string, name: string): Promise<Obj | undefined> =>
  (await c.custom
    .getNamespacedCustomObject({ group: 'tenantdb.dev', version: 'v1alpha1', namespace: ns, plural: 'tenantgroups', name })
    .catch(() => undefined)) as Obj | undefined;
type Registry = { tenants: { name: string; ready: boolean; database: string; pooledUri: string; uri: string }[] };
const registry = async (): Promise<{ doc: Registry; data: Record<string, string> } | undefined> => {
  const data = await readSecretData(c, 'payments', 'merchants-tenants');
  return data?.['tenants.json'] ? { doc: JSON.parse(data['tenants.json']) as Registry, data } : undefined;
};
const names = async () => (await registry())?.doc.tenants.map((t) => t.name) ?? [];
const payments = { labels: { app: 'payments' } };

beforeAll(async () => {
  op = operator(c, 'group');
  await ensureDefaultServer(c);
  team = await tenantIdentity(c, 'payments');
  other = await tenantIdentity(c, 'payments-other');
}, 120_000);

afterAll(async () => {
  await op?.stop();
});

test('the registry lists the members as they come, change credentials and go, within seconds', async () => {
  await team.apply('TenantDatabase', 'acme', { deletionPolicy: 'Delete' }, payments);
  await team.apply('TenantDatabase', 'globex', { deletionPolicy: 'Delete' }, payments);
  await team.apply('TenantDatabase', 'internal', { deletionPolicy: 'Delete' });
  // Same labels, another namespace: never a member.
  await other.apply('TenantDatabase', 'acme', { deletionPolicy: 'Delete' }, payments);
  await team.apply('TenantGroup', 'merchants', {
    selector: { matchLabels: { app: 'payments' } },
    env: [{ key: 'MERCHANT_$(NAME)_DATABASE_URL', from: 'DATABASE_URL' }],
  });
  await tenantReady(c, 'payments', 'acme');
  await tenantReady(c, 'payments', 'globex');
  await waitFor(
    'acme and globex in the registry, both ready',
    async () => {
      const r = await registry();
      return r && r.doc.tenants.length === 2 && r.doc.tenants.every((t) => t.ready) ? r : undefined;
    },
    30_000,
  );
  const r = (await registry())!;
  expect(r.doc.tenants.map((t) => t.name)).toEqual(['acme', 'globex']);
  expect(r.doc.tenants[0]?.database).toBe('payments_acme');
  // The backend logs in with what the registry gives, by the env key and by the document.
  expect((await queryWith(r.data.MERCHANT_ACME_DATABASE_URL ?? ''))[0]?.u).toBe('payments_acme');
  expect((await queryWith(r.doc.tenants[1]?.uri ?? ''))[0]?.u).toBe('payments_globex');
  const g = await waitForCondition(() => getGroup('payments', 'merchants'), 'Ready', 'True', 'Synced');
  expect(g.status).toMatchObject({ members: 2, ready: 2, secretName: 'merchants-tenants' });

  // A new member appears; a rotation reaches the registry; a deleted member goes.
  await team.apply('TenantDatabase', 'initech', { deletionPolicy: 'Delete' }, payments);
  await waitFor('initech in the registry', async () => ((await names()).includes('initech') ? true : undefined), 30_000);
  const before = r.data.MERCHANT_ACME_DATABASE_URL;
  await team.apply(
    'TenantDatabase',
    'acme',
    { deletionPolicy: 'Delete' },
    { ...payments, annotations: { 'tenantdb.dev/rotate-password': 'r1' } },
  );
  const rotated = await waitFor(
    'the rotated password in the registry',
    async () => {
      const url = (await registry())?.data.MERCHANT_ACME_DATABASE_URL;
      return url && url !== before ? url : undefined;
    },
    30_000,
  );
  await waitFor(
    'a login with the rotated password',
    async () =>
      (await queryWith(rotated).then(
        () => true,
        () => false,
      )) || undefined,
    30_000,
  );
  await team.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: 'payments',
    plural: 'tenantdatabases',
    name: 'globex',
  });
  await waitFor('globex gone from the registry', async () => ((await names()).includes('globex') ? undefined : true), 60_000);
  // Unlabelling takes a tenant out too; the other namespace's acme never came in.
  await team.apply('TenantDatabase', 'initech', { deletionPolicy: 'Delete' }, { labels: { app: 'billing' } });
  await waitFor('initech gone from the registry', async () => ((await names()).join(',') === 'acme' ? true : undefined), 30_000);
  expect((await registry())?.data.MERCHANT_GLOBEX_DATABASE_URL).toBeUndefined();
}, 240_000);

test('a Secret name taken by something else is a Conflict, and that Secret is left alone', async () => {
  await team.core.createNamespacedSecret({ namespace: 'payments', body: { metadata: { name: 'taken' }, stringData: { mine: 'yes' } } });
  await team.apply('TenantGroup', 'squatted', { selector: { matchLabels: { app: 'payments' } }, secretName: 'taken' });
  const g = await waitForCondition(() => getGroup('payments', 'squatted'), 'Ready', 'False', 'Conflict');
  expect(condition(g, 'Ready')?.message).toContain('set spec.secretName');
  expect(await readSecretData(c, 'payments', 'taken')).toEqual({ mine: 'yes' });
});

test('members whose names give the same env key are refused in status', async () => {
  await team.apply('TenantDatabase', 'big-shop', { deletionPolicy: 'Delete' }, { labels: { app: 'shops' } });
  await team.apply(
    'TenantDatabase',
    'big.shop',
    { deletionPolicy: 'Delete', databaseName: 'big_shop_two', roleName: 'big_shop_two' },
    { labels: { app: 'shops' } },
  );
  await team.apply('TenantGroup', 'shops', {
    selector: { matchLabels: { app: 'shops' } },
    env: [{ key: 'S_$(NAME)', from: 'DATABASE_URL' }],
  });
  const g = await waitForCondition(() => getGroup('payments', 'shops'), 'Ready', 'False', 'KeyCollision', 60_000);
  expect(condition(g, 'Ready')?.message).toContain('both give the key S_BIG_SHOP');
});
