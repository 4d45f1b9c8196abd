/**
 * A real PgBouncer with the real pooler agent beside it. PgBouncer refuses to run as root, so as root
 * it runs as the postgres user; the agent runs as the test runner and hands its files to postgres.
 * The agent authenticates as its own ServiceAccount.
 */
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ROOT } from './cluster.js';
import { freePort, waitFor } from './ports.js';
import { postgresUser, startProcess, type Proc } from './process.js';

export interface Pooler {
  host: string;
  port: number;
  dir: string;
  admin: { user: string; password: string };
  agent: Proc;
  pgbouncer: Proc;
  stop(): Promise<void>;
}

/** The oldest PgBouncer the pooler is tested with (scripts/pgbouncer.sh fetches one when needed). */
export const PGBOUNCER_MIN: readonly [number, number] = [1, 24];

function pgbouncerVersion(bin: string): [number, number] | undefined {
  try {
    const m = /^PgBouncer (\d+)\.(\d+)/m.exec(execFileSync(bin, ['--version'], { encoding: 'utf8' }));
    return m ? [Number(m[1]), Number(m[2])] : undefined;
  } catch {
    return undefined;
  }
}

let found: string | undefined;
export function pgbouncerBinary(): string {
  if (found) return found;
  const cache =
    process.getuid?.() === 0
      ? (process.env.TENANTDB_PGBOUNCER_CACHE ?? '/var/cache/tenantdb/pgbouncer')
      : (process.env.TENANTDB_PGBOUNCER_CACHE ?? join(process.env.TENANTDB_CACHE ?? join(homedir(), '.cache/tenantdb'), 'pgbouncer'));
  for (const p of [process.env.TENANTDB_PGBOUNCER, '/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', join(cache, 'bin/pgbouncer')]) {
    if (!p || !existsSync(p)) continue;
    const v = pgbouncerVersion(p);
    if (v && (v[0] > PGBOUNCER_MIN[0] || (v[0] === PGBOUNCER_MIN[0] && v[1] >= PGBOUNCER_MIN[1]))) return (found = p);
  }
  throw new Error(
    `PgBouncer ${PGBOUNCER_MIN.join('.')} or newer not found; run scripts/setup.sh (npm test does) or set TENANTDB_PGBOUNCER`,
  );
}

export interface PoolerOptions {
  /** kubeconfig of the agent's ServiceAccount. */
  agentKubeconfig: string;
  /** The pooler config Secret, namespace/name. */
  secret: string;
  logDir: string;
  name: string;
}

export async function startPooler(o: PoolerOptions): Promise<Pooler> {
  const ids = postgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'tenantdb-pgb-'));
  const conf = join(dir, 'conf');
  const port = await freePort();
  const admin = { user: 'tenantdb_pooler', password: randomBytes(18).toString('base64url') };
  const ini = [
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    `unix_socket_dir = ${dir}`,
    `pidfile = ${join(dir, 'pgbouncer.pid')}`,
    'auth_type = hba',
    `auth_file = ${join(conf, 'userlist.txt')}`,
    `auth_hba_file = ${join(conf, 'hba.conf')}`,
    `admin_users = ${admin.user}`,
    'max_client_conn = 2000',
    'default_pool_size = 10',
    'ignore_startup_parameters = extra_float_digits',
    'server_reset_query = DISCARD ALL',
    // A role recreated by a repair is usable at once, not after the 15 s default.
    'server_login_retry = 1',
    `%include ${join(conf, 'databases.ini')}`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'pgbouncer.ini'), ini);
  mkdirSync(conf);
  // PgBouncer runs as postgres; the agent (as whoever runs the tests) writes files owned like conf/.
  if (ids) {
    for (const p of [dir, conf, join(dir, 'pgbouncer.ini')]) chownSync(p, ids.uid, ids.gid);
  }
  const spawnOpts = ids ? { uid: ids.uid, gid: ids.gid } : {};
  const agent = startProcess(
    'agent',
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'src/cli/main.ts'),
      'agent',
      `--secret=${o.secret}`,
      `--dir=${conf}`,
      `--kubeconfig=${o.agentKubeconfig}`,
      '--pgbouncer-host=127.0.0.1',
      `--pgbouncer-port=${port}`,
      `--admin-user=${admin.user}`,
    ],
    join(o.logDir, `agent-${o.name}.log`),
    { cwd: ROOT, env: { ...process.env, TENANTDB_POOLER_ADMIN_PASSWORD: admin.password } },
  );
  let bouncer: Proc | undefined;
  try {
    await waitFor('the agent to write the bootstrap config', async () => existsSync(join(conf, 'databases.ini')), 30_000);
    bouncer = startProcess(
      'pgbouncer',
      pgbouncerBinary(),
      [join(dir, 'pgbouncer.ini')],
      join(o.logDir, `pgbouncer-${o.name}.log`),
      spawnOpts,
    );
    await waitFor(
      'pgbouncer admin console',
      async () => {
        const c = new pg.Client({ host: '127.0.0.1', port, user: admin.user, password: admin.password, database: 'pgbouncer' });
        c.on('error', () => undefined);
        await c.connect();
        await c.query('SHOW VERSION');
        await c.end();
        return true;
      },
      30_000,
    );
  } catch (err) {
    await bouncer?.stop();
    await agent.stop();
    throw err;
  }
  const started = bouncer;
  return {
    host: '127.0.0.1',
    port,
    dir,
    admin,
    agent,
    pgbouncer: started,
    stop: async () => {
      await agent.stop();
      await started.stop('SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
