/**
 * A TenantGroup's registry Secret, rendered from its members and their own Secrets. Pure, so that
 * what a backend reads can be tested in a table without a cluster.
 */

export interface Member {
  name: string;
  ready: boolean;
  /** The member's own Secret's data; undefined while it has none the operator wrote. */
  secret: Readonly<Record<string, string>> | undefined;
}

export interface EnvKey {
  key: string;
  from: string;
}

/** What the registry lists of a member: its names and every URL its own Secret gives. */
const LISTED = {
  database: 'database',
  schema: 'schema',
  user: 'user',
  host: 'host',
  port: 'port',
  poolerHost: 'pooler-host',
  poolerPort: 'pooler-port',
  poolerDatabase: 'pooler-database',
  sslmode: 'sslmode',
  uri: 'DIRECT_URL',
  pooledUri: 'DATABASE_URL',
  jdbcUrl: 'jdbc-url',
  prismaUrl: 'PRISMA_DATABASE_URL',
  prismaDirectUrl: 'PRISMA_DIRECT_URL',
  password: 'password',
} as const;

/** A member value longer than this is left out of the registry (its own Secret's values are a few hundred bytes). */
export const MEMBER_VALUE_BYTES = 4096;
const value = (s: Readonly<Record<string, string>> | undefined, key: string): string | undefined => {
  const v = s && Object.hasOwn(s, key) ? s[key] : undefined;
  return v !== undefined && v.length <= MEMBER_VALUE_BYTES ? v : undefined;
};

/** A Secret holds at most 1 MiB; the registry is refused well before (the API server counts base64-free bytes). */
export const REGISTRY_LIMIT = 1024 * 1024 - 16 * 1024;
/** Past this, status warns that the registry is filling up. */
export const REGISTRY_WARN = Math.floor(REGISTRY_LIMIT * 0.8);

/** The key template with a member's name put in: $(NAME) upper case with non-alphanumerics as _, $(name) as is. */
export function envKeyFor(template: string, member: string): string {
  const upper = member.toUpperCase().replace(/[^A-Z0-9]/g, '_');
  return template.replaceAll('$(NAME)', upper).replaceAll('$(name)', member);
}

export type Registry =
  | { ok: true; data: Record<string, string>; bytes: number; members: number; ready: number }
  | { ok: false; message: string; bytes?: number };

/**
 * `tenants.json` (every member with a Secret, sorted by name, with a `ready` flag) and one key per
 * member and env entry. Two members whose names give the same key are refused rather than one
 * silently winning.
 */
export interface GroupEntry {
  /** The group login's keys (group-username, group-password, group-uri, ...). */
  keys: Readonly<Record<string, string>>;
  /** What tenants.json says of the group login under `group`. */
  document: Readonly<Record<string, unknown>>;
}

export function renderRegistry(members: readonly Member[], env: readonly EnvKey[], group?: GroupEntry): Registry {
  const listed = [...members].filter((m) => m.secret).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const tenants = listed.map((m) => {
    const entry: Record<string, string | number | boolean> = { name: m.name, ready: m.ready };
    for (const [field, key] of Object.entries(LISTED)) {
      const v = value(m.secret, key);
      if (v !== undefined) entry[field] = field === 'port' || field === 'poolerPort' ? Number(v) : v;
    }
    return entry;
  });
  const doc = group ? { tenants, group: group.document } : { tenants };
  const data: Record<string, string> = { 'tenants.json': `${JSON.stringify(doc, null, 2)}\n`, ...group?.keys };
  const from = new Map<string, string>();
  for (const e of env) {
    for (const m of listed) {
      const key = envKeyFor(e.key, m.name);
      if (!/^[-._a-zA-Z0-9]{1,253}$/.test(key))
        return { ok: false, message: `env key ${JSON.stringify(key)} of member ${m.name} is not a Secret key` };
      const other = from.get(key);
      if (other !== undefined || Object.hasOwn(data, key))
        return {
          ok: false,
          message: `members ${other ?? '(the registry)'} and ${m.name} both give the key ${key}; rename one or change the env key`,
        };
      from.set(key, m.name);
      const v = value(m.secret, e.from);
      if (v !== undefined) data[key] = v;
    }
  }
  const bytes = Object.entries(data).reduce((n, [k, v]) => n + k.length + Buffer.byteLength(v), 0);
  if (bytes > REGISTRY_LIMIT)
    return {
      ok: false,
      message: `the registry would hold ${bytes} bytes, past the ${REGISTRY_LIMIT} a Secret can take; split the group`,
      bytes,
    };
  return { ok: true, data, bytes, members: listed.length, ready: listed.filter((m) => m.ready).length };
}
