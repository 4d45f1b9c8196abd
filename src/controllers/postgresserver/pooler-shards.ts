/**
 * Writes a server's pooler config as shards plus an index (src/pooler/shards.ts says how it is cut),
 * in the order that keeps the agent from ever seeing half a config: new shards first, then the
 * index, then the deletion of the shards the index no longer names. The index is the Secret the
 * agent watches and reports on, so its hash is the config's hash.
 */
import type * as k8s from '@kubernetes/client-node';
import type { PostgresServer } from '../../api/postgresserver.js';
import { httpStatus } from '../../kube/client.js';
import { decodeSecretData } from '../../kube/secrets.js';
import { agentReport, configHash, type AgentReport } from '../../pooler/contract.js';
import { poolerTenantProblem, type PoolerFiles, type PoolerInput, type PoolerTenant } from '../../pooler/render.js';
import {
  SHARD_OF_LABEL,
  parsePoolerIndex,
  renderPoolerShards,
  shardFor,
  shardOfLabelValue,
  type IndexEntry,
  type PoolerShard,
} from '../../pooler/shards.js';
import type { OperatorContext } from '../context.js';
import { configSecret, ownedBy, writeOwnedConfig, type PoolerConfigState, type SecretRef } from './config-secrets.js';
import { countConfigWrite } from '../../runtime/metrics.js';

export interface ShardedConfigState extends PoolerConfigState {
  shards: number;
  /** Tenants not in the config, and why: names that would be syntax, or lines too large for a shard. */
  leftOut: { alias: string; reason: string }[];
}

/**
 * Splits off the tenants whose names or CIDRs the renderer refuses (and every tenant of an alias
 * claimed twice), so that one hostile tenant cannot stop the config of all the others.
 */
export function usablePoolerTenants(
  tenants: readonly PoolerTenant[],
  reservedUsers: ReadonlySet<string> = new Set(),
): { usable: PoolerTenant[]; leftOut: ShardedConfigState['leftOut'] } {
  const count = new Map<string, number>();
  for (const t of tenants) count.set(t.alias, (count.get(t.alias) ?? 0) + 1);
  const usable: PoolerTenant[] = [];
  const leftOut: ShardedConfigState['leftOut'] = [];
  for (const t of tenants) {
    const reason =
      poolerTenantProblem(t) ??
      ((count.get(t.alias) ?? 0) > 1 ? `alias ${t.alias} is claimed by ${count.get(t.alias)} tenants` : undefined) ??
      // The agent puts its own admin user in front; a tenant role of that name would make it refuse everything.
      ([t.role, ...(t.extraLogins ?? []).map((l) => l.role)].some((r) => reservedUsers.has(r))
        ? `a login role of ${t.alias} is the pooler's admin user`
        : undefined);
    if (reason) leftOut.push({ alias: t.alias, reason });
    else usable.push(t);
  }
  return { usable, leftOut };
}

const hashes = new WeakMap<k8s.V1Secret, string>();
/** The hash of a cached Secret's data; cached objects are replaced, never changed, so it is memoized. */
function cachedHash(s: k8s.V1Secret): string {
  let h = hashes.get(s);
  if (h === undefined) {
    h = configHash(decodeSecretData(s.data));
    hashes.set(s, h);
  }
  return h;
}

/** Creates a shard, or repairs one that was changed by hand. True when it wrote. */
async function ensureShard(ctx: OperatorContext, server: PostgresServer, ref: SecretRef, shard: PoolerShard): Promise<boolean> {
  const label = shardOfLabelValue(ref.name);
  const fine = (s: k8s.V1Secret | undefined) =>
    !!s && ownedBy(s, server) && s.metadata?.labels?.[SHARD_OF_LABEL] === label && cachedHash(s) === shard.hash;
  if (fine(ctx.secrets.get(shard.name, ref.namespace))) return false;
  const body = configSecret(server, { namespace: ref.namespace, name: shard.name }, shard.files, { [SHARD_OF_LABEL]: label });
  try {
    await ctx.clients.core.createNamespacedSecret({ namespace: ref.namespace, body });
    countConfigWrite('pooler config shard', shard.files);
    return true;
  } catch (err) {
    if (httpStatus(err) !== 409) throw err;
  }
  const current = await ctx.clients.core.readNamespacedSecret({ name: shard.name, namespace: ref.namespace });
  if (!ownedBy(current, server))
    throw new Error(`Secret ${ref.namespace}/${shard.name} exists and is not owned by PostgresServer ${server.metadata.name}`);
  if (fine(current)) return false;
  const rv = current.metadata?.resourceVersion;
  await ctx.clients.core.replaceNamespacedSecret({
    name: shard.name,
    namespace: ref.namespace,
    body: { ...body, metadata: { ...body.metadata, ...(rv ? { resourceVersion: rv } : {}) } },
  });
  countConfigWrite('pooler config shard', shard.files);
  return true;
}

/** Renders the sharded config, writes what changed, and reports what the agent did with it. */
export async function writePoolerShards(
  ctx: OperatorContext,
  server: PostgresServer,
  ref: SecretRef,
  input: PoolerInput,
  budget: number,
  reservedUsers: ReadonlySet<string> = new Set(),
): Promise<ShardedConfigState> {
  const { usable, leftOut } = usablePoolerTenants(input.tenants, reservedUsers);
  const cfg = renderPoolerShards({ ...input, tenants: usable }, ref.name, budget);
  let written = 0;
  for (const shard of cfg.shards) if (await ensureShard(ctx, server, ref, shard)) written++;
  const st = await writeOwnedConfig(ctx, server, ref, cfg.index, 'pooler config index');
  const named = new Set(cfg.shards.map((s) => s.name));
  const label = shardOfLabelValue(ref.name);
  let deleted = 0;
  for (const s of ctx.secrets.list()) {
    const name = s.metadata?.name ?? '';
    if (s.metadata?.namespace !== ref.namespace || s.metadata.labels?.[SHARD_OF_LABEL] !== label || named.has(name) || !ownedBy(s, server))
      continue;
    try {
      await ctx.clients.core.deleteNamespacedSecret({ name, namespace: ref.namespace });
      deleted++;
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
    }
  }
  if (written || deleted)
    ctx.log.info(
      { server: server.metadata.name, hash: st.hash, shards: cfg.shards.length, written, deleted },
      'Updated pooler config shards',
    );
  const tooLarge = cfg.oversized.map((o) => ({
    alias: o.alias,
    reason: `its lines take ${o.bytes} bytes, more than a shard may hold (${budget})`,
  }));
  return { ...st, shards: cfg.shards.length, leftOut: [...leftOut, ...tooLarge] };
}

interface CachedIndex {
  entries: IndexEntry[];
  hash: string;
}
const indexes = new WeakMap<k8s.V1Secret, CachedIndex>();
const fragments = new WeakMap<k8s.V1Secret, PoolerFiles>();

function cachedIndex(s: k8s.V1Secret): CachedIndex {
  let c = indexes.get(s);
  if (!c) {
    const data = decodeSecretData(s.data);
    const parsed = parsePoolerIndex(data);
    c = { entries: parsed.ok ? parsed.shards : [], hash: configHash(data) };
    indexes.set(s, c);
  }
  return c;
}

/** What the agent reported for the index now in the cache. */
export function cachedPoolerReport(ctx: OperatorContext, ref: SecretRef): AgentReport {
  const s = ctx.secrets.get(ref.name, ref.namespace);
  if (!s?.data) return { applied: false };
  return agentReport(s.metadata?.annotations, cachedIndex(s).hash);
}

/**
 * The lines of the shard that holds an alias, as the cached index names it; undefined while the
 * cache does not hold that very shard (the operator is writing, or the alias is in no shard).
 */
export function cachedShardFiles(ctx: OperatorContext, ref: SecretRef, alias: string): PoolerFiles | undefined {
  const index = ctx.secrets.get(ref.name, ref.namespace);
  if (!index?.data) return undefined;
  const entry = shardFor(cachedIndex(index).entries, alias);
  const shard = entry && ctx.secrets.get(entry.name, ref.namespace);
  if (!entry || !shard || cachedHash(shard) !== entry.hash) return undefined;
  let files = fragments.get(shard);
  if (!files) {
    const d = decodeSecretData(shard.data);
    files = { 'databases.ini': d['databases.ini'] ?? '', 'userlist.txt': d['userlist.txt'] ?? '', 'hba.conf': d['hba.conf'] ?? '' };
    fragments.set(shard, files);
  }
  return files;
}
