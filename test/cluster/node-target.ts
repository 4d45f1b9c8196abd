/**
 * The real-node side of the cluster tests: the node of test/env/node.ts with tenantdb installed
 * (startTenantdbCluster), described for the tests (TargetInfo). Needs root.
 */
import { join } from 'node:path';
import { startTenantdbCluster, type TenantdbCluster } from '../env/node-tenantdb.js';
import type { TargetInfo } from './target.js';

export async function setUpNode(o: { dir: string; log: (s: string) => void }): Promise<{ cluster: TenantdbCluster; info: TargetInfo }> {
  const cluster = await startTenantdbCluster({ dir: o.dir, log: o.log });
  const { node, pg } = cluster;
  const client = node.images.client;
  return {
    cluster,
    info: {
      name: 'node',
      dir: node.dir,
      kubeconfig: node.kubeconfig,
      kubectl: join(node.cp.binDir, 'kubectl'),
      helm: cluster.helmPath,
      imageValues: cluster.imageValues,
      clientImage: `${client.repository}:${client.tag}`,
      poolerHost: cluster.poolerHost,
      runtime: { containerdSocket: cluster.containerdSocket },
      // PostgreSQL runs on the host, beside the tests.
      superuser: { host: pg.host, port: pg.port, user: pg.superuser.user, password: pg.superuser.password },
    },
  };
}
