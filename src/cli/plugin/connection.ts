/**
 * The connection details a tenant's Secret holds, for one path (direct to PostgreSQL, or through
 * PgBouncer) and one format. The URLs are the Secret's own keys, as the operator wrote them (with
 * each client's workarounds); only when a key is missing is one built, with the operator's functions.
 */
import { jdbcUri, postgresUri } from '../../controllers/tenantdatabase/secret-data.js';
import { CliError } from './errors.js';
import { shellQuote } from './format.js';

export type ConnectionPath = 'direct' | 'pooled';
export type UrlFormat = 'uri' | 'jdbc' | 'env';

export interface ConnectionParams {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  sslMode: string;
}

/** Pooled when the Secret names a pooler other than the server itself (as DATABASE_URL does). */
export function defaultPath(data: Readonly<Record<string, string>>): ConnectionPath {
  const host = data['pooler-host'];
  const port = data['pooler-port'];
  return host && port && (host !== data.host || port !== data.port) ? 'pooled' : 'direct';
}

function need(data: Readonly<Record<string, string>>, key: string, secretName: string): string {
  const v = data[key];
  if (!v) throw new CliError(`Secret "${secretName}" has no key "${key}" yet: is the TenantDatabase Ready?`);
  return v;
}

export function connectionParams(data: Readonly<Record<string, string>>, path: ConnectionPath, secretName: string): ConnectionParams {
  const pooled = path === 'pooled';
  const host = pooled ? (data['pooler-host'] ?? need(data, 'host', secretName)) : need(data, 'host', secretName);
  const port = Number(pooled ? (data['pooler-port'] ?? need(data, 'port', secretName)) : need(data, 'port', secretName));
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new CliError(`Secret "${secretName}" has no valid port`);
  return {
    host,
    port,
    database: need(data, 'database', secretName),
    user: data.user ?? need(data, 'username', secretName),
    password: need(data, 'password', secretName),
    sslMode: data.sslmode ?? data.PGSSLMODE ?? 'prefer',
  };
}

/** libpq's environment for a path: what psql, node-pg, psycopg and others read. */
export function libpqEnv(p: ConnectionParams): Record<string, string> {
  return {
    PGHOST: p.host,
    PGPORT: String(p.port),
    PGDATABASE: p.database,
    PGUSER: p.user,
    PGPASSWORD: p.password,
    PGSSLMODE: p.sslMode,
  };
}

export function connectionUrl(data: Readonly<Record<string, string>>, path: ConnectionPath, format: UrlFormat, secretName: string): string {
  const p = connectionParams(data, path, secretName);
  const direct = path === 'direct';
  const uri = data[direct ? 'uri' : 'pooled-uri'] ?? postgresUri(p.user, p.password, p.host, p.port, p.database, p.sslMode);
  if (format === 'uri') return uri;
  if (format === 'jdbc')
    return data[direct ? 'jdbc-uri' : 'pooled-jdbc-uri'] ?? jdbcUri(p.user, p.password, p.host, p.port, p.database, p.sslMode);
  return Object.entries({ ...libpqEnv(p), DATABASE_URL: uri })
    .map(([k, v]) => `export ${k}=${shellQuote(v)}`)
    .join('\n');
}

/** A line of a libpq password file, its fields escaped (: and \). */
export function passfileLine(p: ConnectionParams): string {
  const esc = (v: string) => v.replace(/[\\:]/g, (c) => `\\${c}`);
  return [p.host, String(p.port), p.database, p.user, p.password].map(esc).join(':') + '\n';
}
