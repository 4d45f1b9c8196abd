/**
 * The per-tenant series (src/runtime/metrics.ts) computed at scrape time: from the TenantDatabase
 * cache, which already holds what the reconciles wrote in status, and, at level full, from each
 * server's PgBouncer (SHOW POOLS), read at most once per server every POOL_STATS_MS however many
 * tenants and scrapes there are. Nothing is kept per tenant between scrapes.
 */
import type { CachedPostgresServer, CachedTenantDatabase } from '../api/cached.js';
import { schemaAlias } from '../api/naming.js';
import { postgresServer } from '../api/postgresserver.js';
import { showPools, type PoolUsage } from '../pg/pgbouncer-console.js';
import { errorMessage } from '../runtime/errors.js';
import type { Logger } from '../runtime/logger.js';
import type { ReconcileTimes, TenantMetricsLevel, TenantMetricsSource, TenantSample, TenantSnapshot } from '../runtime/metrics.js';
import { keyOf, type OperatorContext } from './context.js';
import { loadPoolerAdmin } from './pooler-view.js';

/** A server's SHOW POOLS answer serves the scrapes of this long (Prometheus scrapes every 15-60 s). */
export const POOL_STATS_MS = 10_000;

/**
 * A scrape waits this long for a PgBouncer, then reports it down: a console that hangs must not
 * make the whole scrape (the operator's own series too) time out.
 */
export const POOL_STATS_WAIT_MS = 3000;

/** An RFC 3339 time in ms since the epoch; undefined when absent or unparsable. */
function timeOf(s: string | undefined): number | undefined {
  const t = s ? Date.parse(s) : NaN;
  return Number.isFinite(t) ? t : undefined;
}

/** The PgBouncer alias of a tenant as its status names it: its database, or schema.<schema>. */
export function tenantAlias(t: CachedTenantDatabase): string | undefined {
  const st = t.status;
  if (st?.schemaName) return schemaAlias(st.schemaName);
  return st?.databaseName || undefined;
}

/** The server a tenant's series are labelled with: the one its status names, else its spec's. */
export function tenantServer(t: CachedTenantDatabase): string {
  return t.status?.serverName ?? t.spec?.serverRef?.name ?? '';
}

/** A tenant's values from its cached object (what the last reconcile wrote in status). */
export function tenantSample(t: CachedTenantDatabase): TenantSample | undefined {
  const name = t.metadata?.name;
  const namespace = t.metadata?.namespace;
  if (!name || !namespace) return undefined;
  const st = t.status;
  const cred = st?.credentials;
  return {
    namespace,
    name,
    server: tenantServer(t),
    ready: st?.conditions?.some((c) => c?.type === 'Ready' && c.status === 'True') ?? false,
    sizeBytes: st?.sizeBytes,
    sessions: st?.activeConnections,
    credentialSetAt: timeOf(cred?.rotatedAt) ?? timeOf(st?.passwordChangedAt),
    credentialGeneration: cred?.generation,
  };
}

/** Whether a tenant has a pool in its server's PgBouncer (the cache drops fields at their default). */
export function tenantPooled(t: CachedTenantDatabase): boolean {
  return t.spec?.pooling?.enabled !== false;
}

export interface TenantMetricsDeps {
  tenants: { list(): readonly CachedTenantDatabase[] };
  servers: { list(): readonly CachedPostgresServer[] };
  level: TenantMetricsLevel;
  /** The tenant controller's last successful reconciles (level full). */
  reconciled?: ReconcileTimes | undefined;
  /** SHOW POOLS of a server, summed by alias (consolePools in the operator). */
  readPools: (server: string) => Promise<Map<string, PoolUsage>>;
  log: Logger;
  now?: () => number;
  /** How long a scrape waits for a PgBouncer (POOL_STATS_WAIT_MS). */
  waitMs?: number;
}

/** SHOW POOLS through a server's pooler admin console, with the credentials its spec names. */
export function consolePools(ctx: OperatorContext): (server: string) => Promise<Map<string, PoolUsage>> {
  return async (name) => {
    const server = postgresServer.safeParse(ctx.servers.get(name));
    if (!server.success) throw new Error(`PostgresServer ${name} is not valid`);
    const admin = await loadPoolerAdmin(ctx, server.data);
    if (!admin.ok) throw new Error(admin.message);
    return showPools(admin.value);
  };
}

export function tenantMetricsSource(d: TenantMetricsDeps): TenantMetricsSource {
  const now = d.now ?? Date.now;
  const pools = new Map<string, { at: number; usage: Promise<Map<string, PoolUsage>> }>();
  const failing = new Set<string>();
  /** A server's pools, from the console at most once per POOL_STATS_MS; undefined when it did not answer. */
  const poolsOf = async (server: string, at: number): Promise<Map<string, PoolUsage> | undefined> => {
    let hit = pools.get(server);
    if (!hit || at - hit.at >= POOL_STATS_MS) {
      hit = { at, usage: d.readPools(server) };
      pools.set(server, hit);
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${d.waitMs ?? POOL_STATS_WAIT_MS} ms`)), d.waitMs ?? POOL_STATS_WAIT_MS);
    });
    try {
      const usage = await Promise.race([hit.usage, late]);
      if (failing.delete(server)) d.log.info({ server }, 'PgBouncer answers SHOW POOLS again');
      return usage;
    } catch (err) {
      if (!failing.has(server))
        d.log.warn({ server, err: errorMessage(err) }, 'PgBouncer did not answer SHOW POOLS: no pool series for its tenants');
      failing.add(server);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    snapshot: async (): Promise<TenantSnapshot> => {
      const at = now();
      const cached = d.tenants.list();
      const tenants: TenantSample[] = [];
      const pooledBy = new Map<string, { sample: TenantSample; alias: string }[]>();
      for (const t of cached) {
        const s = tenantSample(t);
        if (!s) continue;
        tenants.push(s);
        if (d.level !== 'full') continue;
        s.lastReconciledAt = d.reconciled?.get(keyOf(t));
        const alias = tenantAlias(t);
        if (alias && s.server && tenantPooled(t)) {
          const list = pooledBy.get(s.server) ?? [];
          list.push({ sample: s, alias });
          pooledBy.set(s.server, list);
        }
      }
      d.reconciled?.prune();
      const poolers: { server: string; up: boolean }[] = [];
      if (d.level === 'full') {
        const withPooler = d.servers
          .list()
          .map((x) => ({ name: x.metadata?.name ?? '', pooler: !!x.spec?.pooler }))
          .filter((x) => x.name && x.pooler);
        for (const name of pools.keys()) if (!withPooler.some((x) => x.name === name)) pools.delete(name);
        await Promise.all(
          withPooler.map(async ({ name }) => {
            const usage = await poolsOf(name, at);
            poolers.push({ server: name, up: usage !== undefined });
            if (!usage) return;
            // A tenant with no pool yet (no client since the last RELOAD) has an empty one.
            for (const { sample, alias } of pooledBy.get(name) ?? [])
              sample.pool = usage.get(alias) ?? {
                clientsActive: 0,
                clientsWaiting: 0,
                serversActive: 0,
                serversIdle: 0,
                maxWaitSeconds: 0,
              };
          }),
        );
      }
      return { at, tenants, poolers };
    },
  };
}
