/**
 * The manager: informers, work queues, controllers, leader election, health and metrics, wired
 * together. No business logic lives here.
 */
import { NEXT_LOGIN_ANNOTATION, PREVIOUS_LOGIN_ANNOTATION, ROTATED_AT_ANNOTATION } from './controllers/tenantdatabase/credentials.js';
import type * as k8s from '@kubernetes/client-node';
import { hostname } from 'node:os';
import type { Server } from 'node:http';
import { GROUP, VERSION } from './api/common.js';
import { IP_WHITELIST, POSTGRES_SERVER, TENANT_DATABASE, TENANT_DATABASE_PLAN, TENANT_GROUP, apiPath, type KindInfo } from './api/kinds.js';
import { MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL, keyOf, type OperatorContext } from './controllers/context.js';
import { reconcilePostgresServer } from './controllers/postgresserver/reconcile.js';
import { reconcileTenantDatabase } from './controllers/tenantdatabase/reconcile.js';
import { reconcileIpWhitelist } from './controllers/ipwhitelist/reconcile.js';
import { reconcileTenantGroup } from './controllers/tenantgroup/reconcile.js';
import { reconcileTenantDatabasePlan } from './controllers/tenantdatabaseplan/reconcile.js';
import { reportFailure } from './controllers/failure.js';
import { makeClients } from './kube/client.js';
import { DATA_HASH_ANNOTATION, slimSecret } from './kube/secrets.js';
import { AGENT_APPLIED_ANNOTATION, AGENT_ERROR_ANNOTATION, AGENT_WARNING_ANNOTATION, SERVER_LABEL } from './pooler/contract.js';
import { SHARD_OF_LABEL } from './pooler/shards.js';
import { ROTATED_ANNOTATION } from './controllers/tenantdatabase/secret.js';
import { GROUP_LABEL } from './controllers/tenantgroup/reconcile.js';
import { GROUP_VERIFIER_ANNOTATION } from './controllers/pooler-view.js';
import { MIGRATION_JOB_SELECTOR } from './controllers/migrations/job.js';
import {
  type CachedIpWhitelist,
  type CachedPostgresServer,
  type CachedTenantDatabase,
  type CachedTenantDatabasePlan,
  type CachedTenantGroup,
} from './api/cached.js';
import { tenantDatabaseSpec } from './api/tenantdatabase.js';
import { withoutDefaults } from './api/cached.js';
import {
  groupIndexers,
  planIndexers,
  handlersFor,
  jobIndexers,
  tenantIndexers,
  whitelistIndexers,
  type Caches,
  type ControllerName,
  type Source,
} from './controllers/watches.js';
import { errorMessage } from './runtime/errors.js';
import { DEFAULT_SHARD_BYTES } from './pooler/shards.js';
import { AdminPools } from './pg/connections.js';
import { createController, type Controller } from './runtime/controller.js';
import { Interner } from './runtime/intern.js';
import { eventRecorder } from './runtime/events.js';
import { startHealthServer } from './runtime/health.js';
import { namespacePoller, pagedList, resilientInformer, unionInformer, type Indexers, type ResilientInformer } from './runtime/informer.js';
import { startLeaderElection, type LeaderElector } from './runtime/leader.js';
import type { Logger } from './runtime/logger.js';
import { ReconcileTimes, createMetrics, registerTenantMetrics, type TenantMetricsLevel } from './runtime/metrics.js';
import { consolePools, tenantMetricsSource } from './controllers/tenant-metrics.js';

/** A PostgresServer is reconciled at most once per this interval, */
const SERVER_MIN_INTERVAL_MS = 1000;
/** and its reconciles take at most this share of the time (1/5) where they take long, */
const SERVER_DURATION_FACTOR = 5;
/** but never wait more than this for the next: a parked tenant waits 15 s for its pooler entry. */
const SERVER_MAX_SPACING_MS = 5000;

/** Secrets per page when the Secret cache lists: bounds the memory of one list page. */
const SECRET_PAGE = 20;

export interface OperatorOptions {
  kc: k8s.KubeConfig;
  log: Logger;
  namespace: string;
  workers: number;
  resyncMs: number;
  metricsPort: number;
  metricsHost: string;
  /** Per-tenant series on /metrics (default basic). */
  tenantMetrics?: TenantMetricsLevel;
  leaderElection: boolean;
  /** Only these namespaces' TenantDatabases, IpWhitelists and Secrets (namespaced RBAC); all when empty. */
  watchNamespaces?: string[] | undefined;
  identity?: string;
  /** Bytes of tenant lines one pooler config shard may hold (default 512 KiB). */
  poolerShardBytes?: number;
  /** Whether migration Jobs may run (off unless the platform says so). */
  migrationJobs?: boolean;
}

/** Why the operator stopped: asked to (a signal), or it lost the leader Lease (the process must restart). */
export type StopReason = 'stopped' | 'lost-leadership';

export interface RunningOperator {
  stop(): Promise<void>;
  /** Resolves when the operator has stopped, with the reason. */
  done: Promise<StopReason>;
  metricsPort(): number;
}

export async function startOperator(o: OperatorOptions): Promise<RunningOperator> {
  const log = o.log;
  const clients = makeClients(o.kc);
  const metrics = createMetrics();
  const pools = new AdminPools(log);
  const identity = o.identity ?? process.env.POD_NAME ?? `${hostname()}-${process.pid}`;
  let resolveDone!: (why: StopReason) => void;
  let stopReason: StopReason = 'stopped';
  const done = new Promise<StopReason>((r) => (resolveDone = r));

  const controllers: Partial<Record<ControllerName, Controller>> = {};
  const custom = clients.custom;
  const list =
    <T extends k8s.KubernetesObject>(plural: string, namespace?: string) =>
    () =>
      (namespace
        ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural })
        : custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as Promise<k8s.KubernetesListObject<T>>;
  /**
   * Namespaced kinds are watched cluster-wide, or, with --watch-namespaces, in each of those
   * namespaces, so that the operator's RBAC can be namespaced Roles there.
   */
  const watched = o.watchNamespaces?.length ? [...new Set(o.watchNamespaces)] : undefined;
  const scoped = <T extends k8s.KubernetesObject>(
    make: (namespace?: string) => ResilientInformer<T>,
    extra: string[] = [],
  ): ResilientInformer<T> => (watched ? unionInformer(new Map([...new Set([...watched, ...extra])].map((ns) => [ns, make(ns)]))) : make());

  // Every event goes through the watch table (src/controllers/watches.ts), which says whom it wakes.
  const cacheRef: { current?: Caches } = {};
  const enqueue = {
    add: (controller: ControllerName, key: string, coalesceMs?: number, wakes?: boolean) => {
      const q = controllers[controller]?.queue;
      if (!q || !key) return;
      if (wakes && q.wake(key)) return;
      if (coalesceMs) q.addAfter(key, coalesceMs);
      else q.add(key);
    },
  };
  const onMapError = (err: unknown, why: string) => log.error({ err: errorMessage(err), watch: why }, 'A watch mapping failed');
  const on = <S extends Source>(source: S) => handlersFor(source, () => cacheRef.current, enqueue, onMapError);

  /** An informer of one of our kinds (in one namespace, or all), wired to the watch table. */
  // Cached objects of our kinds share one copy of the strings they repeat (src/runtime/intern.ts).
  const interner = new Interner();
  const kindInformer = <T extends k8s.KubernetesObject>(
    kind: KindInfo,
    source: Source,
    ns?: string,
    indexers?: Indexers<T>,
    slim?: (x: T) => void,
  ) =>
    resilientInformer<T>(o.kc, apiPath(kind, ns), list<T>(kind.plural, ns), on(source), log, undefined, indexers, (x) => {
      slim?.(x);
      interner.walk(x);
    });
  const servers = kindInformer<CachedPostgresServer>(POSTGRES_SERVER, 'servers');
  // The API server stores every defaulted field of a TenantDatabase's spec; the cache keeps only
  // those that differ from the defaults (every reader defaults an absent field, and reconciles
  // parse with zod, which puts the defaults back): thousands of tenants, a kilobyte less each.
  const specDefaults = tenantDatabaseSpec.parse({}) as Record<string, unknown>;
  const slimTenant = (t: CachedTenantDatabase) => {
    if (t.spec) t.spec = withoutDefaults(t.spec, specDefaults);
  };
  const tenants = scoped((ns) => kindInformer<CachedTenantDatabase>(TENANT_DATABASE, 'tenants', ns, tenantIndexers, slimTenant));
  const whitelists = scoped((ns) => kindInformer<CachedIpWhitelist>(IP_WHITELIST, 'whitelists', ns, whitelistIndexers));
  const groups = scoped((ns) => kindInformer<CachedTenantGroup>(TENANT_GROUP, 'groups', ns, groupIndexers));
  const plans = scoped((ns) => kindInformer<CachedTenantDatabasePlan>(TENANT_DATABASE_PLAN, 'plans', ns, planIndexers));
  const managed = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;
  // Tenant Secrets where the tenants are, and the pooler's config Secrets in the operator's namespace.
  // Anyone who may write Secrets can set the label: the cache keeps only what the controllers read
  // (slimSecret), and a list takes SECRET_PAGE Secrets at a time (a Secret may hold 1 MiB).
  const kept = {
    labels: new Set([MANAGED_BY_LABEL, TENANT_LABEL, SERVER_LABEL, SHARD_OF_LABEL, GROUP_LABEL]),
    annotations: new Set([
      DATA_HASH_ANNOTATION,
      ROTATED_ANNOTATION,
      // The overlapping rotation's state (credentials.ts): the pooler's extra logins, the schedule.
      PREVIOUS_LOGIN_ANNOTATION,
      NEXT_LOGIN_ANNOTATION,
      ROTATED_AT_ANNOTATION,
      AGENT_APPLIED_ANNOTATION,
      AGENT_ERROR_ANNOTATION,
      AGENT_WARNING_ANNOTATION,
      GROUP_VERIFIER_ANNOTATION,
    ]),
  };
  const slimOwn = (s: k8s.V1Secret) => slimSecret(s, o.namespace, kept);
  const secrets: ResilientInformer<k8s.V1Secret> = scoped(
    (ns) =>
      resilientInformer<k8s.V1Secret>(
        o.kc,
        ns ? `/api/v1/namespaces/${ns}/secrets` : '/api/v1/secrets',
        pagedList(
          (page) =>
            ns
              ? clients.core.listNamespacedSecret({ namespace: ns, labelSelector: managed, ...page })
              : clients.core.listSecretForAllNamespaces({ labelSelector: managed, ...page }),
          SECRET_PAGE,
          slimOwn,
        ),
        on('secrets'),
        log,
        managed,
        {},
        slimOwn,
      ),
    [o.namespace],
  );
  // Namespaces' labels decide which servers their tenants may use.
  const nsHandlers = on('namespaces');
  let namespaceSeen = new Map<string, k8s.V1Namespace>();
  const namespaces: ResilientInformer<k8s.V1Namespace> = watched
    ? namespacePoller(
        clients.core,
        watched,
        (n) => {
          const name = n.metadata?.name ?? '';
          nsHandlers.onChange(n, namespaceSeen.get(name));
          namespaceSeen = new Map(namespaceSeen).set(name, n);
        },
        log,
      )
    : resilientInformer<k8s.V1Namespace>(o.kc, '/api/v1/namespaces', () => clients.core.listNamespace(), nsHandlers, log);
  // The operator's migration Jobs where the tenants are, by label; the cache keeps metadata and
  // status (what a Job's result is), not the pod template.
  const slimJob = (j: k8s.V1Job) => {
    delete j.spec;
    if (j.metadata) delete j.metadata.managedFields;
  };
  const jobs: ResilientInformer<k8s.V1Job> = scoped((ns) =>
    resilientInformer<k8s.V1Job>(
      o.kc,
      ns ? `/apis/batch/v1/namespaces/${ns}/jobs` : '/apis/batch/v1/jobs',
      async () => {
        const l = ns
          ? await clients.batch.listNamespacedJob({ namespace: ns, labelSelector: MIGRATION_JOB_SELECTOR })
          : await clients.batch.listJobForAllNamespaces({ labelSelector: MIGRATION_JOB_SELECTOR });
        for (const j of l.items) slimJob(j);
        return l;
      },
      on('jobs'),
      log,
      MIGRATION_JOB_SELECTOR,
      jobIndexers,
      slimJob,
    ),
  );
  cacheRef.current = { servers, tenants, whitelists, groups, secrets, namespaces, jobs, plans };
  const provisionedHandlers = on('provisioned');
  const informers = [servers, tenants, whitelists, groups, secrets, namespaces, jobs, plans];

  const ctx: OperatorContext = {
    clients,
    log,
    events: eventRecorder(clients.core, 'tenantdb-operator', log),
    pools,
    config: {
      resyncMs: o.resyncMs,
      namespace: o.namespace,
      poolerShardBytes: o.poolerShardBytes ?? DEFAULT_SHARD_BYTES,
      migrationJobs: o.migrationJobs ?? false,
    },
    servers,
    tenants,
    whitelists,
    groups,
    namespaces,
    secrets,
    jobs,
    plans,
    markers: new Map(),
    catalog: new Map(),
    provisioned: (server, tenant) => provisionedHandlers.onChange({ server, tenant }, undefined),
  };

  // Per-tenant series, computed from the caches at scrape time (empty on a standby: its caches are).
  const tenantMetrics = o.tenantMetrics ?? 'basic';
  let reconciled: ReconcileTimes | undefined;
  if (tenantMetrics === 'full') {
    reconciled = new ReconcileTimes(() => tenants.list().map(keyOf));
    metrics.lastSuccess.set('tenantdatabase', reconciled);
  }
  registerTenantMetrics(
    metrics.registry,
    tenantMetrics,
    tenantMetricsSource({ tenants, servers, level: tenantMetrics, reconciled, readPools: consolePools(ctx), log }),
  );

  let leader: LeaderElector | undefined;
  let started = false;
  let stopping = false;
  const health: Server = await startHealthServer(o.metricsPort, o.metricsHost, metrics.registry, {
    healthy: () => !stopping,
    // A standby replica is ready (it serves health and waits for the Lease); a leader once its caches synced.
    // A watch that failed and is being re-established makes the leader not ready until it is back.
    ready: () => !stopping && (!started || informers.every((i) => i.watching())),
  });

  const runControllers = async () => {
    started = true;
    metrics.isLeader.set(1);
    await Promise.all([
      servers.start(),
      tenants.start(),
      whitelists.start(),
      groups.start(),
      namespaces.start(),
      secrets.start(),
      jobs.start(),
      plans.start(),
    ]);
    const server = (controllers.postgresserver = createController(
      'postgresserver',
      (key, l) => reconcilePostgresServer(ctx, key, l),
      log,
      metrics,
      (key, err) => reportFailure(ctx, POSTGRES_SERVER, servers, key, err),
      // Each reconcile reads the server's catalog and renders its configs from all its tenants: in
      // a burst of new tenants, once a second serves them all (they wait for it parked). With
      // thousands of tenants a reconcile takes longer, and they come further apart: the catalog
      // reads cost the server's CPU, and each tenant's pooler entry waits for at most one of them.
      SERVER_MIN_INTERVAL_MS,
      SERVER_DURATION_FACTOR,
      SERVER_MAX_SPACING_MS,
    ));
    const tenant = (controllers.tenantdatabase = createController(
      'tenantdatabase',
      (key, l, info) => reconcileTenantDatabase(ctx, key, l, info),
      log,
      metrics,
      (key, err) => reportFailure(ctx, TENANT_DATABASE, tenants, key, err),
    ));
    const whitelist = (controllers.ipwhitelist = createController(
      'ipwhitelist',
      (key, l) => reconcileIpWhitelist(ctx, key, l),
      log,
      metrics,
      (key, err) => reportFailure(ctx, IP_WHITELIST, whitelists, key, err),
    ));
    for (const x of servers.list()) server.queue.add(keyOf(x));
    for (const x of tenants.list()) tenant.queue.add(keyOf(x));
    const group = (controllers.tenantgroup = createController(
      'tenantgroup',
      (key, l) => reconcileTenantGroup(ctx, key, l),
      log,
      metrics,
      (key, err) => reportFailure(ctx, TENANT_GROUP, groups, key, err),
    ));
    // Plans are answered one at a time: each runs a tenant's provisioning steps, observed.
    const plan = (controllers.tenantdatabaseplan = createController(
      'tenantdatabaseplan',
      (key, l) => reconcileTenantDatabasePlan(ctx, key, l),
      log,
      metrics,
      // A plan says what went wrong in its own status (reconcile.ts), never in an Event.
      () => Promise.resolve(),
    ));
    for (const x of whitelists.list()) whitelist.queue.add(keyOf(x));
    for (const x of groups.list()) group.queue.add(keyOf(x));
    for (const x of plans.list()) plan.queue.add(keyOf(x));
    void whitelist.run(1);
    void group.run(1);
    void plan.run(1);
    void server.run(Math.max(1, Math.ceil(o.workers / 2)));
    void tenant.run(o.workers);
    log.info({ workers: o.workers, resyncMs: o.resyncMs }, 'Controllers started');
  };

  const stop = async (why: StopReason = 'stopped') => {
    if (stopping) return;
    stopReason = why;
    stopping = true;
    log.info('Shutting down');
    await Promise.all(Object.values(controllers).map((c) => c.stop()));
    await Promise.all(informers.map((i) => i.stop().catch(() => undefined)));
    await leader?.release();
    await pools.closeAll();
    await new Promise<void>((r) => health.close(() => r()));
    metrics.isLeader.set(0);
    resolveDone(stopReason);
  };

  if (o.leaderElection) {
    leader = startLeaderElection(
      clients.coordination,
      {
        namespace: o.namespace,
        name: 'tenantdb-operator',
        identity,
        leaseDurationMs: 15_000,
        renewDeadlineMs: 10_000,
        retryPeriodMs: 2_000,
      },
      log,
      () => {
        log.error('Lost leadership, exiting');
        void stop('lost-leadership');
      },
    );
    log.info({ identity }, 'Waiting for the leader Lease');
    void leader.acquired.then(() => (stopping ? undefined : runControllers()));
  } else {
    await runControllers();
  }

  return {
    stop: () => stop(),
    done,
    metricsPort: () => {
      const a = health.address();
      return typeof a === 'object' && a ? a.port : o.metricsPort;
    },
  };
}
