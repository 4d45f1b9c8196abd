import { createHash } from 'node:crypto';
import pg from 'pg';
import type { PostgresServerSpec } from '../api/postgresserver.js';
import type { Logger } from '../runtime/logger.js';

export interface AdminCredentials {
  username: string;
  password: string;
  /** The database the admin connects to for server-wide work; `postgres` unless the Secret says otherwise. */
  database: string;
}

export interface ServerEndpoint {
  host: string;
  port: number;
  sslMode: PostgresServerSpec['sslMode'];
  ca?: string | undefined;
}

/**
 * node-pg's TLS options for a libpq sslmode. node-pg reads `require` as full verification, unlike
 * libpq, so the mapping is explicit: require encrypts without verifying, verify-ca checks the chain,
 * verify-full checks chain and host name. `allow` connects in plain text and `prefer` like `require`.
 */
export function tlsOptions(ep: ServerEndpoint): pg.ClientConfig['ssl'] {
  switch (ep.sslMode) {
    case 'disable':
    case 'allow':
      return false;
    case 'prefer':
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
      return { rejectUnauthorized: true, ...(ep.ca ? { ca: ep.ca } : {}), checkServerIdentity: () => undefined };
    case 'verify-full':
      return { rejectUnauthorized: true, ...(ep.ca ? { ca: ep.ca } : {}) };
  }
}

export function clientConfig(ep: ServerEndpoint, user: string, password: string, database: string): pg.ClientConfig {
  return {
    host: ep.host,
    port: ep.port,
    user,
    password,
    database,
    ssl: tlsOptions(ep),
    connectionTimeoutMillis: 10_000,
    application_name: 'tenantdb-operator',
  };
}

/** One small admin pool per PostgresServer, replaced when its address or credentials change. */
export class AdminPools {
  private readonly pools = new Map<string, { fingerprint: string; pool: pg.Pool }>();

  constructor(private readonly log: Logger) {}

  get(serverName: string, ep: ServerEndpoint, creds: AdminCredentials): pg.Pool {
    const fingerprint = createHash('sha256')
      .update(JSON.stringify([ep.host, ep.port, ep.sslMode, ep.ca ?? '', creds.username, creds.password, creds.database]))
      .digest('hex');
    const existing = this.pools.get(serverName);
    if (existing?.fingerprint === fingerprint) return existing.pool;
    if (existing) void existing.pool.end().catch(() => undefined);
    const pool = new pg.Pool({ ...clientConfig(ep, creds.username, creds.password, creds.database), max: 4, idleTimeoutMillis: 30_000 });
    pool.on('error', (err) => this.log.warn({ server: serverName, err: err.message }, 'Idle admin connection failed'));
    this.pools.set(serverName, { fingerprint, pool });
    return pool;
  }

  /** A single connection to another database of the server (for work inside a tenant database). */
  async withDatabase<T>(ep: ServerEndpoint, creds: AdminCredentials, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client(clientConfig(ep, creds.username, creds.password, database));
    client.on('error', () => undefined);
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  drop(serverName: string): void {
    const existing = this.pools.get(serverName);
    this.pools.delete(serverName);
    if (existing) void existing.pool.end().catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.pool.end().catch(() => undefined)));
  }
}

/** application_name of the operator's login checks, so they are not counted as the tenant's sessions. */
export const LOGIN_CHECK_APP = 'tenantdb-login-check';

/** Tries a login with the given credentials; resolves to undefined on success or the error. */
export async function tryLogin(ep: ServerEndpoint, user: string, password: string, database: string): Promise<unknown> {
  const client = new pg.Client({ ...clientConfig(ep, user, password, database), application_name: LOGIN_CHECK_APP });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    return err;
  } finally {
    await client.end().catch(() => undefined);
  }
}
