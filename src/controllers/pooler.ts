/**
 * What both controllers need of the pooler: where its config Secret lives, the rendered config of a
 * server, the admin console, and whether the agent has loaded the current config.
 */
import type * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { postgresServer, type PostgresServer } from '../api/postgresserver.js';
import { namespaceAllowed } from './tenantdatabase/resolve.js';
import { adminQuery } from '../agent/pooler-agent.js';
import { httpStatus } from '../kube/client.js';
import { deterministicSalt, isAcceptablePassword, scramVerifier } from '../pg/scram.js';
import { nameProblem } from '../pooler/names.js';
import { renderServerHba, renderTenantHba, type PoolerTenant, type ServerHbaTenant } from '../pooler/render.js';
import { HBA_KEY } from '../agent/postgres-agent.js';
import { configHash } from '../pooler/status.js';
import { isCidr } from '../api/common.js';
import { deriveIdentifier, shadowDatabaseName } from '../api/naming.js';
import { agentReport, decodeData, writeOwnedConfig, type PoolerConfigState } from './config-secrets.js';
import { outsideOperatorNamespace, type OperatorContext, type Resolved } from './context.js';
import { cachedPoolerReport, cachedShardFiles, writePoolerShards, type ShardedConfigState } from './pooler-shards.js';

export { SERVER_LABEL, type PoolerConfigState } from './config-secrets.js';

/** The agent's admin_users entry unless told otherwise (tenantdb agent --admin-user). */
export const DEFAULT_POOLER_ADMIN_USER = 'tenantdb_pooler';

export interface PoolerAdmin {
  host: string;
  port: number;
  user: string;
  password: string;
}

export function poolerConfigRef(server: PostgresServer, operatorNamespace: string): { namespace: string; name: string } {
  return server.spec.pooler?.configSecretRef ?? { namespace: operatorNamespace, name: `${server.metadata.name}-pooler` };
}

export async function loadPoolerAdmin(ctx: OperatorContext, server: PostgresServer): Promise<Resolved<PoolerAdmin>> {
  const p = server.spec.pooler;
  if (!p) return { ok: false, reason: 'NoPooler', message: 'the server has no pooler' };
  if (!p.adminSecretRef)
    return { ok: false, reason: 'NoPoolerAdmin', message: 'spec.pooler.adminSecretRef is not set, so the pooler cannot be checked' };
  const ref = p.adminSecretRef;
  const outside = outsideOperatorNamespace(ref, 'pooler.adminSecretRef', ctx.config.namespace);
  if (outside) return outside;
  try {
    const s = await ctx.clients.core.readNamespacedSecret({ name: ref.name, namespace: ref.namespace });
    const get = (k: string) => (s.data?.[k] ? Buffer.from(s.data[k], 'base64').toString('utf8') : undefined);
    const user = get('username');
    const password = get('password');
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

interface TenantView {
  metadata?: { name?: string; namespace?: string; uid?: string; deletionTimestamp?: unknown; creationTimestamp?: unknown };
  spec?: {
    serverRef?: { name?: string };
    databaseName?: string;
    roleName?: string;
    secretName?: string;
    shadowDatabase?: boolean;
    pooling?: { enabled?: boolean; poolMode?: PoolerTenant['poolMode']; poolSize?: number; maxDbConnections?: number };
  };
}

/**
 * A tenant as the configs of one server may name it: its names come from its spec, and only when
 * the server's catalog shows that exactly these objects carry this tenant's marker. Status is never
 * read: it is output, and whoever may write it must not be able to put entries into a config.
 */
interface VerifiedTenant {
  namespace: string;
  name: string;
  uid: string;
  database: string;
  role: string;
  shadow: string | undefined;
  view: TenantView;
}

function verifiedTenants(ctx: OperatorContext, serverName: string): VerifiedTenant[] {
  const marks = ctx.markers.get(serverName);
  if (!marks) return [];
  const server = postgresServer.safeParse(ctx.servers.get(serverName));
  // Markers prove objects on the PostgreSQL behind this server, which another PostgresServer may
  // name too: a tenant counts here only if its spec also names this server (or it is the default).
  const defaults = ctx.servers.list().filter((x) => (x as { spec?: { default?: boolean } }).spec?.default === true);
  const defaultName = defaults.length === 1 ? defaults[0]?.metadata?.name : undefined;
  const out: VerifiedTenant[] = [];
  for (const raw of ctx.tenants.list() as TenantView[]) {
    const m = raw.metadata;
    if (!m?.namespace || !m.name || !m.uid || m.deletionTimestamp) continue;
    const mine = marks.get(m.uid);
    if (!mine) continue;
    if ((raw.spec?.serverRef?.name ?? defaultName) !== serverName) continue;
    // A namespace the server no longer admits keeps no pool and no rules there.
    if (server.success && !namespaceAllowed(ctx, server.data, m.namespace).ok) continue;
    const derived = deriveIdentifier(m.namespace, m.name);
    const database = raw.spec?.databaseName ?? derived;
    const role = raw.spec?.roleName ?? derived;
    if (!mine.roles.has(role) || !mine.databases.has(database)) continue;
    const shadow = raw.spec?.shadowDatabase && mine.databases.has(shadowDatabaseName(database)) ? shadowDatabaseName(database) : undefined;
    out.push({ namespace: m.namespace, name: m.name, uid: m.uid, database, role, shadow, view: raw });
  }
  return out;
}

/** The tenant's password, from its Secret only when that Secret is its own (controller owner reference). */
function tenantPassword(ctx: OperatorContext, t: VerifiedTenant): string | undefined {
  const secret = ctx.secrets.get(t.view.spec?.secretName ?? `${t.name}-db`, t.namespace);
  if (!secret?.metadata?.ownerReferences?.some((r) => r.controller && r.uid === t.uid)) return undefined;
  const pw = secret.data?.password ? Buffer.from(secret.data.password, 'base64').toString('utf8') : undefined;
  return pw && isAcceptablePassword(pw) ? pw : undefined;
}

export function verifierFor(uid: string, role: string, password: string): string {
  return scramVerifier(password, deterministicSalt(`${uid}/${role}`, password));
}

/**
 * A verifier costs 4096 PBKDF2 rounds; a server's render asks for every tenant's, so each is kept
 * (one per tenant uid, replaced when role or password change). Verifiers are no more secret than
 * the Secrets this process already reads.
 */
const verifiers = new Map<string, { key: string; verifier: string }>();
/** Drops what is kept for a tenant that is going away. */
export function forgetTenant(uid: string): void {
  verifiers.delete(uid);
}

function cachedVerifier(uid: string, role: string, password: string): string {
  const key = createHash('sha256').update(`${role}\u0000${password}`).digest('base64');
  const hit = verifiers.get(uid);
  if (hit?.key === key) return hit.verifier;
  const verifier = verifierFor(uid, role, password);
  verifiers.set(uid, { key, verifier });
  return verifier;
}

/**
 * The most CIDRs the IpWhitelists of one tenant may add up to. It bounds what one tenant brings to
 * its server's pooler config, whatever it applies; lists past it are refused in their own status.
 */
export const MAX_CIDRS_PER_TENANT = 256;

type WhitelistView = k8s.KubernetesObject & { spec?: { tenantDatabaseRef?: { name?: string }; entries?: { cidr?: string }[] } };

const cidrsOf = (w: WhitelistView) => (w.spec?.entries ?? []).map((e) => e.cidr ?? '').filter(isCidr);

/**
 * The IpWhitelists naming a tenant, oldest first, split into those within the tenant's budget and
 * those past it. Refusing a list only ever narrows who may log in: lists add up.
 */
export function tenantWhitelists(
  ctx: OperatorContext,
  namespace: string,
  tenant: string,
): { admitted: WhitelistView[]; refused: WhitelistView[] } {
  const lists = (ctx.whitelists.list() as WhitelistView[])
    .filter((w) => w.metadata?.namespace === namespace && !w.metadata?.deletionTimestamp && w.spec?.tenantDatabaseRef?.name === tenant)
    .sort((a, b) => {
      const ta = String(a.metadata?.creationTimestamp ?? '');
      const tb = String(b.metadata?.creationTimestamp ?? '');
      return ta < tb ? -1 : ta > tb ? 1 : (a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : 1;
    });
  const admitted: WhitelistView[] = [];
  const refused: WhitelistView[] = [];
  let used = 0;
  for (const w of lists) {
    const n = cidrsOf(w).length;
    if (used + n > MAX_CIDRS_PER_TENANT) refused.push(w);
    else {
      admitted.push(w);
      used += n;
    }
  }
  return { admitted, refused };
}

/** CIDRs of the admitted IpWhitelists naming a tenant; undefined when no list names it. */
export function whitelistCidrs(ctx: OperatorContext, namespace: string, tenant: string): string[] | undefined {
  const { admitted, refused } = tenantWhitelists(ctx, namespace, tenant);
  if (admitted.length === 0 && refused.length === 0) return undefined;
  return admitted.flatMap(cidrsOf);
}

/** The tenants a server's pooler serves: verified by their markers, pooling on, not being deleted. */
export function poolerTenants(ctx: OperatorContext, serverName: string): PoolerTenant[] {
  const out: PoolerTenant[] = [];
  for (const t of verifiedTenants(ctx, serverName)) {
    const pooling = t.view.spec?.pooling;
    if (pooling?.enabled === false) continue;
    const pw = tenantPassword(ctx, t);
    if (!pw) continue;
    out.push({
      alias: t.database,
      database: t.database,
      role: t.role,
      verifier: cachedVerifier(t.uid, t.role, pw),
      poolMode: pooling?.poolMode ?? 'transaction',
      poolSize: pooling?.poolSize ?? 10,
      maxDbConnections: pooling?.maxDbConnections ?? 0,
      allowedCidrs: whitelistCidrs(ctx, t.namespace, t.name),
    });
  }
  return out;
}

/** Renders the server's pooler config and writes its shards and index where the bytes differ. */
export async function ensurePoolerConfig(ctx: OperatorContext, server: PostgresServer): Promise<ShardedConfigState> {
  const input = {
    serverHost: server.spec.host,
    serverPort: server.spec.port,
    tenants: poolerTenants(ctx, server.metadata.name),
    alwaysAllowedCidrs: server.spec.alwaysAllowedCidrs ?? [],
  };
  const admin = await loadPoolerAdmin(ctx, server);
  const reserved = new Set([DEFAULT_POOLER_ADMIN_USER, ...(admin.ok ? [admin.value.user] : [])]);
  return writePoolerShards(ctx, server, poolerConfigRef(server, ctx.config.namespace), input, ctx.config.poolerShardBytes, reserved);
}

/** The pooler config state without writing anything (for tenants and allow-lists). */
export function poolerConfigApplied(ctx: OperatorContext, server: PostgresServer): { applied: boolean; error?: string | undefined } {
  return cachedPoolerReport(ctx, poolerConfigRef(server, ctx.config.namespace));
}

export interface PoolEntry {
  poolMode: string;
  poolSize: number;
  database: string;
}

/** SHOW DATABASES on the admin console, parsed by column name (columns differ between versions). */
export async function showDatabases(admin: PoolerAdmin): Promise<Map<string, PoolEntry>> {
  const rows = await adminQuery(admin, 'SHOW DATABASES');
  const out = new Map<string, PoolEntry>();
  for (const r of rows) {
    out.set(String(r.name), {
      poolMode: String(r.pool_mode ?? ''),
      poolSize: Number(r.pool_size ?? 0),
      database: String(r.database ?? ''),
    });
  }
  return out;
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
export function accessState(
  ctx: OperatorContext,
  server: PostgresServer,
  namespace: string,
  tenant: string,
  alias: string,
  role: string,
  poolingEnabled: boolean,
  shadow = false,
): AccessState {
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
  if (pooled) {
    const shard = cachedShardFiles(ctx, poolerConfigRef(server, ctx.config.namespace), alias);
    const expected = renderTenantHba({ alias, role, allowedCidrs: cidrs }, server.spec.alwaysAllowedCidrs ?? []);
    if (!shard || !`\n${shard['hba.conf']}`.includes(`\n${expected}`))
      return { kind: 'pending', message: 'the pooler config does not hold the current rules yet' };
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
    const d = directAccessState(ctx, server, shadow ? [alias, `${alias}_shadow`] : [alias], role, cidrs);
    if (d === 'pending') return { kind: 'pending', message: 'waiting for the agent beside PostgreSQL to load the rules into pg_hba.conf' };
    if (typeof d === 'object') return { kind: 'rejected', message: `the agent beside PostgreSQL refused the rules: ${d.error}` };
  }
  const where = pooled ? `enforced by PgBouncer for pooled connections; ${directNote}` : directNote;
  return { kind: 'enforced', rules, message: `${rules} allowed CIDR(s) ${where}` };
}

export function serverHbaRef(server: PostgresServer, operatorNamespace: string): { namespace: string; name: string } {
  return server.spec.hba?.configSecretRef ?? { namespace: operatorNamespace, name: `${server.metadata.name}-hba` };
}

/**
 * Bytes of tenant rules one server's pg_hba.conf block may hold (it is one Secret, at most 1 MiB).
 * Whitelisted tenants are taken oldest first; one that no longer fits is closed instead (its
 * databases refuse direct logins except from alwaysAllowedCidrs), so newcomers piling up lists can
 * neither freeze the file for everyone nor open anything.
 */
export const SERVER_HBA_BUDGET = 768 * 1024;

/** client-node types creationTimestamp as a Date, but an informer's cache holds the JSON string. */
const stamp = (t: unknown): string => (t instanceof Date ? t.toISOString() : typeof t === 'string' ? t : '');

/** Whitelisted tenants of a server, as its pg_hba.conf tenant block needs them, and which were closed. */
export function serverHbaPlan(ctx: OperatorContext, server: PostgresServer): { tenants: ServerHbaTenant[]; closed: Set<string> } {
  const always = server.spec.alwaysAllowedCidrs ?? [];
  const tenants: ServerHbaTenant[] = [];
  const closed = new Set<string>();
  let used = 0;
  const listed = verifiedTenants(ctx, server.metadata.name).sort((a, b) => {
    const ta = stamp(a.view.metadata?.creationTimestamp);
    const tb = stamp(b.view.metadata?.creationTimestamp);
    return ta < tb ? -1 : ta > tb ? 1 : a.role < b.role ? -1 : 1;
  });
  for (const t of listed) {
    const cidrs = whitelistCidrs(ctx, t.namespace, t.name);
    if (cidrs === undefined) continue;
    // A tenant whose names would be syntax is left out rather than stopping every tenant's rules.
    if (nameProblem('role', t.role) || [t.database, t.shadow].some((d) => d !== undefined && nameProblem('database', d))) continue;
    const databases = t.shadow ? [t.database, t.shadow] : [t.database];
    let entry: ServerHbaTenant = { databases, role: t.role, allowedCidrs: cidrs };
    let size = renderServerHba([entry], always).length;
    if (used + size > SERVER_HBA_BUDGET) {
      entry = { databases, role: t.role, allowedCidrs: [] };
      size = renderServerHba([entry], always).length;
      closed.add(t.role);
    }
    used += size;
    tenants.push(entry);
  }
  return { tenants, closed };
}

export function serverHbaTenants(ctx: OperatorContext, serverName: string): ServerHbaTenant[] {
  const server = postgresServer.safeParse(ctx.servers.get(serverName));
  return server.success ? serverHbaPlan(ctx, server.data).tenants : [];
}

/** Writes the tenant block of a self-hosted server's pg_hba.conf for its agent; reports what the agent did. */
export async function ensureServerHba(ctx: OperatorContext, server: PostgresServer): Promise<PoolerConfigState> {
  const ref = serverHbaRef(server, ctx.config.namespace);
  const { tenants } = serverHbaPlan(ctx, server);
  const files = { [HBA_KEY]: renderServerHba(tenants, server.spec.alwaysAllowedCidrs ?? []) };
  return writeOwnedConfig(ctx, server, ref, files, 'server HBA rules');
}

/** What the agent reported for the files now in a config Secret, from the cache. */
function cachedAgentState(
  ctx: OperatorContext,
  ref: { namespace: string; name: string },
): { text: string; applied: boolean; error?: string | undefined } {
  const s = ctx.secrets.get(ref.name, ref.namespace);
  if (!s?.data) return { text: '', applied: false };
  const files = decodeData(s);
  return { text: Object.values(files).join('\n'), ...agentReport(s, configHash(files)) };
}

export function directAccessState(
  ctx: OperatorContext,
  server: PostgresServer,
  databases: string[],
  role: string,
  cidrs: string[],
): 'enforced' | 'pending' | { error: string } {
  const st = cachedAgentState(ctx, serverHbaRef(server, ctx.config.namespace));
  const expected = renderServerHba([{ databases, role, allowedCidrs: cidrs }], server.spec.alwaysAllowedCidrs ?? []);
  if (!st.text.includes(expected)) return 'pending';
  if (st.error) return { error: st.error };
  return st.applied ? 'enforced' : 'pending';
}
