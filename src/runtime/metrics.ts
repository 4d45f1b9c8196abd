import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  reconcileTotal: Counter<'controller' | 'result'>;
  reconcileDuration: Histogram<'controller'>;
  queueDepth: Gauge<'controller'>;
  isLeader: Gauge;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tenantdb_' });
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
