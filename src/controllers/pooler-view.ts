/**
 * What the TenantDatabase and IpWhitelist controllers may know of a server's pooler and HBA configs.
 *
 * The PostgresServer controller owns those configs: postgresserver/pooler-plan.ts decides what they
 * hold and postgresserver/pooler-step.ts writes them. The other controllers only read, from the
 * informer caches (has the agent loaded this tenant's rules?) and from the pooler's admin Secret (to
 * ask PgBouncer what it serves, in src/pg/pgbouncer-console.ts). This module is their one door into
 * postgresserver/pooler-*: everything they use is exported here, and nothing here writes a config
 * Secret, so a tenant's reconcile cannot change a server's config behind the server's back. (The
 * one exception to "read-only", forgetTenant, only drops a deleted tenant's cached verifier.)
 */
import type { PostgresServer } from '../api/postgresserver.js';
import { httpStatus } from '../kube/client.js';
import { secretValue } from '../kube/secrets.js';
import { showDatabases, type PoolEntry, type PoolerAdmin } from '../pg/pgbouncer-console.js';
import { AGENT_APPLIED_ANNOTATION, type AgentReport } from '../pooler/contract.js';
import { nameProblem } from '../pooler/names.js';
import { renderServerHba, renderTenantHba } from '../pooler/render.js';
import { outsideOperatorNamespace, type OperatorContext, type Resolved } from './context.js';
import { cachedConfigReport, poolerConfigRef, serverHbaRef } from './postgresserver/config-secrets.js';
import { SERVER_HBA_BUDGET, serverHbaPlan, whitelistCidrs } from './postgresserver/pooler-plan.js';
import { loginRolesOf } from './tenantdatabase/credentials.js';
import { cachedPoolerReport, cachedShardFiles } from './postgresserver/pooler-shards.js';

export {
  GROUP_VERIFIER_ANNOTATION,
  MAX_CIDRS_PER_TENANT,
  cachedVerifier,
  clientLimitOf,
  forgetTenant,
  groupReach,
  groupRoleOf,
  groupServerName,
  planServerHba,
  poolerTenants,
  serverHbaCandidates,
  serverHbaPlan,
  tenantWhitelists,
  verifierFor,
  whitelistCidrs,
  type GroupReach,
  type ServerHbaCandidate,
} from './postgresserver/pooler-plan.js';
export { cachedShardFiles } from './postgresserver/pooler-shards.js';
export { poolerConfigRef } from './postgresserver/config-secrets.js';

/** The agent's admin_users entry unless told otherwise (tenantdb agent --admin-user). */
export const DEFAULT_POOLER_ADMIN_USER = 'tenantdb_pooler';

/** The pooler's admin console credentials, from spec.pooler.adminSecretRef. */
export async function loadPoolerAdmin(ctx: OperatorContext, server: PostgresServer): Promise<Resolved<PoolerAdmin>> {
  const p = server.spec.pooler;
  if (!p) return { ok: false, reason: 'NoPooler', message: 'the server has no pooler' };
  if (!p.adminSecretRef)
    return { ok: false, reason: 'NoPoolerAdmin', message: 'spec.pooler.adminSecretRef is not set, so the pooler cannot be checked' };
  const ref = p.adminSecretRef;
  const outside = outsideOperatorNamespace(ref, 'pooler.adminSecretRef', ctx.config.namespace);
  if (outside) return outside;
  try {
    const s = await ctx.clients.sharedSecret(ref.namespace, ref.name);
    const user = secretValue(s, 'username');
    const password = secretValue(s, 'password');
    if (!user || !password)
      return {
        ok: false,
        reason: 'PoolerAdminSecretInvalid',
        message: `Secret ${ref.namespace}/${ref.name} must have keys username and password`,
      };
    return { ok: true, value: { host: p.host, port: p.port, user, password } };
  } catch (err) {
    if (httpStatus(err) === 404)
      return { ok: false, reason: 'PoolerAdminSecretNotFound', message: `Secret ${ref.namespace}/${ref.name} does not exist` };
    throw err;
  }
}

/** The pooler config state without writing anything (for tenants and allow-lists). */
export function poolerConfigApplied(ctx: OperatorContext, server: PostgresServer): AgentReport {
  return cachedPoolerReport(ctx, poolerConfigRef(server, ctx.config.namespace));
}

/**
 * PgBouncer's pool list, read once for all the tenants of a server that check it within a moment
 * of each other and against the same loaded config (the agent's applied hash): a burst of tenants
 * waiting for one reload costs one console session, not one each.
 */
const poolLists = new Map<string, { at: number; applied: string | undefined; entries: Promise<Map<string, PoolEntry>> }>();
const POOL_LIST_MS = 1000;

export function sharedPoolList(ctx: OperatorContext, server: PostgresServer, admin: PoolerAdmin): Promise<Map<string, PoolEntry>> {
  const ref = poolerConfigRef(server, ctx.config.namespace);
  const applied = ctx.secrets.get(ref.name, ref.namespace)?.metadata?.annotations?.[AGENT_APPLIED_ANNOTATION];
  const key = `${server.metadata.name}/${admin.host}:${admin.port}`;
  const now = Date.now();
  const hit = poolLists.get(key);
  if (hit && hit.applied === applied && now - hit.at < POOL_LIST_MS) return hit.entries;
  const entries = showDatabases(admin);
  poolLists.set(key, { at: now, applied, entries });
  entries.catch(() => poolLists.delete(key));
  return entries;
}

export type AccessState =
  | { kind: 'open' }
  | { kind: 'unenforced'; message: string }
  | { kind: 'pending'; message: string }
  | { kind: 'rejected'; message: string }
  | { kind: 'enforced'; rules: number; message: string };

/**
 * Whether a tenant's allow-list is live: the applied pooler config holds exactly this tenant's
 * rules. Shared by the TenantDatabase's AccessRulesApplied and the IpWhitelist's Applied.
 */
/** Where a tenant's allow-list rules go: its pooler alias, and its databases in the server's pg_hba.conf. */
export interface AccessTarget {
  alias: string;
  /** Its database and shadow database, or the shared database of a schema tenant. */
  databases: readonly string[];
  role: string;
  /** Whether the database is shared by tenants (isolation Schema): rules then name the role only. */
  shared: boolean;
}

/** The target of a tenant's rules from its resolved names. */
export function accessTarget(n: {
  isolation: 'Database' | 'Schema';
  database: string;
  shadow: string | undefined;
  role: string;
  alias: string;
}): AccessTarget {
  return {
    alias: n.alias,
    databases: n.isolation === 'Schema' ? [n.database] : [n.database, ...(n.shadow ? [n.shadow] : [])],
    role: n.role,
    shared: n.isolation === 'Schema',
  };
}

export function accessState(
  ctx: OperatorContext,
  server: PostgresServer,
  namespace: string,
  tenant: string,
  target: AccessTarget,
  poolingEnabled: boolean,
): AccessState {
  const { alias, role } = target;
  const cidrs = whitelistCidrs(ctx, namespace, tenant);
  if (cidrs === undefined) return { kind: 'open' };
  const agentHba = server.spec.hba?.mode === 'Agent';
  const pooled = !!server.spec.pooler && poolingEnabled;
  const directNote = agentHba
    ? `enforced on direct connections by the server's pg_hba.conf`
    : `direct connections to ${server.spec.host}:${server.spec.port} are not restricted (the server's pg_hba.conf is not managed)`;
  if (!pooled && !agentHba) {
    return {
      kind: 'unenforced',
      message: `${server.spec.pooler ? 'pooling is disabled for this tenant' : `PostgresServer ${server.metadata.name} has no pooler`} and ${directNote}`,
    };
  }
  const rules = cidrs.length;
  // Such a tenant is left out of the pooler's and the server's files (its rules would be syntax).
  const badName = nameProblem('alias', alias) ?? nameProblem('role', role);
  if (badName) return { kind: 'rejected', message: `the tenant's rules cannot be written: ${badName}` };
  // With overlapping rotation the rules name its second login too: beside the role, or alone while
  // it is the one in use (the pooler's lines come in the order of its logins: the one in use first).
  const uid = ctx.tenants.get(tenant, namespace)?.metadata?.uid;
  const twin = loginRolesOf(role, uid ? ctx.markers.get(server.metadata.name)?.get(uid)?.roles : undefined).twin;
  if (pooled) {
    const shard = cachedShardFiles(ctx, poolerConfigRef(server, ctx.config.namespace), alias);
    const always = server.spec.alwaysAllowedCidrs ?? [];
    const held = [[role], [twin], [role, twin], [twin, role]].some(([first = role, ...rest]) => {
      const expected = renderTenantHba(
        { alias, role: first, extraLogins: rest.map((r) => ({ role: r, verifier: '' })), allowedCidrs: cidrs },
        always,
      );
      return !!shard && `\n${shard['hba.conf']}`.includes(`\n${expected}`);
    });
    if (!held) return { kind: 'pending', message: 'the pooler config does not hold the current rules yet' };
    const st = poolerConfigApplied(ctx, server);
    if (st.error) return { kind: 'rejected', message: `the pooler agent refused the config: ${st.error}` };
    if (!st.applied) return { kind: 'pending', message: 'waiting for the pooler agent to load the rules' };
  }
  if (agentHba && serverHbaPlan(ctx, server).closed.has(role)) {
    return {
      kind: 'rejected',
      message: `the allow-lists of this tenant do not fit what is left of the server's pg_hba.conf budget (${SERVER_HBA_BUDGET / 1024} KiB, older tenants first), so direct logins are refused except from alwaysAllowedCidrs`,
    };
  }
  if (agentHba) {
    const d = directAccessState(ctx, server, target, twin, cidrs);
    if (d === 'pending') return { kind: 'pending', message: 'waiting for the agent beside PostgreSQL to load the rules into pg_hba.conf' };
    if (typeof d === 'object') return { kind: 'rejected', message: `the agent beside PostgreSQL refused the rules: ${d.error}` };
  }
  const where = pooled ? `enforced by PgBouncer for pooled connections; ${directNote}` : directNote;
  return { kind: 'enforced', rules, message: `${rules} allowed CIDR(s) ${where}` };
}

/** Whether the server's pg_hba.conf, as its agent reported it, holds these rules. */
function directAccessState(
  ctx: OperatorContext,
  server: PostgresServer,
  target: AccessTarget,
  twin: string,
  cidrs: string[],
): 'enforced' | 'pending' | { error: string } {
  const st = cachedConfigReport(ctx, serverHbaRef(server, ctx.config.namespace));
  const { databases, role, shared } = target;
  // Its second login (overlapping rotation) is named beside the role once the server's catalog shows it.
  const held = [[], [twin]].some((otherRoles) =>
    st.text.includes(renderServerHba([{ databases, role, otherRoles, shared, allowedCidrs: cidrs }], server.spec.alwaysAllowedCidrs ?? [])),
  );
  if (!held) return 'pending';
  if (st.error) return { error: st.error };
  return st.applied ? 'enforced' : 'pending';
}
