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
  /**
   * Isolation Schema: the tenant's schema in the shared database, and the PgBouncer alias that
   * reaches it (pooled URLs name the alias, direct ones the database).
   */
  schema?: { name: string; alias: string } | undefined;
  /** The CA the server's certificate is verified against (sslMode verify-ca or verify-full), PEM. */
  ca?: string | undefined;
}

export interface SecretTemplate {
  presets: readonly ('Vercel' | 'Spring')[];
  keys: Readonly<Record<string, string>>;
}

const enc = encodeURIComponent;

/** Brackets an IPv6 literal for use in a URI authority. */
function uriHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export function postgresUri(user: string, password: string, host: string, port: number, database: string, sslMode: string): string {
  return `postgresql://${enc(user)}:${enc(password)}@${uriHost(host)}:${port}/${enc(database)}?sslmode=${enc(sslMode)}`;
}

export function jdbcUri(user: string, password: string, host: string, port: number, database: string, sslMode: string, extra = ''): string {
  return `jdbc:postgresql://${uriHost(host)}:${port}/${enc(database)}?user=${enc(user)}&password=${enc(password)}&sslmode=${enc(sslMode)}${extra}`;
}

/** A JDBC URL without credentials (Spring, Quarkus and Service Binding take them from username/password). */
export function jdbcUrl(host: string, port: number, database: string, sslMode: string, extra = ''): string {
  return `jdbc:postgresql://${uriHost(host)}:${port}/${enc(database)}?sslmode=${enc(sslMode)}${extra}`;
}

export function renderSecretData(i: SecretInputs): Record<string, string> {
  const pooled = i.pooler ?? { host: i.host, port: i.port };
  // Through PgBouncer a schema tenant names its alias; without a pooler, the database itself.
  const pooledDb = i.pooler && i.schema ? i.schema.alias : i.database;
  const uri = postgresUri(i.user, i.password, i.host, i.port, i.database, i.sslMode);
  const pooledUri = postgresUri(i.user, i.password, pooled.host, pooled.port, pooledDb, i.sslMode);
  // Prisma ignores search_path and uses `schema=` (public when absent); libpq refuses that parameter,
  // so it goes only into the Prisma keys. The role's search_path serves every other client.
  const prismaSchema = i.schema ? `&schema=${enc(i.schema.name)}` : '';
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
    'pooler-database': pooledDb,
    sslmode: i.sslMode,
    uri,
    'pooled-uri': pooledUri,
    'jdbc-uri': jdbcUri(i.user, i.password, i.host, i.port, i.database, i.sslMode),
    'jdbc-url': jdbcUrl(pooled.host, pooled.port, pooledDb, i.sslMode, noPrepared ? '&prepareThreshold=0' : ''),
    'pooled-jdbc-uri': jdbcUri(i.user, i.password, pooled.host, pooled.port, pooledDb, i.sslMode, noPrepared ? '&prepareThreshold=0' : ''),
    PRISMA_DATABASE_URL: (noPrepared ? `${pooledUri}&pgbouncer=true` : i.pooler ? pooledUri : uri) + prismaSchema,
    PRISMA_DIRECT_URL: uri + prismaSchema,
    DATABASE_URL: i.pooler ? pooledUri : uri,
    DIRECT_URL: uri,
    PGHOST: i.host,
    PGPORT: String(i.port),
    PGDATABASE: i.database,
    PGUSER: i.user,
    PGPASSWORD: i.password,
    PGSSLMODE: i.sslMode,
  };
  if (i.ca) {
    // A file, once the Secret is mounted: libpq's PGSSLROOTCERT (or sslrootcert=) points at ca.crt;
    // Service Binding readers (Spring Cloud Bindings, Quarkus) take sslrootcert as that file.
    data['ca.crt'] = i.ca;
    data.sslrootcert = i.ca;
  }
  if (i.schema) {
    data.schema = i.schema.name;
  }
  if (i.shadowDatabase) {
    data.SHADOW_DATABASE_URL = postgresUri(i.user, i.password, i.host, i.port, i.shadowDatabase, i.sslMode);
  }
  return data;
}

/** The preset keys, from the standard ones. */
function presetKeys(preset: SecretTemplate['presets'][number], d: Record<string, string>): Record<string, string> {
  const v = (k: string) => d[k] ?? '';
  if (preset === 'Vercel')
    return {
      POSTGRES_URL: v('DATABASE_URL'),
      POSTGRES_PRISMA_URL: v('PRISMA_DATABASE_URL'),
      POSTGRES_URL_NON_POOLING: v('DIRECT_URL'),
      POSTGRES_HOST: v('pooler-host'),
      POSTGRES_USER: v('user'),
      POSTGRES_PASSWORD: v('password'),
      POSTGRES_DATABASE: v('database'),
    };
  return { SPRING_DATASOURCE_URL: v('jdbc-url'), SPRING_DATASOURCE_USERNAME: v('user'), SPRING_DATASOURCE_PASSWORD: v('password') };
}

// $(key) as in a container's command and env; $$ is a literal $. Not {{ }}: manifests that
// name a template often pass through Helm or other tools that would expand those first.
/** Most bytes a templated Secret may hold: well within what the operator's Secret cache keeps (base64 adds a third). */
export const TEMPLATED_SECRET_BYTES = 40 * 1024;

const PLACEHOLDER = /\$\$|\$\(([-._a-zA-Z0-9]+)\)/g;

/**
 * The standard keys plus the template's presets and keys of the user's own. A placeholder names a
 * standard key and nothing else (no expressions: the values are credentials, and a text
 * substitution is all a key needs), so no template engine is involved. Refused, with the reason:
 * a key that would replace a standard or preset key, or a placeholder naming no standard key.
 */
export function applySecretTemplate(
  standard: Record<string, string>,
  t: SecretTemplate,
): { ok: true; data: Record<string, string> } | { ok: false; message: string } {
  const data = { ...standard };
  for (const p of t.presets) Object.assign(data, presetKeys(p, standard));
  for (const [key, text] of Object.entries(t.keys).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (Object.hasOwn(data, key)) return { ok: false, message: `secretTemplate.keys.${key} would replace a key the Secret already has` };
    let unknown: string | undefined;
    const value = text.replace(PLACEHOLDER, (all: string, name: string | undefined) => {
      if (name === undefined) return '$';
      if (!Object.hasOwn(standard, name)) {
        unknown ??= name;
        return '';
      }
      return standard[name] ?? '';
    });
    if (unknown !== undefined)
      return {
        ok: false,
        message: `secretTemplate.keys.${key}: $(${unknown}) is not a key of the Secret (${Object.keys(standard).sort().join(', ')})`,
      };
    data[key] = value;
  }
  // The operator keeps tenant Secrets in its cache only up to a bound (CACHED_TENANT_SECRET_BYTES):
  // a template may not take the Secret past it.
  const bytes = Object.entries(data).reduce((n, [k, v]) => n + k.length + Buffer.byteLength(v), 0);
  if (bytes > TEMPLATED_SECRET_BYTES)
    return {
      ok: false,
      message: `with secretTemplate the Secret would hold ${bytes} bytes, more than the ${TEMPLATED_SECRET_BYTES} it may`,
    };
  return { ok: true, data };
}
