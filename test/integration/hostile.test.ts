/**
 * A hostile tenant. Each test acts as team "evil": through its own ServiceAccount token, confined to
 * its namespace, and through the SQL its own Secret allows. Team "victim" is watched for lost
 * logins, lost data and blocked provisioning. The superuser is used only to look, or to put the
 * server in a state an older tenantdb left behind.
 */
import pg from 'pg';
import { waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import {
  apiMessage,
  applyServer,
  cluster,
  condition,
  ensureDefaultServer,
  getServer,
  getTenant,
  operator,
  queryWith,
  readSecretData,
  superClient,
  superQuery,
  tenantIdentity,
  tenantReady,
  waitForCondition,
  waitTenantGone,
  type Tenant,
} from './harness.js';

const c = cluster();
let op: Proc;
let evil: Tenant;
let victim: Tenant;

beforeAll(async () => {
  op = operator(c, 'hostile', '2s');
  await ensureDefaultServer(c);
  evil = await tenantIdentity(c, 'evil');
  victim = await tenantIdentity(c, 'victim');
}, 120_000);

afterAll(async () => {
  await op?.stop();
});

/** A session as the tenant, from the DIRECT_URL of its own Secret, read with its own token. */
async function asTenant(t: Tenant, name: string): Promise<pg.Client> {
  const s = await t.core.readNamespacedSecret({ name: `${name}-db`, namespace: t.namespace });
  const url = Buffer.from(s.data?.DIRECT_URL ?? '', 'base64').toString('utf8');
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

const tenantOf = (t: Tenant, name: string) => () => getTenant(c, t.namespace, name);
const deleteAs = (t: Tenant, name: string) =>
  t.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: t.namespace,
    plural: 'tenantdatabases',
    name,
  });
const isMember = async (member: string, role: string) =>
  (await superQuery<{ m: boolean }>(c, 'SELECT pg_has_role($1, $2, $3) AS m', [member, role, 'MEMBER']))[0]?.m;
const sqlCode = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? JSON.stringify(e),
  );

/** Waits for the operator to have re-checked a tenant at least once more (a rotation is a full reconcile). */
async function reconcileOnce(t: Tenant, name: string, spec: Record<string, unknown>, stamp: string): Promise<void> {
  await t.apply('TenantDatabase', name, spec, { annotations: { 'tenantdb.dev/rotate-password': stamp } });
  await waitFor(
    `a reconcile of ${t.namespace}/${name}`,
    async () =>
      (await t.core.readNamespacedSecret({ name: `${name}-db`, namespace: t.namespace })).metadata?.annotations?.[
        'tenantdb.dev/rotated-for'
      ] === stamp,
    60_000,
  );
  await waitFor(
    `a login with the rotated password of ${t.namespace}/${name}`,
    async () => {
      const url = (await readSecretData(c, t.namespace, `${name}-db`))?.DIRECT_URL ?? '';
      return (
        (await queryWith(url).then(
          () => true,
          () => false,
        )) || undefined
      );
    },
    60_000,
    250,
  );
  await tenantReady(c, t.namespace, name);
}

describe('no tenant code or setting runs in an operator session', () => {
  test('the tenant does not own its database, so it cannot set what the operator sessions there would run with', async () => {
    await evil.apply('TenantDatabase', 'app', { deletionPolicy: 'Delete' });
    await tenantReady(c, 'evil', 'app');
    const s = await asTenant(evil, 'app');
    try {
      expect(await sqlCode(s.query('ALTER DATABASE evil_app SET search_path = public, pg_catalog'))).toBe('42501');
      expect(await sqlCode(s.query('ALTER DATABASE evil_app SET default_transaction_read_only = on'))).toBe('42501');
      // What a tenant needs still works: its schema, its tables, its own extensions.
      await s.query('CREATE TABLE public.orders (id int primary key)');
      await s.query('CREATE SCHEMA reporting');
      await s.query('CREATE TEMP TABLE scratch (x int)');
      const [owner] = (await s.query("SELECT pg_get_userbyid(nspowner) AS o FROM pg_namespace WHERE nspname = 'public'")).rows;
      expect(owner?.o).toBe('evil_app');
    } finally {
      await s.end();
    }
    const [db] = await superQuery(c, "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'evil_app'");
    expect(db?.owner).toBe(c.env.pg.admin.user);
  });

  test('a database an older version gave to the tenant, booby-trapped with settings and catalog look-alikes, is taken over without running any of it', async () => {
    await victim.apply('TenantDatabase', 'prey', {});
    await tenantReady(c, 'victim', 'prey');
    await evil.apply('TenantDatabase', 'trap', { extensions: ['pgcrypto'] });
    await tenantReady(c, 'evil', 'trap');
    // The state an older tenantdb left (the tenant role owns its database), and what the tenant did
    // with it, in one transaction, so that no re-check sees half of it: as that owner, every catalog
    // name an operator session uses shadowed by views that call the tenant's code, and settings for
    // every session in the database. The SQL runs as the tenant role (SET ROLE).
    const s = await superClient(c, 'evil_trap');
    try {
      await s.query('BEGIN');
      await s.query('ALTER DATABASE evil_trap OWNER TO evil_trap');
      await s.query('SET ROLE evil_trap');
      await s.query(`CREATE TABLE public.pwned (who text, at timestamptz default now())`);
      await s.query('GRANT INSERT ON public.pwned TO PUBLIC');
      await s.query(`CREATE FUNCTION public.trap() RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO public.pwned(who) VALUES (current_user);
          BEGIN EXECUTE 'GRANT victim_prey TO evil_trap'; EXCEPTION WHEN OTHERS THEN NULL; END;
          RETURN true;
        END $$`);
      for (const [view, cols] of [
        ['pg_namespace', 'oid, nspname, nspowner, nspacl'],
        ['pg_extension', 'oid, extname'],
        ['pg_roles', 'oid, rolname, rolcanlogin, rolconnlimit, rolsuper, rolcreatedb, rolcreaterole'],
        ['pg_database', 'oid, datname, datdba, datallowconn, datconnlimit, datacl'],
        ['pg_stat_activity', 'pid, usename, application_name'],
        ['pg_shdepend', 'dbid, refclassid, refobjid, deptype'],
      ] as const) {
        await s.query(`CREATE VIEW public.${view} AS SELECT ${cols} FROM pg_catalog.${view} WHERE public.trap()`);
      }
      await s.query(
        `CREATE FUNCTION public.pg_get_userbyid(oid) RETURNS name LANGUAGE sql AS $$ SELECT CASE WHEN public.trap() THEN pg_catalog.pg_get_userbyid($1) END $$`,
      );
      await s.query('ALTER DATABASE evil_trap SET search_path = public, pg_catalog');
      await s.query('ALTER DATABASE evil_trap SET default_transaction_read_only = on');
      await s.query('ALTER DATABASE evil_trap SET statement_timeout = 1');
      await s.query('ALTER DATABASE evil_trap SET role = evil_trap');
      await s.query('RESET ROLE');
      // Without its privileges on the database, the operator hands them back from a session inside
      // it: the one kind of operator session that meets the traps.
      await s.query('REVOKE ALL ON DATABASE evil_trap FROM evil_trap');
      await s.query('COMMIT');
    } finally {
      await s.end();
    }

    await reconcileOnce(evil, 'trap', { extensions: ['pgcrypto'] }, 'after-trap');
    const [db] = await superQuery<{ owner: string; settings: string[] | null }>(
      c,
      `SELECT pg_catalog.pg_get_userbyid(d.datdba) AS owner,
              (SELECT setconfig FROM pg_catalog.pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0) AS settings
         FROM pg_catalog.pg_database d WHERE d.datname = 'evil_trap'`,
    );
    expect(db?.owner).toBe(c.env.pg.admin.user);
    expect(db?.settings).toBeNull();
    const pwned = await superQuery<{ who: string }>(c, 'SELECT who FROM public.pwned', [], 'evil_trap');
    expect(pwned.filter((r) => r.who !== 'evil_trap')).toEqual([]);
    expect(await isMember('evil_trap', 'victim_prey')).toBe(false);
    expect(await isMember('evil_trap', c.env.pg.admin.user)).toBe(false);
    // The tenant still works, and so does the victim.
    expect((await queryWith((await readSecretData(c, 'evil', 'trap-db'))?.DIRECT_URL ?? '', 'SELECT CURRENT_USER AS u'))[0]?.u).toBe(
      'evil_trap',
    );
    expect((await queryWith((await readSecretData(c, 'victim', 'prey-db'))?.DIRECT_URL ?? ''))[0]?.u).toBe('victim_prey');
  });
});

describe('names never become syntax', () => {
  test.each([
    ['databaseName', 'all'],
    ['databaseName', 'sameuser'],
    ['databaseName', 'samerole'],
    ['databaseName', 'replication'],
    ['databaseName', 'pgbouncer'],
    ['databaseName', 'template1'],
    ['roleName', 'all'],
    ['roleName', 'pgbouncer'],
    ['roleName', 'pg_monitor'],
    ['roleName', 'postgres'],
  ])('the API server refuses %s %s', async (field, value) => {
    const err = await evil.apply('TenantDatabase', `kw-${value.replace(/_/g, '-')}`, { [field]: value }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeDefined();
    expect(apiMessage(err)).toMatch(new RegExp(`${field} must not be one of`));
  });

  test('a 63-byte database name is never mistaken for its own shadow and dropped', async () => {
    const name = `evil_${'x'.repeat(58)}`;
    expect(Buffer.byteLength(name)).toBe(63);
    await evil.apply('TenantDatabase', 'long', { databaseName: name });
    await tenantReady(c, 'evil', 'long');
    const url = (await readSecretData(c, 'evil', 'long-db'))?.DIRECT_URL ?? '';
    await queryWith(url, 'CREATE TABLE keep (x int)');
    await reconcileOnce(evil, 'long', { databaseName: name }, 'long-1');
    await reconcileOnce(evil, 'long', { databaseName: name }, 'long-2');
    const newUrl = (await readSecretData(c, 'evil', 'long-db'))?.DIRECT_URL ?? '';
    expect((await queryWith(newUrl, "SELECT to_regclass('public.keep')::text AS t"))[0]?.t).toBe('keep');
  });
});

describe('no tenant stops another tenant', () => {
  test('an idle session on template1 does not stop provisioning', async () => {
    await evil.apply('TenantDatabase', 'squat', {});
    await tenantReady(c, 'evil', 'squat');
    const url = new URL((await readSecretData(c, 'evil', 'squat-db'))?.DIRECT_URL ?? '');
    url.pathname = '/template1';
    const squatter = new pg.Client({ connectionString: url.toString() });
    squatter.on('error', () => undefined);
    await squatter.connect();
    try {
      await victim.apply('TenantDatabase', 'fresh', {});
      await tenantReady(c, 'victim', 'fresh', 30_000);
      expect((await queryWith((await readSecretData(c, 'victim', 'fresh-db'))?.DIRECT_URL ?? ''))[0]?.d).toBe('victim_fresh');
    } finally {
      await squatter.end();
    }
  });

  test("a privilege granted to another tenant's role does not pin that tenant's Delete", async () => {
    await victim.apply('TenantDatabase', 'leaving', { deletionPolicy: 'Delete' });
    await tenantReady(c, 'victim', 'leaving');
    const s = await asTenant(evil, 'app');
    try {
      await s.query('CREATE TABLE public.bait (x int)');
      await s.query('GRANT SELECT ON public.bait TO victim_leaving');
      await s.query('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO victim_leaving');
    } finally {
      await s.end();
    }
    await deleteAs(victim, 'leaving');
    await waitTenantGone(c, 'victim', 'leaving', 60_000);
    expect(await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'victim_leaving'")).toEqual([]);
    expect(await superQuery(c, "SELECT 1 FROM pg_database WHERE datname = 'victim_leaving'")).toEqual([]);
    // The attacker keeps its own table; only the grant went.
    expect((await superQuery(c, "SELECT to_regclass('public.bait')::text AS t", [], 'evil_app'))[0]?.t).toBe('bait');
  });

  test('another tenant granting the role something again and again cannot pin a Delete either', async () => {
    await victim.apply('TenantDatabase', 'pinned', { deletionPolicy: 'Delete' });
    await tenantReady(c, 'victim', 'pinned');
    const s = await asTenant(evil, 'app');
    await s.query('CREATE TABLE public.bait2 (x int)');
    let stop = false;
    const loop = (async () => {
      while (!stop) await s.query('GRANT SELECT ON public.bait2 TO victim_pinned').catch(() => new Promise((r) => setTimeout(r, 20)));
    })();
    try {
      await deleteAs(victim, 'pinned');
      await waitTenantGone(c, 'victim', 'pinned', 90_000);
      expect(await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'victim_pinned'")).toEqual([]);
    } finally {
      stop = true;
      await loop;
      await s.end();
    }
    // Left alone, the renamed role goes at a later re-check of the server.
    await waitFor(
      'the renamed role to be dropped',
      async () => (await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname LIKE 'victim_pinned_gone_%'")).length === 0 || undefined,
      60_000,
    );
  });

  test('a role whose name never reached status is found by its marker and removed', async () => {
    await evil.apply('TenantDatabase', 'ghost', { deletionPolicy: 'Delete', serverRef: { name: 'default' } });
    await tenantReady(c, 'evil', 'ghost');
    const td = await getTenant(c, 'evil', 'ghost');
    // A role the operator created for this object but never recorded (it died in between).
    await superQuery(c, `CREATE ROLE evil_ghost_orphan LOGIN`);
    await superQuery(c, `COMMENT ON ROLE evil_ghost_orphan IS 'managed by tenantdb; tenantdatabase=evil/ghost; uid=${td?.metadata.uid}'`);
    await deleteAs(evil, 'ghost');
    await waitTenantGone(c, 'evil', 'ghost');
    expect(await superQuery(c, "SELECT rolname FROM pg_roles WHERE rolname IN ('evil_ghost', 'evil_ghost_orphan')")).toEqual([]);
  });
});

describe('connections are budgeted', () => {
  test('a tenant that names no limit gets the server default, and one above the ceiling is refused', async () => {
    await evil.apply('TenantDatabase', 'greedy', { connectionLimit: 100000 });
    const td = await waitForCondition(tenantOf(evil, 'greedy'), 'Ready', 'False', 'ConnectionLimitTooHigh');
    expect(condition(td, 'Ready')?.message).toMatch(/connectionLimits.max of 100/);
    expect(await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'evil_greedy'")).toEqual([]);
    const [role] = await superQuery<{ rolconnlimit: number }>(c, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'evil_app'");
    expect(role?.rolconnlimit).toBe(20);
  });

  test('with enforceBudget, a limit that would take the sum past what the server leaves is refused', async () => {
    // A PostgreSQL of its own: the budget counts every tenant role on a server, and the shared test
    // server holds the tenants of every other file (kept logged in by this file's operator too).
    const { startPostgres } = await import('../env/postgres.js');
    const own = await startPostgres();
    const ownQuery = async (text: string) => {
      const client = await own.superClient();
      try {
        return (await client.query(text)).rows;
      } finally {
        await client.end();
      }
    };
    try {
      const { createServerObjects } = await import('../env/sandbox.js');
      await createServerObjects(c.kc, { host: own.host, port: own.port, admin: own.admin } as never, 'budgeted', {
        connectionLimits: { default: 5, max: 1000, enforceBudget: true },
      });
      // The test server has max_connections 300: 290 cannot fit beside the operator's sessions, whatever else is there.
      await evil.apply('TenantDatabase', 'hog', { serverRef: { name: 'budgeted' }, connectionLimit: 290 });
      const td = await waitForCondition(tenantOf(evil, 'hog'), 'Ready', 'False', 'ConnectionBudgetExceeded');
      expect(condition(td, 'Ready')?.message).toMatch(/does not fit/);
      expect(await ownQuery("SELECT 1 FROM pg_roles WHERE rolname = 'evil_hog'")).toEqual([]);
      // Whether the operator keeps a way in depends on every tenant of the server (unit-tested in reserve.test.ts).
      const server = await waitFor('AdminReserve', async () => condition(await getServer(c, 'budgeted'), 'AdminReserve'), 60_000);
      expect(server.message).toMatch(/tenant connection limits add up to \d+/);

      // Applied all at once, limits that fit only two at a time: never more than fits is granted.
      const m = /hold (\d+) of the (\d+) connections/.exec(String(condition(td, 'Ready')?.message));
      const left = Number(m?.[2]) - Number(m?.[1]);
      const each = Math.floor(left / 2);
      expect(each).toBeGreaterThan(left / 3);
      const names = ['rush-1', 'rush-2', 'rush-3', 'rush-4', 'rush-5'];
      await Promise.all(names.map((n) => evil.apply('TenantDatabase', n, { serverRef: { name: 'budgeted' }, connectionLimit: each })));
      const outcomes = await Promise.all(
        names.map((n) =>
          waitFor(
            `${n} to be Ready or refused`,
            async () => {
              const ready = condition(await getTenant(c, 'evil', n), 'Ready');
              return ready?.status === 'True' || ready?.reason === 'ConnectionBudgetExceeded' ? ready.status : undefined;
            },
            120_000,
          ),
        ),
      );
      expect(outcomes.filter((s) => s === 'True')).toHaveLength(2);
      const granted = await ownQuery("SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'evil_rush_%'");
      expect(granted[0]?.n).toBe(2);
      await Promise.all([...names, 'hog'].map((n) => deleteAs(evil, n)));
      await Promise.all([...names, 'hog'].map((n) => waitTenantGone(c, 'evil', n)));
      await c.custom.deleteClusterCustomObject({ group: 'tenantdb.dev', version: 'v1alpha1', plural: 'postgresservers', name: 'budgeted' });
    } finally {
      await own.stop();
    }
  }, 240_000);
});

describe('servers say which namespaces may use them', () => {
  test('a tenant in a namespace the server does not admit gets nothing there', async () => {
    const p = c.env.pg;
    const { createServerObjects } = await import('../env/sandbox.js');
    await createServerObjects(c.kc, { host: p.host, port: p.port, admin: p.admin } as never, 'restricted', {
      allowedNamespaces: { from: 'Selector', selector: { matchLabels: { 'tenantdb.dev/restricted': 'yes' } } },
    });
    await evil.apply('TenantDatabase', 'sneak', { serverRef: { name: 'restricted' } });
    const td = await waitForCondition(tenantOf(evil, 'sneak'), 'Ready', 'False', 'ServerNotAllowed');
    expect(condition(td, 'Ready')?.message).toMatch(/namespace evil does not match/);
    expect(await superQuery(c, "SELECT 1 FROM pg_roles WHERE rolname = 'evil_sneak'")).toEqual([]);
    // The namespace's labels are the cluster admin's to set; once set, the tenant is provisioned.
    const { apply } = await import('../env/cluster.js');
    await apply(c.kc, [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'victim', labels: { 'tenantdb.dev/restricted': 'yes' } } },
    ]);
    await victim.apply('TenantDatabase', 'welcome', { serverRef: { name: 'restricted' } });
    await tenantReady(c, 'victim', 'welcome');

    // Admission taken back: login goes (data stays), and comes back with admission.
    const url = (await readSecretData(c, 'victim', 'welcome-db'))?.DIRECT_URL ?? '';
    await apply(c.kc, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'victim', labels: { 'tenantdb.dev/restricted': 'no' } } }]);
    await waitForCondition(tenantOf(victim, 'welcome'), 'Ready', 'False', 'ServerNotAllowed');
    await waitFor(
      'login to be disabled',
      async () => {
        const [r] = await superQuery<{ rolcanlogin: boolean }>(c, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'victim_welcome'");
        return r?.rolcanlogin === false || undefined;
      },
      30_000,
    );
    expect(await sqlCode(queryWith(url))).toBe('28000');
    await apply(c.kc, [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'victim', labels: { 'tenantdb.dev/restricted': 'yes' } } },
    ]);
    await tenantReady(c, 'victim', 'welcome');
    expect((await queryWith(url))[0]?.u).toBe('victim_welcome');
  });

  test('serverRef cannot be changed once set', async () => {
    await evil.apply('TenantDatabase', 'mover', { serverRef: { name: 'default' } });
    await tenantReady(c, 'evil', 'mover');
    await applyServer(c, 'other', {
      host: '127.0.0.1',
      port: 1,
      sslMode: 'disable',
      adminSecretRef: { namespace: 'tenantdb-system', name: 'nope' },
    });
    const err = await evil.apply('TenantDatabase', 'mover', { serverRef: { name: 'other' } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(apiMessage(err)).toMatch(/serverRef cannot be changed/);
  });
});
