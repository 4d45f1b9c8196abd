/** The real agent beside a real PostgreSQL, managing its pg_hba.conf (written owned like the data folder). */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cluster.js';
import type { PgServer } from './postgres.js';
import { startProcess, type Proc } from './process.js';

export function startPgAgent(pgs: PgServer, agentKubeconfig: string, secret: string, logFile: string): Proc {
  const hba = join(pgs.dir, 'data', 'pg_hba.conf');
  const base = join(pgs.dir, 'base_hba.conf');
  copyFileSync(hba, base);
  return startProcess(
    'pg-agent',
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'src/cli/main.ts'),
      'agent',
      '--mode=postgres',
      `--secret=${secret}`,
      `--kubeconfig=${agentKubeconfig}`,
      `--hba-file=${hba}`,
      `--base-hba-file=${base}`,
      `--pg-host=${pgs.host}`,
      `--pg-port=${pgs.port}`,
      `--pg-user=${pgs.superuser.user}`,
    ],
    logFile,
    { cwd: ROOT, env: { ...process.env, TENANTDB_PG_PASSWORD: pgs.superuser.password } },
  );
}
