/**
 * The SQL-level isolation guarantees, on every supported PostgreSQL major (14 to 18): privileges and
 * defaults differ between them (PUBLIC's CREATE on public before 15, CREATEROLE in 16, reserved
 * connections from 16). The operator's own provisioning steps run against each server with the
 * operator's pinned admin sessions; the tenants act through their own logins. The full suite, with
 * Kubernetes, runs on one major.
 */
import pg from 'pg';
import {
  claimOfDatabase,
  clearRoleDependencies,
  dropShadowIfOurs,
  markIfUnmarked,
  ensureAccessMode,
  ensureDatabase,
  ensureHolderRole,
  ensureExtensions,
  ensureRole,
  ensureSchemaTenant,
  type InDatabase,
  type Owner,
} from '../../src/controllers/tenantdatabase/provision.js';
import { verifierFor } from '../../src/controllers/postgresserver/pooler-plan.js';
import { AdminPools, asTenant, type ServerEndpoint } from '../../src/pg/connections.js';
import * as sql from '../../src/pg/tenant-sql.js';
import { TerminalError } from '../../src/runtime/errors.js';
import { createLogger } from '../../src/runtime/logger.js';
import { startPostgres, supportedMajors, type PgServer } from '../env/postgres.js';

const servers: PgServer[] = [];
const pools = new AdminPools(createLogger('silent'));

afterAll(async () => {
  await pools.closeAll();
  await Promise.all(servers.map((s) => s.stop()));
});

interface Env {
  major: number;
  s: PgServer;
  ep: ServerEndpoint;
  pool: pg.Pool;
  inDatabase: InDatabase;
  superQuery(text: string, database?: string): Promise<pg.QueryResultRow[]>;
}

async function setup(major: number): Promise<Env> {
  const s = await startPostgres({ major });
  servers.push(s);
  const ep: ServerEndpoint = { host: s.host, port: s.port, sslMode: 'disable' };
  const creds = { username: s.admin.user, password: s.admin.password, database: 'postgres' };
  const pool = pools.get(`pg${major}`, ep, creds);
  return {
    major,
    s,
    ep,
    pool,
    inDatabase: (database, fn) => pools.withDatabase(ep, creds, database, fn),
    superQuery: async (text, database = 'postgres') => {
      const c = await s.superClient(database);
      try {
        return (await c.query(text)).rows;
      } finally {
        await c.end();
      }
    },
  };
}

/** What the operator does for a new tenant, in its order: role, database, the tenant's own session. */
async function provision(e: Env, name: string, extensions: string[] = []): Promise<{ url: string; password: string; owner: Owner }> {
  const owner: Owner = {
    namespace: 'ns',
    name,
    uid: `00000000-0000-4000-8000-${String(e.major).padStart(4, '0')}${Buffer.from(name).toString('hex').slice(0, 8).padEnd(8, '0')}`,
  };
  const password = `pw-${name}-${'x'.repeat(24)}`;
  await ensureRole(e.pool, owner, { role: name, verifier: verifierFor(owner.uid, name, password), connectionLimit: 10, login: true });
  // As the operator calls it: on 15 and later, schema public of the new database is given without a look.
  await ensureDatabase(
    e.pool,
    e.inDatabase,
    owner,
    { database: name, role: name, connectionLimit: 10 },
    { publicOwnedByDatabaseOwner: e.major >= 15 },
  );
  const session = await asTenant(e.ep, name, password, name, (c) => ensureExtensions(c, extensions));
  if (!session.ok) throw session.error as Error;
  expect(session.value.failed).toEqual([]);
  return { url: `postgresql://${name}:${password}@${e.s.host}:${e.s.port}/${name}`, password, owner };
}

async function as<T>(url: string, fn: (c: pg.Client) => Promise<T>, database?: string): Promise<T> {
  const u = new URL(url);
  if (database) u.pathname = `/${database}`;
  const c = new pg.Client({ connectionString: u.toString() });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}
const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (err: { code?: string }) => err.code ?? JSON.stringify(err),
  );

describe.each(supportedMajors())('PostgreSQL %i', (major) => {
  let e: Env;
  beforeAll(async () => {
    e = await setup(major);
  }, 60_000);

  test("a role's statements sent together are all or none, and the session goes on", async () => {
    const marker = 'managed by tenantdb; tenantdatabase=ns/atomic; uid=u';
    const client = await e.pool.connect();
    try {
      // The last one fails: the role and its comment made before it in the same query go too.
      await expect(
        sql.runTogether(client, [
          'CREATE ROLE "atomic_a" NOLOGIN',
          `COMMENT ON ROLE "atomic_a" IS ${pg.escapeLiteral(marker)}`,
          'GRANT "no_such_role_x" TO CURRENT_USER',
        ]),
      ).rejects.toMatchObject({ code: '42704' });
      // The same session, usable at once (no transaction left open), sees nothing of it.
      expect(await sql.findRole(client, 'atomic_a')).toBeUndefined();
      expect((await client.query<{ x: number }>('SELECT 1 AS x')).rows[0]?.x).toBe(1);
      // A role created whole: marker and the admin's membership included, one round trip.
      await sql.createRole(client, 'atomic_b', verifierFor('u', 'atomic_b', `pw-${'y'.repeat(24)}`), 3, marker);
      const row = await sql.findRole(client, 'atomic_b');
      expect(row?.comment).toBe(marker);
      const member = await client.query<{ m: boolean }>("SELECT pg_has_role(CURRENT_USER, 'atomic_b', 'MEMBER') AS m");
      expect(member.rows[0]?.m).toBe(true);
      // A second CREATE of it fails as a duplicate and leaves the first as it was.
      await expect(
        sql.createRole(client, 'atomic_b', verifierFor('u', 'atomic_b', `pw-${'z'.repeat(24)}`), 5, 'other'),
      ).rejects.toMatchObject({
        code: '42710',
      });
      expect((await sql.findRole(client, 'atomic_b'))?.comment).toBe(marker);
      await expect(sql.runTogether(client, ['BEGIN', 'CREATE ROLE "atomic_c"'])).rejects.toThrow(/transaction/);
    } finally {
      client.release();
    }
  });

  test('a tenant gets its database to use, not to own, and no other tenant gets in', async () => {
    const a = await provision(e, 'tenant_a', ['pgcrypto']);
    const b = await provision(e, 'tenant_b');
    await as(a.url, async (c) => {
      expect(await code(c.query('ALTER DATABASE tenant_a SET search_path = public, pg_catalog'))).toBe('42501');
      await c.query('CREATE TABLE public.t (x int)');
      await c.query('CREATE SCHEMA mine');
      const ext = await c.query("SELECT pg_get_userbyid(extowner) AS o FROM pg_extension WHERE extname = 'pgcrypto'");
      expect(ext.rows[0]?.o).toBe('tenant_a');
    });
    expect(await code(as(a.url, async () => undefined, 'tenant_b'))).toBe('42501');
    expect(await code(as(b.url, async () => undefined, 'tenant_a'))).toBe('42501');
    const [db] = await e.superQuery("SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'tenant_a'");
    expect(db?.owner).toBe(e.s.admin.user);
    // What the creation's few round trips left, as a full look sees it: marked, open, PUBLIC without
    // anything, the admin's and the tenant's privileges alone; so a second pass has nothing to do.
    const row = await sql.findDatabase(e.pool, 'tenant_a');
    expect(sql.markerUid(row?.comment)).toBe(a.owner.uid);
    expect(row?.allowConnections).toBe(true);
    expect(row?.defaultAcl).toBe(false);
    expect(new Set(row?.grants.map((g) => `${g.grantee}:${g.privilege}`))).toEqual(
      new Set([e.s.admin.user, 'tenant_a'].flatMap((r) => ['CONNECT', 'CREATE', 'TEMPORARY'].map((p) => `${r}:${p}`))),
    );
    if (major >= 15) {
      const [schema] = await e.superQuery(
        "SELECT pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = 'public'",
        'tenant_a',
      );
      expect(schema?.owner).toBe('tenant_a');
    }
    expect(await ensureDatabase(e.pool, e.inDatabase, a.owner, { database: 'tenant_a', role: 'tenant_a', connectionLimit: 10 })).toEqual(
      [],
    );
  });

  test('a new database marked by someone else between its CREATE and its opening is left closed and theirs', async () => {
    const tag = sql.creationTag('u');
    await sql.createDatabase(e.pool, 'raced', tag);
    const theirs = 'managed by tenantdb; tenantdatabase=other/raced; uid=11111111-2222-4333-8444-555555555555';
    await sql.commentOnDatabase(e.pool, 'raced', theirs);
    await expect(
      sql.openNewDatabase(e.pool, 'raced', 'managed by tenantdb; tenantdatabase=ns/raced; uid=u', tag, 10),
    ).rejects.toMatchObject({
      code: sql.TOUCHED_SINCE_CREATE,
    });
    const row = await sql.findDatabase(e.pool, 'raced');
    expect(row?.comment).toBe(theirs);
    expect(row?.allowConnections).toBe(false);
    expect(row?.defaultAcl).toBe(true);
    // Nor one created with another tenant's tag.
    await sql.createDatabase(e.pool, 'retagged', tag + 1);
    await expect(sql.openNewDatabase(e.pool, 'retagged', theirs, tag, 10)).rejects.toMatchObject({ code: sql.TOUCHED_SINCE_CREATE });
    // Untouched, it opens, with its real limit.
    await sql.createDatabase(e.pool, 'unraced', tag);
    await sql.openNewDatabase(e.pool, 'unraced', theirs, tag, 10);
    expect(await sql.findDatabase(e.pool, 'unraced')).toMatchObject({ allowConnections: true, connLimit: 10 });
  });

  test('a database another tenant is creating is not taken by a tenant naming it; one its creator left by a crash is its own', async () => {
    const owners = (name: string, n: number): Owner => ({
      namespace: 'ns',
      name,
      uid: `00000000-0000-4000-a000-${String(e.major).padStart(4, '0')}0000000${n}`,
    });
    const creator = owners('creator', 1);
    const namer = owners('namer', 2);
    for (const [o, role] of [
      [creator, 'contest_creator'],
      [namer, 'contest_namer'],
    ] as const)
      await ensureRole(e.pool, o, { role, verifier: verifierFor(o.uid, role, `pw-${'z'.repeat(30)}`), connectionLimit: 5, login: true });
    const spec = { database: 'contested', role: 'contest_namer', connectionLimit: 5 };
    // The creator between its CREATE DATABASE and its opening (or crashed there).
    await sql.createDatabase(e.pool, 'contested', sql.creationTag(creator.uid));
    // The namer's claim does not take it for its own (another tenant's creation tag) ...
    expect(await claimOfDatabase(e.pool, 'contested', 'contest_namer', namer.uid, true)).toMatchObject({
      state: 'foreign',
      message: expect.stringMatching(/being created for another TenantDatabase/),
    });
    // ... and a claim read too early changes nothing either: marking checks the tag again,
    await expect(markIfUnmarked(e.pool, 'contested', 'contest_namer', namer)).resolves.toBe(false);
    await expect(dropShadowIfOurs(e.pool, 'contested', 'contest_namer', namer)).resolves.toEqual([]);
    let row = await sql.findDatabase(e.pool, 'contested');
    expect(row).toMatchObject({ comment: null, allowConnections: false });
    // ... while its creator recognises it as its own, marks it and opens it.
    expect(await claimOfDatabase(e.pool, 'contested', 'contest_creator', creator.uid, true)).toEqual({ state: 'ours', unmarked: true });
    const mine = { ...spec, role: 'contest_creator' };
    expect(await ensureDatabase(e.pool, e.inDatabase, creator, mine)).toContain(
      'Granted CONNECT, CREATE and TEMPORARY on database contested to contest_creator',
    );
    // Once it is marked, the namer's claim read before that changes nothing: refused where it would.
    await expect(ensureDatabase(e.pool, e.inDatabase, namer, spec)).rejects.toBeInstanceOf(TerminalError);
    row = await sql.findDatabase(e.pool, 'contested');
    expect(sql.markerUid(row?.comment)).toBe(creator.uid);
    expect(row).toMatchObject({ allowConnections: true, connLimit: 5 });
    expect(row?.grants.map((g) => g.grantee)).not.toContain('contest_namer');
    // Marked once: a second mark (the creator's own, racing) finds it marked.
    await expect(
      sql.markUnmarkedDatabase(e.pool, 'contested', 'contest_creator', sql.ownerMarker(creator), sql.creationTag(creator.uid)),
    ).rejects.toMatchObject({
      code: sql.TOUCHED_SINCE_CREATE,
    });
    // The claims' one read gives what each look alone gives, settings and deadlines included.
    await sql.createDatabase(e.pool, 'leftover', 5);
    await e.superQuery("ALTER DATABASE leftover SET work_mem = '8MB'");
    await e.superQuery("ALTER ROLE contest_namer VALID UNTIL '2031-02-03 04:05:06+00'");
    const together = await sql.findRoleAndDatabases(e.pool, 'contest_namer', ['contested', 'leftover', 'nonesuch']);
    expect(together.role).toEqual(await sql.findRole(e.pool, 'contest_namer'));
    expect(together.role?.validUntil).toBe(Date.parse('2031-02-03T04:05:06Z'));
    expect(together.databases.get('contested')).toEqual(await sql.findDatabase(e.pool, 'contested'));
    expect(together.databases.get('leftover')).toEqual(await sql.findDatabase(e.pool, 'leftover'));
    expect(together.databases.get('leftover')?.settings).toEqual(['work_mem=8MB']);
    expect([...together.databases.keys()].sort()).toEqual(['contested', 'leftover']);
    expect(await sql.findRoleAndDatabases(e.pool, 'nonesuch', ['nonesuch'])).toEqual({ role: undefined, databases: new Map() });
  });

  test('schema tenants: a schema each in one shared database, nothing of the other, no CREATE in public', async () => {
    const tenant = async (name: string) => {
      const owner: Owner = {
        namespace: 'ns',
        name,
        uid: `00000000-0000-4000-9000-${String(e.major).padStart(4, '0')}${name.length}0000000`,
      };
      const password = `pw-${name}-${'y'.repeat(24)}`;
      await ensureRole(e.pool, owner, { role: name, verifier: verifierFor(owner.uid, name, password), connectionLimit: 5, login: true });
      return {
        url: `postgresql://${name}:${password}@${e.s.host}:${e.s.port}/shared`,
        spec: { database: 'shared', schema: name, role: name, server: 's' },
      };
    };
    const a = await tenant('sch_a');
    const b = await tenant('sch_b');
    const first = await ensureSchemaTenant(e.pool, e.inDatabase, a.spec).then(
      () => 'ok',
      (err: { reason?: string; code?: string }) => err.reason ?? err.code ?? 'error',
    );
    if (major < 15) {
      // Schema public belongs to the bootstrap superuser before 15: the admin cannot close it, and says so.
      expect(first).toBe('SharedPublicSchemaOpen');
      await e.superQuery('REVOKE CREATE ON SCHEMA public FROM PUBLIC', 'shared');
      await ensureSchemaTenant(e.pool, e.inDatabase, a.spec);
    } else expect(first).toBe('ok');
    await ensureSchemaTenant(e.pool, e.inDatabase, b.spec);
    await as(a.url, async (c) => {
      expect((await c.query('SELECT current_schema() AS s')).rows[0]?.s).toBe('sch_a');
      await c.query('CREATE TABLE t (x int)');
    });
    await as(b.url, async (c) => {
      expect(await code(c.query('SELECT * FROM sch_a.t'))).toBe('42501');
      expect(await code(c.query('CREATE TABLE public.p (x int)'))).toBe('42501');
      expect(await code(c.query('CREATE SCHEMA squat'))).toBe('42501');
      expect(await code(c.query('ALTER SCHEMA sch_b RENAME TO other'))).toBe('42501');
    });
    // A grant the tenant hands on, with grant option and passed further, is taken back whole.
    await as(a.url, (c) => c.query('GRANT USAGE ON SCHEMA sch_a TO sch_b WITH GRANT OPTION'));
    await ensureSchemaTenant(e.pool, e.inDatabase, a.spec);
    await as(b.url, async (c) => expect(await code(c.query('SELECT * FROM sch_a.t'))).toBe('42501'));
  });

  test('read-only: reads stay, every write is refused (its SECURITY DEFINER function too), and read-write gives all back', async () => {
    const t = await provision(e, 'frozen');
    await as(t.url, async (c) => {
      await c.query('CREATE SCHEMA app');
      await c.query("CREATE TABLE app.items AS SELECT 1 AS n, 'one' AS v");
      await c.query(
        "CREATE FUNCTION app.add() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ INSERT INTO app.items VALUES (2, 'two') RETURNING n $$",
      );
    });
    await ensureHolderRole(e.pool, t.owner, 'frozen');
    await ensureDatabase(e.pool, e.inDatabase, t.owner, { database: 'frozen', role: 'frozen', connectionLimit: 10, readOnly: true });
    const made = await ensureAccessMode(e.inDatabase, 'frozen', 'frozen', 'frozen-2', 'Read');
    expect(made.changes.join('\n')).toMatch(/Made role frozen read-only/);
    // Before 15 schema public gives CREATE to PUBLIC and belongs to the bootstrap superuser: said, not hidden.
    expect(made.open).toEqual(major < 15 ? ['public'] : []);
    if (major < 15) {
      await e.superQuery('REVOKE CREATE ON SCHEMA public FROM PUBLIC', 'frozen');
      expect((await ensureAccessMode(e.inDatabase, 'frozen', 'frozen', 'frozen-2', 'Read')).open).toEqual([]);
    }
    expect(await ensureAccessMode(e.inDatabase, 'frozen', 'frozen', 'frozen-2', 'Read')).toEqual({ changes: [], open: [] });
    await as(t.url, async (c) => {
      expect((await c.query('SELECT v FROM app.items')).rows).toEqual([{ v: 'one' }]);
      for (const w of [
        "INSERT INTO app.items VALUES (3, 'x')",
        'SELECT app.add()',
        'CREATE TABLE public.more (n int)',
        'CREATE TABLE app.more (n int)',
        'DROP TABLE app.items',
        'CREATE SCHEMA other',
        'SET ROLE frozen_hold',
      ])
        expect([w, await code(c.query(w))]).toEqual([w, '42501']);
    });
    await ensureDatabase(e.pool, e.inDatabase, t.owner, { database: 'frozen', role: 'frozen', connectionLimit: 10 });
    expect((await ensureAccessMode(e.inDatabase, 'frozen', 'frozen', 'frozen-2', undefined)).changes.join('\n')).toMatch(
      /to role frozen: it may write again/,
    );
    await as(t.url, async (c) => {
      expect((await c.query('SELECT app.add() AS n')).rows).toEqual([{ n: 2 }]);
      await c.query('CREATE TABLE app.more (n int)');
    });
  });

  test('a booby-trapped database is taken over by pinned sessions without running the trap', async () => {
    await provision(e, 'trap');
    await e.superQuery('ALTER DATABASE trap OWNER TO trap');
    await as(`postgresql://trap:${'pw-trap-' + 'x'.repeat(24)}@${e.s.host}:${e.s.port}/trap`, async (c) => {
      await c.query('CREATE TABLE public.pwned (who text)');
      await c.query('GRANT INSERT ON public.pwned TO PUBLIC');
      await c.query(
        `CREATE FUNCTION public.trap() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.pwned VALUES (current_user); RETURN true; END $$`,
      );
      await c.query(
        'CREATE VIEW public.pg_namespace AS SELECT oid, nspname, nspowner, nspacl FROM pg_catalog.pg_namespace WHERE public.trap()',
      );
      await c.query('CREATE VIEW public.pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE public.trap()');
      await c.query('ALTER DATABASE trap SET search_path = public, pg_catalog');
      await c.query('ALTER DATABASE trap SET default_transaction_read_only = on');
    });
    await e.superQuery('REVOKE ALL ON DATABASE trap FROM trap');
    const owner: Owner = {
      namespace: 'ns',
      name: 'trap',
      uid: (await sql.managedObjects(e.pool)).find((o) => o.name === 'trap')?.uid ?? '',
    };
    const changes = await ensureDatabase(e.pool, e.inDatabase, owner, { database: 'trap', role: 'trap', connectionLimit: 10 });
    expect(changes.join('\n')).toMatch(/Took ownership of database trap/);
    expect(changes.join('\n')).toMatch(/Reset 2 per-database setting/);
    expect(await e.superQuery('SELECT who FROM public.pwned', 'trap')).toEqual([]);
  });

  test('an idle session on template1 does not stop provisioning', async () => {
    const a = await provision(e, 'squatter');
    await as(
      a.url,
      async () => {
        await provision(e, 'newcomer');
      },
      'template1',
    );
  });

  test("another tenant's grant does not pin a role's deletion", async () => {
    const a = await provision(e, 'granter');
    await provision(e, 'leaver');
    await as(a.url, async (c) => {
      await c.query('CREATE TABLE public.bait (x int)');
      await c.query('GRANT SELECT ON public.bait TO leaver');
      await c.query('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO leaver');
    });
    await sql.dropDatabase(e.pool, 'leaver');
    expect(await code(sql.dropRole(e.pool, 'leaver'))).toBe('2BP01');
    expect(await clearRoleDependencies(e.pool, e.inDatabase, 'leaver')).toEqual([]);
    await sql.dropRole(e.pool, 'leaver');
    expect(await e.superQuery("SELECT 1 FROM pg_roles WHERE rolname = 'leaver'")).toEqual([]);
    expect((await e.superQuery("SELECT to_regclass('public.bait')::text AS t", 'granter'))[0]?.t).toBe('bait');
  });

  test('the server reports whether PUBLIC may create objects where operator sessions run, and its connection slots', async () => {
    // Read separately, as a superuser: the settings, and PUBLIC's CREATE from the ACL's text (=...C...).
    const setting = async (name: string) => (await e.superQuery(`SELECT current_setting('${name}', true) AS v`))[0]?.v as string | null;
    const openToPublic = async () =>
      (
        await e.superQuery("SELECT DISTINCT n.nspname FROM pg_namespace n, unnest(n.nspacl) a WHERE a::text ~ '^=[a-zA-Z*]*C' ORDER BY 1")
      ).map((x) => x.nspname as string);
    const facts = await sql.serverFacts(e.pool);
    expect(facts).toEqual({
      version: await setting('server_version'),
      rights: { superuser: false, createdb: true, createrole: true },
      publicCreate: major < 15 ? ['public'] : [],
      slots: {
        maxConnections: Number(await setting('max_connections')),
        superuserReserved: Number(await setting('superuser_reserved_connections')),
        reserved: major < 16 ? 0 : Number(await setting('reserved_connections')),
        adminMayUseReserved: false,
        superuser: false,
      },
    });
    expect(facts.publicCreate).toEqual(await openToPublic());
    expect(sql.majorOf(facts.version)).toBe(major);
    await e.superQuery('CREATE SCHEMA open_to_all; GRANT CREATE ON SCHEMA open_to_all TO PUBLIC');
    try {
      expect((await sql.serverFacts(e.pool)).publicCreate).toEqual(major < 15 ? ['open_to_all', 'public'] : ['open_to_all']);
      expect((await sql.serverFacts(e.pool)).publicCreate).toEqual(await openToPublic());
    } finally {
      await e.superQuery('DROP SCHEMA open_to_all');
    }
  });

  // reserved_connections and pg_use_reserved_connections exist from 16 on.
  if (major >= 16) {
    test('tenants that take every slot they can do not lock out an admin granted the reserved ones', async () => {
      // 14 slots for ordinary roles: 20, less 2 for superusers, less 4 reserved.
      const small = await startPostgres({
        major,
        settings: ['max_connections=20', 'superuser_reserved_connections=2', 'reserved_connections=4'],
      });
      servers.push(small);
      const ep: ServerEndpoint = { host: small.host, port: small.port, sslMode: 'disable' };
      const creds = { username: small.admin.user, password: small.admin.password, database: 'postgres' };
      const f: Env = {
        ...e,
        s: small,
        ep,
        pool: pools.get(`pg${major}-small`, ep, creds),
        inDatabase: (database, fn) => pools.withDatabase(ep, creds, database, fn),
      };
      const a = await provision(f, 'hog_a');
      const b = await provision(f, 'hog_b');
      const admin = () =>
        as(`postgresql://${creds.username}:${creds.password}@${small.host}:${small.port}/postgres`, (c) => c.query('SELECT 1'));
      const held: pg.Client[] = [];
      const hog = async (url: string) => {
        for (let i = 0; i < 10; i += 1) {
          const c = new pg.Client({ connectionString: url });
          c.on('error', () => undefined);
          try {
            await c.connect();
            held.push(c);
          } catch {
            await c.end().catch(() => undefined);
          }
        }
      };
      try {
        await hog(a.url);
        await hog(b.url);
        // Both tenants asked for 20 sessions; the server had fewer ordinary slots left.
        expect(held.length).toBeLessThan(20);
        expect(await code(as(a.url, async () => undefined, 'hog_a'))).toMatch(/^(53300|53400)$/);
        // Without the reserved slots' role the admin is locked out like everyone else ...
        expect(await code(admin())).toBe('53300');
        // ... with it, a fresh admin session gets in and provisions.
        const c = await small.superClient('postgres');
        await c.query(`GRANT pg_use_reserved_connections TO ${creds.username}`);
        await c.end();
        expect(await code(admin())).toBe('ok');
        expect((await sql.serverFacts(f.pool)).slots.adminMayUseReserved).toBe(true);
      } finally {
        await Promise.all(held.map((h) => h.end().catch(() => undefined)));
      }
    }, 60_000);
  }
});
