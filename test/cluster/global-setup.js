// Plain JavaScript: Jest loads global setup outside its transform, so the TypeScript helpers are
// loaded through tsx.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tsImport } from 'tsx/esm/api';

/**
 * One cluster with tenantdb installed by Helm for the whole run: a real node on this machine
 * (TENANTDB_E2E_TARGET unset or `node`), or the kind cluster of scripts/kind-e2e.sh (`kind`).
 */
export default async function globalSetup() {
  const target = process.env.TENANTDB_E2E_TARGET || 'node';
  const dir = mkdtempSync(join(tmpdir(), `tenantdb-${target}-`));
  globalThis.__tenantdbClusterDir = dir;
  const t0 = Date.now();
  const log = (s) => process.stderr.write(`[cluster ${Math.round((Date.now() - t0) / 1000)} s] ${s}\n`);
  let info;
  if (target === 'node') {
    const { setUpNode } = await tsImport('./node-target.ts', import.meta.url);
    const started = await setUpNode({ dir, log });
    globalThis.__tenantdbNodeCluster = started.cluster;
    info = started.info;
  } else if (target === 'kind') {
    const { setUpKind } = await tsImport('./kind-target.ts', import.meta.url);
    info = await setUpKind({ dir, log, env: process.env });
  } else {
    throw new Error(`TENANTDB_E2E_TARGET=${target}: node or kind`);
  }
  log(`ready (${target})`);
  const envFile = join(dir, 'target.json');
  writeFileSync(envFile, JSON.stringify(info), { mode: 0o600 });
  process.env.TENANTDB_CLUSTER_ENV = envFile;
}
