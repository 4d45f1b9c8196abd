/**
 * The arrows the migrations add to the watch table: a migration Job wakes the tenant that controls
 * it (only when the owner's uid matches) and the group whose rollout made it; a group's spec change
 * wakes the tenants of its namespace; a member's progress wakes its group.
 */
import type * as k8s from '@kubernetes/client-node';
import type { CachedTenantDatabase, CachedTenantGroup } from '../../src/api/cached.js';
import { IndexStore, type ResilientInformer } from '../../src/runtime/informer.js';
import {
  BY_NAMESPACE,
  groupIndexers,
  handlersFor,
  jobIndexers,
  tenantIndexers,
  type Caches,
  type ControllerName,
} from '../../src/controllers/watches.js';

/** An informer's cache without the informer: what the watch table's map functions read. */
function cache<T extends k8s.KubernetesObject>(
  items: T[],
  indexers: Record<string, (o: T) => readonly string[]> = {},
): ResilientInformer<T> {
  const store = new IndexStore<T>(indexers);
  for (const i of items) store.file(i);
  return {
    start: async () => undefined,
    stop: async () => undefined,
    synced: () => true,
    watching: () => true,
    list: () => items,
    get: (name, namespace) => items.find((i) => i.metadata?.name === name && i.metadata?.namespace === namespace),
    byIndex: (index, value) => store.get(index, value),
  };
}

const tenant = (name: string, uid: string, extra: Partial<CachedTenantDatabase> = {}): CachedTenantDatabase => ({
  metadata: { name, namespace: 'shop', uid, labels: { app: 'm' } },
  spec: {},
  ...extra,
});
const orders = tenant('orders', 'uid-orders');
const caches: Caches = {
  servers: cache([]),
  tenants: cache([orders, tenant('billing', 'uid-billing')], tenantIndexers),
  whitelists: cache([]),
  groups: cache<CachedTenantGroup>(
    [{ metadata: { name: 'merchants', namespace: 'shop', uid: 'g' }, spec: { selector: {} } }],
    groupIndexers,
  ),
  secrets: cache([]),
  namespaces: cache([]),
  jobs: cache([], jobIndexers),
  plans: cache([]),
};

function woken<S extends 'jobs' | 'groups' | 'tenants'>(source: S, obj: unknown, old?: unknown): [ControllerName, string][] {
  const out: [ControllerName, string][] = [];
  const h = handlersFor(
    source,
    () => caches,
    { add: (c, k) => out.push([c, k]) },
    (err) => {
      throw err;
    },
  );
  h.onChange(obj as never, old as never);
  return out.filter(([c]) => c === 'tenantdatabase' || c === 'tenantgroup');
}

const job = (owner: { name: string; uid: string }, labels: Record<string, string> = {}): k8s.V1Job => ({
  metadata: {
    name: `${owner.name}-migrate-0123456789`,
    namespace: 'shop',
    labels: { 'app.kubernetes.io/managed-by': 'tenantdb', 'app.kubernetes.io/component': 'migration', ...labels },
    ownerReferences: [{ apiVersion: 'tenantdb.dev/v1alpha1', kind: 'TenantDatabase', name: owner.name, uid: owner.uid, controller: true }],
  },
});

test('a Job wakes the tenant that controls it, and the group whose rollout made it', () => {
  expect(woken('jobs', job({ name: 'orders', uid: 'uid-orders' }))).toEqual([['tenantdatabase', 'shop/orders']]);
  expect(woken('jobs', job({ name: 'orders', uid: 'uid-orders' }, { 'tenantdb.dev/tenantgroup': 'merchants' }))).toEqual([
    ['tenantdatabase', 'shop/orders'],
    ['tenantgroup', 'shop/merchants'],
  ]);
});

test('a Job that names a tenant by a stale or forged uid wakes no tenant', () => {
  expect(woken('jobs', job({ name: 'orders', uid: 'someone-else' }))).toEqual([]);
});

test("a group's spec change wakes the tenants of its namespace; its status writes do not", () => {
  const g = { metadata: { name: 'merchants', namespace: 'shop', uid: 'g', generation: 2 }, spec: { selector: {} } };
  const before = { ...g, metadata: { ...g.metadata, generation: 1 } };
  const keys = woken('groups', g, before)
    .filter(([c]) => c === 'tenantdatabase')
    .map(([, k]) => k)
    .sort();
  expect(keys).toEqual(['shop/billing', 'shop/orders']);
  expect(woken('groups', { ...g, status: { members: 2 } }, g).filter(([c]) => c === 'tenantdatabase')).toEqual([]);
  expect(caches.tenants.byIndex(BY_NAMESPACE, 'shop')).toHaveLength(2);
});

test("a member's migration progress and provisioning wake its group", () => {
  const running = tenant('orders', 'uid-orders', { status: { migration: { phase: 'Running', templateHash: 'h' } } });
  const done = tenant('orders', 'uid-orders', { status: { migration: { phase: 'Succeeded', templateHash: 'h' } } });
  expect(woken('tenants', done, running)).toContainEqual(['tenantgroup', 'shop/merchants']);
  const provisioned = tenant('orders', 'uid-orders', {
    status: { conditions: [{ type: 'SecretReady', status: 'True', reason: 'x', message: '', lastTransitionTime: '' }] },
  });
  expect(woken('tenants', provisioned, orders)).toContainEqual(['tenantgroup', 'shop/merchants']);
});

test("a group's rollout halting wakes its members still waiting", () => {
  const waiting = tenant('billing', 'uid-billing', { status: { migration: { phase: 'Pending' } } });
  const c2: Caches = { ...caches, tenants: cache([orders, waiting], tenantIndexers) };
  const out: string[] = [];
  const h = handlersFor(
    'groups',
    () => c2,
    { add: (c, k) => (c === 'tenantdatabase' ? out.push(k) : 0) },
    (err) => {
      throw err;
    },
  );
  const g = { metadata: { name: 'merchants', namespace: 'shop', uid: 'g', generation: 1 }, spec: { selector: {} } };
  h.onChange(
    { ...g, status: { rollout: { halted: true, failedJob: 'orders-migrate-0123456789' } } },
    { ...g, status: { rollout: { halted: false } } },
  );
  expect(out).toEqual(['shop/billing']);
});
