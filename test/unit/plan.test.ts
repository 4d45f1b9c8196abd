import { postgresServer } from '../../src/api/postgresserver.js';
import { tenantDatabase, type TenantDatabase } from '../../src/api/tenantdatabase.js';
import { exactLines, planTenant, tenantsOfManifest } from '../../src/cli/plugin/plan.js';
import { lineChanges } from '../../src/controllers/tenantdatabaseplan/config-diff.js';

const td = (spec: Record<string, unknown>, annotations?: Record<string, string>): TenantDatabase =>
  tenantDatabase.parse({
    apiVersion: 'tenantdb.dev/v1alpha1',
    kind: 'TenantDatabase',
    metadata: { name: 'orders', namespace: 'shop', uid: 'u1', resourceVersion: '1', ...(annotations ? { annotations } : {}) },
    spec,
  });
const server = postgresServer.parse({
  apiVersion: 'tenantdb.dev/v1alpha1',
  kind: 'PostgresServer',
  metadata: { name: 'main', uid: 's1', resourceVersion: '1' },
  spec: {
    host: 'db',
    adminSecretRef: { namespace: 'tenantdb-system', name: 'admin' },
    connectionLimits: { default: 15, max: 50 },
    pooler: { host: 'pgbouncer', port: 6432 },
    sharedDatabase: 'tenants',
  },
});

describe('plan: what the operator will do with a manifest', () => {
  test('a new tenant: role, database, Secret and pool, with the names and limits the operator derives', () => {
    const p = planTenant('shop', 'orders', undefined, td({ extensions: ['pgcrypto'] }), server);
    expect(p.action).toBe('create');
    const text = p.steps.map((s) => `[${s.where}] ${s.what}`).join('\n');
    expect(text).toMatch(/\[server\] create role shop_orders .*connection limit 15 \(the server's default\)/);
    expect(text).toMatch(/\[server\] create database shop_orders/);
    expect(text).toMatch(/\[server\] create extensions pgcrypto as shop_orders/);
    expect(text).toMatch(/\[secret\] write Secret orders-db/);
    expect(text).toMatch(/\[pooler\] add pool shop_orders \(transaction pooling, pool_size 10/);
    expect(p.steps.some((s) => s.destructive)).toBe(false);
  });

  test('a new schema tenant lands in the shared database under its alias', () => {
    const p = planTenant('shop', 'orders', undefined, td({ isolation: 'Schema' }), server);
    const text = p.steps.map((s) => s.what).join('\n');
    expect(text).toMatch(/create schema shop_orders in shared database tenants, owned by shop_orders/);
    expect(text).toMatch(/add pool schema\.shop_orders/);
  });

  test.each([
    [{ connectionLimit: 30 }, /connection limit of role shop_orders and database shop_orders: 15 \(the server's default\) -> 30/, false],
    [{ suspend: true, endSessionsOnSuspend: true }, /suspend: role shop_orders may no longer log in.*open sessions are ended/, true],
    [{ extensions: ['citext'] }, /create extensions citext/, false],
    [{ shadowDatabase: true }, /create database shop_orders_shadow/, false],
    [{ pooling: { enabled: false } }, /remove pool shop_orders/, true],
    [{ pooling: { poolSize: 20, poolMode: 'session' } }, /pool shop_orders: pool_mode transaction -> session, pool_size 10 -> 20/, false],
    [{ secretName: 'orders-conn' }, /move the connection details from Secret orders-db to orders-conn/, true],
    [{ deletionPolicy: 'Delete' }, /on deletion: drop database shop_orders and role shop_orders with their data/, true],
    [{ secretTemplate: { presets: ['Spring'] } }, /rewrite Secret orders-db's keys/, false],
    [{ readOnly: true }, /read-only: the objects of shop_orders pass to role shop_orders_hold; shop_orders keeps SELECT/, true],
    [
      { quota: { size: '1Gi', action: 'ReadOnly' } },
      /quota 1Gi: past it, role shop_orders becomes read-only \(TRUNCATE still allowed\)/,
      true,
    ],
    [{ quota: { size: '1Gi' } }, /quota 1Gi: past it, QuotaExceeded and a Warning Event/, false],
  ])('a change of %j is said as what it does', (spec, expected, destructive) => {
    const p = planTenant('shop', 'orders', td({}), td(spec), server);
    expect(p.action).toBe('update');
    const step = p.steps.find((s) => expected.test(s.what));
    expect(step).toBeDefined();
    expect(step?.destructive ?? false).toBe(destructive);
  });

  test('dropping the shadow database and a rotation are marked as losing something', () => {
    expect(planTenant('shop', 'orders', td({ shadowDatabase: true }), td({}), server).steps[0]).toMatchObject({
      what: expect.stringMatching(/drop database shop_orders_shadow/),
      destructive: true,
    });
    const r = planTenant('shop', 'orders', td({}), td({}, { 'tenantdb.dev/rotate-password': 'r1' }), server);
    expect(r.steps[0]?.what).toMatch(/rotate the password of shop_orders \(request r1\)/);
  });

  test('with overlapping rotation a rotation loses nothing; strategy and schedule changes are named', () => {
    const overlap = { passwordRotation: { strategy: 'Overlap', gracePeriod: '10m' } };
    const r = planTenant('shop', 'orders', td(overlap), td(overlap, { 'tenantdb.dev/rotate-password': 'r1' }), server);
    expect(r.steps).toEqual([expect.objectContaining({ where: 'server', what: expect.stringMatching(/keeps working for 10m/) })]);
    expect(r.steps[0]?.destructive).toBeFalsy();
    const switched = planTenant('shop', 'orders', td({}), td({ passwordRotation: { strategy: 'Overlap', interval: '720h' } }), server);
    expect(switched.steps.map((x) => x.what).join('\n')).toMatch(/InPlace -> Overlap[\s\S]*every 720h/);
    const back = planTenant('shop', 'orders', td(overlap), td({}), server);
    expect(back.steps[0]).toMatchObject({ destructive: true, what: expect.stringMatching(/Overlap -> InPlace/) });
  });

  test('settings and adoption are named', () => {
    const p = planTenant('shop', 'orders', td({ settings: { timezone: 'UTC' } }), td({ settings: { statement_timeout: '30s' } }), server);
    const text = p.steps.map((x) => x.what).join('\n');
    expect(text).toMatch(/set statement_timeout to 30s for role shop_orders in shop_orders/);
    expect(text).toMatch(/reset timezone for role shop_orders in shop_orders \(was UTC\)/);
    const a = planTenant('shop', 'orders', td({}), td({ adoption: { from: 'Retained' } }), server);
    expect(a.steps[0]?.what).toMatch(/take over what was kept/);
  });

  test('a name added or changed once the objects exist is refused, as the operator refuses it', () => {
    const live = { ...td({}), status: { databaseName: 'shop_orders', roleName: 'shop_orders' } } as TenantDatabase;
    const p = planTenant('shop', 'orders', live, td({ databaseName: 'other' }), server);
    expect(p).toMatchObject({ action: 'refused', steps: [] });
    expect(p.refusal).toMatch(/ImmutableName.*databaseName cannot change to other/);
  });

  test('the same spec changes nothing; without a readable server, defaults are named as such', () => {
    expect(planTenant('shop', 'orders', td({ connectionLimit: 5 }), td({ connectionLimit: 5 }), server)).toMatchObject({
      action: 'unchanged',
      steps: [],
    });
    const p = planTenant('shop', 'orders', undefined, td({}), undefined);
    expect(p.steps[0]?.what).toMatch(/connection limit the server's default/);
  });

  test('a manifest: TenantDatabases are planned, other kinds listed as skipped, broken YAML refused in one line', () => {
    const text = [
      'apiVersion: tenantdb.dev/v1alpha1\nkind: TenantDatabase\nmetadata: {name: a}\nspec: {}',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}',
      'apiVersion: tenantdb.dev/v1alpha1\nkind: TenantDatabase\nmetadata: {name: b, namespace: x}',
    ].join('\n---\n');
    const { docs, skipped } = tenantsOfManifest(text, 'm.yaml');
    expect(docs.map((d) => d.metadata?.name)).toEqual(['a', 'b']);
    expect(skipped).toEqual(['ConfigMap c']);
    expect(() => tenantsOfManifest('a: [', 'bad.yaml')).toThrow(/bad\.yaml: not YAML/);
  });
});

describe("a plan's exact part: the operator's answer", () => {
  test('line changes: what goes, then what comes, each line once, the file named', () => {
    expect(lineChanges('hba.conf', 'a\nb\nc\n', 'b\nc\nd\n')).toEqual(['hba.conf: - a', 'hba.conf: + d']);
    expect(lineChanges('hba.conf', 'a\n', 'a\n')).toEqual([]);
    expect(lineChanges('databases.ini', '', 'x = y\n')).toEqual(['databases.ini: + x = y']);
  });

  test('shown as sections, a refusal first, nothing to change said once, notes last', () => {
    const base = { sql: [], secret: [], pooler: [], serverHba: [], notes: ['n1'] };
    expect(exactLines({ ...base, result: { reason: 'Planned', message: '' } })).toEqual([
      '  exact plan: nothing to change on the server, in the Secret or in the pooler',
      '  (n1)',
    ]);
    const lines = exactLines({
      ...base,
      result: { reason: 'Conflict', message: 'role x belongs to someone else' },
      sql: ['ALTER ROLE x NOLOGIN'],
      pooler: ['hba.conf: + host a b 10.0.0.0/8 scram-sha-256'],
    });
    expect(lines).toEqual([
      '  the operator would stop at: Conflict: role x belongs to someone else',
      '  SQL, in order (on the live server now):',
      '    ALTER ROLE x NOLOGIN',
      '  PgBouncer:',
      '    hba.conf: + host a b 10.0.0.0/8 scram-sha-256',
      '  (n1)',
    ]);
  });
});
