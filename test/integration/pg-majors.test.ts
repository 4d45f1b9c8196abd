/** Every supported PostgreSQL major starts from its embedded package, with an admin that is not a superuser. */
import pg from 'pg';
import { startPostgres, supportedMajors, type PgServer } from '../env/postgres.js';

const servers: PgServer[] = [];

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

test.each(supportedMajors())('PostgreSQL %i starts, and its admin has CREATEDB and CREATEROLE but is not a superuser', async (major) => {
  const s = await startPostgres({ major });
  servers.push(s);
  const admin = new pg.Client({ host: s.host, port: s.port, user: s.admin.user, password: s.admin.password, database: 'postgres' });
  await admin.connect();
  try {
    const version = await admin.query<{ server_version: string }>('SHOW server_version');
    expect(version.rows[0]?.server_version).toMatch(new RegExp(`^${major}\\b`));
    const role = await admin.query<{ rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean }>(
      'SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user',
    );
    expect(role.rows[0]).toEqual({ rolsuper: false, rolcreatedb: true, rolcreaterole: true });
  } finally {
    await admin.end();
  }
});
