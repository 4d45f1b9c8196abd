/**
 * PgBouncer's admin console (the `pgbouncer` database), as the operator and the pooler agent use it:
 * the operator asks what PgBouncer serves, the agent reloads it and pauses the databases it drops.
 * The console speaks only the simple query protocol, so there are no parameters: every command is
 * a small named function, and a database name goes into one only after it passed IDENT.
 */
import type pg from 'pg';
import { CONSOLE_DATABASE, GROUP_ALIAS, IDENT, SCHEMA_ALIAS } from '../pooler/names.js';
import { withClient } from './connections.js';

export interface PoolerAdmin {
  host: string;
  port: number;
  user: string;
  password: string;
}

async function consoleQuery(admin: PoolerAdmin, sql: string): Promise<pg.QueryResultRow[]> {
  const { host, port, user, password } = admin;
  const config = { host, port, user, password, database: CONSOLE_DATABASE, connectionTimeoutMillis: 5000 };
  return withClient(config, async (c) => (await c.query<Record<string, unknown>>(sql)).rows);
}

/** A name for a console command: a plain identifier as it is, a schema tenant's or a group's alias double-quoted. */
function databaseName(name: string): string {
  if (SCHEMA_ALIAS.test(name) || GROUP_ALIAS.test(name)) return `"${name}"`;
  if (!IDENT.test(name)) throw new Error(`${JSON.stringify(name)} is not a database name the console may be given`);
  return name;
}

export interface PoolEntry {
  poolMode: string;
  poolSize: number;
  database: string;
}

/** SHOW DATABASES, parsed by column name (columns differ between versions); keyed by alias. */
export async function showDatabases(admin: PoolerAdmin): Promise<Map<string, PoolEntry>> {
  const rows = await consoleQuery(admin, 'SHOW DATABASES');
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

/** What one database's pools (one per user) hold at a moment, summed over its users. */
export interface PoolUsage {
  /** Clients linked to a server connection, or idle with no query waiting (cl_active). */
  clientsActive: number;
  /** Clients with a query waiting for a server connection (cl_waiting). */
  clientsWaiting: number;
  /** Server connections linked to a client (sv_active). */
  serversActive: number;
  /** Server connections unused and ready for a client (sv_idle). */
  serversIdle: number;
  /** How long the oldest waiting client has waited, in seconds (maxwait and maxwait_us; the largest of its users). */
  maxWaitSeconds: number;
}

const count = (v: unknown): number => {
  const n = Number(v ?? 0);
  return Number.isFinite(n) && n > 0 ? n : 0;
};

/**
 * SHOW POOLS rows, parsed by column name (columns differ between versions), summed by database
 * alias: a tenant's alias may have a pool per login role (its twin login during an overlapping
 * rotation, the operator's login check).
 */
export function sumPools(rows: readonly Record<string, unknown>[]): Map<string, PoolUsage> {
  const out = new Map<string, PoolUsage>();
  for (const r of rows) {
    const db = typeof r.database === 'string' ? r.database : '';
    if (!db) continue;
    const u = out.get(db) ?? { clientsActive: 0, clientsWaiting: 0, serversActive: 0, serversIdle: 0, maxWaitSeconds: 0 };
    u.clientsActive += count(r.cl_active);
    u.clientsWaiting += count(r.cl_waiting);
    u.serversActive += count(r.sv_active);
    u.serversIdle += count(r.sv_idle);
    u.maxWaitSeconds = Math.max(u.maxWaitSeconds, count(r.maxwait) + count(r.maxwait_us) / 1e6);
    out.set(db, u);
  }
  return out;
}

/** SHOW POOLS, summed by database alias. */
export async function showPools(admin: PoolerAdmin): Promise<Map<string, PoolUsage>> {
  return sumPools(await consoleQuery(admin, 'SHOW POOLS'));
}

/** PgBouncer's version as [major, minor, patch], from SHOW VERSION ("PgBouncer 1.24.1"). */
export async function pgbouncerVersion(admin: PoolerAdmin): Promise<[number, number, number]> {
  const row = (await consoleQuery(admin, 'SHOW VERSION'))[0] ?? {};
  const text = String(Object.values(row)[0] ?? '');
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (!m) throw new Error(`PgBouncer's SHOW VERSION gave ${JSON.stringify(text)}`);
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

/** What a running PgBouncer supports that changes what tenants' clients may do through it. */
export interface PoolerFeatures {
  version: string;
  /** max_prepared_statements: named prepared statements in transaction pooling when above 0 (1.21+). */
  maxPreparedStatements: number;
}

export async function poolerFeatures(admin: PoolerAdmin): Promise<PoolerFeatures> {
  const v = await pgbouncerVersion(admin);
  // SHOW CONFIG lists key/value rows; a PgBouncer before 1.21 has no max_prepared_statements.
  const rows = await consoleQuery(admin, 'SHOW CONFIG');
  const row = rows.find((r) => r.key === 'max_prepared_statements');
  const n = Number(row?.value ?? 0);
  return { version: v.join('.'), maxPreparedStatements: Number.isFinite(n) ? n : 0 };
}

/** Re-reads pgbouncer.ini and the files it names. */
export async function reload(admin: PoolerAdmin): Promise<void> {
  await consoleQuery(admin, 'RELOAD');
}

/** New clients of the database are refused. */
export async function disableDatabase(admin: PoolerAdmin, alias: string): Promise<void> {
  await consoleQuery(admin, `DISABLE ${databaseName(alias)}`);
}

/** Every client of the database is disconnected. */
export async function killDatabase(admin: PoolerAdmin, alias: string): Promise<void> {
  await consoleQuery(admin, `KILL ${databaseName(alias)}`);
}

/** Undoes DISABLE. */
export async function enableDatabase(admin: PoolerAdmin, alias: string): Promise<void> {
  await consoleQuery(admin, `ENABLE ${databaseName(alias)}`);
}
