/**
 * A real PostgreSQL server from initdb in a temporary folder: SCRAM-SHA-256 everywhere, its own
 * pg_hba.conf, a free port on loopback, and an admin that is NOT a superuser (CREATEDB, CREATEROLE),
 * like the admin role of a managed service. The superuser exists only for the tests' own checks.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { freePort, waitFor } from './ports.js';
import { postgresUser, startProcess, type Proc } from './process.js';

export interface PgServer {
  host: string;
  port: number;
  dir: string;
  superuser: { user: string; password: string };
  admin: { user: string; password: string };
  /** A client as the superuser, for the tests' own checks (never used by the operator). */
  superClient(database?: string): Promise<pg.Client>;
  stop(): Promise<void>;
}

export function pgBinDir(): string {
  if (process.env.TENANTDB_PG_BIN) return process.env.TENANTDB_PG_BIN;
  try {
    const d = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
    if (existsSync(join(d, 'initdb'))) return d;
  } catch {
    /* fall through */
  }
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, 'bin/initdb'))) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (!newest) throw new Error('PostgreSQL server binaries not found; install postgresql or set TENANTDB_PG_BIN');
  return join(base, newest, 'bin');
}

export interface PgServerOptions {
  /** Extra pg_hba.conf lines placed before the default SCRAM rules. */
  hbaLines?: string[];
  adminUser?: string;
}

export async function startPostgres(opts: PgServerOptions = {}): Promise<PgServer> {
  const bin = pgBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'tenantdb-pg-'));
  const data = join(dir, 'data');
  const ids = postgresUser();
  chmodSync(dir, 0o755);
  if (ids) chownSync(dir, ids.uid, ids.gid);
  const superuser = { user: 'postgres', password: randomBytes(18).toString('base64url') };
  const admin = { user: opts.adminUser ?? 'tenantdb_admin', password: randomBytes(18).toString('base64url') };
  const pwfile = join(dir, 'pwfile');
  writeFileSync(pwfile, `${superuser.password}\n`, { mode: 0o600 });
  if (ids) chownSync(pwfile, ids.uid, ids.gid);
  const spawnOpts = ids ? { uid: ids.uid, gid: ids.gid } : {};
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', superuser.user, '--pwfile', pwfile, '--auth=scram-sha-256', '-E', 'UTF8', '--no-instructions', '--locale=C'], {
    ...spawnOpts,
    stdio: 'pipe',
  });
  rmSync(pwfile);
  const port = await freePort();
  const hba = [
    ...(opts.hbaLines ?? []),
    'local all all scram-sha-256',
    'host all all 127.0.0.0/8 scram-sha-256',
    'host all all ::1/128 scram-sha-256',
    '',
  ].join('\n');
  writeFileSync(join(data, 'pg_hba.conf'), hba);
  if (ids) chownSync(join(data, 'pg_hba.conf'), ids.uid, ids.gid);
  const proc: Proc = startProcess(
    'postgres',
    join(bin, 'postgres'),
    ['-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dir}`, '-c', 'fsync=off', '-c', 'max_connections=300', '-c', 'password_encryption=scram-sha-256'],
    join(dir, 'postgres.log'),
    spawnOpts,
  );
  const host = '127.0.0.1';
  const connect = async (user: string, password: string, database = 'postgres') => {
    const c = new pg.Client({ host, port, user, password, database });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  await waitFor('postgres to accept connections', async () => {
    const c = await connect(superuser.user, superuser.password);
    await c.end();
    return true;
  }, 30_000);
  const su = await connect(superuser.user, superuser.password);
  try {
    await su.query(`CREATE ROLE ${pg.escapeIdentifier(admin.user)} LOGIN CREATEDB CREATEROLE PASSWORD ${pg.escapeLiteral(admin.password)}`);
  } finally {
    await su.end();
  }
  return {
    host,
    port,
    dir,
    superuser,
    admin,
    superClient: (database = 'postgres') => connect(superuser.user, superuser.password, database),
    stop: async () => {
      await proc.stop('SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
