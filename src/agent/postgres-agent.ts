/**
 * The agent beside a self-hosted PostgreSQL: it puts the tenant block the operator renders in front
 * of the server's own base rules, writes pg_hba.conf atomically, asks PostgreSQL itself
 * (pg_hba_file_rules) whether the file parses, puts the previous file back if it does not, and
 * only then calls pg_reload_conf().
 */
import type * as k8s from '@kubernetes/client-node';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type pg from 'pg';
import { pinnedOptions, withClient } from '../pg/connections.js';
import { HBA_KEY } from '../pooler/contract.js';
import { validateServerHba } from '../pooler/validate.js';
import type { Logger } from '../runtime/logger.js';
import { writeAtomic } from './files.js';
import { runSecretAgent, type RunningSecretAgent } from './secret-agent.js';

export interface PostgresAgentOptions {
  kc: k8s.KubeConfig;
  namespace: string;
  secretName: string;
  /** The server's hba_file. */
  hbaFile: string;
  /** The server's own rules (local, replication, admins), placed after the tenant block. */
  baseFile: string;
  /** A role allowed to read pg_hba_file_rules and call pg_reload_conf() (a superuser, or granted both). */
  pg: { host: string; port: number; user: string; password: string; database: string };
  log: Logger;
}

async function withServer<T>(o: PostgresAgentOptions['pg'], fn: (c: pg.Client) => Promise<T>): Promise<T> {
  // Pinned like the operator's sessions: any role may leave objects in the database it connects to.
  return withClient({ ...o, connectionTimeoutMillis: 5000, application_name: 'tenantdb-agent', options: pinnedOptions() }, fn);
}

export function startPostgresAgent(o: PostgresAgentOptions): RunningSecretAgent {
  const log = o.log.child({ agent: 'postgres', secret: `${o.namespace}/${o.secretName}` });
  return runSecretAgent({
    kc: o.kc,
    namespace: o.namespace,
    secretName: o.secretName,
    log,
    apply: async (data, hash) => {
      const block = data[HBA_KEY];
      if (block === undefined) return { ok: false, error: `the Secret has no key ${HBA_KEY}` };
      const errors = validateServerHba(block);
      if (errors.length) return { ok: false, error: errors.slice(0, 5).join('; ') };
      const base = await readFile(o.baseFile, 'utf8');
      const previous = await readFile(o.hbaFile, 'utf8').catch(() => undefined);
      const next = `# Written by the tenantdb agent (config ${hash}): tenant rules, then ${o.baseFile}.\n${block}${base}`;
      const dir = dirname(o.hbaFile);
      const name = basename(o.hbaFile);
      await writeAtomic(dir, name, next);
      const bad = await withServer(
        o.pg,
        async (c) =>
          (
            await c.query<{ line_number: number; error: string }>(
              'SELECT r.line_number, r.error FROM pg_catalog.pg_hba_file_rules r WHERE r.error IS NOT NULL ORDER BY r.line_number',
            )
          ).rows,
      ).catch(async (err: unknown) => {
        if (previous !== undefined) await writeAtomic(dir, name, previous);
        throw err;
      });
      if (bad.length) {
        if (previous !== undefined) await writeAtomic(dir, name, previous);
        return {
          ok: false,
          error: `PostgreSQL rejects the file: ${bad
            .slice(0, 3)
            .map((b) => `line ${b.line_number}: ${b.error}`)
            .join('; ')}`,
        };
      }
      await withServer(o.pg, (c) => c.query('SELECT pg_catalog.pg_reload_conf()'));
      return { ok: true };
    },
  });
}
