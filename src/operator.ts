/**
 * The manager: informers, work queues, controllers, leader election, health and metrics, wired
 * together. No business logic lives here.
 */
import type * as k8s from '@kubernetes/client-node';
import { hostname } from 'node:os';
import type { Server } from 'node:http';
import { GROUP, VERSION } from './api/common.js';
import { IP_WHITELIST, POSTGRES_SERVER, TENANT_DATABASE, apiPath } from './api/kinds.js';
import { MANAGED_BY, MANAGED_BY_LABEL, keyOf, type OperatorContext } from './controllers/context.js';
import { reconcilePostgresServer } from './controllers/postgresserver/reconcile.js';
import { reconcileTenantDatabase } from './controllers/tenantdatabase/reconcile.js';
import { reconcileIpWhitelist } from './controllers/ipwhitelist/reconcile.js';
import { makeClients } from './kube/client.js';
import { DEFAULT_SHARD_BYTES, SHARD_OF_LABEL } from './pooler/shards.js';
import { AdminPools } from './pg/connections.js';
import { createController, type Controller } from './runtime/controller.js';
import { eventRecorder } from './runtime/events.js';
import { startHealthServer } from './runtime/health.js';
import { namespacePoller, resilientInformer, unionInformer, type ResilientInformer } from './runtime/informer.js';
import { startLeaderElection, type LeaderElector } from './runtime/leader.js';
import type { Logger } from './runtime/logger.js';
import { createMetrics } from './runtime/metrics.js';

export interface OperatorOptions {
  kc: k8s.KubeConfig;
  log: Logger;
  namespace: string;
  workers: number;
  resyncMs: number;
  metricsPort: number;
  metricsHost: string;
  leaderElection: boolean;
  /** Only these namespaces' TenantDatabases, IpWhitelists and Secrets (namespaced RBAC); all when empty. */
  watchNamespaces?: string[] | undefined;
  identity?: string;
  /** Bytes of tenant lines one pooler config shard may hold (default 512 KiB). */
  poolerShardBytes?: number;
}

export interface RunningOperator {
  stop(): Promise<void>;
  /** Resolves when the operator stops by itself (lost leadership). */
  done: Promise<void>;
  metricsPort(): number;
}

export async function startOperator(o: OperatorOptions): Promise<RunningOperator> {
  const log = o.log;
  const clients = makeClients(o.kc);
  const metrics = createMetrics();
  const pools = new AdminPools(log);
  const identity = o.identity ?? process.env.POD_NAME ?? `${hostname()}-${process.pid}`;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const controllers: Record<'servers' | 'tenants' | 'whitelists', Controller | undefined> = {
    servers: undefined,
    tenants: undefined,
    whitelists: undefined,
  };
  const enqueueTenant = (obj: k8s.KubernetesObject) => controllers.tenants?.queue.add(keyOf(obj));
  const enqueueServer = (name: string | undefined) => name && controllers.servers?.queue.add(name);
  const custom = clients.custom;
  const list = (plural: string, namespace?: string) => () =>
    (namespace
      ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural })
      : custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as Promise<
      k8s.KubernetesListObject<k8s.KubernetesObject>
    >;
  /**
   * Namespaced kinds are watched cluster-wide, or, with --watch-namespaces, in each of those
   * namespaces, so that the operator's RBAC can be namespaced Roles there.
   */
  const watched = o.watchNamespaces?.length ? [...new Set(o.watchNamespaces)] : undefined;
  const scoped = <T extends k8s.KubernetesObject>(
    make: (namespace?: string) => ResilientInformer<T>,
    extra: string[] = [],
  ): ResilientInformer<T> => (watched ? unionInformer(new Map([...new Set([...watched, ...extra])].map((ns) => [ns, make(ns)]))) : make());

  /**
   * Status-only updates (most of them our own writes) do not trigger a reconcile, as with
   * controller-runtime's GenerationChangedPredicate: otherwise a tenant whose size changes on every
   * check would be reconciled in a loop. The periodic re-check still visits everything.
   */
  const seen = new Map<string, string>();
  const specChanged = (obj: k8s.KubernetesObject): boolean => {
    const m = obj.metadata ?? {};
    const key = `${obj.kind}/${keyOf(obj)}`;
    const fp = JSON.stringify([m.uid, m.generation, m.deletionTimestamp, m.finalizers, m.annotations, m.labels]);
    if (seen.get(key) === fp) return false;
    seen.set(key, fp);
    return true;
  };
  const forget = (obj: k8s.KubernetesObject) => seen.delete(`${obj.kind}/${keyOf(obj)}`);

  // eslint-disable-next-line prefer-const -- set once the context exists; the callbacks above run later
  let ctxRef: OperatorContext | undefined;
  const servers = resilientInformer(
    o.kc,
    apiPath(POSTGRES_SERVER),
    list(POSTGRES_SERVER.plural),
    {
      onChange: (s) => {
        if (!specChanged(s)) return;
        enqueueServer(s.metadata?.name);
        // Tenants follow their server: a server becoming ready, or changing its address, concerns them.
        for (const t of ctxRef?.tenants.list() ?? []) enqueueTenant(t);
      },
      onDelete: (s) => {
        forget(s);
        enqueueServer(s.metadata?.name);
      },
    },
    log,
  );
  const tenants = scoped((ns) =>
    resilientInformer(
      o.kc,
      apiPath(TENANT_DATABASE, ns),
      list(TENANT_DATABASE.plural, ns),
      {
        onChange: (t) => {
          // The server renders its pooler config from its tenants' status, so it follows every change.
          enqueueServer((t as { status?: { serverName?: string } }).status?.serverName);
          if (!specChanged(t)) return;
          enqueueTenant(t);
        },
        onDelete: (t) => {
          forget(t);
          enqueueServer((t as { status?: { serverName?: string } }).status?.serverName);
        },
      },
      log,
    ),
  );
  const onWhitelist = (w: k8s.KubernetesObject, deleted: boolean) => {
    if (deleted) forget(w);
    else if (!specChanged(w)) return;
    if (!deleted) controllers.whitelists?.queue.add(keyOf(w));
    const ref = (w as { spec?: { tenantDatabaseRef?: { name?: string } } }).spec?.tenantDatabaseRef?.name;
    if (!ref || !w.metadata?.namespace) return;
    const td = ctxRef?.tenants.get(ref, w.metadata.namespace);
    controllers.tenants?.queue.add(`${w.metadata.namespace}/${ref}`);
    enqueueServer((td as { status?: { serverName?: string } } | undefined)?.status?.serverName);
  };
  const whitelists = scoped((ns) =>
    resilientInformer(
      o.kc,
      apiPath(IP_WHITELIST, ns),
      list(IP_WHITELIST.plural, ns),
      {
        onChange: (w) => onWhitelist(w, false),
        onDelete: (w) => onWhitelist(w, true),
      },
      log,
    ),
  );
  const managed = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;
  // Tenant Secrets where the tenants are, and the pooler's config Secrets in the operator's namespace.
  const secrets: ResilientInformer<k8s.V1Secret> = scoped(
    (ns) =>
      resilientInformer<k8s.V1Secret>(
        o.kc,
        ns ? `/api/v1/namespaces/${ns}/secrets` : '/api/v1/secrets',
        () =>
          ns
            ? clients.core.listNamespacedSecret({ namespace: ns, labelSelector: managed })
            : clients.core.listSecretForAllNamespaces({ labelSelector: managed }),
        {
          onChange: (s) => {
            for (const r of s.metadata?.ownerReferences ?? []) {
              if (!r.controller) continue;
              // Anyone who may write a Secret can name any owner: a server is woken only by its own.
              if (r.kind === 'PostgresServer' && servers.get(r.name)?.metadata?.uid !== r.uid) continue;
              if (r.kind === 'TenantDatabase' && s.metadata?.namespace) controllers.tenants?.queue.add(`${s.metadata.namespace}/${r.name}`);
              if (r.kind === 'PostgresServer' && s.metadata?.labels?.[SHARD_OF_LABEL]) {
                // A shard changes with its index, which wakes the rest; only a repair needs the server.
                enqueueServer(r.name);
              } else if (r.kind === 'PostgresServer') {
                // The pooler agent reports on this Secret: the server and everything on it look again.
                enqueueServer(r.name);
                for (const t of ctxRef?.tenants.list() ?? []) {
                  if ((t as { status?: { serverName?: string } }).status?.serverName === r.name) enqueueTenant(t);
                }
                for (const w of ctxRef?.whitelists.list() ?? []) controllers.whitelists?.queue.add(keyOf(w));
              }
            }
          },
        },
        log,
        managed,
      ),
    [o.namespace],
  );

  const namespaceLabels = new Map<string, string>();
  // A namespace's labels decide which servers its tenants may use: a change concerns its tenants.
  const onNamespace = (n: k8s.V1Namespace) => {
    const name = n.metadata?.name ?? '';
    const labels = JSON.stringify(n.metadata?.labels ?? {});
    if (namespaceLabels.get(name) === labels) return;
    namespaceLabels.set(name, labels);
    for (const t of ctxRef?.tenants.list() ?? []) if (t.metadata?.namespace === name) enqueueTenant(t);
  };
  const namespaces: ResilientInformer<k8s.V1Namespace> = watched
    ? namespacePoller(clients.core, watched, onNamespace, log)
    : resilientInformer<k8s.V1Namespace>(
        o.kc,
        '/api/v1/namespaces',
        () => clients.core.listNamespace(),
        { onChange: onNamespace, onDelete: (n) => namespaceLabels.delete(n.metadata?.name ?? '') },
        log,
      );

  const ctx: OperatorContext = {
    clients,
    log,
    events: eventRecorder(clients.core, 'tenantdb-operator', log),
    pools,
    config: { resyncMs: o.resyncMs, namespace: o.namespace, poolerShardBytes: o.poolerShardBytes ?? DEFAULT_SHARD_BYTES },
    servers,
    tenants,
    whitelists,
    namespaces,
    secrets,
    markers: new Map(),
  };
  ctxRef = ctx;

  let leader: LeaderElector | undefined;
  let started = false;
  let stopping = false;
  const health: Server = await startHealthServer(o.metricsPort, o.metricsHost, metrics.registry, {
    healthy: () => !stopping,
    // A standby replica is ready (it serves health and waits for the Lease); a leader once its caches synced.
    ready: () => !stopping && (!started || [servers, tenants, whitelists, namespaces, secrets].every((i) => i.synced())),
  });

  const runControllers = async () => {
    started = true;
    metrics.isLeader.set(1);
    await Promise.all([servers.start(), tenants.start(), whitelists.start(), namespaces.start(), secrets.start()]);
    controllers.servers = createController('postgresserver', (key, l) => reconcilePostgresServer(ctx, key, l), log, metrics);
    controllers.tenants = createController('tenantdatabase', (key, l) => reconcileTenantDatabase(ctx, key, l), log, metrics);
    controllers.whitelists = createController('ipwhitelist', (key, l) => reconcileIpWhitelist(ctx, key, l), log, metrics);
    for (const s of servers.list()) enqueueServer(s.metadata?.name);
    for (const t of tenants.list()) enqueueTenant(t);
    for (const w of whitelists.list()) controllers.whitelists.queue.add(keyOf(w));
    void controllers.whitelists.run(1);
    void controllers.servers.run(Math.max(1, Math.ceil(o.workers / 2)));
    void controllers.tenants.run(o.workers);
    log.info({ workers: o.workers, resyncMs: o.resyncMs }, 'Controllers started');
  };

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log.info('Shutting down');
    await Promise.all([controllers.servers?.stop(), controllers.tenants?.stop(), controllers.whitelists?.stop()]);
    await Promise.all(
      [servers.stop(), tenants.stop(), whitelists.stop(), namespaces.stop(), secrets.stop()].map((p) => p.catch(() => undefined)),
    );
    await leader?.release();
    await pools.closeAll();
    await new Promise<void>((r) => health.close(() => r()));
    metrics.isLeader.set(0);
    resolveDone();
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
        void stop();
      },
    );
    log.info({ identity }, 'Waiting for the leader Lease');
    void leader.acquired.then(() => (stopping ? undefined : runControllers()));
  } else {
    await runControllers();
  }

  return {
    stop,
    done,
    metricsPort: () => {
      const a = health.address();
      return typeof a === 'object' && a ? a.port : o.metricsPort;
    },
  };
}
