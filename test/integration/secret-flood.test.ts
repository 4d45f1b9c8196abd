/**
 * A tenant labels many large Secrets of its own as tenantdb's (the label the operator's Secret cache
 * selects on) to fill the operator's memory. The operator runs with a small heap: it must keep
 * serving the other teams, and must come back after a restart with the flood still in place.
 */
import { join } from 'node:path';
import { startOperatorProcess } from '../env/operator.js';
import { waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import { cluster, ensureDefaultServer, getTenant, tenantIdentity, tenantReady, type Tenant } from './harness.js';

const c = cluster();
let op: Proc | undefined;
let evil: Tenant;
let victim: Tenant;

/** Enough for the operator's own work; far less than the Secrets below hold. */
const HEAP = '--max-old-space-size=128';
const FLOOD = 120;
const BYTES = 900 * 1024;

const start = (n: number) => {
  op = startOperatorProcess({
    kubeconfig: c.env.operatorKubeconfig,
    logFile: join(c.env.dir, `operator-flood-${n}.log`),
    identity: `flood-${n}`,
    nodeOptions: HEAP,
  });
  return op;
};
const alive = (p: Proc | undefined) => !!p && p.child.exitCode === null && p.child.signalCode === null;

beforeAll(async () => {
  start(1);
  await ensureDefaultServer(c);
  evil = await tenantIdentity(c, 'flood');
  victim = await tenantIdentity(c, 'flood-victim');
}, 120_000);

afterAll(async () => {
  await op?.stop();
});

test('labelled Secrets of any size and number do not exhaust the operator', async () => {
  await evil.apply('TenantDatabase', 'app', {});
  await tenantReady(c, 'flood', 'app');
  const uid = (await getTenant(c, 'flood', 'app'))?.metadata.uid ?? '';
  // Half claim to be controlled by the tenant's own TenantDatabase, half carry only the label.
  const payload = Buffer.alloc(BYTES, 'x').toString('base64');
  for (let i = 0; i < FLOOD; i += 1) {
    await evil.core.createNamespacedSecret({
      namespace: 'flood',
      body: {
        metadata: {
          name: `junk-${i}`,
          labels: { 'app.kubernetes.io/managed-by': 'tenantdb' },
          annotations: { 'tenantdb.dev/data-hash': 'y'.repeat(100_000) },
          ...(i % 2
            ? { ownerReferences: [{ apiVersion: 'tenantdb.dev/v1alpha1', kind: 'TenantDatabase', name: 'app', uid, controller: true }] }
            : {}),
        },
        data: { password: payload },
      },
    });
  }
  // Another team provisions while the flood sits in the cache.
  await victim.apply('TenantDatabase', 'shop', {});
  await tenantReady(c, 'flood-victim', 'shop', 90_000);
  expect(alive(op)).toBe(true);

  // A restart lists every labelled Secret again: it must come up and serve.
  await op?.stop();
  start(2);
  await victim.apply('TenantDatabase', 'shop2', {});
  await tenantReady(c, 'flood-victim', 'shop2', 90_000);
  await waitFor(
    'the first tenant re-checked after the restart',
    async () => alive(op) && (await getTenant(c, 'flood', 'app')) !== undefined,
  );
  expect(alive(op)).toBe(true);
}, 300_000);
