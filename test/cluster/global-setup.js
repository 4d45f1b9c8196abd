// Plain JavaScript: Jest loads global setup outside its transform, so the TypeScript helpers are
// loaded through tsx.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tsImport } from 'tsx/esm/api';

/** One real node with tenantdb installed by Helm for the whole run. */
export default async function globalSetup() {
  const { startTenantdbCluster } = await tsImport('../env/node-tenantdb.ts', import.meta.url);
  const dir = mkdtempSync(join(tmpdir(), 'tenantdb-node-'));
  const t0 = Date.now();
  const log = (s) => process.stderr.write(`[cluster ${Math.round((Date.now() - t0) / 1000)} s] ${s}\n`);
  const cluster = await startTenantdbCluster({ dir, log });
  log('ready');
  globalThis.__tenantdbNodeCluster = cluster;
  const envFile = join(dir, 'env.json');
  writeFileSync(
    envFile,
    JSON.stringify({
      dir,
      kubeconfig: cluster.node.kubeconfig,
      kubectl: join(cluster.node.cp.binDir, 'kubectl'),
      helm: cluster.helmPath,
      address: cluster.node.address,
      poolerHost: cluster.poolerHost,
      images: cluster.node.images,
      imageValues: cluster.imageValues,
      pg: { host: cluster.pg.host, port: cluster.pg.port, superuser: cluster.pg.superuser },
    }),
    { mode: 0o600 },
  );
  process.env.TENANTDB_CLUSTER_ENV = envFile;
}
