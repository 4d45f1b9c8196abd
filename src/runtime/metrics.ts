import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  reconcileTotal: Counter<'controller' | 'result'>;
  reconcileDuration: Histogram<'controller'>;
  queueDepth: Gauge<'controller'>;
  isLeader: Gauge;
  /** When each key's last reconcile ended without an error, for the controllers that keep it (by name). */
  lastSuccess: Map<string, ReconcileTimes>;
}

/** When each key's last reconcile ended without an error. Keys of objects gone are dropped as it grows. */
export class ReconcileTimes {
  private readonly at = new Map<string, number>();
  private bound = 1024;
  /** `live`: the keys of the objects that exist (the informer cache). */
  constructor(private readonly live: () => Iterable<string>) {}
  record(key: string, at = Date.now()): void {
    this.at.set(key, at);
    if (this.at.size > this.bound) this.prune();
  }
  get(key: string): number | undefined {
    return this.at.get(key);
  }
  get size(): number {
    return this.at.size;
  }
  prune(): void {
    const keep = new Set(this.live());
    for (const k of this.at.keys()) if (!keep.has(k)) this.at.delete(k);
    this.bound = Math.max(1024, 2 * this.at.size);
  }
}

/**
 * Config Secrets written for the agents (pooler shards and index, server HBA rules), by `config`.
 * Module-level, as the writers have no Metrics at hand; each operator's registry exposes them.
 */
const configWrites = new Counter({
  name: 'tenantdb_pooler_config_writes_total',
  help: 'Config Secrets created or replaced for the agents, by config (pooler config shard, pooler config index, server HBA rules).',
  labelNames: ['config'],
  registers: [],
});
const configBytes = new Counter({
  name: 'tenantdb_pooler_config_bytes_total',
  help: 'Bytes of file content in the config Secrets written for the agents, by config.',
  labelNames: ['config'],
  registers: [],
});

export function countConfigWrite(config: string, files: Record<string, string>): void {
  configWrites.inc({ config });
  configBytes.inc(
    { config },
    Object.values(files).reduce((n, f) => n + Buffer.byteLength(f), 0),
  );
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tenantdb_' });
  registry.registerMetric(configWrites);
  registry.registerMetric(configBytes);
  return {
    registry,
    reconcileTotal: new Counter({
      name: 'tenantdb_reconcile_total',
      help: 'Reconciles by controller and result (success, error, terminal, requeue).',
      labelNames: ['controller', 'result'],
      registers: [registry],
    }),
    reconcileDuration: new Histogram({
      name: 'tenantdb_reconcile_duration_seconds',
      help: 'Time spent in one reconcile.',
      labelNames: ['controller'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'tenantdb_workqueue_depth',
      help: "Keys waiting in a controller's work queue.",
      labelNames: ['controller'],
      registers: [registry],
    }),
    isLeader: new Gauge({ name: 'tenantdb_leader', help: '1 while this replica holds the leader Lease.', registers: [registry] }),
    lastSuccess: new Map(),
  };
}

/**
 * How many series per tenant the operator exports. off: none. basic: whether it is ready, its size,
 * its sessions and the age of its password, all from the TenantDatabase cache, with no I/O at
 * scrape time. full: also its pool in PgBouncer (SHOW POOLS, one console session per server at
 * most every POOL_STATS_MS), its credential generation and its last reconcile.
 */
export const TENANT_METRICS_LEVELS = ['off', 'basic', 'full'] as const;
export type TenantMetricsLevel = (typeof TENANT_METRICS_LEVELS)[number];

/** One tenant's pool in PgBouncer, summed over its login roles. */
export interface TenantPool {
  clientsActive: number;
  clientsWaiting: number;
  serversActive: number;
  serversIdle: number;
  maxWaitSeconds: number;
}

/** One tenant's values at scrape time; absent values give no series. */
export interface TenantSample {
  namespace: string;
  name: string;
  server: string;
  ready: boolean;
  sizeBytes?: number | undefined;
  sessions?: number | undefined;
  /** When the password in use was set, in ms since the epoch. */
  credentialSetAt?: number | undefined;
  credentialGeneration?: number | undefined;
  /** full only: when its last reconcile ended without an error, in ms since the epoch. */
  lastReconciledAt?: number | undefined;
  /** full only, for a pooled tenant whose pooler answered. */
  pool?: TenantPool | undefined;
}

export interface TenantSnapshot {
  /** When it was taken, in ms since the epoch. */
  at: number;
  tenants: readonly TenantSample[];
  /** full only: whether each server's PgBouncer answered SHOW POOLS (servers with a pooler). */
  poolers: readonly { server: string; up: boolean }[];
}

/** What the per-tenant series are computed from, once per scrape (all their gauges share the answer). */
export interface TenantMetricsSource {
  snapshot(): Promise<TenantSnapshot>;
}

const TENANT_LABELS = ['namespace', 'name', 'server'] as const;
type TenantLabel = (typeof TENANT_LABELS)[number];

interface TenantGauge {
  /** The lowest level that exports it. */
  level: 'basic' | 'full';
  name: string;
  help: string;
  value: (t: TenantSample, at: number) => number | undefined;
}

const TENANT_GAUGES: TenantGauge[] = [
  {
    level: 'basic',
    name: 'tenantdb_tenant_ready',
    help: "1 when the TenantDatabase's Ready condition is True, else 0.",
    value: (t) => (t.ready ? 1 : 0),
  },
  {
    level: 'basic',
    name: 'tenantdb_tenant_size_bytes',
    help: "Size of the tenant's database (or schema), as its status last recorded it (status.sizeBytes).",
    value: (t) => t.sizeBytes,
  },
  {
    level: 'basic',
    name: 'tenantdb_tenant_sessions',
    help: "Sessions of the tenant's login roles on the server, as its status last recorded them (status.activeConnections).",
    value: (t) => t.sessions,
  },
  {
    level: 'basic',
    name: 'tenantdb_tenant_credential_age_seconds',
    help: 'Seconds since the password in use was set (status.credentials.rotatedAt, else status.passwordChangedAt).',
    value: (t, at) => (t.credentialSetAt === undefined ? undefined : Math.max(0, (at - t.credentialSetAt) / 1000)),
  },
  {
    level: 'full',
    name: 'tenantdb_tenant_credential_generation',
    help: "How many times the tenant's password was rotated (status.credentials.generation).",
    value: (t) => t.credentialGeneration,
  },
  {
    level: 'full',
    name: 'tenantdb_tenant_last_reconcile_timestamp_seconds',
    help: 'When this replica last finished a reconcile of the tenant without an error, in seconds since the epoch.',
    value: (t) => (t.lastReconciledAt === undefined ? undefined : t.lastReconciledAt / 1000),
  },
  {
    level: 'full',
    name: 'tenantdb_tenant_pool_clients_active',
    help: "Clients of the tenant's PgBouncer pool linked to a server connection or idle (SHOW POOLS cl_active).",
    value: (t) => t.pool?.clientsActive,
  },
  {
    level: 'full',
    name: 'tenantdb_tenant_pool_clients_waiting',
    help: "Clients of the tenant's PgBouncer pool waiting for a server connection (SHOW POOLS cl_waiting).",
    value: (t) => t.pool?.clientsWaiting,
  },
  {
    level: 'full',
    name: 'tenantdb_tenant_pool_servers_active',
    help: "Server connections of the tenant's PgBouncer pool linked to a client (SHOW POOLS sv_active).",
    value: (t) => t.pool?.serversActive,
  },
  {
    level: 'full',
    name: 'tenantdb_tenant_pool_servers_idle',
    help: "Server connections of the tenant's PgBouncer pool unused and ready (SHOW POOLS sv_idle).",
    value: (t) => t.pool?.serversIdle,
  },
  {
    level: 'full',
    name: 'tenantdb_tenant_pool_max_wait_seconds',
    help: "How long the oldest waiting client of the tenant's PgBouncer pool has waited (SHOW POOLS maxwait).",
    value: (t) => t.pool?.maxWaitSeconds,
  },
];

/** The names of the series a level exports (tenantdb_pooler_stats_up is per server, not per tenant). */
export function tenantSeriesNames(level: TenantMetricsLevel): string[] {
  if (level === 'off') return [];
  const names = TENANT_GAUGES.filter((g) => level === 'full' || g.level === 'basic').map((g) => g.name);
  return level === 'full' ? [...names, 'tenantdb_pooler_stats_up'] : names;
}

/**
 * Registers the per-tenant series of a level. They hold nothing between scrapes: each scrape asks
 * the source once and sets every series from its answer, so a deleted tenant's series are gone at
 * the next scrape.
 */
export function registerTenantMetrics(registry: Registry, level: TenantMetricsLevel, source: TenantMetricsSource): void {
  if (level === 'off') return;
  const names = new Set(tenantSeriesNames(level));
  // One snapshot per scrape: the gauges' collects all start in the same tick and share it.
  let inFlight: Promise<TenantSnapshot> | undefined;
  const snapshot = (): Promise<TenantSnapshot> => {
    if (inFlight) return inFlight;
    const p = source.snapshot().finally(() => {
      if (inFlight === p) inFlight = undefined;
    });
    inFlight = p;
    return p;
  };
  for (const g of TENANT_GAUGES) {
    if (!names.has(g.name)) continue;
    new Gauge<TenantLabel>({
      name: g.name,
      help: g.help,
      labelNames: TENANT_LABELS,
      registers: [registry],
      async collect() {
        const snap = await snapshot();
        this.reset();
        for (const t of snap.tenants) {
          const v = g.value(t, snap.at);
          if (v !== undefined && Number.isFinite(v)) this.set({ namespace: t.namespace, name: t.name, server: t.server }, v);
        }
      },
    });
  }
  if (names.has('tenantdb_pooler_stats_up'))
    new Gauge<'server'>({
      name: 'tenantdb_pooler_stats_up',
      help: "1 when the server's PgBouncer answered SHOW POOLS for the per-tenant pool series, else 0 (its tenants then have none).",
      labelNames: ['server'],
      registers: [registry],
      async collect() {
        const snap = await snapshot();
        this.reset();
        for (const p of snap.poolers) this.set({ server: p.server }, p.up ? 1 : 0);
      },
    });
}
