import { rmSync } from 'node:fs';

/** Stops the node and restores the host; a host left different fails the run. */
export default async function globalTeardown() {
  const cluster = globalThis.__tenantdbNodeCluster;
  globalThis.__tenantdbNodeCluster = undefined;
  if (!cluster) return;
  const dir = cluster.node.dir;
  await cluster.stop();
  if (!process.env.TENANTDB_KEEP_TEST_DIR) rmSync(dir, { recursive: true, force: true });
}
