/**
 * The PgBouncer configuration of one PostgresServer, rendered from its tenants and IpWhitelists.
 * Pure and deterministic: the same input gives the same bytes, so an unchanged set of tenants
 * writes nothing.
 */

export interface PoolerTenant {
  /** The `[databases]` alias tenants connect to: the tenant database's name. */
  alias: string;
  database: string;
  role: string;
  /** The role's SCRAM verifier, the same as on the server, so SCRAM passes through. */
  verifier: string;
  poolMode: 'session' | 'transaction' | 'statement';
  poolSize: number;
  maxDbConnections: number;
  /** CIDRs from the tenant's IpWhitelists; undefined when it has none (logins from anywhere). */
  allowedCidrs?: readonly string[] | undefined;
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

export function renderDatabases(input: PoolerInput): string {
  const lines = ['[databases]'];
  for (const t of [...input.tenants].sort(byAlias)) {
    // Keys PgBouncer 1.18 knows; an unknown key fails the whole load.
    lines.push(
      `${t.alias} = host=${input.serverHost} port=${input.serverPort} dbname=${t.database} ` +
        `pool_mode=${t.poolMode} pool_size=${t.poolSize} max_db_connections=${t.maxDbConnections}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export function renderUserlist(input: PoolerInput): string {
  const seen = new Map<string, string>();
  for (const t of [...input.tenants].sort(byAlias)) if (!seen.has(t.role)) seen.set(t.role, t.verifier);
  return [...seen.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([role, v]) => `"${role}" "${v}"\n`)
    .join('');
}

/**
 * First match wins. Each tenant's rules name its own alias and role, so one tenant's allow-list can
 * neither open nor close another tenant's database. A whitelisted tenant ends in explicit rejects;
 * everything that matched no rule is rejected at the end.
 */
export function renderHba(input: PoolerInput): string {
  const lines: string[] = [];
  for (const t of [...input.tenants].sort(byAlias)) {
    if (t.allowedCidrs === undefined) {
      lines.push(`host ${t.alias} ${t.role} 0.0.0.0/0 scram-sha-256`, `host ${t.alias} ${t.role} ::/0 scram-sha-256`);
      continue;
    }
    const cidrs = [...new Set([...t.allowedCidrs, ...input.alwaysAllowedCidrs])].sort((a, b) => Number(isV6(a)) - Number(isV6(b)) || (a < b ? -1 : a > b ? 1 : 0));
    for (const c of cidrs) lines.push(`host ${t.alias} ${t.role} ${c} scram-sha-256`);
    lines.push(`host ${t.alias} all 0.0.0.0/0 reject`, `host ${t.alias} all ::/0 reject`);
  }
  lines.push('host all all 0.0.0.0/0 reject', 'host all all ::/0 reject');
  return `${lines.join('\n')}\n`;
}

export function renderPoolerConfig(input: PoolerInput): PoolerFiles {
  return { 'databases.ini': renderDatabases(input), 'userlist.txt': renderUserlist(input), 'hba.conf': renderHba(input) };
}

export interface ServerHbaTenant {
  databases: readonly string[];
  role: string;
  allowedCidrs: readonly string[];
}

/**
 * The tenant block of a self-hosted server's pg_hba.conf (the agent puts the server's own base rules
 * after it). Only whitelisted tenants get lines: their role from their CIDRs, anyone from the
 * always-allowed CIDRs (the pooler, the operator), everything else to their databases rejected.
 * Tenants without a list fall through to the base rules.
 */
export function renderServerHba(tenants: readonly ServerHbaTenant[], alwaysAllowedCidrs: readonly string[]): string {
  const sortCidrs = (xs: Iterable<string>) => [...new Set(xs)].sort((a, b) => Number(isV6(a)) - Number(isV6(b)) || (a < b ? -1 : a > b ? 1 : 0));
  const lines: string[] = [];
  for (const t of [...tenants].sort((a, b) => (a.role < b.role ? -1 : a.role > b.role ? 1 : 0))) {
    const dbs = [...t.databases].sort().join(',');
    for (const c of sortCidrs(alwaysAllowedCidrs)) lines.push(`host ${dbs} all ${c} scram-sha-256`);
    for (const c of sortCidrs(t.allowedCidrs)) lines.push(`host ${dbs} ${t.role} ${c} scram-sha-256`);
    lines.push(`host ${dbs} all 0.0.0.0/0 reject`, `host ${dbs} all ::/0 reject`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}
