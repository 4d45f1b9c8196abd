/**
 * Which tenants the configs of one server hold, and with what: the tenants its catalog verified,
 * their passwords as SCRAM verifiers, the IpWhitelists within each tenant's budget, and the
 * pg_hba.conf budget shared by a server's tenants. The decisions are pure functions of plain data
 * (tested in tables); the functions taking an OperatorContext only gather that data from the
 * informer caches. Nothing here writes or calls the API server.
 */
import type { CachedTenantDatabase } from '../../api/cached.js';
import { BY_NAMESPACE, defaultServerName, tenantsOfServer } from '../watches.js';
import type * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { isCidr } from '../../api/common.js';
import {
  MAX_SCHEMA,
  deriveIdentifier,
  groupAlias,
  groupRoleName,
  holderRoleName,
  schemaAlias,
  shadowDatabaseName,
} from '../../api/naming.js';
import { matchesSelector } from '../../api/common.js';
import { tenantGroup, type TenantGroup } from '../../api/tenantgroup.js';
import { intersectAllowLists } from '../../pooler/cidrs.js';
import { VERIFIER } from '../../pooler/validate.js';
import { parseCachedServer, type PostgresServer } from '../../api/postgresserver.js';
import { secretValue } from '../../kube/secrets.js';
import { deterministicSalt, isAcceptablePassword, scramVerifier } from '../../pg/scram.js';
import { nameProblem } from '../../pooler/names.js';
import { renderServerHba, type PoolerTenant, type ServerHbaTenant } from '../../pooler/render.js';
import type { OperatorContext } from '../context.js';
import { namespaceAllowed } from '../tenantdatabase/resolve.js';
import { activeLogin, extraLogins, loginRolesOf } from '../tenantdatabase/credentials.js';

/**
 * The most CIDRs the IpWhitelists of one tenant may add up to. It bounds what one tenant brings to
 * its server's pooler config, whatever it applies; lists past it are refused in their own status.
 */
export const MAX_CIDRS_PER_TENANT = 256;

/**
 * Bytes of tenant rules one server's pg_hba.conf block may hold (it is one Secret, at most 1 MiB).
 * Whitelisted tenants are taken oldest first; one that no longer fits is closed instead (its
 * databases refuse direct logins except from alwaysAllowedCidrs), so newcomers piling up lists can
 * neither freeze the file for everyone nor open anything.
 */
export const SERVER_HBA_BUDGET = 768 * 1024;

export type WhitelistView = k8s.KubernetesObject & { spec?: { tenantDatabaseRef?: { name?: string }; entries?: { cidr?: string }[] } };

const cidrsOf = (w: WhitelistView): string[] => (w.spec?.entries ?? []).map((e) => e.cidr ?? '').filter(isCidr);

/** client-node types creationTimestamp as a Date, but an informer's cache holds the JSON string. */
const stamp = (t: unknown): string => (t instanceof Date ? t.toISOString() : typeof t === 'string' ? t : '');

/**
 * The IpWhitelists of one tenant, oldest first, split into those within MAX_CIDRS_PER_TENANT and
 * those past it. Refusing a list only ever narrows who may log in: lists add up.
 */
export function admitWhitelists<W extends WhitelistView>(lists: readonly W[]): { admitted: W[]; refused: W[] } {
  const sorted = [...lists].sort((a, b) => {
    const ta = String(a.metadata?.creationTimestamp ?? '');
    const tb = String(b.metadata?.creationTimestamp ?? '');
    return ta < tb ? -1 : ta > tb ? 1 : (a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : 1;
  });
  const admitted: W[] = [];
  const refused: W[] = [];
  let used = 0;
  for (const w of sorted) {
    const n = cidrsOf(w).length;
    if (used + n > MAX_CIDRS_PER_TENANT) refused.push(w);
    else {
      admitted.push(w);
      used += n;
    }
  }
  return { admitted, refused };
}

/** A whitelisted tenant as the server's pg_hba.conf block may hold it. */
export interface ServerHbaCandidate {
  /** The tenant's namespace: the budget is shared fairly between namespaces. */
  namespace: string;
  role: string;
  /** Its other login role (overlapping rotation), when the server shows it as the tenant's. */
  otherRoles?: readonly string[] | undefined;
  /** Its database, and its shadow database if it has one (a schema tenant: the shared database). */
  databases: readonly string[];
  /** Whether its database is shared by tenants (isolation Schema). */
  shared?: boolean | undefined;
  allowedCidrs: readonly string[];
  /** creationTimestamp: older tenants keep their rules when the budget runs out. */
  created: string;
}

/**
 * The tenant block of a server's pg_hba.conf and the roles closed because their rules did not fit
 * the budget. A tenant whose names would be syntax is left out rather than stopping every tenant's
 * rules.
 *
 * The budget is shared between namespaces max-min fairly (water-filling): a namespace that needs
 * less than an equal share gets all it needs and leaves the rest to the others, so one namespace
 * piling up IpWhitelists closes only its own tenants, never those of a namespace within its share.
 * Within a namespace, older tenants keep their rules first. A closed tenant keeps a rule that only
 * the always-allowed CIDRs pass, which is reserved for every tenant before the shares are cut.
 */
export function planServerHba(
  candidates: readonly ServerHbaCandidate[],
  alwaysAllowedCidrs: readonly string[],
  budget = SERVER_HBA_BUDGET,
): { tenants: ServerHbaTenant[]; closed: Set<string> } {
  const byAge = (a: ServerHbaCandidate, b: ServerHbaCandidate) =>
    a.created < b.created ? -1 : a.created > b.created ? 1 : a.role < b.role ? -1 : a.role > b.role ? 1 : 0;
  const listed = candidates.filter((t) => !nameProblem('role', t.role) && !t.databases.some((d) => nameProblem('database', d))).sort(byAge);
  const sizeOf = (t: ServerHbaCandidate, cidrs: readonly string[]) =>
    renderServerHba(
      [{ databases: t.databases, role: t.role, otherRoles: t.otherRoles, shared: t.shared, allowedCidrs: cidrs }],
      alwaysAllowedCidrs,
    ).length;
  // What each tenant costs closed (reserved for all) and what opening it adds on top.
  const closedSize = new Map(listed.map((t) => [t, sizeOf(t, [])]));
  const extra = new Map(listed.map((t) => [t, sizeOf(t, t.allowedCidrs) - (closedSize.get(t) ?? 0)]));
  let left = budget - [...closedSize.values()].reduce((a, b) => a + b, 0);
  const namespaces = new Map<string, ServerHbaCandidate[]>();
  for (const t of listed) namespaces.set(t.namespace, [...(namespaces.get(t.namespace) ?? []), t]);
  const demand = (ts: readonly ServerHbaCandidate[]) => ts.reduce((a, t) => a + (extra.get(t) ?? 0), 0);
  const order = [...namespaces.entries()].sort(([na, a], [nb, b]) => demand(a) - demand(b) || (na < nb ? -1 : 1));
  const open = new Set<ServerHbaCandidate>();
  order.forEach(([, ts], i) => {
    let share = Math.max(0, Math.floor(left / (order.length - i)));
    const granted = share;
    for (const t of ts) {
      const cost = extra.get(t) ?? 0;
      if (cost > share) break; // oldest first: a newer tenant does not jump the queue of its namespace
      share -= cost;
      open.add(t);
    }
    left -= granted - share;
  });
  const closed = new Set<string>();
  const tenants = listed.map((t) => {
    if (open.has(t))
      return { databases: t.databases, role: t.role, otherRoles: t.otherRoles, shared: t.shared, allowedCidrs: t.allowedCidrs };
    closed.add(t.role);
    return { databases: t.databases, role: t.role, otherRoles: t.otherRoles, shared: t.shared, allowedCidrs: [] };
  });
  return { tenants, closed };
}

/** The verifier of a tenant's role: its salt derives from uid and role, so a re-render gives the same bytes. */
export function verifierFor(uid: string, role: string, password: string): string {
  return scramVerifier(password, deterministicSalt(`${uid}/${role}`, password));
}

// What follows gathers the plain data above from the informer caches.

type TenantView = CachedTenantDatabase;

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
  /** The PgBouncer alias: the database, or schema.<schema> for a schema tenant. */
  alias: string;
  /** Whether the database is the server's shared one (isolation Schema). */
  shared: boolean;
  /** The roles on the server that carry this tenant's marker. */
  owned: ReadonlySet<string>;
  view: TenantView;
}

export function verifiedTenants(ctx: OperatorContext, serverName: string): VerifiedTenant[] {
  const marks = ctx.markers.get(serverName);
  if (!marks) return [];
  const server = parseCachedServer(ctx.servers.get(serverName));
  // Markers prove objects on the PostgreSQL behind this server, which another PostgresServer may
  // name too: a tenant counts here only if its spec also names this server (or it is the default).
  const defaultName = defaultServerName(ctx);
  const out: VerifiedTenant[] = [];
  for (const raw of tenantsOfServer(ctx, serverName)) {
    const m = raw.metadata;
    if (!m?.namespace || !m.name || !m.uid || m.deletionTimestamp) continue;
    const mine = marks.get(m.uid);
    if (!mine) continue;
    if ((raw.spec?.serverRef?.name ?? defaultName) !== serverName) continue;
    // A namespace the server no longer admits keeps no pool and no rules there.
    if (server.success && !namespaceAllowed(ctx, server.data, m.namespace).ok) continue;
    const derived = deriveIdentifier(m.namespace, m.name);
    const role = raw.spec?.roleName ?? derived;
    if (raw.spec?.isolation === 'Schema') {
      // The role's marker proves the tenant, and the catalog must show the schema owned by that
      // role: only then is the alias its own (a spec naming another tenant's schema gets nothing).
      const shared = server.success ? server.data.spec.sharedDatabase : undefined;
      const schema = raw.spec.schemaName ?? deriveIdentifier(m.namespace, m.name, MAX_SCHEMA);
      // (A read-only tenant's schema is held by its holder role, marked as the tenant's too.)
      const schemaOwner = ctx.catalog.get(serverName)?.schemas?.get(schema)?.owner;
      const holder = holderRoleName(role);
      if (!shared || !mine.roles.has(role) || !(schemaOwner === role || (schemaOwner === holder && mine.roles.has(holder)))) continue;
      const alias = schemaAlias(schema);
      out.push({
        namespace: m.namespace,
        name: m.name,
        uid: m.uid,
        database: shared,
        role,
        shadow: undefined,
        alias,
        shared: true,
        owned: mine.roles,
        view: raw,
      });
      continue;
    }
    const database = raw.spec?.databaseName ?? derived;
    if (!mine.roles.has(role) || !mine.databases.has(database)) continue;
    const shadow = raw.spec?.shadowDatabase && mine.databases.has(shadowDatabaseName(database)) ? shadowDatabaseName(database) : undefined;
    out.push({
      namespace: m.namespace,
      name: m.name,
      uid: m.uid,
      database,
      role,
      shadow,
      alias: database,
      shared: false,
      owned: mine.roles,
      view: raw,
    });
  }
  return out;
}

/**
 * The tenant's logins, from its Secret only when that Secret is its own (controller owner
 * reference): the one in use with its password, and the previous and next ones of an overlapping
 * rotation with their verifiers. A login role must carry the tenant's marker on the server: a
 * Secret (which its namespace may write) naming any other role gets no line.
 */
function tenantLogins(
  ctx: OperatorContext,
  t: VerifiedTenant,
  now: number,
): { role: string; password: string; extra: { role: string; verifier: string }[] } | undefined {
  const secret = ctx.secrets.get(t.view.spec?.secretName ?? `${t.name}-db`, t.namespace);
  if (!secret?.metadata?.ownerReferences?.some((r) => r.controller && r.uid === t.uid)) return undefined;
  const pw = secretValue(secret, 'password');
  if (!pw || !isAcceptablePassword(pw)) return undefined;
  const logins = loginRolesOf(t.role, t.owned);
  const active = activeLogin({ username: secretValue(secret, 'username') ?? '' }, logins);
  const owned = (role: string) => role === t.role || t.owned.has(role);
  if (!owned(active)) return undefined;
  return { role: active, password: pw, extra: extraLogins(secret.metadata.annotations, logins, active, owned, now) };
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

/** verifierFor, computed once per tenant, role and password (the tenant's reconcile and its server's render share it). */
export function cachedVerifier(uid: string, role: string, password: string): string {
  const key = createHash('sha256').update(`${role}\u0000${password}`).digest('base64');
  const hit = verifiers.get(uid);
  if (hit?.key === key) return hit.verifier;
  const verifier = verifierFor(uid, role, password);
  verifiers.set(uid, { key, verifier });
  return verifier;
}

/** The IpWhitelists naming a tenant (not being deleted), split by its budget. */
export function tenantWhitelists(
  ctx: OperatorContext,
  namespace: string,
  tenant: string,
): { admitted: WhitelistView[]; refused: WhitelistView[] } {
  return admitWhitelists(
    (ctx.whitelists.list() as WhitelistView[]).filter(
      (w) => w.metadata?.namespace === namespace && !w.metadata?.deletionTimestamp && w.spec?.tenantDatabaseRef?.name === tenant,
    ),
  );
}

/** CIDRs of the admitted IpWhitelists naming a tenant; undefined when no list names it. */
export function whitelistCidrs(ctx: OperatorContext, namespace: string, tenant: string): string[] | undefined {
  const { admitted, refused } = tenantWhitelists(ctx, namespace, tenant);
  if (admitted.length === 0 && refused.length === 0) return undefined;
  return admitted.flatMap(cidrsOf);
}

/** A tenant's PgBouncer client limit: its own (-1: the server's default), never above the server's ceiling. */
export function clientLimitOf(asked: number | undefined, limits: { default: number; max: number }): number {
  // 0 would mean no limit to PgBouncer: whatever the API server let through, it is the default here.
  return Math.min(asked === undefined || asked <= 0 ? limits.default : asked, limits.max);
}

/** The tenants a server's pooler serves: verified by their markers, pooling on, not being deleted. */
export function poolerTenants(ctx: OperatorContext, server: PostgresServer): PoolerTenant[] {
  const out: PoolerTenant[] = [];
  const limits = server.spec.pooler?.clientLimits ?? { default: 200, max: 2000 };
  const now = Date.now();
  for (const t of verifiedTenants(ctx, server.metadata.name)) {
    const pooling = t.view.spec?.pooling;
    if (pooling?.enabled === false) continue;
    const login = tenantLogins(ctx, t, now);
    if (!login) continue;
    out.push({
      alias: t.alias,
      database: t.database,
      role: login.role,
      verifier: cachedVerifier(t.uid, login.role, login.password),
      ...(login.extra.length ? { extraLogins: login.extra } : {}),
      poolMode: pooling?.poolMode ?? 'transaction',
      poolSize: pooling?.poolSize ?? 10,
      maxDbConnections: pooling?.maxDbConnections ?? 0,
      // Never past the server's ceiling, whatever the tenant asked (its own status says it was refused).
      maxClientConnections: clientLimitOf(pooling?.maxClientConnections, limits),
      allowedCidrs: whitelistCidrs(ctx, t.namespace, t.name),
      suspended: t.view.spec?.suspend === true,
    });
  }
  for (const g of verifiedGroups(ctx, server)) {
    out.push({
      alias: g.alias,
      database: g.database,
      role: g.role,
      verifier: g.verifier,
      poolMode: g.login.pooling.poolMode,
      poolSize: g.login.pooling.poolSize,
      maxDbConnections: g.login.connectionLimit,
      maxClientConnections: clientLimitOf(undefined, limits),
      allowedCidrs: g.allowedCidrs,
    });
  }
  return out;
}

/** Whitelisted tenants of a server, as its pg_hba.conf tenant block needs them, and which were closed. */
export function serverHbaPlan(ctx: OperatorContext, server: PostgresServer): { tenants: ServerHbaTenant[]; closed: Set<string> } {
  return planServerHba(serverHbaCandidates(ctx, server), server.spec.alwaysAllowedCidrs ?? []);
}

/** Who asks for lines in a server's pg_hba.conf tenant block: group logins and whitelisted tenants. */
export function serverHbaCandidates(ctx: OperatorContext, server: PostgresServer): ServerHbaCandidate[] {
  const candidates: ServerHbaCandidate[] = [];
  // A group login whose members have allow-lists is held to what all of them allow, directly too.
  for (const g of verifiedGroups(ctx, server)) {
    if (g.allowedCidrs === undefined) continue;
    candidates.push({
      namespace: g.namespace,
      role: g.role,
      databases: [g.database],
      shared: true,
      allowedCidrs: g.allowedCidrs,
      created: g.created,
    });
  }
  for (const t of verifiedTenants(ctx, server.metadata.name)) {
    const cidrs = whitelistCidrs(ctx, t.namespace, t.name);
    if (cidrs === undefined) continue;
    const twin = loginRolesOf(t.role, t.owned).twin;
    candidates.push({
      namespace: t.namespace,
      role: t.role,
      ...(t.owned.has(twin) ? { otherRoles: [twin] } : {}),
      databases: t.shadow ? [t.database, t.shadow] : [t.database],
      shared: t.shared,
      allowedCidrs: cidrs,
      created: stamp(t.view.metadata?.creationTimestamp),
    });
  }
  return candidates;
}

// TenantGroup logins (isolation Schema): one role reaching every member's schema.

/** Annotation on a group's registry Secret: the SCRAM verifier of its login, for the pooler's userlist. */
export const GROUP_VERIFIER_ANNOTATION = 'tenantdb.dev/group-login-verifier';

export interface GroupReach {
  /** Members whose role the group role is a member of, sorted by name. */
  reached: { name: string; uid: string; role: string; schema: string; allowedCidrs: string[] | undefined }[];
  notReached: { name: string; reason: string }[];
}

/** The PostgresServer a group's login lives on: the one it names, or the default. */
export function groupServerName(ctx: OperatorContext, g: Pick<TenantGroup, 'spec'>): string | undefined {
  return g.spec.groupLogin?.serverRef?.name ?? defaultServerName(ctx);
}

export function groupRoleOf(g: Pick<TenantGroup, 'spec' | 'metadata'>): string {
  return g.spec.groupLogin?.roleName ?? groupRoleName(g.metadata.namespace ?? '', g.metadata.name);
}

/**
 * Which members a group login reaches on a server: schema tenants of the group's namespace whose
 * role and schema the server's catalog shows as theirs (never what a spec or status claims), not
 * suspended, on this server. The others are listed with the reason.
 */
export function groupReach(ctx: OperatorContext, g: TenantGroup, serverName: string): GroupReach {
  const ns = g.metadata.namespace ?? '';
  const verified = new Map(verifiedTenants(ctx, serverName).map((t) => [t.uid, t]));
  const defaultName = defaultServerName(ctx);
  const out: GroupReach = { reached: [], notReached: [] };
  const members = ctx.tenants
    .byIndex(BY_NAMESPACE, ns)
    .filter((t) => !t.metadata?.deletionTimestamp && matchesSelector(g.spec.selector, t.metadata?.labels))
    .sort((a, b) => ((a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : 1));
  for (const t of members) {
    const name = t.metadata?.name ?? '';
    const server = t.spec?.serverRef?.name ?? defaultName;
    const v = verified.get(t.metadata?.uid ?? '');
    const reason =
      t.spec?.isolation !== 'Schema'
        ? 'isolation Database: a group login reaches schema tenants only'
        : server !== serverName
          ? `on PostgresServer ${server ?? '(none)'}, not on ${serverName} where the group login is`
          : t.spec?.suspend === true
            ? 'suspended'
            : !v || !v.shared
              ? 'its role and schema are not provisioned yet'
              : undefined;
    if (reason || !v) {
      out.notReached.push({ name, reason: reason ?? 'not provisioned' });
      continue;
    }
    const schema = t.spec?.schemaName ?? deriveIdentifier(ns, name, MAX_SCHEMA);
    out.reached.push({ name, uid: v.uid, role: v.role, schema, allowedCidrs: whitelistCidrs(ctx, ns, name) });
  }
  return out;
}

interface VerifiedGroup {
  namespace: string;
  role: string;
  alias: string;
  database: string;
  verifier: string;
  login: NonNullable<TenantGroup['spec']['groupLogin']>;
  /** What every reached member allows (undefined: none has an allow-list). */
  allowedCidrs: string[] | undefined;
  created: string;
}

/**
 * The group logins a server's configs hold: enabled, naming this server, in an admitted namespace,
 * their role carrying the group's marker on the server, their verifier from the group's own
 * registry Secret. Their HBA rules are the meet of the reached members' allow-lists: the group login
 * reaches every member's data, so it may log in only from where each of them allows its own login
 * (a member without a list narrows nothing). The always-allowed CIDRs come on top, as for tenants.
 */
function verifiedGroups(ctx: OperatorContext, server: PostgresServer): VerifiedGroup[] {
  const serverName = server.metadata.name;
  const shared = server.spec.sharedDatabase;
  const marks = ctx.markers.get(serverName);
  if (!shared || !marks) return [];
  const out: VerifiedGroup[] = [];
  for (const raw of ctx.groups.list()) {
    const parsed = tenantGroup.safeParse(raw);
    if (!parsed.success) continue;
    const g = parsed.data;
    const login = g.spec.groupLogin;
    const ns = g.metadata.namespace ?? '';
    if (!login?.enabled || g.metadata.deletionTimestamp || groupServerName(ctx, g) !== serverName) continue;
    if (!namespaceAllowed(ctx, server, ns).ok) continue;
    const role = groupRoleOf(g);
    if (!marks.get(g.metadata.uid)?.roles.has(role)) continue;
    const secret = ctx.secrets.get(g.spec.secretName ?? `${g.metadata.name}-tenants`, ns);
    if (!secret?.metadata?.ownerReferences?.some((r) => r.controller && r.uid === g.metadata.uid)) continue;
    const verifier = secret.metadata.annotations?.[GROUP_VERIFIER_ANNOTATION];
    if (!verifier || !VERIFIER.test(verifier)) continue;
    const reach = groupReach(ctx, g, serverName);
    out.push({
      namespace: ns,
      role,
      alias: groupAlias(role),
      database: shared,
      verifier,
      login,
      allowedCidrs: intersectAllowLists(reach.reached.map((m) => m.allowedCidrs)),
      created: stamp(g.metadata.creationTimestamp),
    });
  }
  return out;
}
