/**
 * Migrations against a real kube-apiserver, with the operator under the deploy/ RBAC and the team
 * acting through its namespace-confined token. There is no kubelet and no Job controller here: the
 * test writes each Job's status as the Job controller would. The Jobs really running is
 * test/cluster/migrations.test.ts; this file checks the Job the operator asks for (its spec, its
 * owner, what a team cannot slip into it) and the gate's reaction to the results.
 */
import * as k8s from '@kubernetes/client-node';
import { waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import {
  cluster,
  condition,
  ensureDefaultServer,
  getTenant,
  operator,
  tenantIdentity,
  waitForCondition,
  type Obj,
  type Tenant,
} from './harness.js';

const c = cluster();
const batch = c.kc.makeApiClient(k8s.BatchV1Api);
const NS = 'migrating';
let op: Proc;
let team: Tenant;

const migration = { image: 'localhost/migrate:1', command: ['migrate', 'up'] };

async function jobOf(tenant: string): Promise<k8s.V1Job> {
  const t = await waitFor(`${tenant} to name its migration Job`, async () => {
    const o = await getTenant(c, NS, tenant);
    return (o?.status?.migration as { jobName?: string } | undefined)?.jobName ? o : undefined;
  });
  const name = (t.status?.migration as { jobName: string }).jobName;
  return waitFor(`Job ${name}`, async () => batch.readNamespacedJob({ name, namespace: NS }).catch(() => undefined));
}

/** The status the Job controller writes when the pod ends. */
async function finishJob(job: k8s.V1Job, outcome: 'Complete' | 'Failed'): Promise<void> {
  const now = new Date();
  const start = new Date(now.getTime() - 5000);
  const cond = (type: string, reason: string) => ({
    type,
    status: 'True',
    reason,
    message: reason,
    lastProbeTime: now,
    lastTransitionTime: now,
  });
  const status: k8s.V1JobStatus =
    outcome === 'Complete'
      ? {
          startTime: start,
          completionTime: now,
          succeeded: 1,
          conditions: [cond('SuccessCriteriaMet', 'CompletionsReached'), cond('Complete', 'CompletionsReached')],
        }
      : {
          startTime: start,
          failed: 1,
          conditions: [cond('FailureTarget', 'BackoffLimitExceeded'), cond('Failed', 'BackoffLimitExceeded')],
        };
  await batch.replaceNamespacedJobStatus({ name: job.metadata?.name ?? '', namespace: NS, body: { ...job, status } });
}

const tenantOf = (name: string) => () => getTenant(c, NS, name);

beforeAll(async () => {
  op = operator(c, 'migrations', undefined, ['--migration-jobs=on']);
  await ensureDefaultServer(c);
  team = await tenantIdentity(c, NS);
}, 120_000);

afterAll(async () => {
  await op?.stop();
});

test("the operator creates the tenant's Job as asked and nothing more; Ready waits for its result", async () => {
  // A team that may not create Jobs tries to slip a ServiceAccount and a volume in. Server-side
  // apply refuses fields the CRD does not declare; a plain create has them pruned: either way the
  // operator never sees them.
  const sneaky = { ...migration, serviceAccountName: 'deployer', volumes: [{ name: 'root', hostPath: { path: '/' } }] };
  await expect(team.apply('TenantDatabase', 'shop', { deletionPolicy: 'Delete', migration: sneaky })).rejects.toThrow(
    /not declared in schema/,
  );
  await team.custom.createNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: NS,
    plural: 'tenantdatabases',
    body: {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'TenantDatabase',
      metadata: { name: 'shop' },
      spec: { deletionPolicy: 'Delete', migration: sneaky },
    },
  });
  expect((await getTenant(c, NS, 'shop'))?.spec.migration).toEqual({
    ...migration,
    env: [],
    backoffLimit: 0,
    activeDeadlineSeconds: 1800,
    gateReady: true,
  });
  const job = await jobOf('shop');
  const pod = job.spec?.template.spec;
  expect(job.metadata?.ownerReferences).toEqual([expect.objectContaining({ kind: 'TenantDatabase', name: 'shop', controller: true })]);
  expect(pod?.serviceAccountName).toBeUndefined();
  expect(pod?.volumes).toBeUndefined();
  expect(pod?.automountServiceAccountToken).toBe(false);
  expect(pod?.containers[0]?.securityContext).toEqual({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
  const env = pod?.containers[0]?.env ?? [];
  expect(env.find((e) => e.name === 'DIRECT_URL')?.valueFrom?.secretKeyRef?.name).toBe('shop-db');
  expect(env.every((e) => e.valueFrom || !/postgres(ql)?:\/\//.test(e.value ?? ''))).toBe(true);
  // The team itself cannot create a Job (its Role has none): the migration is the only way, and a narrow one.
  const teamBatch = team.kc.makeApiClient(k8s.BatchV1Api);
  await expect(teamBatch.createNamespacedJob({ namespace: NS, body: { ...job, metadata: { name: 'mine' }, status: {} } })).rejects.toThrow(
    /forbidden/i,
  );

  const running = await waitForCondition(tenantOf('shop'), 'Ready', 'False', 'MigrationRunning');
  expect(condition(running, 'SecretReady')?.status).toBe('True');
  await finishJob(job, 'Complete');
  const ready = await waitForCondition(tenantOf('shop'), 'Ready', 'True');
  expect(ready.status?.migration).toMatchObject({ phase: 'Succeeded', source: 'TenantDatabase', jobName: job.metadata?.name });
  expect(condition(ready, 'Migrated')).toMatchObject({ status: 'True', reason: 'MigrationSucceeded' });
});

test('a failed migration is Ready=False MigrationFailed and Stalled; a retry runs a new Job', async () => {
  await team.apply('TenantDatabase', 'broken', { deletionPolicy: 'Delete', migration });
  const first = await jobOf('broken');
  await finishJob(first, 'Failed');
  const failed = await waitForCondition(tenantOf('broken'), 'Ready', 'False', 'MigrationFailed');
  expect(condition(failed, 'Stalled')?.status).toBe('True');
  expect((failed.status?.migration as { message?: string }).message).toContain(first.metadata?.name);

  await team.apply(
    'TenantDatabase',
    'broken',
    { deletionPolicy: 'Delete', migration },
    { annotations: { 'tenantdb.dev/retry-migration': '1' } },
  );
  const second = await waitFor('a new Job for the retry', async () => {
    const j = await jobOf('broken');
    return j.metadata?.name !== first.metadata?.name ? j : undefined;
  });
  await finishJob(second, 'Complete');
  await waitForCondition(tenantOf('broken'), 'Ready', 'True');
});

test('a group rolls out one member at a time and halts at the first failure', async () => {
  const labels = { labels: { app: 'fleet' } };
  for (const n of ['f-1', 'f-2', 'f-3']) await team.apply('TenantDatabase', n, { deletionPolicy: 'Delete' }, labels);
  await team.apply('TenantGroup', 'fleet', { selector: { matchLabels: { app: 'fleet' } }, migration: { ...migration, maxParallel: 1 } });
  const getGroup = async () =>
    (await c.custom.getNamespacedCustomObject({
      group: 'tenantdb.dev',
      version: 'v1alpha1',
      namespace: NS,
      plural: 'tenantgroups',
      name: 'fleet',
    })) as Obj;
  const groupJobs = async () => (await batch.listNamespacedJob({ namespace: NS, labelSelector: 'tenantdb.dev/tenantgroup=fleet' })).items;

  const j1 = await jobOf('f-1');
  // One at a time: f-2 waits while f-1 runs.
  await waitForCondition(tenantOf('f-2'), 'Ready', 'False', 'MigrationPending');
  expect((await groupJobs()).map((j) => j.metadata?.name)).toEqual([j1.metadata?.name]);
  await finishJob(j1, 'Complete');
  const j2 = await jobOf('f-2');
  await finishJob(j2, 'Failed');
  const g = await waitForCondition(getGroup, 'Migrated', 'False', 'RolloutHalted');
  expect(g.status?.rollout).toMatchObject({
    halted: true,
    failedTenant: 'f-2',
    failedJob: j2.metadata?.name,
    succeeded: 1,
    failed: 1,
    pending: 1,
  });
  // f-3 never starts.
  await new Promise((r) => setTimeout(r, 2000));
  expect((await groupJobs()).map((j) => j.metadata?.name).sort()).toEqual([j1.metadata?.name, j2.metadata?.name].sort());
  await waitForCondition(tenantOf('f-1'), 'Ready', 'True');
});
