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
  /**
   * Whether named prepared statements work through that pooler in transaction mode (PgBouncer
   * 1.21+ with max_prepared_statements above 0). When they do not, the client-specific URLs carry
   * each client's workaround (Prisma's pgbouncer=true, pgjdbc's prepareThreshold=0).
   */
  poolerPreparedStatements?: boolean | undefined;
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
  return `${jdbcUrl(host, port, database, sslMode)}&user=${enc(user)}&password=${enc(password)}`;
}

/** A JDBC URL without credentials (Spring, Quarkus and Service Binding take them from username/password). */
export function jdbcUrl(host: string, port: number, database: string, sslMode: string, extra = ''): string {
  return `jdbc:postgresql://${uriHost(host)}:${port}/${enc(database)}?sslmode=${enc(sslMode)}${extra}`;
}

export function renderSecretData(i: SecretInputs): Record<string, string> {
  const pooled = i.pooler ?? { host: i.host, port: i.port };
  const uri = postgresUri(i.user, i.password, i.host, i.port, i.database, i.sslMode);
  const pooledUri = postgresUri(i.user, i.password, pooled.host, pooled.port, i.database, i.sslMode);
  // Workarounds only where the pooler needs them: libpq and most drivers refuse parameters they do
  // not know, so each goes only into the key of the client that understands it.
  const noPrepared = !!i.pooler && i.poolerPreparedStatements !== true;
  const data: Record<string, string> = {
    // Service Binding (servicebinding.io): type, provider, username; Spring Cloud Bindings and
    // Quarkus read these and host/port/database/password/sslmode, and jdbc-url when present.
    type: 'postgresql',
    provider: 'tenantdb',
    username: i.user,
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
    'jdbc-url': jdbcUrl(pooled.host, pooled.port, i.database, i.sslMode, noPrepared ? '&prepareThreshold=0' : ''),
    'pooled-jdbc-uri': `${jdbcUrl(pooled.host, pooled.port, i.database, i.sslMode, noPrepared ? '&prepareThreshold=0' : '')}&user=${enc(i.user)}&password=${enc(i.password)}`,
    PRISMA_DATABASE_URL: noPrepared ? `${pooledUri}&pgbouncer=true` : i.pooler ? pooledUri : uri,
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
