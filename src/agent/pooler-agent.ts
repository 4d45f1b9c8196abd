/**
 * The agent beside PgBouncer: it loads the pooler config Secret the operator renders, checks every
 * line, writes the files atomically and issues RELOAD on the admin console. A config that fails its
 * checks is not loaded; the last good one stays.
 */
import type * as k8s from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { scramVerifier } from '../pg/scram.js';
import { POOLER_FILES, type PoolerFiles } from '../pooler/render.js';
import { validatePoolerFiles } from '../pooler/validate.js';
import type { Logger } from '../runtime/logger.js';
import { writeAtomic } from './files.js';
import { runSecretAgent, type RunningSecretAgent } from './secret-agent.js';

export interface PoolerAgentOptions {
  kc: k8s.KubeConfig;
  namespace: string;
  secretName: string;
  /** Folder of databases.ini, userlist.txt and hba.conf, as pgbouncer.ini names them. */
  dir: string;
  admin: { host: string; port: number; user: string; password: string };
  log: Logger;
}

/** The agent's own admin access, put in front of what the operator rendered. */
export function withAdmin(files: PoolerFiles, adminUser: string, adminVerifier: string): PoolerFiles {
  return {
    'databases.ini': files['databases.ini'],
    'userlist.txt': `"${adminUser}" "${adminVerifier}"\n${files['userlist.txt']}`,
    'hba.conf': `host pgbouncer ${adminUser} 0.0.0.0/0 scram-sha-256\nhost pgbouncer ${adminUser} ::/0 scram-sha-256\n${files['hba.conf']}`,
  };
}

export async function adminQuery(admin: PoolerAgentOptions['admin'], sql: string): Promise<pg.QueryResultRow[]> {
  // The admin console speaks only the simple query protocol: no parameters, ever.
  const c = new pg.Client({ host: admin.host, port: admin.port, user: admin.user, password: admin.password, database: 'pgbouncer', connectionTimeoutMillis: 5000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function startPoolerAgent(o: PoolerAgentOptions): Promise<RunningSecretAgent> {
  const log = o.log.child({ agent: 'pgbouncer', secret: `${o.namespace}/${o.secretName}` });
  const adminVerifier = scramVerifier(o.admin.password);
  // PgBouncer cannot start without its files: until the operator's config arrives, serve no tenant
  // and let only the agent's admin in.
  if (!existsSync(join(o.dir, 'databases.ini'))) {
    const empty = withAdmin({ 'databases.ini': '[databases]\n', 'userlist.txt': '', 'hba.conf': 'host all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n' }, o.admin.user, adminVerifier);
    for (const f of POOLER_FILES) await writeAtomic(o.dir, f, empty[f]);
    log.info({ dir: o.dir }, 'Wrote bootstrap pooler config');
  }
  return runSecretAgent({
    kc: o.kc,
    namespace: o.namespace,
    secretName: o.secretName,
    log,
    apply: async (data) => {
      const errors = validatePoolerFiles(data);
      if (errors.length) return { ok: false, error: errors.slice(0, 5).map((e) => `${e.file}:${e.line}: ${e.message}`).join('; ') };
      const files = withAdmin(data as PoolerFiles, o.admin.user, adminVerifier);
      for (const f of POOLER_FILES) await writeAtomic(o.dir, f, files[f]);
      // PgBouncer may not be up yet: the files are in place for its start; a throw retries the reload.
      await adminQuery(o.admin, 'RELOAD');
      return { ok: true };
    },
  });
}
