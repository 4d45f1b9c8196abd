// Plain JavaScript: Jest loads global setup outside its transform, so the TypeScript helpers are
// loaded through tsx.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tsImport } from 'tsx/esm/api';

/** One control plane and one PostgreSQL for the whole run; each test file starts its own operator. */
export default async function globalSetup() {
  const { startSandbox } = await tsImport('../env/sandbox.ts', import.meta.url);
  const dir = mkdtempSync(join(tmpdir(), 'tenantdb-it-'));
  const sb = await startSandbox(dir);
  globalThis.__tenantdbSandbox = sb;
  const envFile = join(dir, 'env.json');
  writeFileSync(
    envFile,
    JSON.stringify({
      dir,
      adminKubeconfig: sb.cp.adminKubeconfig,
      operatorKubeconfig: sb.operatorKubeconfig,
      server: sb.cp.server,
      caFile: sb.cp.caFile,
      pg: { host: sb.pg.host, port: sb.pg.port, dir: sb.pg.dir, superuser: sb.pg.superuser, admin: sb.pg.admin },
    }),
    { mode: 0o600 },
  );
  process.env.TENANTDB_TEST_ENV = envFile;
}
