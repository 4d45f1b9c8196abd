/**
 * An operator limited to chosen namespaces (--watch-namespaces) under deploy/rbac-namespaced.yaml:
 * it serves its namespaces, and it can neither see nor touch anything in the others.
 */
import * as k8s from '@kubernetes/client-node';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OPERATOR_NAMESPACE, apply, readManifests } from '../env/cluster.js';
import { kubeconfigYaml } from '../env/controlplane.js';
import { startOperatorProcess } from '../env/operator.js';
import type { Proc } from '../env/process.js';
import { applyTenant, cluster, ensureDefaultServer, getTenant, namespace, readSecretData, queryWith, tenantReady } from './harness.js';

const c = cluster();
const SA = 'tenantdb-scoped';
let op: Proc;
let scopedKc: k8s.KubeConfig;

/** deploy/rbac-namespaced.yaml for namespace scoped-a, bound to a ServiceAccount of its own. */
function manifests(): k8s.KubernetesObject[] {
  const text = JSON.stringify(readManifests('deploy/rbac-namespaced.yaml'))
    .replaceAll('"team-a"', '"scoped-a"')
    .replaceAll('"tenantdb-operator"', `"${SA}"`)
    .replaceAll('"tenantdb-operator-scoped"', `"${SA}-cluster"`)
    .replaceAll('"tenantdb-operator-events"', `"${SA}-events"`);
  return JSON.parse(text) as k8s.KubernetesObject[];
}

beforeAll(async () => {
  for (const ns of ['scoped-a', 'scoped-b']) await namespace(c, ns);
  await apply(c.kc, manifests());
  const tr = await c.core.createNamespacedServiceAccountToken({
    name: SA,
    namespace: OPERATOR_NAMESPACE,
    body: { spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3600 } },
  });
  const path = join(c.env.dir, 'scoped.kubeconfig');
  writeFileSync(path, kubeconfigYaml(c.env.server, c.env.caFile, { token: tr.status?.token ?? '' }, SA), { mode: 0o600 });
  scopedKc = new k8s.KubeConfig();
  scopedKc.loadFromFile(path);
  op = startOperatorProcess({
    kubeconfig: path,
    logFile: join(c.env.dir, 'operator-scoped.log'),
    resync: '3s',
    extraArgs: ['--watch-namespaces=scoped-a', '--no-leader-elect'],
  });
  await ensureDefaultServer(c);
}, 120_000);

afterAll(async () => {
  await op?.stop();
});

test('a tenant in a served namespace is provisioned under namespaced RBAC', async () => {
  await applyTenant(c, 'scoped-a', 'app');
  await tenantReady(c, 'scoped-a', 'app');
  const s = await readSecretData(c, 'scoped-a', 'app-db');
  expect((await queryWith(s?.DIRECT_URL ?? ''))[0]).toEqual({ u: 'scoped_a_app', d: 'scoped_a_app' });
});

test('a tenant elsewhere is not served, and the operator has no rights there', async () => {
  await applyTenant(c, 'scoped-b', 'app');
  await new Promise((r) => setTimeout(r, 6000));
  expect((await getTenant(c, 'scoped-b', 'app'))?.status).toBeUndefined();
  const core = scopedKc.makeApiClient(k8s.CoreV1Api);
  await expect(core.listNamespacedSecret({ namespace: 'scoped-b' })).rejects.toMatchObject({ code: 403 });
  await expect(core.listSecretForAllNamespaces()).rejects.toMatchObject({ code: 403 });
  await expect(core.listNamespace()).rejects.toMatchObject({ code: 403 });
});
