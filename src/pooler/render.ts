/**
 * The PgBouncer configuration of one PostgresServer, rendered from its tenants and IpWhitelists.
 * Pure and deterministic: the same input gives the same bytes, so an unchanged set of tenants
 * writes nothing.
 */
import { isCidr } from '../api/common.js';
import { nameProblem } from './names.js';
import { DB_KEYS, VERIFIER } from './validate.js';

export interface PoolerTenant {
  /** The `[databases]` alias tenants connect to: the tenant database's name. */
  alias: string;
  database: string;
  role: string;
  /** The role's SCRAM verifier, the same as on the server, so SCRAM passes through. */
  verifier: string;
  /**
   * Other login roles of the tenant the pooler accepts beside `role`, with their verifiers: during an
   * overlapping rotation, the previous one until its deadline and the next one before the switch.
   */
  extraLogins?: readonly { role: string; verifier: string }[] | undefined;
  poolMode: 'session' | 'transaction' | 'statement';
  poolSize: number;
  maxDbConnections: number;
  /** Most client connections PgBouncer accepts for the alias (max_db_client_connections, PgBouncer 1.24+). */
  maxClientConnections: number;
  /** CIDRs from the tenant's IpWhitelists; undefined when it has none (logins from anywhere). */
  allowedCidrs?: readonly string[] | undefined;
  /**
   * A suspended tenant keeps its alias (its open pooled sessions go on) but loses its userlist line
   * and every HBA rule but the rejects: no new login gets through.
   */
  suspended?: boolean | undefined;
}

export interface PoolerInput {
  serverHost: string;
  serverPort: number;
  tenants: readonly PoolerTenant[];
  /** Always allowed for every whitelisted tenant (e.g. the pod network). */
  alwaysAllowedCidrs: readonly string[];
}

export type PoolerFiles = {
  'databases.ini': string;
  'userlist.txt': string;
  'hba.conf': string;
};

export const POOLER_FILES = ['databases.ini', 'userlist.txt', 'hba.conf'] as const;

const byAlias = (a: PoolerTenant, b: PoolerTenant) => (a.alias < b.alias ? -1 : a.alias > b.alias ? 1 : 0);
const isV6 = (cidr: string) => cidr.includes(':');
const sortCidrs = (xs: Iterable<string>) =>
  [...new Set(xs)].sort((a, b) => Number(isV6(a)) - Number(isV6(b)) || (a < b ? -1 : a > b ? 1 : 0));

/** The closing rules: whatever matched no tenant's rule is refused. */
export const HBA_CATCH_ALL = 'host all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n';

/** One tenant's lines in each file, each line ending in a newline. */
export interface TenantBlock {
  alias: string;
  files: PoolerFiles;
}

/**
 * Refuses a tenant whose names or CIDRs would be syntax rather than data in the files. The caller
 * leaves such tenants out before rendering (one tenant must not stop the others' config); this is
 * the second line of defense.
 */
export function poolerTenantProblem(t: PoolerTenant): string | undefined {
  const bad =
    nameProblem('alias', t.alias) ??
    nameProblem('database', t.database) ??
    nameProblem('role', t.role) ??
    (t.extraLogins ?? []).map((l) => nameProblem('role', l.role)).find(Boolean);
  if (bad) return bad;
  if (![t.verifier, ...(t.extraLogins ?? []).map((l) => l.verifier)].every((v) => VERIFIER.test(v)))
    return `tenant ${t.alias}: a verifier is not a SCRAM-SHA-256 verifier`;
  // The agent refuses the whole file for one value out of its range, so the tenant is refused here.
  if (!DB_KEYS.pool_size?.(String(t.poolSize))) return `tenant ${t.alias}: pool_size ${t.poolSize} is out of range`;
  if (!DB_KEYS.max_db_connections?.(String(t.maxDbConnections)))
    return `tenant ${t.alias}: max_db_connections ${t.maxDbConnections} is out of range`;
  if (!DB_KEYS.max_db_client_connections?.(String(t.maxClientConnections)))
    return `tenant ${t.alias}: max_db_client_connections ${t.maxClientConnections} is out of range`;
  const cidr = (t.allowedCidrs ?? []).find((c) => !isCidr(c));
  if (cidr !== undefined) return `tenant ${t.alias}: ${JSON.stringify(cidr)} is not a CIDR`;
  return undefined;
}

/**
 * Every tenant's lines, sorted by alias. A role shared by several tenants gets its userlist line
 * with the first of them. HBA rules name the tenant's own alias and role, so their order across
 * tenants does not matter (first match wins only within a tenant's lines).
 */
export function renderTenantBlocks(input: PoolerInput): TenantBlock[] {
  for (const c of input.alwaysAllowedCidrs) if (!isCidr(c)) throw new Error(`always-allowed ${JSON.stringify(c)} is not a CIDR`);
  if (!DB_KEYS.host?.(input.serverHost) || !DB_KEYS.port?.(String(input.serverPort)))
    throw new Error(
      `refusing to render the pooler config: server address ${JSON.stringify(`${input.serverHost}:${input.serverPort}`)} is not valid`,
    );
  const roles = new Set<string>();
  const aliases = new Set<string>();
  const out: TenantBlock[] = [];
  for (const t of [...input.tenants].sort(byAlias)) {
    const problem = poolerTenantProblem(t);
    if (problem) throw new Error(`refusing to render the pooler config: ${problem}`);
    if (aliases.has(t.alias)) throw new Error(`refusing to render the pooler config: alias ${t.alias} appears twice`);
    aliases.add(t.alias);
    // An unknown key fails the whole load: max_db_client_connections (PgBouncer 1.24) is taken out
    // by the agent beside an older PgBouncer, which says so in its report.
    const db =
      `${t.alias} = host=${input.serverHost} port=${input.serverPort} dbname=${t.database} ` +
      `pool_mode=${t.poolMode} pool_size=${t.poolSize} max_db_connections=${t.maxDbConnections} ` +
      `max_db_client_connections=${t.maxClientConnections}\n`;
    let user = '';
    for (const l of [{ role: t.role, verifier: t.verifier }, ...(t.extraLogins ?? [])]) {
      if (!roles.has(l.role) && !t.suspended) user += `"${l.role}" "${l.verifier}"\n`;
      roles.add(l.role);
    }
    const hba = t.suspended
      ? `host ${t.alias} all 0.0.0.0/0 reject\nhost ${t.alias} all ::/0 reject\n`
      : renderTenantHba(t, input.alwaysAllowedCidrs);
    out.push({ alias: t.alias, files: { 'databases.ini': db, 'userlist.txt': user, 'hba.conf': hba } });
  }
  return out;
}

/**
 * One tenant's HBA lines. Without a list: SCRAM from anywhere. With lists: its CIDRs plus the
 * always-allowed ones, then explicit rejects for its alias.
 */
export function renderTenantHba(
  t: Pick<PoolerTenant, 'alias' | 'role' | 'allowedCidrs' | 'extraLogins'>,
  alwaysAllowedCidrs: readonly string[],
): string {
  const hba: string[] = [];
  const roles = [t.role, ...(t.extraLogins ?? []).map((l) => l.role)];
  if (t.allowedCidrs === undefined) {
    for (const r of roles) hba.push(`host ${t.alias} ${r} 0.0.0.0/0 scram-sha-256`, `host ${t.alias} ${r} ::/0 scram-sha-256`);
  } else {
    const cidrs = sortCidrs([...t.allowedCidrs, ...alwaysAllowedCidrs]);
    for (const r of roles) for (const c of cidrs) hba.push(`host ${t.alias} ${r} ${c} scram-sha-256`);
    hba.push(`host ${t.alias} all 0.0.0.0/0 reject`, `host ${t.alias} all ::/0 reject`);
  }
  return `${hba.join('\n')}\n`;
}

/** The three files from tenant lines (of one render, or of several shards in order). */
export function assemblePoolerFiles(parts: Iterable<PoolerFiles>): PoolerFiles {
  const db = ['[databases]\n'];
  const users: string[] = [];
  const hba: string[] = [];
  for (const p of parts) {
    db.push(p['databases.ini']);
    users.push(p['userlist.txt']);
    hba.push(p['hba.conf']);
  }
  hba.push(HBA_CATCH_ALL);
  return { 'databases.ini': db.join(''), 'userlist.txt': users.join(''), 'hba.conf': hba.join('') };
}

export function renderDatabases(input: PoolerInput): string {
  return renderPoolerConfig(input)['databases.ini'];
}

export function renderUserlist(input: PoolerInput): string {
  return renderPoolerConfig(input)['userlist.txt'];
}

/**
 * First match wins. Each tenant's rules name its own alias and role, so one tenant's allow-list can
 * neither open nor close another tenant's database. A whitelisted tenant ends in explicit rejects;
 * everything that matched no rule is rejected at the end.
 */
export function renderHba(input: PoolerInput): string {
  return renderPoolerConfig(input)['hba.conf'];
}

/** The whole config in one piece: what the agent assembles from the shards, whatever their cut. */
export function renderPoolerConfig(input: PoolerInput): PoolerFiles {
  return assemblePoolerFiles(renderTenantBlocks(input).map((b) => b.files));
}

export interface ServerHbaTenant {
  databases: readonly string[];
  role: string;
  /** The tenant's other login role (overlapping rotation): named beside `role` wherever a rule names it. */
  otherRoles?: readonly string[] | undefined;
  allowedCidrs: readonly string[];
  /**
   * A database shared by several tenants (isolation Schema): its rules name the tenant's role only,
   * so one tenant's allow-list neither opens nor closes the shared database for the others.
   */
  shared?: boolean | undefined;
}

/**
 * The tenant block of a self-hosted server's pg_hba.conf (the agent puts the server's own base rules
 * after it). Only whitelisted tenants get lines: their role from their CIDRs, anyone from the
 * always-allowed CIDRs (the pooler, the operator), everything else to their databases rejected.
 * Tenants without a list fall through to the base rules.
 */
export function renderServerHba(tenants: readonly ServerHbaTenant[], alwaysAllowedCidrs: readonly string[]): string {
  const lines: string[] = [];
  for (const t of [...tenants].sort((a, b) => (a.role < b.role ? -1 : a.role > b.role ? 1 : 0))) {
    const problem =
      t.databases.length === 0
        ? 'a tenant without databases'
        : (t.databases.map((d) => nameProblem('database', d)).find(Boolean) ??
          [t.role, ...(t.otherRoles ?? [])].map((r) => nameProblem('role', r)).find(Boolean));
    if (problem) throw new Error(`refusing to render the server HBA rules: ${problem}`);
    const cidr = [...t.allowedCidrs, ...alwaysAllowedCidrs].find((c) => !isCidr(c));
    if (cidr !== undefined) throw new Error(`refusing to render the server HBA rules: ${JSON.stringify(cidr)} is not a CIDR`);
    const dbs = [...t.databases].sort().join(',');
    const roles = [t.role, ...(t.otherRoles ?? [])];
    // In a shared database the rules name the tenant's login roles only (a comma list is one field).
    const others = t.shared ? roles.join(',') : 'all';
    for (const c of sortCidrs(alwaysAllowedCidrs)) lines.push(`host ${dbs} ${others} ${c} scram-sha-256`);
    for (const c of sortCidrs(t.allowedCidrs)) lines.push(`host ${dbs} ${roles.join(',')} ${c} scram-sha-256`);
    lines.push(`host ${dbs} ${others} 0.0.0.0/0 reject`, `host ${dbs} ${others} ::/0 reject`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}
