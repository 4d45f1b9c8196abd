/**
 * Who wakes whom: every watch of every controller, in one table.
 *
 * Each entry says which cache it listens to, which events count (a predicate, as controller-runtime's
 * predicates), and which keys of its controller an event maps to (as Cluster API's `Watches` with
 * `EnqueueRequestsFromMapFunc`). Lookups go through the informers' indexes (tenants by server and by
 * namespace, whitelists by tenant), never through scans. `coalesceMs` folds a burst of events into
 * one reconcile: a server that renders its pooler config from hundreds of tenants re-renders once per
 * window, not once per tenant event.
 *
 * A reader who wants to know why a controller ran looks here; `src/operator.ts` only wires this table
 * to the informers and the work queues.
 */
import type * as k8s from '@kubernetes/client-node';
import type {
  CachedIpWhitelist,
  CachedPostgresServer,
  CachedTenantDatabase,
  CachedTenantDatabasePlan,
  CachedTenantGroup,
} from '../api/cached.js';
import { AGENT_ERROR_ANNOTATION } from '../pooler/contract.js';
import { SHARD_OF_LABEL } from '../pooler/shards.js';
import type { Indexers, ResilientInformer } from '../runtime/informer.js';
import { keyOf } from './context.js';
import { isOwnWrite } from '../kube/secrets.js';
import { MIGRATION_GROUP_LABEL, RETRY_ANNOTATION } from './migrations/job.js';

export interface Caches {
  servers: ResilientInformer<CachedPostgresServer>;
  tenants: ResilientInformer<CachedTenantDatabase>;
  whitelists: ResilientInformer<CachedIpWhitelist>;
  groups: ResilientInformer<CachedTenantGroup>;
  /** Secrets labelled managed-by tenantdb: tenant Secrets and the pooler's config Secrets. */
  secrets: ResilientInformer<k8s.V1Secret>;
  namespaces: ResilientInformer<k8s.V1Namespace>;
  /** The operator's migration Jobs (labelled managed-by tenantdb, component migration), status only. */
  jobs: ResilientInformer<k8s.V1Job>;
  plans: ResilientInformer<CachedTenantDatabasePlan>;
}

/**
 * Events that come from inside the operator rather than from a watch on the API server: what a
 * reconcile did on a PostgreSQL server, which no informer can see.
 */
export interface LocalEvents {
  /** A tenant reconcile created or changed a tenant's objects on a server: its catalog moved. */
  provisioned: { server: string; tenant: string };
}

export type Source = keyof Caches | keyof LocalEvents;
export type ObjectOf<S extends Source> = S extends keyof Caches
  ? Caches[S] extends ResilientInformer<infer T>
    ? T
    : never
  : S extends keyof LocalEvents
    ? LocalEvents[S]
    : never;
export type ControllerName = 'postgresserver' | 'tenantdatabase' | 'ipwhitelist' | 'tenantgroup' | 'tenantdatabaseplan';

export interface Watch<S extends Source = Source> {
  source: S;
  /** Why this dependency exists, for the reader and the logs. */
  why: string;
  /** Which events count; all when absent. `old` is undefined on add and delete. */
  when?: (obj: ObjectOf<S>, old: ObjectOf<S> | undefined, deleted: boolean) => boolean;
  /** The keys of the watching controller this event concerns. */
  map: (obj: ObjectOf<S>, c: Caches) => Iterable<string>;
  /** Enqueue after this delay; further events within it join the same reconcile. */
  coalesceMs?: number;
  /**
   * What a running reconcile of the key may be waiting for inside (ReconcileInfo.park): the event
   * wakes it rather than queueing another reconcile; a key not running is queued as usual.
   */
  wakes?: boolean;
}

/** A heterogeneous list of watches, each typed by its own source. */
type AnyWatch = { [S in Source]: Watch<S> }[Source];
const watch = <S extends Source>(w: Watch<S>): AnyWatch => w as unknown as AnyWatch;

/**
 * A group rewrites one Secret from all its members: a burst of member events (many tenants applied,
 * a Secret patched in a loop) is folded into one write per group per second.
 */
const GROUP_COALESCE_MS = 1000;

/** Index names. A tenant without serverRef is filed under DEFAULT_SERVER (the default server's). */
export const BY_SERVER = 'server';
export const BY_NAMESPACE = 'namespace';
export const BY_TENANT = 'tenant';
/** Jobs by the uid of the TenantDatabase that controls them. */
export const BY_OWNER = 'owner';
export const DEFAULT_SERVER = '';

export const tenantIndexers: Indexers<CachedTenantDatabase> = {
  [BY_SERVER]: (t) => [t.spec?.serverRef?.name ?? DEFAULT_SERVER, ...(t.status?.serverName ? [t.status.serverName] : [])],
  [BY_NAMESPACE]: (t) => [t.metadata?.namespace ?? ''],
};
export const groupIndexers: Indexers<CachedTenantGroup> = {
  [BY_NAMESPACE]: (g) => [g.metadata?.namespace ?? ''],
};
export const planIndexers: Indexers<CachedTenantDatabasePlan> = {
  [BY_NAMESPACE]: (p) => [p.metadata?.namespace ?? ''],
};
export const jobIndexers: Indexers<k8s.V1Job> = {
  [BY_OWNER]: (j) => (j.metadata?.ownerReferences ?? []).filter((r) => r.controller && r.kind === 'TenantDatabase').map((r) => r.uid),
};
export const whitelistIndexers: Indexers<CachedIpWhitelist> = {
  [BY_TENANT]: (w) => (w.spec?.tenantDatabaseRef?.name ? [`${w.metadata?.namespace ?? ''}/${w.spec.tenantDatabaseRef.name}`] : []),
};

/** The default server's name, when exactly one server says it is the default. */
export function defaultServerName(c: Pick<Caches, 'servers'>): string | undefined {
  const defaults = c.servers.list().filter((s) => s.spec?.default === true);
  return defaults.length === 1 ? defaults[0]?.metadata?.name : undefined;
}

/** The tenants a server concerns: those whose spec or status names it, and the default's. */
export function tenantsOfServer(c: Pick<Caches, 'servers' | 'tenants'>, name: string): CachedTenantDatabase[] {
  const found = new Map(c.tenants.byIndex(BY_SERVER, name).map((t) => [keyOf(t), t]));
  if (defaultServerName(c) === name) for (const t of c.tenants.byIndex(BY_SERVER, DEFAULT_SERVER)) found.set(keyOf(t), t);
  return [...found.values()];
}

/** The servers a tenant concerns: where it lives (status) and where its spec points. */
export function serversOfTenant(c: Pick<Caches, 'servers'>, t: CachedTenantDatabase): string[] {
  const named = t.spec?.serverRef?.name ?? defaultServerName(c);
  return [...new Set([t.status?.serverName, named].filter((n): n is string => !!n))];
}

/** The metadata a reconcile acts on; status-only updates (mostly our own writes) are left out. */
function fingerprint(o: k8s.KubernetesObject): string {
  const m = o.metadata ?? {};
  return JSON.stringify([m.uid, m.generation, m.deletionTimestamp, m.annotations, m.labels]);
}
const specChanged = (obj: k8s.KubernetesObject, old: k8s.KubernetesObject | undefined, deleted: boolean): boolean =>
  deleted || !old || fingerprint(obj) !== fingerprint(old);

/** What the server's pooler config reads of a tenant: its spec, and the names its status reports. */
const poolerInputChanged = (t: CachedTenantDatabase, old: CachedTenantDatabase | undefined, deleted: boolean): boolean => {
  if (specChanged(t, old, deleted)) return true;
  const names = (x: CachedTenantDatabase | undefined) => {
    const ready = x?.status?.conditions?.find((c) => c.type === 'Ready');
    return JSON.stringify([x?.status?.serverName, x?.status?.roleName, x?.status?.databaseName, ready?.status]);
  };
  return names(t) !== names(old);
};

const labelsChanged = (n: k8s.V1Namespace, old: k8s.V1Namespace | undefined, deleted: boolean): boolean =>
  deleted || JSON.stringify(n.metadata?.labels ?? {}) !== JSON.stringify(old?.metadata?.labels ?? {});

/** The controller owner of a Secret, when it is of this kind. */
function ownerOf(s: k8s.V1Secret, kind: string): k8s.V1OwnerReference | undefined {
  return (s.metadata?.ownerReferences ?? []).find((r) => r.controller && r.kind === kind);
}

/** A Secret the server owns by uid: anyone who may write a Secret can name any owner. */
function serverOfOwnSecret(s: k8s.V1Secret, c: Caches): string | undefined {
  const r = ownerOf(s, 'PostgresServer');
  return r && c.servers.get(r.name)?.metadata?.uid === r.uid ? r.name : undefined;
}

/** The tenant that owns a tenant Secret, from the cache. */
function tenantOfSecret(s: k8s.V1Secret, c: Caches): CachedTenantDatabase | undefined {
  const r = ownerOf(s, 'TenantDatabase');
  const t = r && s.metadata?.namespace ? c.tenants.get(r.name, s.metadata.namespace) : undefined;
  return t && t.metadata?.uid === r?.uid ? t : undefined;
}

/** The agent's report on a pooler config Secret (not a shard): what it loaded or refused. */
const isAgentReport = (s: k8s.V1Secret, c: Caches): boolean => !s.metadata?.labels?.[SHARD_OF_LABEL] && !!serverOfOwnSecret(s, c);

const notReady = (t: CachedTenantDatabase) => t.status?.conditions?.find((x) => x.type === 'Ready')?.status !== 'True';
/** Not Ready, or a spec change not answered yet (its reconcile may be waiting inside for the pooler). */
const waiting = (t: CachedTenantDatabase) => notReady(t) || t.metadata?.generation !== t.status?.observedGeneration;

const SERVER_COALESCE_MS = 300;

export const WATCHES: Record<ControllerName, AnyWatch[]> = {
  postgresserver: [
    watch({ source: 'servers', why: 'its own spec', when: specChanged, map: (s) => [keyOf(s)] }),
    watch({
      source: 'tenants',
      why: 'the pooler config and HBA are rendered from its tenants (spec, names, readiness, deletion)',
      when: poolerInputChanged,
      map: (t, c) => serversOfTenant(c, t),
      coalesceMs: SERVER_COALESCE_MS,
    }),
    watch({
      source: 'secrets',
      why: "a tenant Secret holds the password whose verifier goes into the pooler's userlist (rotation)",
      map: (s, c) => {
        const t = tenantOfSecret(s, c);
        return t ? serversOfTenant(c, t) : [];
      },
      coalesceMs: SERVER_COALESCE_MS,
    }),
    watch({
      source: 'secrets',
      why: 'its pooler config Secrets: the agent reports there, and a Secret changed by hand is repaired',
      map: (s, c) => [serverOfOwnSecret(s, c)].filter((n): n is string => !!n),
      coalesceMs: SERVER_COALESCE_MS,
    }),
    watch({
      source: 'groups',
      why: "a TenantGroup's login (groupLogin) has a pool and HBA rules in its server's configs",
      when: specChanged,
      map: (g, c) => [g.spec?.groupLogin?.serverRef?.name ?? defaultServerName(c)].filter((n): n is string => !!n),
      coalesceMs: SERVER_COALESCE_MS,
    }),
    watch({
      source: 'secrets',
      why: "a TenantGroup's registry Secret carries its login's verifier for the pooler's userlist",
      map: (s, c) => {
        const r = ownerOf(s, 'TenantGroup');
        const g = r && s.metadata?.namespace ? c.groups.get(r.name, s.metadata.namespace) : undefined;
        if (!g || g.metadata?.uid !== r?.uid || !g.spec?.groupLogin) return [];
        return [g.spec.groupLogin.serverRef?.name ?? defaultServerName(c)].filter((n): n is string => !!n);
      },
      coalesceMs: SERVER_COALESCE_MS,
    }),
    watch({
      source: 'whitelists',
      why: "an IpWhitelist's CIDRs go into the HBA of its tenant's server",
      when: specChanged,
      map: (w, c) => {
        const t = c.tenants.get(w.spec?.tenantDatabaseRef?.name ?? '', w.metadata?.namespace);
        return t ? serversOfTenant(c, t) : [];
      },
      coalesceMs: SERVER_COALESCE_MS,
    }),
    watch({
      source: 'provisioned',
      why: "a tenant's role, database or schema was created or changed: the configs are rendered from the catalog",
      map: (e) => [e.server],
      coalesceMs: SERVER_COALESCE_MS,
    }),
    watch({
      source: 'namespaces',
      why: "a namespace's labels decide whether its tenants may be in a server's config (allowedNamespaces)",
      when: labelsChanged,
      map: (_n, c) =>
        c.servers
          .list()
          .filter((s) => s.spec?.allowedNamespaces?.from === 'Selector')
          .map(keyOf),
      coalesceMs: SERVER_COALESCE_MS,
    }),
  ],
  tenantdatabase: [
    watch({ source: 'tenants', why: 'its own spec, annotations (rotation) and deletion', when: specChanged, map: (t) => [keyOf(t)] }),
    watch({
      source: 'tenants',
      why: 'a tenant gone frees a place on its server (maxTenants): those waiting for one try again',
      when: (_t, _old, deleted) => deleted,
      map: (t, c) =>
        serversOfTenant(c, t).flatMap((s) =>
          tenantsOfServer(c, s)
            .filter((x) => x.status?.conditions?.some((k) => k.type === 'Ready' && k.reason === 'CapacityExceeded'))
            .map(keyOf),
        ),
    }),
    watch({
      source: 'servers',
      why: 'its server: address, limits, admission, the pooler and what the pooler supports change what the tenant gets',
      when: (s, old, deleted) =>
        specChanged(s, old, deleted) || JSON.stringify(s.status?.pooler ?? null) !== JSON.stringify(old?.status?.pooler ?? null),
      map: (s, c) => tenantsOfServer(c, keyOf(s)).map(keyOf),
    }),
    watch({
      source: 'secrets',
      why: 'its Secret: changed or deleted by someone else, it is repaired (the echo of its own write is not a change)',
      when: (s, _old, deleted) => deleted || !isOwnWrite(s),
      map: (s, c) => {
        const t = tenantOfSecret(s, c);
        return t ? [keyOf(t)] : [];
      },
    }),
    watch({
      source: 'secrets',
      why: "the pooler agent's report of a loaded config confirms the tenants waiting for it: not Ready, or a spec change not answered yet (a reconcile waits inside for it, and the report wakes it)",
      when: (s) => !s.metadata?.annotations?.[AGENT_ERROR_ANNOTATION],
      wakes: true,
      map: (s, c) =>
        isAgentReport(s, c)
          ? tenantsOfServer(c, serverOfOwnSecret(s, c) ?? '')
              .filter(waiting)
              .map(keyOf)
          : [],
    }),
    watch({
      source: 'secrets',
      why: "the pooler agent's report of a refused config concerns every tenant of the server",
      when: (s) => !!s.metadata?.annotations?.[AGENT_ERROR_ANNOTATION],
      map: (s, c) => (isAgentReport(s, c) ? tenantsOfServer(c, serverOfOwnSecret(s, c) ?? '').map(keyOf) : []),
    }),
    watch({
      source: 'whitelists',
      why: 'its IpWhitelists: AccessRulesApplied reports them',
      when: specChanged,
      map: (w) => (w.spec?.tenantDatabaseRef?.name ? [`${w.metadata?.namespace ?? ''}/${w.spec.tenantDatabaseRef.name}`] : []),
    }),
    watch({
      source: 'namespaces',
      why: "its namespace's labels decide whether it may use its server (allowedNamespaces)",
      when: labelsChanged,
      map: (n, c) => c.tenants.byIndex(BY_NAMESPACE, n.metadata?.name ?? '').map(keyOf),
    }),
    watch({
      source: 'jobs',
      why: 'its migration Job: started, succeeded or failed (status.migration and the Ready gate)',
      map: (j, c) => {
        const t = tenantOfJob(j, c);
        return t ? [keyOf(t)] : [];
      },
    }),
    watch({
      source: 'groups',
      why: "a TenantGroup's migration template (or selector) of its namespace decides which migration it runs",
      when: specChanged,
      map: (g, c) => c.tenants.byIndex(BY_NAMESPACE, g.metadata?.namespace ?? '').map(keyOf),
    }),
    watch({
      source: 'groups',
      why: "a TenantGroup's rollout halted or went on: its members still waiting say so in status.migration",
      when: (g, old, deleted) => !deleted && !!old && haltOf(g) !== haltOf(old),
      map: (g, c) =>
        c.tenants
          .byIndex(BY_NAMESPACE, g.metadata?.namespace ?? '')
          .filter((t) => t.status?.migration?.phase === 'Pending')
          .map(keyOf),
    }),
  ],
  ipwhitelist: [
    watch({ source: 'whitelists', why: 'its own spec', when: specChanged, map: (w) => [keyOf(w)] }),
    watch({
      source: 'tenants',
      why: 'its tenant: where it lives and its names decide where the rules go',
      when: poolerInputChanged,
      map: (t, c) => c.whitelists.byIndex(BY_TENANT, keyOf(t)).map(keyOf),
    }),
    watch({
      source: 'secrets',
      why: "the pooler agent's report says whether the rules are enforced",
      map: (s, c) => {
        if (!isAgentReport(s, c)) return [];
        return tenantsOfServer(c, serverOfOwnSecret(s, c) ?? '').flatMap((t) => c.whitelists.byIndex(BY_TENANT, keyOf(t)).map(keyOf));
      },
    }),
  ],
  tenantdatabaseplan: [
    // A plan is answered once, for the spec it was created with; nothing else wakes it (its answer
    // is of the moment it was computed, and it is deleted soon after).
    watch({
      source: 'plans',
      why: 'its own spec',
      when: (p, old, deleted) => !deleted && specChanged(p, old, deleted),
      map: (p) => [keyOf(p)],
    }),
  ],
  tenantgroup: [
    watch({ source: 'groups', why: 'its own spec', when: specChanged, map: (g) => [keyOf(g)] }),
    watch({
      source: 'tenants',
      why: 'its members: a TenantDatabase of its namespace that comes, goes, changes labels or readiness',
      when: (t, old, deleted) => deleted || !old || memberViewChanged(t, old),
      map: (t, c) => c.groups.byIndex(BY_NAMESPACE, t.metadata?.namespace ?? '').map(keyOf),
      coalesceMs: GROUP_COALESCE_MS,
    }),
    watch({
      source: 'secrets',
      why: "its members' Secrets (new credentials, a rotation) and its own registry Secret (changed by someone else)",
      map: (s, c) => {
        const owner = s.metadata?.ownerReferences?.find((r) => r.controller);
        const ns = s.metadata?.namespace ?? '';
        if (owner?.kind === 'TenantDatabase') return c.groups.byIndex(BY_NAMESPACE, ns).map(keyOf);
        if (owner?.kind === 'TenantGroup') return [`${ns}/${owner.name}`];
        return [];
      },
      coalesceMs: GROUP_COALESCE_MS,
    }),
    watch({
      source: 'jobs',
      why: "its members' migration Jobs: each one that ends frees a place in the rollout or stops it",
      map: (j) => {
        const group = j.metadata?.labels?.[MIGRATION_GROUP_LABEL];
        return group && j.metadata?.namespace ? [`${j.metadata.namespace}/${group}`] : [];
      },
    }),
  ],
};

/** Whether a group's rollout is halted, and at which Job. */
const haltOf = (g: CachedTenantGroup): string => (g.status?.rollout?.halted ? (g.status.rollout.failedJob ?? '?') : '');

/** The TenantDatabase that controls a Job, from the cache, when its uid matches. */
function tenantOfJob(j: k8s.V1Job, c: Caches): CachedTenantDatabase | undefined {
  const r = (j.metadata?.ownerReferences ?? []).find((x) => x.controller && x.kind === 'TenantDatabase');
  const t = r && j.metadata?.namespace ? c.tenants.get(r.name, j.metadata.namespace) : undefined;
  return t && t.metadata?.uid === r?.uid ? t : undefined;
}

/**
 * What a group reads of a tenant: labels, the Secret it names, whether it is Ready; where its group
 * login may reach it; for the migration rollout, whether it is provisioned far enough to migrate,
 * has a migration of its own, is suspended or asks for a retry, and where its migration stands.
 */
function memberViewChanged(t: CachedTenantDatabase, old: CachedTenantDatabase): boolean {
  const status = (x: CachedTenantDatabase, type: string) => x.status?.conditions?.find((k) => k.type === type)?.status;
  const view = (x: CachedTenantDatabase) =>
    JSON.stringify([
      x.metadata?.labels ?? {},
      x.spec?.secretName,
      x.spec?.isolation,
      x.spec?.serverRef?.name,
      status(x, 'Ready'),
      status(x, 'DatabaseReady'),
      status(x, 'RoleReady'),
      status(x, 'SecretReady'),
      !!x.spec?.migration,
      !!x.spec?.suspend,
      x.metadata?.annotations?.[RETRY_ANNOTATION],
      x.status?.migration?.templateHash,
      x.status?.migration?.phase,
    ]);
  return view(t) !== view(old);
}

export interface Enqueuer {
  add(controller: ControllerName, key: string, coalesceMs?: number, wakes?: boolean): void;
}

/**
 * The informer handlers for one source: each event goes through every watch on that source. What a
 * watch's map throws (it should not) is caught, so one bad object cannot stop the others' events.
 */
export function handlersFor<S extends Source>(
  source: S,
  caches: () => Caches | undefined,
  enqueue: Enqueuer,
  onError: (err: unknown, why: string) => void,
): { onChange: (obj: ObjectOf<S>, old: ObjectOf<S> | undefined) => void; onDelete: (obj: ObjectOf<S>) => void } {
  const dispatch = (obj: ObjectOf<S>, old: ObjectOf<S> | undefined, deleted: boolean) => {
    const c = caches();
    if (!c) return;
    for (const [controller, watches] of Object.entries(WATCHES) as [ControllerName, AnyWatch[]][]) {
      for (const w of watches as Watch[]) {
        if (w.source !== source) continue;
        const typed = w as unknown as Watch<S>;
        try {
          if (typed.when && !typed.when(obj, old, deleted)) continue;
          for (const key of typed.map(obj, c)) enqueue.add(controller, key, typed.coalesceMs, typed.wakes);
        } catch (err) {
          onError(err, typed.why);
        }
      }
    }
  };
  return { onChange: (obj, old) => dispatch(obj, old, false), onDelete: (obj) => dispatch(obj, undefined, true) };
}
