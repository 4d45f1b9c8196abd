import type { Logger } from 'pino';
import { API_VERSION } from '../../api/common.js';
import { POSTGRES_SERVER } from '../../api/kinds.js';
import { postgresServer, type PostgresServer, type PostgresServerStatus } from '../../api/postgresserver.js';
import { poolerFeatures, showDatabases, type PoolerFeatures } from '../../pg/pgbouncer-console.js';
import { loadPoolerAdmin } from '../pooler-view.js';
import { ensurePoolerConfig, ensureServerHba } from './pooler-step.js';
import { customResourceApi } from '../../kube/client.js';
import { SQLSTATE, describePgError, sqlState } from '../../pg/errors.js';
import * as sql from '../../pg/tenant-sql.js';
import { clearRoleDependencies, type InDatabase } from '../tenantdatabase/provision.js';
import type pg from 'pg';
import { adminReserveCondition } from './reserve.js';
import type { ConditionInput } from '../../runtime/conditions.js';
import type { ReconcileResult } from '../../runtime/controller.js';
import { addFinalizer, commitStatus, removeFinalizer, transitioned } from '../../runtime/status.js';
import { BY_SERVER } from '../watches.js';
import { FINALIZER, endpointOf, loadAdminCredentials, loadCa, splitKey, type OperatorContext } from '../context.js';

/** Maps a connection failure to a reason and message a person can act on. */
export function connectionFailure(err: unknown, where: string): { reason: string; message: string } {
  const code = sqlState(err);
  const detail = describePgError(err);
  if (code === SQLSTATE.invalidPassword)
    return { reason: 'AuthenticationFailed', message: `the admin credentials were rejected by ${where}: ${detail}` };
  if (code === SQLSTATE.invalidAuthorization)
    return {
      reason: 'ConnectionRejected',
      message: `${where} rejected the operator's connection (pg_hba.conf or role attributes): ${detail}`,
    };
  if (code === SQLSTATE.invalidCatalogName)
    return { reason: 'DatabaseNotFound', message: `the admin database does not exist on ${where}: ${detail}` };
  if (code && ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNRESET'].includes(code)) {
    return { reason: 'Unreachable', message: `cannot reach ${where}: ${detail}` };
  }
  if (/timeout/i.test(detail)) return { reason: 'Unreachable', message: `cannot reach ${where}: ${detail}` };
  if (/SSL|TLS|certificate/i.test(detail)) return { reason: 'TLSError', message: `TLS to ${where} failed: ${detail}` };
  return { reason: 'ConnectionFailed', message: `connecting to ${where} failed: ${detail}` };
}

/** Writes the server's pooler config and reports whether the agent loaded it and PgBouncer answers. */
async function serverPoolerCondition(
  ctx: OperatorContext,
  server: PostgresServer,
  seen: { pooler?: PoolerFeatures },
): Promise<ConditionInput> {
  const p = server.spec.pooler;
  if (!p) return { type: 'PoolerReady', status: 'True', reason: 'NoPooler', message: 'no pooler is configured; tenants connect directly' };
  const st = await ensurePoolerConfig(ctx, server);
  const where = `Secret ${st.ref.namespace}/${st.ref.name} (${st.shards} shard(s))`;
  // A tenant left out hurts only itself; the others' config goes on, and status says who and why.
  const leftOut = st.leftOut.length
    ? `; left out: ${st.leftOut
        .slice(0, 5)
        .map((t) => `${t.alias} (${t.reason})`)
        .join(', ')}${st.leftOut.length > 5 ? ` and ${st.leftOut.length - 5} more` : ''}`
    : '';
  if (st.error) {
    return {
      type: 'PoolerReady',
      status: 'False',
      reason: 'AgentRejected',
      message: `the pooler agent refused config ${st.hash} from ${where}: ${st.error}; the last good config stays loaded${leftOut}`,
    };
  }
  if (!st.applied)
    return {
      type: 'PoolerReady',
      status: 'False',
      reason: 'Pending',
      message: `waiting for the pooler agent to load config ${st.hash} from ${where}${leftOut}`,
    };
  const admin = await loadPoolerAdmin(ctx, server);
  if (!admin.ok)
    return { type: 'PoolerReady', status: 'Unknown', reason: admin.reason, message: `config ${st.hash} is loaded, but ${admin.message}` };
  try {
    const dbs = await showDatabases(admin.value);
    seen.pooler = await poolerFeatures(admin.value);
    const pools = [...dbs.keys()].filter((k) => k !== 'pgbouncer').length;
    return {
      type: 'PoolerReady',
      status: 'True',
      reason: 'Applied',
      message: `PgBouncer at ${p.host}:${p.port} runs config ${st.hash} (${st.shards} shard(s)) with ${pools} tenant pool(s)${leftOut}${st.warning ? `; ${st.warning}` : ''}`,
    };
  } catch (err) {
    return {
      type: 'PoolerReady',
      status: 'False',
      reason: 'PoolerUnreachable',
      message: `cannot reach the pooler admin console at ${p.host}:${p.port}: ${describePgError(err)}`,
    };
  }
}

/** HbaApplied: whether the agent beside a self-hosted server loaded the current tenant rules. */
async function serverHbaCondition(ctx: OperatorContext, server: PostgresServer): Promise<ConditionInput> {
  if (server.spec.hba?.mode !== 'Agent') {
    return {
      type: 'HbaApplied',
      status: 'True',
      reason: 'NotManaged',
      message: "the server's pg_hba.conf is not managed (hba.mode None): IpWhitelists are enforced only for pooled connections",
    };
  }
  const st = await ensureServerHba(ctx, server);
  const where = `Secret ${st.ref.namespace}/${st.ref.name}`;
  if (st.error)
    return {
      type: 'HbaApplied',
      status: 'False',
      reason: 'AgentRejected',
      message: `the agent beside PostgreSQL refused rules ${st.hash} from ${where}: ${st.error}; the last good pg_hba.conf stays`,
    };
  if (!st.applied)
    return {
      type: 'HbaApplied',
      status: 'False',
      reason: 'Pending',
      message: `waiting for the agent beside PostgreSQL to load rules ${st.hash} from ${where}`,
    };
  return { type: 'HbaApplied', status: 'True', reason: 'Applied', message: `pg_hba.conf holds tenant rules ${st.hash}` };
}

export async function reconcilePostgresServer(ctx: OperatorContext, key: string, log: Logger): Promise<ReconcileResult> {
  const { name } = splitKey(key);
  const api = customResourceApi(ctx.clients, POSTGRES_SERVER);
  const raw = ctx.servers.get(name);
  if (!raw) {
    ctx.pools.drop(name);
    return {};
  }
  const parsed = postgresServer.safeParse(raw);
  const meta = {
    name,
    resourceVersion: raw.metadata?.resourceVersion ?? '',
    generation: raw.metadata?.generation,
    finalizers: raw.metadata?.finalizers,
    deletionTimestamp: raw.metadata?.deletionTimestamp,
    uid: raw.metadata?.uid ?? '',
  };
  const tenants = ctx.tenants.byIndex(BY_SERVER, name).filter((t) => t.status?.serverName === name);
  const ref = { apiVersion: API_VERSION, kind: 'PostgresServer', name, uid: meta.uid };

  const save = async (conds: ConditionInput[], extra: Partial<PostgresServerStatus>, terminal: boolean) => {
    const t = await commitStatus(api, meta, raw.status, { fields: { ...extra, tenantCount: tenants.length }, observed: conds, terminal });
    // Every change of readiness, of the pooler and of the server's HBA is in the audit trail.
    for (const type of ['Ready', 'PoolerReady', 'HbaApplied']) {
      const after = transitioned(t, type);
      if (!after) continue;
      if (after.status === 'True') ctx.events.normal(ref, type === 'Ready' ? 'Ready' : after.reason, after.message);
      else if (after.reason !== 'Pending') ctx.events.warning(ref, after.reason, after.message);
    }
  };

  if (meta.deletionTimestamp) {
    if (tenants.length > 0) {
      const names = tenants
        .slice(0, 5)
        .map((t) => `${t.metadata?.namespace}/${t.metadata?.name}`)
        .join(', ');
      await save(
        [
          {
            type: 'Ready',
            status: 'False',
            reason: 'DeletionBlocked',
            message: `${tenants.length} TenantDatabase(s) still use this server (${names}); delete them first`,
          },
        ],
        {},
        false,
      );
      return { requeueAfterMs: 10_000 };
    }
    ctx.pools.drop(name);
    await removeFinalizer(api, meta, FINALIZER);
    return {};
  }
  if (!parsed.success) {
    const message = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    await save([{ type: 'Ready', status: 'False', reason: 'InvalidSpec', message }], {}, true);
    return {};
  }
  await addFinalizer(api, meta, FINALIZER);
  const server = parsed.data;
  const where = `${server.spec.host}:${server.spec.port}`;
  const creds = await loadAdminCredentials(ctx.clients, server, ctx.config.namespace);
  const ca = creds.ok ? await loadCa(ctx.clients, server, ctx.config.namespace) : undefined;
  // Configs are rendered only from what the server's catalog shows; while it cannot be read, the
  // last written configs stay as they are.
  const unrendered = (why: string): ConditionInput[] => [
    { type: 'PoolerReady', status: 'Unknown', reason: 'ServerNotConnected', message: `the pooler config is not rendered while ${why}` },
    { type: 'HbaApplied', status: 'Unknown', reason: 'ServerNotConnected', message: `the HBA rules are not rendered while ${why}` },
  ];
  const problem = !creds.ok ? creds : ca && !ca.ok ? ca : undefined;
  if (problem && !problem.ok) {
    const c: ConditionInput = { type: 'Connected', status: 'False', reason: problem.reason, message: problem.message };
    await save([c, ...unrendered('the server cannot be reached'), { ...c, type: 'Ready' }], {}, false);
    return { requeueAfterMs: 30_000 };
  }
  if (!creds.ok || !ca || !ca.ok) return {};
  const pool = ctx.pools.get(name, endpointOf(server, ca.value), creds.value);
  let version: string;
  let rights: sql.AdminRights;
  let publicCreate: string[];
  let slots: sql.ConnectionSlots;
  let limits: Map<string, number>;
  try {
    ({ version, rights, publicCreate, slots } = await sql.serverFacts(pool));
    const at = Date.now();
    // Sizes cost a walk of every file of every tenant database: they are read once per half resync
    // period, not on each of the many reconciles a burst of new tenants brings; in between, the
    // last sizes known are carried over.
    const last = ctx.catalog.get(name);
    const withSizes = !last || at - last.sizedAt >= ctx.config.resyncMs / 2;
    const { managed, snapshot } = await sql.serverCatalog(pool, withSizes);
    // Several PostgresServers may name one PostgreSQL: markers that name a server count only for it.
    ctx.markers.set(name, sql.markersByUid(managed.filter((o) => (sql.markerServer(o.comment) ?? name) === name)));
    const inDatabase: InDatabase = (database, fn) => ctx.pools.withDatabase(endpointOf(server, ca.value), creds.value, database, fn);
    if (!withSizes && last) {
      for (const [db, row] of snapshot.databases) row.sizeBytes = last.databases.get(db)?.sizeBytes;
      snapshot.templateSizeBytes = last.templateSizeBytes;
    }
    const shared = server.spec.sharedDatabase;
    // The schema tenants' schemas, owners and sizes, in one session inside the shared database. A
    // failure there keeps what the last snapshot showed: the pooler config is rendered from it.
    if (shared && (await sql.findDatabase(pool, shared))?.allowConnections) {
      try {
        snapshot.schemas = await inDatabase(shared, async (db) => {
          const owners = await sql.markedSchemas(db);
          const sizes = withSizes ? await sql.schemaSizes(db) : undefined;
          const size = (schema: string) => (sizes ? sizes.get(schema) : last?.schemas?.get(schema)?.sizeBytes);
          return new Map([...owners].map(([schema, owner]) => [schema, { owner, sizeBytes: size(schema) }]));
        });
      } catch (err) {
        snapshot.schemas = last?.schemas;
        log.warn({ database: shared, err: describePgError(err) }, 'Cannot read the schemas of the shared database');
      }
    }
    ctx.catalog.set(name, { ...snapshot, at, sizedAt: withSizes ? at : (last?.sizedAt ?? at) });
    const everyones = new Set([creds.value.database, ...(shared ? [shared] : [])]);
    await dropTombstones(ctx, pool, inDatabase, managed, everyones, log);
    // The tenant roles that may log in, and their limits: in the catalog read above.
    limits = new Map([...snapshot.roles].filter(([, r]) => r.canLogin).map(([role, r]) => [role, r.connLimit]));
  } catch (err) {
    const f = connectionFailure(err, where);
    const c: ConditionInput = { type: 'Connected', status: 'False', ...f };
    await save([c, ...unrendered('the server cannot be reached'), { ...c, type: 'Ready' }], {}, false);
    log.warn({ reason: f.reason }, f.message);
    return { requeueAfterMs: 15_000 };
  }
  const seen: { pooler?: PoolerFeatures } = {};
  const pooler = await serverPoolerCondition(ctx, server, seen);
  const hba = await serverHbaCondition(ctx, server);
  // Waiting for an agent is a matter of a second; an unreachable pooler is looked at less often.
  const soon = pooler.reason === 'Pending' || hba.reason === 'Pending';
  const later = pooler.status === 'False' || hba.status === 'False';
  const connected: ConditionInput = {
    type: 'Connected',
    status: 'True',
    reason: 'Connected',
    message: `connected to ${where} as ${creds.value.username}`,
  };
  const missing = [
    !rights.createdb && !rights.superuser ? 'CREATEDB' : '',
    !rights.createrole && !rights.superuser ? 'CREATEROLE' : '',
  ].filter(Boolean);
  const ready: ConditionInput = missing.length
    ? {
        type: 'Ready',
        status: 'False',
        reason: 'InsufficientPrivileges',
        message: `admin role ${creds.value.username} lacks ${missing.join(' and ')}`,
      }
    : { type: 'Ready', status: 'True', reason: 'Connected', message: `PostgreSQL ${version} at ${where} is ready for tenants` };
  const adminDb = creds.value.database;
  // Operator sessions pin search_path, so such objects cannot reach them; but any role, tenants
  // included, can leave objects there, which the platform will want to know.
  const publicSchemas: ConditionInput = publicCreate.length
    ? {
        type: 'PublicSchemasLocked',
        status: 'False',
        reason: 'PublicCanCreate',
        message: `every role, tenants included, may create objects in schema(s) ${publicCreate.join(', ')} of database ${adminDb} (the default before PostgreSQL 15); operator sessions are not affected, but run REVOKE CREATE ON SCHEMA ${publicCreate.join(', ')} FROM PUBLIC there`,
      }
    : {
        type: 'PublicSchemasLocked',
        status: 'True',
        reason: 'NoPublicCreate',
        message: `no schema of database ${adminDb} lets PUBLIC create objects`,
      };
  const reserve = adminReserveCondition(slots, [...limits.values()], ctx.pools.maxSessionsPerServer, creds.value.username);
  await save([connected, pooler, hba, publicSchemas, reserve, ready], { version, pooler: seen.pooler }, true);
  return { poll: soon, requeueAfterMs: later ? Math.min(15_000, ctx.config.resyncMs) : ctx.config.resyncMs };
}

/** Roles of deleted tenants that could not be dropped then: a few per re-check, once free. */
async function dropTombstones(
  ctx: OperatorContext,
  pool: pg.Pool,
  inDatabase: InDatabase,
  managed: sql.ManagedObject[],
  everyones: ReadonlySet<string>,
  log: Logger,
): Promise<void> {
  for (const o of managed.filter((x) => x.kind === 'role' && x.comment.endsWith(sql.TOMBSTONE)).slice(0, 10)) {
    try {
      await clearRoleDependencies(pool, inDatabase, o.name, everyones);
      await sql.dropRole(pool, o.name);
      log.info({ role: o.name }, 'Dropped the role of a deleted tenant');
    } catch (err) {
      log.debug({ role: o.name, err: describePgError(err) }, 'The role of a deleted tenant still cannot be dropped');
    }
  }
}
