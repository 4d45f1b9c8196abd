import { createHash } from 'node:crypto';
import pg from 'pg';
import './pg-scram.js';
import pLimit from 'p-limit';
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

/**
 * Settings every operator session starts with. A tenant owns objects and, through its own role,
 * settings that PostgreSQL applies to later sessions (ALTER ROLE/DATABASE ... SET): a search_path
 * that puts a schema of the tenant's before pg_catalog would make an unqualified catalog name run
 * the tenant's code with the admin's rights, and a setting such as default_transaction_read_only
 * would break the operator's own statements. Command-line options outrank every per-database and
 * per-role setting, so they are pinned here, at connection start, before any statement runs; the
 * SQL also qualifies every catalog name (pg/tenant-sql.ts), so either defence alone holds.
 */
export const PINNED_SETTINGS: Readonly<Record<string, string>> = {
  search_path: 'pg_catalog,pg_temp',
  // ALTER DATABASE ... SET role would otherwise run the session as whoever a database owner named.
  role: 'none',
  default_transaction_read_only: 'off',
  default_transaction_isolation: 'read committed',
  // How literals are read: escapeLiteral's output means the same under both, pinned all the same.
  standard_conforming_strings: 'on',
  // node-postgres writes UTF-8 and escapeLiteral assumes an encoding where a backslash or a quote
  // byte is always that character (not so in SJIS or GBK): the session's, whatever a default says.
  client_encoding: 'UTF8',
  statement_timeout: '60s',
  lock_timeout: '30s',
  idle_in_transaction_session_timeout: '60s',
  // A row security policy is the tenant's code too: an error instead of running one.
  row_security: 'off',
  client_min_messages: 'warning',
};

/** The libpq `options` startup parameter for PINNED_SETTINGS (spaces escaped as libpq expects). */
export function pinnedOptions(settings: Readonly<Record<string, string>> = PINNED_SETTINGS): string {
  return Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v.replace(/\\/g, '\\\\').replace(/ /g, '\\ ')}`)
    .join(' ');
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
    options: pinnedOptions(),
  };
}

/**
 * One session for `fn`, closed whatever happens. An error on the idle socket after `fn` is done is
 * dropped (the session is being closed anyway); a failed connect or query is thrown.
 */
export async function withClient<T>(config: pg.ClientConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config);
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * One small admin pool per PostgresServer, replaced when its address or credentials change, and
 * the single sessions inside other databases. Together they never hold more than
 * `maxSessionsPerServer` sessions on one server (the pool's size, plus as many single sessions).
 */
export class AdminPools {
  private readonly pools = new Map<string, { fingerprint: string; pool: pg.Pool }>();
  private readonly single: ReturnType<typeof pLimit>;

  constructor(
    private readonly log: Logger,
    private readonly poolSize = 4,
  ) {
    this.single = pLimit(poolSize);
  }

  /** The most sessions the operator opens on one server at a time. */
  get maxSessionsPerServer(): number {
    return this.poolSize * 2;
  }

  get(serverName: string, ep: ServerEndpoint, creds: AdminCredentials): pg.Pool {
    const fingerprint = createHash('sha256')
      .update(JSON.stringify([ep.host, ep.port, ep.sslMode, ep.ca ?? '', creds.username, creds.password, creds.database]))
      .digest('hex');
    const existing = this.pools.get(serverName);
    if (existing?.fingerprint === fingerprint) return existing.pool;
    if (existing) void existing.pool.end().catch(() => undefined);
    const pool = new pg.Pool({
      ...clientConfig(ep, creds.username, creds.password, creds.database),
      max: this.poolSize,
      idleTimeoutMillis: 30_000,
    });
    pool.on('error', (err) => this.log.warn({ server: serverName, err: err.message }, 'Idle admin connection failed'));
    this.pools.set(serverName, { fingerprint, pool });
    return pool;
  }

  /** A single connection to another database of the server (for work inside a tenant database). */
  async withDatabase<T>(ep: ServerEndpoint, creds: AdminCredentials, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    return this.single(() => this.session(ep, creds, database, fn));
  }

  private async session<T>(ep: ServerEndpoint, creds: AdminCredentials, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    return withClient(clientConfig(ep, creds.username, creds.password, database), fn);
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

/**
 * Logs in with a tenant's credentials and, once in, runs `fn` in that session: the tenant's own
 * session, under the tenant's own settings, never the admin's. Resolves to the login error, or to
 * what `fn` returned; an error thrown by `fn` is thrown.
 */
export async function asTenant<T>(
  ep: ServerEndpoint,
  user: string,
  password: string,
  database: string,
  fn: (session: pg.Client) => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  const { options: _pinned, ...config } = clientConfig(ep, user, password, database);
  // The tenant's own settings apply (its search_path decides where its extensions go), but not its
  // patience: a lock the tenant holds on purpose must not keep an operator worker waiting.
  const client = new pg.Client({ ...config, application_name: LOGIN_CHECK_APP, query_timeout: 60_000 });
  client.on('error', () => undefined);
  try {
    try {
      await client.connect();
      await client.query(
        "SELECT 1, pg_catalog.set_config('statement_timeout', '30s', false), pg_catalog.set_config('lock_timeout', '10s', false)",
      );
    } catch (error) {
      return { ok: false, error };
    }
    return { ok: true, value: await fn(client) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A pooled login check's query: a transaction left open. PgBouncer closes a server connection
 * whose client leaves in the middle of a transaction (it cannot reset it otherwise), and in
 * statement pooling mode it closes it at once, with an error to the client, when a statement leaves
 * one open: in every pool mode the server connection the check was given, opened for it or taken
 * idle from the pool, ends with the check, and no tenant's client is ever handed it. Otherwise
 * PgBouncer keeps it idle for its server_idle_timeout: a burst of a thousand new tenants (or an
 * operator restarting beside a thousand idle ones, each checked again) would hold a thousand server
 * connections and exhaust the server. Ending it from the server side instead (pg_terminate_backend)
 * races with PgBouncer handing it to one of the tenant's clients.
 */
export const POOLED_CHECK_QUERY = 'BEGIN; SELECT 1';

/**
 * What PgBouncer answers in statement pooling mode once the server has run the check's query (the
 * login was accepted by PgBouncer and by the server): a protocol violation, by PgBouncer's own words.
 */
export function isStatementModeRefusal(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  return (
    e?.code === '08P01' && typeof e.message === 'string' && e.message.includes('transaction blocks not allowed in statement pooling mode')
  );
}

/**
 * A login through PgBouncer with the given credentials and one query in a transaction left open
 * (see POOLED_CHECK_QUERY); resolves to undefined on success or the error. `poolMode` is the mode
 * PgBouncer serves the database with.
 */
export async function tryPooledLogin(
  ep: ServerEndpoint,
  user: string,
  password: string,
  database: string,
  poolMode: string,
): Promise<unknown> {
  return tryLogin(ep, user, password, database, POOLED_CHECK_QUERY, (err) => poolMode === 'statement' && isStatementModeRefusal(err));
}

/**
 * Tries a login with the given credentials and one query (`SELECT 1`); resolves to undefined on
 * success, or when the query's error, after a successful login, is one `accepted` takes as proof,
 * else to the error. Nothing is SET: through a transaction pooler the server connection goes on
 * serving the tenant's own clients, and a session setting left there would become theirs.
 */
export async function tryLogin(
  ep: ServerEndpoint,
  user: string,
  password: string,
  database: string,
  query = 'SELECT 1',
  accepted: (err: unknown) => boolean = () => false,
): Promise<unknown> {
  const { options: _pinned, ...config } = clientConfig(ep, user, password, database);
  const client = new pg.Client({ ...config, application_name: LOGIN_CHECK_APP, query_timeout: 30_000 });
  client.on('error', () => undefined);
  let connected = false;
  try {
    await client.connect();
    connected = true;
    await client.query(query);
    return undefined;
  } catch (error) {
    return connected && accepted(error) ? undefined : error;
  } finally {
    await client.end().catch(() => undefined);
  }
}
