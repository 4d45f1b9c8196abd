import { createHash } from 'node:crypto';

/** Names PostgreSQL reserves for roles, and databases no tenant may take. */
export const RESERVED_ROLES = new Set(['public', 'none', 'current_user', 'session_user', 'current_role', 'postgres']);
export const RESERVED_DATABASES = new Set(['postgres', 'template0', 'template1']);

/** Room left for the `_shadow` suffix, so every derived database name can get a shadow database. */
export const MAX_DERIVED = 63 - '_shadow'.length;

function shortHash(input: string): string {
  return createHash('sha256').update(input).digest('hex').slice(0, 8);
}

/**
 * Derives a PostgreSQL identifier from a namespace and a name: lower case, [a-z0-9_], at most
 * `max` bytes. A longer name keeps a prefix and gets a hash of the full name, so two long names
 * never collapse into one by truncation. A name that would start with a digit or with the
 * reserved `pg_` prefix gets `t_` in front.
 */
export function deriveIdentifier(namespace: string, name: string, max = MAX_DERIVED): string {
  const full = `${namespace}_${name}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  let id = /^[a-z_]/.test(full) && !full.startsWith('pg_') ? full : `t_${full}`;
  if (id.length > max) {
    const suffix = `_${shortHash(`${namespace}/${name}`)}`;
    id = id.slice(0, max - suffix.length).replace(/_+$/, '') + suffix;
  }
  return id;
}

export function shadowDatabaseName(database: string): string {
  return `${database}_shadow`;
}
