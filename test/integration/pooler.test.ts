/** Pool entries and allow-lists, enforced by a real PgBouncer loaded by the real agent. */
import * as k8s from '@kubernetes/client-node';
import { join } from 'node:path';
import pg from 'pg';
import { OPERATOR_NAMESPACE } from '../env/cluster.js';
import type { Pooler } from '../env/pgbouncer.js';
import { showDatabases } from '../../src/pg/pgbouncer-console.js';
import type { Proc } from '../env/process.js';
import { goClient, runClient, runPgjdbc } from '../env/clients.js';
import { waitFor } from '../env/ports.js';
import { apply } from '../env/cluster.js';
import { SHARD_OF_LABEL } from '../../src/pooler/shards.js';
import { configHash } from '../../src/pooler/contract.js';
import {
  applyServer,
  applyTenant,
  askPlan,
  cluster,
  condition,
  deleteTenant,
  dropRoleByHand,
  getServer,
  getTenant,
  namespace,
  newPassword,
  operator,
  queryFrom,
  queryWith,
  readPoolerConfig,
  readSecretData,
  rotatePassword,
  startServerPooler,
  superQuery,
  tenantReady,
  waitForCondition,
  waitTenantGone,
  type Obj,
} from './harness.js';

const c = cluster();
let op: Proc;
let pooler: Pooler;
const SERVER = 'pooled';
const NS = 'pool';

const getWhitelist = async (name: string): Promise<Obj | undefined> => {
  try {
    return (await c.custom.getNamespacedCustomObject({
      group: 'tenantdb.dev',
      version: 'v1alpha1',
      namespace: NS,
      plural: 'ipwhitelists',
      name,
    })) as Obj;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
};
const applyWhitelist = (name: string, tenant: string, cidrs: string[]) =>
  apply(c.kc, [
    {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'IpWhitelist',
      metadata: { name, namespace: NS },
      spec: { tenantDatabaseRef: { name: tenant }, entries: cidrs.map((cidr) => ({ cidr, description: 'test' })) },
    } as never,
  ]);
const deleteWhitelist = (name: string) =>
  c.custom.deleteNamespacedCustomObject({ group: 'tenantdb.dev', version: 'v1alpha1', namespace: NS, plural: 'ipwhitelists', name });
const pooledUrl = async (tenant: string) => (await readSecretData(c, NS, `${tenant}-db`))?.DATABASE_URL ?? '';
const refusedFrom = async (addr: string, url: string) =>
  queryFrom(addr, url).then(
    () => false,
    () => true,
  );

beforeAll(async () => {
  op = operator(c, 'pooler');
  await namespace(c, NS);
  pooler = await startServerPooler(c, SERVER);
  await applyServer(c, SERVER, {
    host: c.env.pg.host,
    port: c.env.pg.port,
    sslMode: 'disable',
    adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'pooled-admin' },
    pooler: { host: pooler.host, port: pooler.port, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'pooled-pgbouncer' } },
    // The operator (127.0.0.1) checks each tenant's login through the pooler.
    alwaysAllowedCidrs: ['127.0.0.1/32', '127.0.0.9/32'],
  });
  await waitForCondition(() => getServer(c, SERVER), 'PoolerReady', 'True', 'Applied');
}, 120_000);

afterAll(async () => {
  await op?.stop();
  await pooler?.stop();
});

test('a new tenant logs in through PgBouncer with SCRAM as soon as it is Ready', async () => {
  await applyTenant(c, NS, 'alpha', { serverRef: { name: SERVER }, pooling: { poolSize: 4 } });
  const td = await tenantReady(c, NS, 'alpha');
  expect(condition(td, 'PoolerReady')).toMatchObject({ status: 'True', reason: 'Confirmed' });
  const s = (await readSecretData(c, NS, 'alpha-db')) ?? {};
  expect(s['pooler-port']).toBe(String(pooler.port));
  expect(new URL(s.DATABASE_URL ?? '').port).toBe(String(pooler.port));
  expect(new URL(s.DIRECT_URL ?? '').port).toBe(String(c.env.pg.port));
  const rows = await queryWith(s.DATABASE_URL ?? '', 'SELECT current_user AS u, inet_server_port() AS p');
  expect(rows[0]).toEqual({ u: 'pool_alpha', p: c.env.pg.port });
});

test('a password rotation: new pooled logins use the new password within seconds, open sessions go on', async () => {
  const before = (await readSecretData(c, NS, 'alpha-db')) ?? {};
  const open = new pg.Client({ connectionString: before.DATABASE_URL });
  open.on('error', () => undefined);
  await open.connect();
  try {
    await rotatePassword(c, NS, 'alpha', 'r1');
    const after = await newPassword(c, NS, 'alpha-db', before.password, 30_000);
    const t0 = Date.now();
    await waitFor(
      'a pooled login with the new password',
      async () =>
        (await queryWith(after.DATABASE_URL ?? '').then(
          () => true,
          () => false,
        )) || undefined,
      30_000,
      100,
    );
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect((await open.query('SELECT current_user AS u')).rows[0]).toEqual({ u: 'pool_alpha' });
    await expect(queryWith(before.DIRECT_URL ?? '')).rejects.toMatchObject({ code: '28P01' });
    // Status says which request the role carries, and since when.
    const st = (
      await waitFor(
        'status to name the rotation',
        async () => {
          const t = await getTenant(c, NS, 'alpha');
          return (t?.status as { passwordRotatedFor?: string } | undefined)?.passwordRotatedFor === 'r1' ? t : undefined;
        },
        30_000,
      )
    )?.status as { passwordChangedAt?: string };
    expect(Date.now() - Date.parse(st.passwordChangedAt ?? '')).toBeLessThan(120_000);
    // The request is answered once: the password stays put on later checks.
    await new Promise((r) => setTimeout(r, 4000));
    expect((await readSecretData(c, NS, 'alpha-db'))?.password).toBe(after.password);
  } finally {
    await open.end();
  }
});

test('the pooled login keeps working after the role is dropped and repaired', async () => {
  // A role dropped by hand raises no event: the periodic re-check repairs it. The tests above ran
  // on the default re-check (watches only); from here on it is short.
  await op.stop();
  op = operator(c, 'pooler-drift', '2s');
  await dropRoleByHand(c, 'pool_alpha', 'pool_alpha');
  const url = await pooledUrl('alpha');
  await waitFor(
    'a pooled login after repair',
    async () =>
      (await queryWith(url).then(
        () => true,
        () => false,
      )) || undefined,
    30_000,
    500,
  );
});

test('an allow-list restricts one tenant, through the pooler, and deleting it reopens', async () => {
  await applyTenant(c, NS, 'beta', { serverRef: { name: SERVER } });
  await tenantReady(c, NS, 'beta');
  const alpha = await pooledUrl('alpha');
  const beta = await pooledUrl('beta');
  expect(await refusedFrom('127.0.0.3', alpha)).toBe(false);

  await applyWhitelist('office', 'alpha', ['127.0.0.2/32']);
  const wl = await waitForCondition(() => getWhitelist('office'), 'Applied', 'True');
  expect(wl.status?.ruleCount).toBe(1);
  expect(condition(wl, 'Applied')?.message).toMatch(/direct connections .* are not restricted/);
  const td = await waitForCondition(() => getTenant(c, NS, 'alpha'), 'AccessRulesApplied', 'True', 'Enforced');
  expect(condition(td, 'AccessRulesApplied')?.message).toMatch(/enforced by PgBouncer/);

  expect(await refusedFrom('127.0.0.3', alpha)).toBe(true);
  expect(await refusedFrom('127.0.0.2', alpha)).toBe(false);
  expect(await refusedFrom('127.0.0.9', alpha)).toBe(false); // always allowed
  // Tenant B is untouched by A's list.
  expect(await refusedFrom('127.0.0.3', beta)).toBe(false);

  // Several lists add up.
  await applyWhitelist('vpn', 'alpha', ['127.0.0.4/31']);
  await waitForCondition(() => getWhitelist('vpn'), 'Applied', 'True');
  await waitFor('the second list to be enforced', async () => !(await refusedFrom('127.0.0.5', alpha)) || undefined, 30_000, 300);
  expect(await refusedFrom('127.0.0.3', alpha)).toBe(true);

  await deleteWhitelist('office');
  await deleteWhitelist('vpn');
  await waitForCondition(() => getTenant(c, NS, 'alpha'), 'AccessRulesApplied', 'True', 'NoWhitelist');
  await waitFor('the tenant to reopen', async () => !(await refusedFrom('127.0.0.3', alpha)) || undefined, 30_000, 300);
});

test('IpWhitelists past the per-tenant budget are refused in their own status; the older ones stay in force', async () => {
  const cidrs = (n: number, third: number) => Array.from({ length: n }, (_, i) => `10.${third}.${i}.0/24`);
  await applyWhitelist('big-1', 'beta', [...cidrs(199, 1), '127.0.0.2/32']);
  await waitForCondition(() => getWhitelist('big-1'), 'Applied', 'True');
  await applyWhitelist('big-2', 'beta', cidrs(100, 2));
  const refused = await waitForCondition(() => getWhitelist('big-2'), 'Applied', 'False', 'OverBudget');
  expect(condition(refused, 'Applied')?.message).toMatch(/already has 200 CIDR\(s\).* limit of 256 per tenant/);
  const beta = await pooledUrl('beta');
  await waitFor('the first list to be enforced', async () => (await refusedFrom('127.0.0.3', beta)) || undefined, 30_000, 300);
  expect(await refusedFrom('127.0.0.2', beta)).toBe(false);
  const { files } = await readPoolerConfig(c, OPERATOR_NAMESPACE, `${SERVER}-pooler`);
  expect(files['hba.conf']).not.toContain('10.2.0.0/24');
  expect((await queryWith(await pooledUrl('alpha')))[0]).toMatchObject({ u: 'pool_alpha' });
  await deleteWhitelist('big-2');
  await deleteWhitelist('big-1');
  await waitFor('beta to reopen', async () => !(await refusedFrom('127.0.0.3', beta)) || undefined, 30_000, 300);
});

test("a role named like the pooler's admin user is a Conflict, and the pooler keeps taking everyone else's changes", async () => {
  await applyTenant(c, NS, 'impostor', { serverRef: { name: SERVER }, roleName: pooler.admin.user });
  const td = await waitForCondition(() => getTenant(c, NS, 'impostor'), 'Ready', 'False', 'Conflict');
  expect(condition(td, 'Ready')?.message).toMatch(/admin user of PostgresServer pooled's pooler/);
  await applyTenant(c, NS, 'after-impostor', { serverRef: { name: SERVER } });
  await tenantReady(c, NS, 'after-impostor');
  expect((await queryWith(await pooledUrl('after-impostor')))[0]).toMatchObject({ u: 'pool_after_impostor' });
  await waitForCondition(() => getServer(c, SERVER), 'PoolerReady', 'True', 'Applied');
});

test('a tenant deleted while its clients keep logging in through the pooler does not take the pooler down', async () => {
  await applyTenant(c, NS, 'doomed', { serverRef: { name: SERVER }, deletionPolicy: 'Delete' });
  await tenantReady(c, NS, 'doomed');
  const url = await pooledUrl('doomed');
  let stop = false;
  let logins = 0;
  const hammer = async () => {
    while (!stop) {
      await queryWith(url).then(
        () => logins++,
        () => undefined,
      );
    }
  };
  const loops = Array.from({ length: 8 }, () => hammer());
  await waitFor('logins under way', async () => logins > 20 || undefined, 30_000, 50);
  await deleteTenant(c, NS, 'doomed');
  await waitTenantGone(c, NS, 'doomed');
  await waitFor(
    'the pool to be gone',
    async () => !(await showDatabases({ host: pooler.host, port: pooler.port, ...pooler.admin })).has('pool_doomed') || undefined,
    30_000,
  );
  stop = true;
  await Promise.all(loops);
  expect(pooler.pgbouncer.child.exitCode).toBeNull();
  expect((await queryWith(await pooledUrl('alpha')))[0]).toMatchObject({ u: 'pool_alpha' });
});

test('status is output only: a forged status puts nothing into the pooler config', async () => {
  // Whoever may write tenantdatabases/status (a grant the platform must not give) claims alpha's names for beta.
  const forge = (names: string) =>
    c.custom.patchNamespacedCustomObjectStatus(
      {
        group: 'tenantdb.dev',
        version: 'v1alpha1',
        namespace: NS,
        plural: 'tenantdatabases',
        name: 'beta',
        body: { status: { databaseName: names, roleName: names, serverName: SERVER } },
      },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  await forge('pool_alpha');
  await applyTenant(c, NS, 'gamma', { serverRef: { name: SERVER } });
  await tenantReady(c, NS, 'gamma');
  const { files } = await readPoolerConfig(c, OPERATOR_NAMESPACE, `${SERVER}-pooler`);
  const aliases = files['databases.ini']
    .split('\n')
    .filter((l) => l.startsWith('pool_'))
    .map((l) => l.split(' ')[0]);
  expect(aliases.filter((a) => a === 'pool_alpha')).toHaveLength(1);
  expect(aliases).toContain('pool_beta');
  expect(files['userlist.txt'].split('\n').filter((l) => l.startsWith('"pool_alpha"'))).toHaveLength(1);
  for (const t of ['alpha', 'beta', 'gamma']) expect((await queryWith(await pooledUrl(t)))[0]).toMatchObject({ u: `pool_${t}` });
  await forge('pool_beta');
  await tenantReady(c, NS, 'beta');
});

test('an open pooled session of one tenant survives other tenants being created, changed and deleted', async () => {
  const client = new pg.Client({ connectionString: await pooledUrl('beta') });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query('SELECT 1');
    await applyTenant(c, NS, 'gamma', { serverRef: { name: SERVER }, deletionPolicy: 'Delete' });
    await tenantReady(c, NS, 'gamma');
    await client.query('SELECT 1');
    await applyTenant(c, NS, 'gamma', { serverRef: { name: SERVER }, deletionPolicy: 'Delete', pooling: { poolSize: 3 } });
    await waitFor(
      'the new pool size',
      async () => {
        const td = await getTenant(c, NS, 'gamma');
        return condition(td, 'PoolerReady')?.message.includes('pool_size 3') || undefined;
      },
      30_000,
    );
    await client.query('SELECT 1');
    await deleteTenant(c, NS, 'gamma');
    await waitTenantGone(c, NS, 'gamma');
    expect((await client.query('SELECT current_user AS u')).rows[0]).toEqual({ u: 'pool_beta' });
  } finally {
    await client.end();
  }
});

test('hundreds of clients are served by no more server connections than the pool size', async () => {
  await applyTenant(c, NS, 'busy', {
    serverRef: { name: SERVER },
    pooling: { poolSize: 5, poolMode: 'transaction', maxClientConnections: 400 },
  });
  await tenantReady(c, NS, 'busy');
  const url = await pooledUrl('busy');
  // Server connections of the tenant role, less the operator's own direct login checks.
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const [r] = await superQuery<{ n: number }>(
        c,
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'pool_busy' AND application_name <> 'tenantdb-login-check'",
      );
      peak = Math.max(peak, r?.n ?? 0);
      await new Promise((res) => setTimeout(res, 20));
    }
  })();
  const clients = 300;
  const results = await Promise.allSettled(Array.from({ length: clients }, () => queryWith(url, 'SELECT pg_sleep(0.05) AS s')));
  sampling = false;
  await sampler;
  expect(results.filter((r) => r.status === 'fulfilled').length).toBe(clients);
  expect(peak).toBeGreaterThan(0);
  expect(peak).toBeLessThanOrEqual(5);
}, 120_000);

test("one tenant's clients cannot take the pooler's client slots: its cap refuses the surplus, others log in", async () => {
  await applyTenant(c, NS, 'capped', { serverRef: { name: SERVER }, pooling: { maxClientConnections: 3 } });
  await applyTenant(c, NS, 'neighbour', { serverRef: { name: SERVER } });
  await tenantReady(c, NS, 'capped');
  await tenantReady(c, NS, 'neighbour');
  const url = await pooledUrl('capped');
  const held: pg.Client[] = [];
  try {
    // The tenant opens as many sessions as it can, and then some.
    const attempts = await Promise.allSettled(
      Array.from({ length: 12 }, async () => {
        const client = new pg.Client({ connectionString: url });
        client.on('error', () => undefined);
        held.push(client);
        await client.connect();
        await client.query('SELECT 1');
      }),
    );
    const refused = attempts.filter((a): a is PromiseRejectedResult => a.status === 'rejected');
    expect(attempts.length - refused.length).toBe(3);
    expect(String(refused[0]?.reason)).toMatch(/max_db_client_connections|no more connections allowed/);
    // Its neighbour on the same pooler is not affected.
    expect((await queryWith(await pooledUrl('neighbour')))[0]?.u).toBe('pool_neighbour');
  } finally {
    await Promise.all(held.map((h) => h.end().catch(() => undefined)));
  }
  // With its sessions closed, the tenant logs in again.
  await waitFor(
    'a pooled login of the capped tenant',
    async () =>
      (await queryWith(url).then(
        () => true,
        () => false,
      )) || undefined,
  );

  // Above the server's ceiling: refused in its own status; the pooler keeps the ceiling.
  await applyTenant(c, NS, 'greedy', { serverRef: { name: SERVER }, pooling: { maxClientConnections: 5000 } });
  const greedy = await waitForCondition(() => getTenant(c, NS, 'greedy'), 'Ready', 'False', 'ClientLimitTooHigh');
  expect(condition(greedy, 'Ready')?.message).toContain('pooler.clientLimits.max of 2000');
}, 120_000);

test('a pooler that lists the tenant but refuses its login makes it not Ready (PoolerLoginFailed), until it lets it in', async () => {
  await applyTenant(c, NS, 'full', { serverRef: { name: SERVER }, pooling: { poolSize: 3, maxClientConnections: 2 } });
  await tenantReady(c, NS, 'full');
  const url = await pooledUrl('full');
  const held = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
  try {
    for (const h of held) {
      h.on('error', () => undefined);
      await h.connect();
    }
    // A change of pool is confirmed by a real login, which the tenant's own clients now crowd out.
    await applyTenant(c, NS, 'full', { serverRef: { name: SERVER }, pooling: { poolSize: 4, maxClientConnections: 2 } });
    const td = await waitForCondition(() => getTenant(c, NS, 'full'), 'PoolerReady', 'False', 'PoolerLoginFailed');
    expect(condition(td, 'PoolerReady')?.message).toMatch(/max_db_client_connections|no more connections/);
    expect(condition(td, 'Ready')?.status).toBe('False');
  } finally {
    await Promise.all(held.map((h) => h.end().catch(() => undefined)));
  }
  await tenantReady(c, NS, 'full');
  expect(condition(await getTenant(c, NS, 'full'), 'PoolerReady')?.reason).toBe('Confirmed');
}, 120_000);

test('clients that prepare statements work through the pooler in transaction mode, with the URLs the Secret gives', async () => {
  const server = await getServer(c, SERVER);
  const features = (server?.status as { pooler?: { maxPreparedStatements?: number } } | undefined)?.pooler;
  expect(features?.maxPreparedStatements).toBeGreaterThan(0);
  // One server connection for every client: prepared statements of different clients meet on it.
  await applyTenant(c, NS, 'prepared', { serverRef: { name: SERVER }, pooling: { poolMode: 'transaction', poolSize: 1 } });
  await tenantReady(c, NS, 'prepared');
  const s = (await readSecretData(c, NS, 'prepared-db')) ?? {};
  expect(s.PRISMA_DATABASE_URL).toBe(s.DATABASE_URL);
  expect(s['jdbc-url']).not.toContain('prepareThreshold');

  // node-pg: the same statement name, different SQL, in two clients at once.
  const run = async (sql: string, add: number) => {
    const client = new pg.Client({ connectionString: s.DATABASE_URL });
    await client.connect();
    try {
      for (let i = 0; i < 20; i += 1) {
        const r = await client.query<{ v: number }>({ name: 's1', text: sql, values: [i] });
        expect(r.rows[0]?.v).toBe(i + add);
      }
    } finally {
      await client.end();
    }
  };
  await Promise.all([run('SELECT $1::int + 1 AS v', 1), run('SELECT $1::int + 100 AS v', 100)]);

  // psycopg 3, prepared from the first execution, as its users run it (a python3 process with the URL).
  const py = [
    'import os, psycopg',
    "with psycopg.connect(os.environ['DATABASE_URL'], autocommit=True, prepare_threshold=0) as conn:",
    '    total = 0',
    '    for i in range(30):',
    "        total += conn.execute('SELECT %s::int * 2', (i,)).fetchone()[0]",
    "        total += conn.execute('SELECT %s::int + 0', (i,)).fetchone()[0]",
    '    print(total)',
  ].join('\n');
  const runPy = () => runClient('/usr/bin/python3', ['-c', py], { DATABASE_URL: s.DATABASE_URL ?? '' });
  // Two at once, and node-pg beside them, on the one server connection.
  const [a, b] = await Promise.all([runPy(), runPy(), run('SELECT $1::int + 7 AS v', 7)]);
  expect(a).toBe(String((3 * (29 * 30)) / 2));
  expect(b).toBe(a);
}, 120_000);

test('pgx and pgjdbc, each a process with the Secret in its environment, prepare statements through the pooler in transaction mode', async () => {
  // The tenant of the test above (applied again, so that this test also runs alone): one server
  // connection, where these clients' statements meet each other's and the ones left by the clients above.
  await applyTenant(c, NS, 'prepared', { serverRef: { name: SERVER }, pooling: { poolMode: 'transaction', poolSize: 1 } });
  await tenantReady(c, NS, 'prepared');
  const s = (await readSecretData(c, NS, 'prepared-db')) ?? {};
  const pgx = await goClient('pgx');
  // Each runs two connections at once, 30 rounds of 2i, i + 1000 and, in a transaction, 2 * length(i
  // characters); pgx on DATABASE_URL, pgjdbc one connection on jdbc-url with username and password,
  // the other on pooled-jdbc-uri. Each prints the sum and how many of its 3 statements (for pgjdbc:
  // of each connection's) the server connection holds prepared: all, or they were not prepared there.
  const perConnection = 5 * ((29 * 30) / 2) + 30 * 1000;
  const [goOut, javaOut] = await Promise.all([runClient(pgx, [], s), runPgjdbc(s)]);
  expect(JSON.parse(goOut)).toEqual({ total: 2 * perConnection, prepared: 3 });
  expect(JSON.parse(javaOut)).toEqual({ total: 2 * perConnection, prepared: { 'jdbc-url': 3, 'pooled-jdbc-uri': 3 } });
}, 180_000);

test('a config the agent refuses is not loaded, and the last good one keeps working', async () => {
  const url = await pooledUrl('beta');
  await op.stop(); // so that nothing puts the good config back while we look
  try {
    const name = `${SERVER}-pooler`;
    const good = await c.core.readNamespacedSecret({ name, namespace: OPERATOR_NAMESPACE });
    // A shard as the operator labels them, with a line PgBouncer would skip silently.
    const files = { 'databases.ini': '', 'userlist.txt': '', 'hba.conf': 'host all all 999.1.2.3/8 trust\n' };
    const hash = configHash(files);
    const shard = `${name}-${hash}`;
    await c.core.createNamespacedSecret({
      namespace: OPERATOR_NAMESPACE,
      body: {
        metadata: { name: shard, labels: { 'app.kubernetes.io/managed-by': 'tenantdb', [SHARD_OF_LABEL]: name } },
        stringData: files,
      },
    });
    const index = `${Buffer.from(good.data?.shards ?? '', 'base64').toString('utf8')}${shard} ${hash} zzz\n`;
    await c.core.replaceNamespacedSecret({
      name,
      namespace: OPERATOR_NAMESPACE,
      body: { ...good, data: { shards: Buffer.from(index).toString('base64') } },
    });
    const refused = await waitFor(
      'the agent to refuse',
      async () => {
        const s = await c.core.readNamespacedSecret({ name, namespace: OPERATOR_NAMESPACE });
        return s.metadata?.annotations?.['tenantdb.dev/agent-error'];
      },
      30_000,
    );
    expect(refused).toContain(`shard ${shard}: hba.conf:1:`);
    expect((await queryWith(url))[0]).toMatchObject({ u: 'pool_beta' });
    // The refusal is in the audit trail too, as an Event on the index Secret.
    const events = await c.core.listNamespacedEvent({
      namespace: OPERATOR_NAMESPACE,
      fieldSelector: `involvedObject.name=${name},reason=ConfigRejected`,
    });
    expect(events.items.map((e) => e.message).join('\n')).toMatch(/hba\.conf:1: bad CIDR 999\.1\.2\.3\/8/);
  } finally {
    op = operator(c, 'pooler-2');
  }
  // The injected shard is not the operator's (no owner reference), so it is left for us to remove.
  const mine = await c.core.listNamespacedSecret({ namespace: OPERATOR_NAMESPACE, labelSelector: `${SHARD_OF_LABEL}=${SERVER}-pooler` });
  for (const s of mine.items)
    if (!s.metadata?.ownerReferences?.length)
      await c.core.deleteNamespacedSecret({ name: s.metadata?.name ?? '', namespace: OPERATOR_NAMESPACE });
  await waitForCondition(() => getServer(c, SERVER), 'PoolerReady', 'True', 'Applied');
  expect((await queryWith(url))[0]).toMatchObject({ u: 'pool_beta' });
});

test("a plan's pooler lines are the lines the operator then writes: a new tenant with an allow-list, then a change", async () => {
  await applyWhitelist('planned-list', 'planned', ['127.0.0.6/32']);
  const spec = { serverRef: { name: SERVER }, pooling: { poolSize: 3 } };
  const plan = await askPlan(c.custom, NS, 'planned', spec);
  expect(plan.result?.reason).toBe('Planned');
  const pooler = plan.pooler ?? [];
  // Only additions, in all three files; the verifier never shown.
  expect(pooler.every((l) => /^(databases\.ini|userlist\.txt|hba\.conf): \+ /.test(l))).toBe(true);
  expect(pooler).toContain(
    `databases.ini: + pool_planned = host=<PostgresServer ${SERVER}> dbname=pool_planned pool_mode=transaction pool_size=3 max_db_connections=0 max_db_client_connections=200`,
  );
  expect(pooler).toContain('userlist.txt: + "pool_planned" <verifier>');
  expect(pooler).toContain('hba.conf: + host pool_planned pool_planned 127.0.0.6/32 scram-sha-256');
  // The platform's settings a team may not read are named, not shown: the server's address, the
  // always-allowed networks.
  expect(pooler).toContain('hba.conf: + host pool_planned pool_planned <alwaysAllowedCidrs> scram-sha-256');
  expect(pooler.join('\n')).not.toMatch(/SCRAM-SHA-256|127\.0\.0\.9/);
  const files = async () => (await readPoolerConfig(c, OPERATOR_NAMESPACE, `${SERVER}-pooler`)).files;
  expect((await files())['databases.ini']).not.toContain('pool_planned');

  await applyTenant(c, NS, 'planned', spec);
  await tenantReady(c, NS, 'planned');
  // The operator's pooled login check of the new tenant left no server connection behind.
  const { LOGIN_CHECK_APP } = await import('../../src/pg/connections.js');
  await waitFor(
    'the login check to leave no session',
    async () =>
      (await superQuery(c, `SELECT 1 FROM pg_stat_activity WHERE usename = 'pool_planned' AND application_name = '${LOGIN_CHECK_APP}'`))
        .length === 0 || undefined,
    10_000,
  );
  const written = await files();
  for (const l of pooler) {
    const [file, line] = l.split(': + ') as ['databases.ini' | 'userlist.txt' | 'hba.conf', string];
    const lines = written[file].split('\n');
    if (file === 'userlist.txt') expect(written[file]).toMatch(/^"pool_planned" "SCRAM-SHA-256\$/m);
    else if (line.includes('<alwaysAllowedCidrs>'))
      for (const cidr of ['127.0.0.1/32', '127.0.0.9/32']) expect(lines).toContain(line.replace('<alwaysAllowedCidrs>', cidr));
    else expect(lines).toContain(line.replace(`host=<PostgresServer ${SERVER}>`, `host=${c.env.pg.host} port=${c.env.pg.port}`));
  }

  // A change of pool size: one line goes, one comes; the rest stays.
  const change = await askPlan(c.custom, NS, 'planned', { ...spec, pooling: { poolSize: 5 } });
  expect(change.pooler).toEqual([
    expect.stringMatching(/^databases\.ini: - pool_planned = .* pool_size=3 /),
    expect.stringMatching(/^databases\.ini: \+ pool_planned = .* pool_size=5 /),
  ]);
  expect(change.sql).toEqual([]);
  await deleteWhitelist('planned-list');
});

test('in statement and session pooling too, the pooled login check proves the tenant and leaves no server connection', async () => {
  const { LOGIN_CHECK_APP } = await import('../../src/pg/connections.js');
  for (const [name, poolMode] of [
    ['stmt', 'statement'],
    ['sess', 'session'],
  ] as const) {
    await applyTenant(c, NS, name, { serverRef: { name: SERVER }, pooling: { poolMode } });
    const td = await tenantReady(c, NS, name);
    expect(condition(td, 'PoolerReady')).toMatchObject({ status: 'True', reason: 'Confirmed' });
    const role = `pool_${name}`;
    await waitFor(
      `the ${poolMode}-mode login check to leave no server connection`,
      async () =>
        (await superQuery(c, `SELECT 1 FROM pg_stat_activity WHERE usename = '${role}' AND application_name = '${LOGIN_CHECK_APP}'`))
          .length === 0 || undefined,
      5_000,
    );
    expect((await queryWith(await pooledUrl(name)))[0]).toMatchObject({ u: role });
  }
});

test('deleting a tenant removes its pool entry, userlist line and rules', async () => {
  await applyTenant(c, NS, 'gone', { serverRef: { name: SERVER }, deletionPolicy: 'Delete' });
  await tenantReady(c, NS, 'gone');
  await applyWhitelist('gone-list', 'gone', ['127.0.0.2/32']);
  await waitForCondition(() => getWhitelist('gone-list'), 'Applied', 'True');
  const files = async () => Object.values((await readPoolerConfig(c, OPERATOR_NAMESPACE, `${SERVER}-pooler`)).files).join('\n');
  expect(await files()).toContain('pool_gone');
  await deleteTenant(c, NS, 'gone');
  await waitTenantGone(c, NS, 'gone');
  await waitFor('the config to drop the tenant', async () => !(await files()).includes('pool_gone') || undefined, 30_000);
  const { showDatabases } = await import('../../src/pg/pgbouncer-console.js');
  await waitFor(
    'PgBouncer to drop the pool',
    async () => !(await showDatabases({ host: pooler.host, port: pooler.port, ...pooler.admin })).has('pool_gone') || undefined,
    30_000,
  );
});

test('suspend refuses new logins, direct and pooled, keeps open sessions and data; endSessionsOnSuspend ends them; resume', async () => {
  const spec = { serverRef: { name: SERVER }, pooling: { poolSize: 2 } };
  await applyTenant(c, NS, 'sleepy', spec);
  await tenantReady(c, NS, 'sleepy');
  const s = (await readSecretData(c, NS, 'sleepy-db')) ?? {};
  await queryWith(s.DIRECT_URL ?? '', 'CREATE TABLE kept AS SELECT 42 AS v');
  const open = new pg.Client({ connectionString: s.DIRECT_URL });
  open.on('error', () => undefined);
  await open.connect();
  try {
    await applyTenant(c, NS, 'sleepy', { ...spec, suspend: true });
    const td = await waitForCondition(() => getTenant(c, NS, 'sleepy'), 'Ready', 'True', 'Suspended');
    expect(condition(td, 'RoleReady')?.reason).toBe('Suspended');
    const refused = (url: string) =>
      queryWith(url).then(
        () => 'ok',
        (err: unknown) => String((err as Error).message),
      );
    expect(await refused(s.DIRECT_URL ?? '')).toMatch(/not permitted to log in/);
    await waitFor(
      'PgBouncer to refuse the suspended tenant',
      async () => (await refused(s.DATABASE_URL ?? '')) !== 'ok' || undefined,
      30_000,
    );
    // The session opened before the suspension goes on.
    expect((await open.query('SELECT v FROM kept')).rows).toEqual([{ v: 42 }]);

    await applyTenant(c, NS, 'sleepy', { ...spec, suspend: true, endSessionsOnSuspend: true });
    await waitFor(
      'the open session to be ended',
      async () =>
        open.query('SELECT 1').then(
          () => undefined,
          () => true,
        ),
      30_000,
    );

    await applyTenant(c, NS, 'sleepy', spec);
    const back = await waitForCondition(() => getTenant(c, NS, 'sleepy'), 'Ready', 'True', 'Provisioned');
    expect(condition(back, 'PoolerReady')?.reason).toBe('Confirmed');
    expect(await queryWith(s.DATABASE_URL ?? '', 'SELECT v FROM kept')).toEqual([{ v: 42 }]);
    expect(await queryWith(s.DIRECT_URL ?? '', 'SELECT v FROM kept')).toEqual([{ v: 42 }]);
  } finally {
    await open.end().catch(() => undefined);
  }
});

test("no password or verifier in the operator's or the agent's logs", async () => {
  const { readFileSync } = await import('node:fs');
  const logs = ['operator-pooler.log', 'operator-pooler-2.log', `agent-${SERVER}.log`]
    .map((f) => readFileSync(join(c.env.dir, f), 'utf8'))
    .join('\n');
  expect(logs).toContain('Applied config');
  const secrets = [await readSecretData(c, NS, 'alpha-db'), await readSecretData(c, NS, 'beta-db')];
  for (const s of secrets) expect(logs).not.toContain(s?.password);
  expect(logs).not.toContain(pooler.admin.password);
  expect(logs).not.toContain('SCRAM-SHA-256$');
});
