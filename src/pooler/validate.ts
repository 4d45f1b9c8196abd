/**
 * Checks every line of the pooler files before they are loaded: PgBouncer's RELOAD is not atomic
 * (a syntax error keeps what was parsed before it and still reports success) and it skips a bad
 * HBA line silently. Only lines of the shapes the operator renders pass.
 */
import { isCidr } from '../api/common.js';
import { nameProblem } from './names.js';
import type { PoolerFiles } from './render.js';

export interface ValidateOptions {
  /** Users the operator's files must not mention: the agent's own admin, whose lines the agent adds itself. */
  reservedUsers?: readonly string[];
}
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/;
/** The values each `[databases]` key may take; the renderer checks what it writes against the same. */
export const DB_KEYS: Record<string, (v: string) => boolean> = {
  host: (v) => HOST.test(v),
  port: (v) => /^\d{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535,
  dbname: (v) => nameProblem('database', v) === undefined,
  pool_mode: (v) => ['session', 'transaction', 'statement'].includes(v),
  pool_size: (v) => /^\d{1,5}$/.test(v),
  max_db_connections: (v) => /^\d{1,6}$/.test(v),
  max_db_client_connections: (v) => /^\d{1,6}$/.test(v),
};
export const VERIFIER = /^SCRAM-SHA-256\$\d{1,7}:[A-Za-z0-9+/=]{4,64}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/;

export interface ValidationError {
  file: keyof PoolerFiles;
  line: number;
  message: string;
}

function lines(text: string): string[] {
  if (text !== '' && !text.endsWith('\n')) return [...text.split('\n'), '\u0000missing-final-newline'];
  return text.split('\n').slice(0, -1);
}

export function validateDatabases(text: string): ValidationError[] {
  const errs: ValidationError[] = [];
  const seen = new Set<string>();
  lines(text).forEach((l, i) => {
    const at = (message: string) => errs.push({ file: 'databases.ini', line: i + 1, message });
    if (i === 0) return l === '[databases]' ? undefined : at('the file must start with [databases]');
    const m = /^([a-z_][a-z0-9_.]{0,62}) = (.+)$/.exec(l);
    if (!m) return at('not an "alias = key=value ..." entry');
    const [, alias = '', rest = ''] = m;
    const bad = nameProblem('alias', alias);
    if (bad) return at(bad);
    if (seen.has(alias)) at(`duplicate alias ${alias}`);
    seen.add(alias);
    const keys = new Set<string>();
    for (const pair of rest.split(' ')) {
      const kv = /^([a-z_]+)=(\S+)$/.exec(pair);
      const check = kv ? DB_KEYS[kv[1] ?? ''] : undefined;
      if (!kv || !check) return at(`unknown or malformed setting "${pair}"`);
      if (!check(kv[2] ?? '')) return at(`bad value in "${pair}"`);
      keys.add(kv[1] ?? '');
    }
    for (const k of ['host', 'port', 'dbname']) if (!keys.has(k)) at(`missing ${k}`);
  });
  if (lines(text).length === 0) errs.push({ file: 'databases.ini', line: 1, message: 'empty file' });
  return errs;
}

export function validateUserlist(text: string, o: ValidateOptions = {}): ValidationError[] {
  const errs: ValidationError[] = [];
  const seen = new Set<string>();
  lines(text).forEach((l, i) => {
    const at = (message: string) => errs.push({ file: 'userlist.txt', line: i + 1, message });
    const m = /^"([^"]+)" "(.+)"$/.exec(l);
    if (!m) return at('not a "user" "verifier" line');
    const [, user = '', verifier = ''] = m;
    // PgBouncer keeps the last line of a user: a second line, or one for the admin, would replace a password.
    const bad =
      nameProblem('role', user) ??
      (o.reservedUsers?.includes(user) ? `user ${user} is reserved for the agent` : seen.has(user) ? `duplicate user ${user}` : undefined);
    if (bad) at(bad);
    seen.add(user);
    if (!VERIFIER.test(verifier)) at(`user ${user}: not a SCRAM-SHA-256 verifier`);
    return undefined;
  });
  return errs;
}

/**
 * Tenant rules name a tenant's alias and role. `all` is allowed only in the two shapes the renderer
 * writes: `host <alias> all <cidr> reject` (a whitelisted tenant's closing rejects) and
 * `host all all <cidr> reject` (the file's closing catch-all). No rule may name the admin console.
 */
export function validateHba(text: string, o: ValidateOptions = {}): ValidationError[] {
  const errs: ValidationError[] = [];
  lines(text).forEach((l, i) => {
    const at = (message: string) => errs.push({ file: 'hba.conf', line: i + 1, message });
    const f = l.split(' ');
    if (f.length !== 5 || f[0] !== 'host') return at('not a "host db user cidr method" rule');
    const [, db = '', user = '', cidr = '', method = ''] = f;
    if (method !== 'scram-sha-256' && method !== 'reject') at(`method ${method} is not allowed`);
    if (db === 'all') {
      if (user !== 'all' || method !== 'reject') at('database all is allowed only in "host all all <cidr> reject"');
    } else {
      const bad = nameProblem('alias', db);
      if (bad) at(`bad database ${db}: ${bad}`);
    }
    if (user === 'all') {
      if (method !== 'reject') at('user all is allowed only with method reject');
    } else {
      const bad = nameProblem('role', user) ?? (o.reservedUsers?.includes(user) ? `user ${user} is reserved for the agent` : undefined);
      if (bad) at(`bad user ${user}: ${bad}`);
    }
    if (!isCidr(cidr)) at(`bad CIDR ${cidr}`);
    return undefined;
  });
  return errs;
}

/**
 * The tenant block of a server's pg_hba.conf: host lines with lists of tenant databases, scram or
 * reject. No keyword in the database list; user `all` only as the renderer writes it (anyone from
 * the always-allowed CIDRs, and the closing rejects).
 */
export function validateServerHba(text: string): string[] {
  const errs: string[] = [];
  lines(text).forEach((l, i) => {
    const f = l.split(' ');
    const at = (m: string) => errs.push(`pg_hba.conf:${i + 1}: ${m}`);
    if (f.length !== 5 || f[0] !== 'host') return at('not a "host dbs user cidr method" rule');
    const [, dbs = '', user = '', cidr = '', method = ''] = f;
    const badDb = dbs
      .split(',')
      .map((d) => nameProblem('database', d))
      .find(Boolean);
    if (badDb) at(`bad database list ${dbs}: ${badDb}`);
    if (user !== 'all') {
      // A tenant's login roles, as a comma list (overlapping rotation gives a tenant two).
      const bad = user
        .split(',')
        .map((u) => nameProblem('role', u))
        .find(Boolean);
      if (bad) at(`bad user list ${user}: ${bad}`);
    }
    if (!isCidr(cidr)) at(`bad CIDR ${cidr}`);
    if (method !== 'scram-sha-256' && method !== 'reject') at(`method ${method} is not allowed`);
    return undefined;
  });
  return errs;
}

export function validatePoolerFiles(files: Partial<Record<keyof PoolerFiles, string>>, o: ValidateOptions = {}): ValidationError[] {
  const out: ValidationError[] = [];
  for (const f of ['databases.ini', 'userlist.txt', 'hba.conf'] as const) {
    if (files[f] === undefined) out.push({ file: f, line: 0, message: 'missing' });
  }
  if (out.length) return out;
  return [
    ...validateDatabases(files['databases.ini'] ?? ''),
    ...validateUserlist(files['userlist.txt'] ?? '', o),
    ...validateHba(files['hba.conf'] ?? '', o),
  ];
}
