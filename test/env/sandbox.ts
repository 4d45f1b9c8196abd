/**
 * The real components wired together: control plane, PostgreSQL, CRDs, the operator's RBAC and
 * identity, the admin Secret and a default PostgresServer. Used by `npm run dev` and by the
 * integration tests' global setup.
 */
import * as k8s from '@kubernetes/client-node';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from './controlplane.js';
import { OPERATOR_NAMESPACE, apply, installCrds, operatorKubeconfig } from './cluster.js';
import { startPostgres, type PgServer } from './postgres.js';

export interface Sandbox {
  dir: string;
  cp: ControlPlane;
  pg: PgServer;
  operatorKubeconfig: string;
  stop(): Promise<void>;
}

export const ADMIN_SECRET = 'pg-admin';

export async function createServerObjects(
  kc: k8s.KubeConfig,
  pg: PgServer,
  name: string,
  spec: Record<string, unknown> = {},
): Promise<void> {
  const secretName = `${ADMIN_SECRET}-${name}`;
  await apply(kc, [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: secretName, namespace: OPERATOR_NAMESPACE },
      stringData: { username: pg.admin.user, password: pg.admin.password },
    } as k8s.KubernetesObject,
    {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'PostgresServer',
      metadata: { name },
      spec: {
        host: pg.host,
        port: pg.port,
        sslMode: 'disable',
        adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: secretName },
        allowedExtensions: ['pgcrypto', 'citext', 'hstore', 'uuid-ossp'],
        ...spec,
      },
    } as k8s.KubernetesObject,
  ]);
}

export async function startSandbox(dir: string, opts: { apiServerArgs?: string[] } = {}): Promise<Sandbox> {
  mkdirSync(dir, { recursive: true });
  const cp = await startControlPlane(join(dir, 'cluster'), {
    ...opts,
    beforeControllers: async (kubeconfig, binDir) => {
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(kubeconfig);
      await installCrds(kc, join(binDir, 'kubectl'), kubeconfig);
    },
  });
  let pg: PgServer | undefined;
  try {
    pg = await startPostgres();
    const opKubeconfig = await operatorKubeconfig(cp, join(dir, 'operator.kubeconfig'));
    const started = pg;
    return {
      dir,
      cp,
      pg,
      operatorKubeconfig: opKubeconfig,
      stop: async () => {
        await started.stop();
        await cp.stop();
      },
    };
  } catch (err) {
    await pg?.stop();
    await cp.stop();
    throw err;
  }
}
