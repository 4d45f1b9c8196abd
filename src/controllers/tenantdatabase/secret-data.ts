/**
 * The tenant Secret's keys, rendered from the resolved names, the server and the password. Pure,
 * so that what a workload reads can be tested in a table without a cluster.
 */
export interface SecretInputs {
  host: string;
  port: number;
  sslMode: string;
  database: string;
  user: string;
  password: string;
  /** Where tenants reach PgBouncer; undefined when the server has no pooler or pooling is off. */
  pooler?: { host: string; port: number } | undefined;
  shadowDatabase?: string | undefined;
}

const enc = encodeURIComponent;

/** Brackets an IPv6 literal for use in a URI authority. */
function uriHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export function postgresUri(user: string, password: string, host: string, port: number, database: string, sslMode: string): string {
  return `postgresql://${enc(user)}:${enc(password)}@${uriHost(host)}:${port}/${enc(database)}?sslmode=${enc(sslMode)}`;
}

export function jdbcUri(user: string, password: string, host: string, port: number, database: string, sslMode: string): string {
  return `jdbc:postgresql://${uriHost(host)}:${port}/${enc(database)}?user=${enc(user)}&password=${enc(password)}&sslmode=${enc(sslMode)}`;
}

export function renderSecretData(i: SecretInputs): Record<string, string> {
  const pooled = i.pooler ?? { host: i.host, port: i.port };
  const uri = postgresUri(i.user, i.password, i.host, i.port, i.database, i.sslMode);
  const pooledUri = postgresUri(i.user, i.password, pooled.host, pooled.port, i.database, i.sslMode);
  const data: Record<string, string> = {
    host: i.host,
    port: String(i.port),
    database: i.database,
    user: i.user,
    password: i.password,
    'pooler-host': pooled.host,
    'pooler-port': String(pooled.port),
    sslmode: i.sslMode,
    uri,
    'pooled-uri': pooledUri,
    'jdbc-uri': jdbcUri(i.user, i.password, i.host, i.port, i.database, i.sslMode),
    DATABASE_URL: i.pooler ? pooledUri : uri,
    DIRECT_URL: uri,
    PGHOST: i.host,
    PGPORT: String(i.port),
    PGDATABASE: i.database,
    PGUSER: i.user,
    PGPASSWORD: i.password,
    PGSSLMODE: i.sslMode,
  };
  if (i.shadowDatabase) {
    data.SHADOW_DATABASE_URL = postgresUri(i.user, i.password, i.host, i.port, i.shadowDatabase, i.sslMode);
  }
  return data;
}
