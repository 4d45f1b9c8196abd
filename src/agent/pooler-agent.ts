/**
 * The agent beside PgBouncer: it watches the pooler config Secret the operator renders, checks
 * every line, writes the files atomically and issues RELOAD on the admin console. A config that
 * fails its checks is not loaded; the last good one stays. The outcome is written back onto the
 * Secret as annotations, where the operator reads it into the server's status.
 */
import * as k8s from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { POOLER_FILES, type PoolerFiles } from '../pooler/render.js';
import { validatePoolerFiles } from '../pooler/validate.js';
import { AGENT_APPLIED_ANNOTATION, AGENT_ERROR_ANNOTATION, configHash } from '../pooler/status.js';
import { scramVerifier } from '../pg/scram.js';
import { errorMessage } from '../runtime/errors.js';
import type { Logger } from '../runtime/logger.js';
import { writeAtomic } from './files.js';
import { mergePatch } from '../kube/client.js';

export interface PoolerAgentOptions {
  kc: k8s.KubeConfig;
  namespace: string;
  secretName: string;
  /** Folder of databases.ini, userlist.txt and hba.conf, as pgbouncer.ini names them. */
  dir: string;
  admin: { host: string; port: number; user: string; password: string };
  log: Logger;
}

export interface RunningAgent {
  stop(): Promise<void>;
  /** Resolves after the next apply attempt (for tests and the benchmark). */
  lastAppliedHash(): string | undefined;
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

export async function startPoolerAgent(o: PoolerAgentOptions): Promise<RunningAgent> {
  const core = o.kc.makeApiClient(k8s.CoreV1Api);
  const watch = new k8s.Watch(o.kc);
  const log = o.log.child({ agent: 'pgbouncer', secret: `${o.namespace}/${o.secretName}` });
  const adminVerifier = scramVerifier(o.admin.password);
  let applied: string | undefined;
  let stopped = false;
  let abort: AbortController | undefined;
  let busy = Promise.resolve();

  const annotate = async (annotations: Record<string, string | null>) => {
    await core
      .patchNamespacedSecret({ name: o.secretName, namespace: o.namespace, body: { metadata: { annotations } } }, mergePatch)
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'Could not report the outcome on the Secret'));
  };

  const apply = async (secret: k8s.V1Secret) => {
    const data: Partial<Record<keyof PoolerFiles, string>> = {};
    for (const f of POOLER_FILES) {
      const v = secret.data?.[f];
      if (v !== undefined) data[f] = Buffer.from(v, 'base64').toString('utf8');
    }
    const hash = configHash(data);
    if (hash === applied) {
      if (secret.metadata?.annotations?.[AGENT_APPLIED_ANNOTATION] !== hash) await annotate({ [AGENT_APPLIED_ANNOTATION]: hash, [AGENT_ERROR_ANNOTATION]: null });
      return;
    }
    const errors = validatePoolerFiles(data);
    if (errors.length) {
      const message = errors.slice(0, 5).map((e) => `${e.file}:${e.line}: ${e.message}`).join('; ');
      log.error({ hash, errors: errors.slice(0, 20) }, 'Refused a pooler config that fails its checks; the last good one stays');
      if (secret.metadata?.annotations?.[AGENT_ERROR_ANNOTATION] !== `${hash}: ${message}`) await annotate({ [AGENT_ERROR_ANNOTATION]: `${hash}: ${message}` });
      return;
    }
    const files = withAdmin(data as PoolerFiles, o.admin.user, adminVerifier);
    for (const f of POOLER_FILES) await writeAtomic(o.dir, f, files[f]);
    try {
      await adminQuery(o.admin, 'RELOAD');
    } catch (err) {
      // PgBouncer may not be up yet: the files are in place for its start; retry the reload later.
      log.warn({ err: errorMessage(err) }, 'RELOAD failed; will retry');
      throw err;
    }
    applied = hash;
    log.info({ hash }, 'Applied pooler config');
    await annotate({ [AGENT_APPLIED_ANNOTATION]: hash, [AGENT_ERROR_ANNOTATION]: null });
  };

  const enqueue = (secret: k8s.V1Secret) => {
    busy = busy.then(() => apply(secret)).catch((err: unknown) => {
      log.warn({ err: errorMessage(err) }, 'Apply failed; retrying');
      setTimeout(() => void refresh(), 1000).unref();
    });
    return busy;
  };

  const refresh = async () => {
    if (stopped) return;
    try {
      const s = await core.readNamespacedSecret({ name: o.secretName, namespace: o.namespace });
      await enqueue(s);
      return s.metadata?.resourceVersion;
    } catch (err) {
      if ((err as { code?: number }).code !== 404) log.warn({ err: errorMessage(err) }, 'Could not read the pooler config Secret');
      return undefined;
    }
  };

  // PgBouncer cannot start without its files: until the operator's config arrives, serve no tenant
  // and let only the agent's admin in.
  if (!existsSync(join(o.dir, 'databases.ini'))) {
    const empty = withAdmin({ 'databases.ini': '[databases]\n', 'userlist.txt': '', 'hba.conf': 'host all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n' }, o.admin.user, adminVerifier);
    for (const f of POOLER_FILES) await writeAtomic(o.dir, f, empty[f]);
    log.info({ dir: o.dir }, 'Wrote bootstrap pooler config');
  }

  const loop = async () => {
    let failures = 0;
    while (!stopped) {
      const rv = await refresh();
      await new Promise<void>((resolve) => {
        watch
          .watch(
            `/api/v1/namespaces/${o.namespace}/secrets`,
            { fieldSelector: `metadata.name=${o.secretName}`, ...(rv ? { resourceVersion: rv } : {}), allowWatchBookmarks: false },
            (type: string, obj: k8s.V1Secret) => {
              failures = 0;
              if (type === 'ADDED' || type === 'MODIFIED') void enqueue(obj);
            },
            () => resolve(),
          )
          .then((ctrl) => {
            abort = ctrl;
          })
          .catch(() => resolve());
      });
      if (stopped) return;
      failures++;
      await new Promise((r) => setTimeout(r, Math.min(10_000, 250 * 2 ** Math.min(failures, 6))));
    }
  };
  void loop();

  return {
    stop: async () => {
      stopped = true;
      abort?.abort();
      await busy.catch(() => undefined);
    },
    lastAppliedHash: () => applied,
  };
}
