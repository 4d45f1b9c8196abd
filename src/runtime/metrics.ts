import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  reconcileTotal: Counter<'controller' | 'result'>;
  reconcileDuration: Histogram<'controller'>;
  queueDepth: Gauge<'controller'>;
  isLeader: Gauge;
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
  };
}
