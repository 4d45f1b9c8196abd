/**
 * The agent beside PgBouncer: it watches the pooler config's index Secret, fetches the shards the
 * index names, checks each against the hash the index gives, assembles the files, checks every
 * line, writes the files atomically and issues RELOAD on the admin console. A config that fails its
 * checks is not loaded; the last good one stays.
 */
import * as k8s from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { httpStatus, makeApiClient } from '../kube/client.js';
import { decodeSecretData } from '../kube/secrets.js';
import { disableDatabase, enableDatabase, killDatabase, pgbouncerVersion, reload, type PoolerAdmin } from '../pg/pgbouncer-console.js';
import { scramVerifier } from '../pg/scram.js';
import { MANAGED_BY, MANAGED_BY_LABEL, configHash } from '../pooler/contract.js';
import { HBA_CATCH_ALL, POOLER_FILES, assemblePoolerFiles, type PoolerFiles } from '../pooler/render.js';
import { SHARD_OF_LABEL, parsePoolerIndex, shardOfLabelValue, type IndexEntry } from '../pooler/shards.js';
import { validatePoolerFiles, type ValidationError } from '../pooler/validate.js';
import type { Logger } from '../runtime/logger.js';
import { writeAtomic } from './files.js';
import { runSecretAgent, type RunningSecretAgent } from './secret-agent.js';

export interface PoolerAgentOptions {
  kc: k8s.KubeConfig;
  namespace: string;
  secretName: string;
  /** Folder of databases.ini, userlist.txt and hba.conf, as pgbouncer.ini names them. */
  dir: string;
  admin: PoolerAdmin;
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

/** The aliases of a databases.ini (validated files: one `alias = ...` per line after the header). */
function aliasesOf(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_][a-z0-9_.]{0,62}) = /.exec(line);
    if (m?.[1] && m[1] !== 'pgbouncer') out.add(m[1]);
  }
  return out;
}

/** The first PgBouncer that knows max_db_client_connections. */
const CLIENT_CAPS_SINCE: readonly [number, number] = [1, 24];

/**
 * The databases.ini an older PgBouncer can load: without max_db_client_connections, which it
 * would refuse (an unknown key fails the whole file). The operator renders one config for every
 * PgBouncer version; the agent, which is the one that knows the version, fits it and says so.
 */
export function fitDatabases(text: string, version: readonly [number, number, number]): { text: string; warning?: string } {
  const [major, minor] = version;
  if (major > CLIENT_CAPS_SINCE[0] || (major === CLIENT_CAPS_SINCE[0] && minor >= CLIENT_CAPS_SINCE[1])) return { text };
  const fitted = text.replace(/ max_db_client_connections=\d+$/gm, '');
  if (fitted === text) return { text };
  return {
    text: fitted,
    warning: `PgBouncer ${version.join('.')} has no max_db_client_connections (${CLIENT_CAPS_SINCE.join('.')}+): per-tenant client connection limits are not enforced`,
  };
}

/** A shard the agent must not use whatever happens next: the config is refused, not retried. */
class ShardRefused extends Error {}

/**
 * Fetches the shards an index names, by name, keeping those already seen with the same hash.
 * The agent's Role lets it read any Secret of its namespace (shard names carry their hash, so they
 * cannot be listed in a Role ahead of time), so it checks the labels itself and uses only a Secret
 * that the operator labelled as a shard of this index.
 */
function shardLoader(core: k8s.CoreV1Api, namespace: string, indexName: string) {
  let cache = new Map<string, { hash: string; files: PoolerFiles }>();
  const load = async (e: IndexEntry): Promise<PoolerFiles> => {
    const cached = cache.get(e.name);
    if (cached?.hash === e.hash) return cached.files;
    let s: k8s.V1Secret;
    try {
      s = await core.readNamespacedSecret({ name: e.name, namespace });
    } catch (err) {
      // The operator writes shards before the index and deletes them after it: a missing shard
      // means the index moved on since it was read.
      if (httpStatus(err) === 404) throw new Error(`shard ${e.name} is not there (the index is changing); retrying`, { cause: err });
      throw err;
    }
    const labels = s.metadata?.labels ?? {};
    if (labels[MANAGED_BY_LABEL] !== MANAGED_BY || labels[SHARD_OF_LABEL] !== shardOfLabelValue(indexName))
      throw new ShardRefused(`Secret ${e.name} is not labelled as a shard of ${indexName}`);
    const data = decodeSecretData(s.data);
    const keys = Object.keys(data).sort();
    if (keys.join(' ') !== [...POOLER_FILES].sort().join(' '))
      throw new ShardRefused(`shard ${e.name} must hold exactly ${POOLER_FILES.join(', ')}`);
    // A shard that does not match the index is being replaced: the index will name another soon.
    if (configHash(data) !== e.hash) throw new Error(`shard ${e.name} does not match the index (the operator is writing); retrying`);
    const files = data as PoolerFiles;
    cache.set(e.name, { hash: e.hash, files });
    return files;
  };
  return async (entries: readonly IndexEntry[]): Promise<PoolerFiles[]> => {
    const out: PoolerFiles[] = [];
    for (let i = 0; i < entries.length; i += 8) out.push(...(await Promise.all(entries.slice(i, i + 8).map(load))));
    cache = new Map(entries.map((e, i) => [e.name, { hash: e.hash, files: out[i] as PoolerFiles }]));
    return out;
  };
}

/** Says where an error in the assembled files comes from: the shard and its line. */
function locate(parts: readonly PoolerFiles[], entries: readonly IndexEntry[], e: ValidationError): string {
  let line = e.file === 'databases.ini' ? 1 : 0; // the [databases] header
  for (const [i, p] of parts.entries()) {
    const n = p[e.file].split('\n').length - 1;
    if (e.line > line && e.line <= line + n) return `shard ${entries[i]?.name}: ${e.file}:${e.line - line}: ${e.message}`;
    line += n;
  }
  return `${e.file}:${e.line}: ${e.message}`;
}

export async function startPoolerAgent(o: PoolerAgentOptions): Promise<RunningSecretAgent> {
  const log = o.log.child({ agent: 'pgbouncer', secret: `${o.namespace}/${o.secretName}` });
  const adminVerifier = scramVerifier(o.admin.password);
  const loadShards = shardLoader(makeApiClient(o.kc, k8s.CoreV1Api), o.namespace, o.secretName);
  // PgBouncer cannot start without its files: until the operator's config arrives, serve no tenant
  // and let only the agent's admin in.
  if (!existsSync(join(o.dir, 'databases.ini'))) {
    const empty = withAdmin(
      { 'databases.ini': '[databases]\n', 'userlist.txt': '', 'hba.conf': HBA_CATCH_ALL },
      o.admin.user,
      adminVerifier,
    );
    for (const f of POOLER_FILES) await writeAtomic(o.dir, f, empty[f]);
    log.info({ dir: o.dir }, 'Wrote bootstrap pooler config');
  }
  return runSecretAgent({
    kc: o.kc,
    namespace: o.namespace,
    secretName: o.secretName,
    log,
    apply: async (data) => {
      const index = parsePoolerIndex(data);
      if (!index.ok) return { ok: false, error: index.error };
      const t0 = performance.now();
      let parts: PoolerFiles[];
      try {
        parts = await loadShards(index.shards);
      } catch (err) {
        if (err instanceof ShardRefused) return { ok: false, error: err.message };
        throw err;
      }
      const fetchedMs = Math.round(performance.now() - t0);
      const assembled = assemblePoolerFiles(parts);
      // The admin's lines are the agent's own: the operator's files may not mention the admin.
      const errors = validatePoolerFiles(assembled, { reservedUsers: [o.admin.user] });
      if (errors.length)
        return {
          ok: false,
          error: errors
            .slice(0, 5)
            .map((e) => locate(parts, index.shards, e))
            .join('; '),
        };
      // Asked on every load: PgBouncer may have been replaced by another version since. While it is
      // down this throws, and the load is retried.
      const fitted = fitDatabases(assembled['databases.ini'], await pgbouncerVersion(o.admin));
      const files = withAdmin({ ...assembled, 'databases.ini': fitted.text }, o.admin.user, adminVerifier);
      const before = aliasesOf(await readFile(join(o.dir, 'databases.ini'), 'utf8').catch(() => ''));
      const after = aliasesOf(files['databases.ini']);
      const removed = [...before].filter((a) => !after.has(a));
      // PgBouncer (1.18 at least) crashes when RELOAD drops a database while a client is logging in
      // to it, which any tenant deleting its TenantDatabase under load would do to everyone. So a
      // database about to go first refuses new clients and loses the ones it has.
      for (const alias of removed) {
        await disableDatabase(o.admin, alias).catch(() => undefined);
        await killDatabase(o.admin, alias).catch(() => undefined);
      }
      for (const f of POOLER_FILES) await writeAtomic(o.dir, f, files[f]);
      const writtenMs = Math.round(performance.now() - t0);
      // PgBouncer may not be up yet: the files are in place for its start; a throw retries the reload.
      await reload(o.admin);
      // A database that comes back is a new one; ENABLE in case PgBouncer kept it disabled.
      for (const alias of [...after].filter((a) => !before.has(a))) await enableDatabase(o.admin, alias).catch(() => undefined);
      const bytes = POOLER_FILES.reduce((n, f) => n + files[f].length, 0);
      log.info(
        { shards: index.shards.length, bytes, fetchedMs, writtenMs, reloadedMs: Math.round(performance.now() - t0) },
        'Loaded shards',
      );
      return fitted.warning ? { ok: true, warning: fitted.warning } : { ok: true };
    },
  });
}
