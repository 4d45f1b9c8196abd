import { rmSync } from 'node:fs';

/** Stops the real node and restores the host (a host left different fails the run); a kind cluster stays kind-e2e.sh's. */
export default async function globalTeardown() {
  const cluster = globalThis.__tenantdbNodeCluster;
  const dir = globalThis.__tenantdbClusterDir;
  globalThis.__tenantdbNodeCluster = undefined;
  globalThis.__tenantdbClusterDir = undefined;
  if (cluster) await cluster.stop();
  if (dir && !process.env.TENANTDB_KEEP_TEST_DIR) rmSync(dir, { recursive: true, force: true });
}
