/** The real agent beside a real PostgreSQL, managing its pg_hba.conf, as the postgres user. */
import { chownSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cluster.js';
import type { PgServer } from './postgres.js';
import { postgresUser, startProcess, type Proc } from './process.js';

export function startPgAgent(pgs: PgServer, agentKubeconfig: string, secret: string, logFile: string): Proc {
  const hba = join(pgs.dir, 'data', 'pg_hba.conf');
  const base = join(pgs.dir, 'base_hba.conf');
  const kubeconfig = join(pgs.dir, 'agent.kubeconfig');
  copyFileSync(hba, base);
  copyFileSync(agentKubeconfig, kubeconfig);
  const ids = postgresUser();
  if (ids) for (const p of [base, kubeconfig]) chownSync(p, ids.uid, ids.gid);
  return startProcess(
    'pg-agent',
    process.execPath,
    [
      '--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'agent', '--mode=postgres', `--secret=${secret}`, `--kubeconfig=${kubeconfig}`,
      `--hba-file=${hba}`, `--base-hba-file=${base}`, `--pg-host=${pgs.host}`, `--pg-port=${pgs.port}`, `--pg-user=${pgs.superuser.user}`,
    ],
    logFile,
    { ...(ids ?? {}), cwd: ROOT, env: { ...process.env, HOME: pgs.dir, TENANTDB_PG_PASSWORD: pgs.superuser.password } },
  );
}
