/** The operator's informers survive the API server going away and coming back. */
import * as k8s from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminKubeConfig, installCrds, operatorKubeconfig, apply } from '../env/cluster.js';
import { startControlPlane, type ControlPlane } from '../env/controlplane.js';
import { startOperatorProcess } from '../env/operator.js';
import { waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import { createServerObjects } from '../env/sandbox.js';
import { testEnv, superQuery, cluster } from './harness.js';

const env = testEnv();
let cp: ControlPlane;
let op: Proc;
let kc: k8s.KubeConfig;

const ready = (name: string) =>
  waitFor(
    `tenant ${name} Ready`,
    async () => {
      const custom = kc.makeApiClient(k8s.CustomObjectsApi);
      const td = (await custom.getNamespacedCustomObject({
        group: 'tenantdb.dev',
        version: 'v1alpha1',
        namespace: 'restart',
        plural: 'tenantdatabases',
        name,
      })) as {
        status?: { conditions?: { type: string; status: string }[] };
      };
      return td.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    },
    60_000,
  );

beforeAll(async () => {
  cp = await startControlPlane(join(env.dir, 'restart-cluster'), {
    beforeControllers: async (kubeconfig, binDir) => {
      const k = new k8s.KubeConfig();
      k.loadFromFile(kubeconfig);
      await installCrds(k, join(binDir, 'kubectl'), kubeconfig);
    },
  });
  kc = adminKubeConfig(cp);
  const opKubeconfig = await operatorKubeconfig(cp, join(env.dir, 'restart-operator.kubeconfig'));
  await createServerObjects(kc, { host: env.pg.host, port: env.pg.port, admin: env.pg.admin } as never, 'default', { default: true });
  await apply(kc, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'restart' } }]);
  op = startOperatorProcess({ kubeconfig: opKubeconfig, logFile: join(env.dir, 'operator-restart.log'), resync: '5m' });
}, 120_000);

afterAll(async () => {
  await op?.stop();
  await cp?.stop();
});

test('after an API server restart, new and changed tenants are reconciled again', async () => {
  const td = (name: string, spec: Record<string, unknown> = {}) =>
    apply(kc, [
      {
        apiVersion: 'tenantdb.dev/v1alpha1',
        kind: 'TenantDatabase',
        metadata: { name, namespace: 'restart' },
        spec,
      } as k8s.KubernetesObject,
    ]);
  await td('before');
  await ready('before');
  const port = await waitFor(
    'the metrics port',
    async () => {
      const line = readFileSync(join(env.dir, 'operator-restart.log'), 'utf8')
        .split('\n')
        .find((l) => l.includes('"metricsPort"'));
      return (JSON.parse(line ?? '{}') as { metricsPort?: number }).metricsPort;
    },
    30_000,
  );
  const readyz = async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status;
  expect(await readyz()).toBe(200);
  // /readyz while the API server is away: the watches are down, so the operator is not ready.
  const seen = new Set<number | undefined>();
  let probing = true;
  const probe = (async () => {
    while (probing) {
      seen.add(await readyz());
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const t0 = Date.now();
  await cp.restartApiServer(1000);
  const outage = Date.now() - t0;
  // The resync is 5 minutes: only a working watch can bring these in within the timeout.
  await td('after');
  await ready('after');
  await td('before', { connectionLimit: 3 });
  await waitFor(
    'the new connection limit',
    async () => {
      const [r] = await superQuery(cluster(), "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'restart_before'");
      return r?.rolconnlimit === 3 || undefined;
    },
    30_000,
  );
  await waitFor('/readyz back', async () => ((await readyz()) === 200 ? true : undefined), 30_000);
  probing = false;
  await probe;
  expect(seen).toContain(503);
  // An outage shorter than the renew deadline (10 s) keeps the leader.
  if (outage < 9000) expect(readFileSync(join(env.dir, 'operator-restart.log'), 'utf8')).not.toContain('Lost leadership');
}, 180_000);
