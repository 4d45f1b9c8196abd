/** Per-tenant series: what each level exports, from what, and that a tenant gone leaves no series. */
import { Registry } from 'prom-client';
import type { CachedPostgresServer, CachedTenantDatabase } from '../../src/api/cached.js';
import { tenantMetricsLevel } from '../../src/cli/options.js';
import { POOL_STATS_MS, tenantAlias, tenantMetricsSource, tenantSample } from '../../src/controllers/tenant-metrics.js';
import { sumPools, type PoolUsage } from '../../src/pg/pgbouncer-console.js';
import { createLogger } from '../../src/runtime/logger.js';
import {
  ReconcileTimes,
  registerTenantMetrics,
  tenantSeriesNames,
  type TenantMetricsLevel,
  type TenantMetricsSource,
  type TenantSnapshot,
} from '../../src/runtime/metrics.js';

const log = createLogger('silent');

function tenant(
  ns: string,
  name: string,
  status?: CachedTenantDatabase['status'],
  spec: CachedTenantDatabase['spec'] = {},
): CachedTenantDatabase {
  return {
    apiVersion: 'tenantdb.dev/v1alpha1',
    kind: 'TenantDatabase',
    metadata: { namespace: ns, name },
    spec,
    ...(status ? { status } : {}),
  };
}
const ready = (s: 'True' | 'False') => [
  { type: 'Ready', status: s, reason: 'x', message: 'x', lastTransitionTime: '2025-01-01T00:00:00Z' },
];
const server = (name: string, pooler: boolean): CachedPostgresServer => ({
  metadata: { name },
  spec: { host: 'h', ...(pooler ? { pooler: { host: 'p', port: 6432 } } : {}) },
});

/** Value of a series in the exposition text, or undefined when it is absent. */
function value(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if ((m[2] ?? '').split(',').sort().join(',') === want) return Number(m[3]);
  }
  return undefined;
}

describe('SHOW POOLS, summed by alias', () => {
  test('rows of PgBouncer 1.18 and of 1.24 (other columns), several users of one alias add up', () => {
    const rows = [
      // 1.18
      { database: 'db_a', user: 'a', cl_active: '2', cl_waiting: '1', sv_active: '1', sv_idle: '3', maxwait: '1', maxwait_us: '500000' },
      // 1.24: cancel columns, the twin login of the same tenant
      {
        database: 'db_a',
        user: 'a_2',
        cl_active: 1,
        cl_waiting: 0,
        cl_active_cancel_req: 0,
        sv_active: 1,
        sv_idle: 0,
        sv_being_canceled: 0,
        maxwait: 2,
        maxwait_us: 0,
      },
      { database: 'schema.s', user: 's', cl_active: 0, cl_waiting: 4, sv_active: 0, sv_idle: 0 },
      { database: 'pgbouncer', user: 'pgbouncer', cl_active: 1 },
      { user: 'nobody', cl_active: 9 },
    ];
    const pools = sumPools(rows);
    expect(pools.get('db_a')).toEqual({ clientsActive: 3, clientsWaiting: 1, serversActive: 2, serversIdle: 3, maxWaitSeconds: 2 });
    expect(pools.get('schema.s')).toEqual({ clientsActive: 0, clientsWaiting: 4, serversActive: 0, serversIdle: 0, maxWaitSeconds: 0 });
    expect([...pools.keys()].sort()).toEqual(['db_a', 'pgbouncer', 'schema.s']);
  });
});

describe('a tenant sample from the cache', () => {
  test.each<[string, CachedTenantDatabase, Partial<ReturnType<typeof tenantSample>>]>([
    [
      'no status yet: not ready, the spec names the server',
      tenant('a', 't', undefined, { serverRef: { name: 'main' } }),
      { ready: false, server: 'main' },
    ],
    ['no status and the default server: no server yet', tenant('a', 't'), { ready: false, server: '' }],
    [
      'Ready, sizes and sessions from status, the server from status',
      tenant(
        'a',
        't',
        { serverName: 'other', conditions: ready('True'), sizeBytes: 7_000_000, activeConnections: 3 },
        { serverRef: { name: 'main' } },
      ),
      { ready: true, server: 'other', sizeBytes: 7_000_000, sessions: 3 },
    ],
    ['Ready=False is 0', tenant('a', 't', { conditions: ready('False') }), { ready: false }],
    [
      'the credential time: credentials.rotatedAt first',
      tenant('a', 't', { passwordChangedAt: '2025-01-01T00:00:00Z', credentials: { rotatedAt: '2025-02-01T00:00:00Z', generation: 2 } }),
      { credentialSetAt: Date.parse('2025-02-01T00:00:00Z'), credentialGeneration: 2 },
    ],
    [
      'else passwordChangedAt',
      tenant('a', 't', { passwordChangedAt: '2025-01-01T00:00:00Z' }),
      { credentialSetAt: Date.parse('2025-01-01T00:00:00Z'), credentialGeneration: undefined },
    ],
    ['an unparsable time gives no age', tenant('a', 't', { passwordChangedAt: 'yesterday' }), { credentialSetAt: undefined }],
  ])('%s', (_what, t, expected) => {
    expect(tenantSample(t)).toMatchObject({ namespace: 'a', name: 't', ...expected });
  });

  test('an object without a namespace or name gives none', () => {
    expect(tenantSample({ metadata: { name: 'x' } })).toBeUndefined();
  });

  test("the pooler alias: the database, or a schema tenant's schema.<schema>", () => {
    expect(tenantAlias(tenant('a', 't', { databaseName: 'a_t' }))).toBe('a_t');
    expect(tenantAlias(tenant('a', 't', { databaseName: 'shared', schemaName: 'a_t' }))).toBe('schema.a_t');
    expect(tenantAlias(tenant('a', 't'))).toBeUndefined();
  });
});

describe('what each level registers', () => {
  const empty: TenantMetricsSource = { snapshot: () => Promise.resolve({ at: 0, tenants: [], poolers: [] }) };
  const registered = async (level: TenantMetricsLevel) => {
    const r = new Registry();
    registerTenantMetrics(r, level, empty);
    return (await r.getMetricsAsJSON()).map((m) => m.name).sort();
  };

  test('off: nothing', async () => {
    expect(await registered('off')).toEqual([]);
  });

  test('basic: ready, size, sessions and credential age', async () => {
    expect(await registered('basic')).toEqual(
      ['tenantdb_tenant_credential_age_seconds', 'tenantdb_tenant_ready', 'tenantdb_tenant_sessions', 'tenantdb_tenant_size_bytes'].sort(),
    );
  });

  test('full: also the pool, the credential generation, the last reconcile and whether each pooler answered', async () => {
    const names = await registered('full');
    expect(names).toEqual(tenantSeriesNames('full').sort());
    for (const n of tenantSeriesNames('basic')) expect(names).toContain(n);
    for (const n of [
      'tenantdb_tenant_pool_clients_active',
      'tenantdb_tenant_pool_clients_waiting',
      'tenantdb_tenant_pool_servers_active',
      'tenantdb_tenant_pool_servers_idle',
      'tenantdb_tenant_pool_max_wait_seconds',
      'tenantdb_tenant_credential_generation',
      'tenantdb_tenant_last_reconcile_timestamp_seconds',
      'tenantdb_pooler_stats_up',
    ])
      expect(names).toContain(n);
  });

  test('the flag takes the three levels and refuses others', () => {
    expect(tenantMetricsLevel('full')).toBe('full');
    expect(tenantMetricsLevel(' off ')).toBe('off');
    expect(() => tenantMetricsLevel('all')).toThrow(/off, basic, full/);
  });
});

describe('series at scrape time', () => {
  const at = Date.parse('2025-03-01T00:00:00Z');
  const a = { namespace: 'team-a', name: 'orders', server: 'main' };
  const b = { namespace: 'team-b', name: 'billing', server: 'main' };

  test('one snapshot per scrape; each series from it; a tenant gone from the snapshot has no series at the next scrape', async () => {
    let snap: TenantSnapshot = {
      at,
      tenants: [
        {
          ...a,
          ready: true,
          sizeBytes: 9_000_000,
          sessions: 2,
          credentialSetAt: at - 90_000,
          credentialGeneration: 3,
          lastReconciledAt: at - 5_000,
          pool: { clientsActive: 4, clientsWaiting: 1, serversActive: 2, serversIdle: 5, maxWaitSeconds: 1.5 },
        },
        { ...b, ready: false },
      ],
      poolers: [
        { server: 'main', up: true },
        { server: 'down', up: false },
      ],
    };
    let calls = 0;
    const r = new Registry();
    registerTenantMetrics(r, 'full', { snapshot: () => (calls++, Promise.resolve(snap)) });
    let text = await r.metrics();
    expect(calls).toBe(1);
    expect(value(text, 'tenantdb_tenant_ready', a)).toBe(1);
    expect(value(text, 'tenantdb_tenant_ready', b)).toBe(0);
    expect(value(text, 'tenantdb_tenant_size_bytes', a)).toBe(9_000_000);
    expect(value(text, 'tenantdb_tenant_size_bytes', b)).toBeUndefined();
    expect(value(text, 'tenantdb_tenant_sessions', a)).toBe(2);
    expect(value(text, 'tenantdb_tenant_credential_age_seconds', a)).toBe(90);
    expect(value(text, 'tenantdb_tenant_credential_generation', a)).toBe(3);
    expect(value(text, 'tenantdb_tenant_last_reconcile_timestamp_seconds', a)).toBe((at - 5_000) / 1000);
    expect(value(text, 'tenantdb_tenant_pool_clients_active', a)).toBe(4);
    expect(value(text, 'tenantdb_tenant_pool_clients_waiting', a)).toBe(1);
    expect(value(text, 'tenantdb_tenant_pool_servers_active', a)).toBe(2);
    expect(value(text, 'tenantdb_tenant_pool_servers_idle', a)).toBe(5);
    expect(value(text, 'tenantdb_tenant_pool_max_wait_seconds', a)).toBe(1.5);
    expect(value(text, 'tenantdb_tenant_pool_clients_active', b)).toBeUndefined();
    expect(value(text, 'tenantdb_pooler_stats_up', { server: 'main' })).toBe(1);
    expect(value(text, 'tenantdb_pooler_stats_up', { server: 'down' })).toBe(0);

    snap = { at, tenants: [{ ...b, ready: true }], poolers: [] };
    text = await r.metrics();
    expect(calls).toBe(2);
    expect(text).not.toContain('name="orders"');
    expect(value(text, 'tenantdb_tenant_ready', b)).toBe(1);
    expect(value(text, 'tenantdb_pooler_stats_up', { server: 'down' })).toBeUndefined();
  });
});

describe('the source: the caches, and SHOW POOLS at most once per server per interval', () => {
  const tenants: CachedTenantDatabase[] = [
    tenant('a', 'pooled', { serverName: 'main', databaseName: 'a_pooled', conditions: ready('True') }),
    tenant('a', 'idle', { serverName: 'main', databaseName: 'a_idle' }),
    tenant('a', 'direct', { serverName: 'main', databaseName: 'a_direct' }, { pooling: { enabled: false } }),
    tenant('a', 'schema', { serverName: 'main', databaseName: 'shared', schemaName: 'a_schema' }),
    tenant('b', 'elsewhere', { serverName: 'nopooler', databaseName: 'b_elsewhere' }),
    tenant('b', 'down', { serverName: 'down', databaseName: 'b_down' }),
  ];
  const servers = [server('main', true), server('nopooler', false), server('down', true)];
  const usage = (clientsActive: number): PoolUsage => ({
    clientsActive,
    clientsWaiting: 0,
    serversActive: 0,
    serversIdle: 0,
    maxWaitSeconds: 0,
  });

  function setUp(level: TenantMetricsLevel) {
    let now = 1_000_000;
    const reads: string[] = [];
    let active = 3;
    const list = [...tenants];
    const reconciled = new ReconcileTimes(() => list.map((t) => `${t.metadata?.namespace}/${t.metadata?.name}`));
    const source = tenantMetricsSource({
      tenants: { list: () => list },
      servers: { list: () => servers },
      level,
      reconciled,
      log,
      now: () => now,
      readPools: (name) => {
        reads.push(name);
        if (name === 'down') return Promise.reject(new Error('connection refused'));
        return Promise.resolve(
          new Map([
            ['a_pooled', usage(active)],
            ['schema.a_schema', usage(1)],
          ]),
        );
      },
    });
    return {
      source,
      reads,
      list,
      reconciled,
      tick: (ms: number) => (now += ms),
      setActive: (n: number) => (active = n),
    };
  }
  const byName = (s: TenantSnapshot, name: string) => s.tenants.find((t) => t.name === name);

  test('full: pools by alias, an unused pool is zeros, a direct tenant and a server without a pooler have none, a pooler that does not answer is down', async () => {
    const { source } = setUp('full');
    const s = await source.snapshot();
    expect(byName(s, 'pooled')?.pool?.clientsActive).toBe(3);
    expect(byName(s, 'schema')?.pool?.clientsActive).toBe(1);
    expect(byName(s, 'idle')?.pool).toEqual(usage(0));
    expect(byName(s, 'direct')?.pool).toBeUndefined();
    expect(byName(s, 'elsewhere')?.pool).toBeUndefined();
    expect(byName(s, 'down')?.pool).toBeUndefined();
    expect([...s.poolers].sort((x, y) => x.server.localeCompare(y.server))).toEqual([
      { server: 'down', up: false },
      { server: 'main', up: true },
    ]);
  });

  test('scrapes within the interval share one SHOW POOLS per server, the next interval reads again', async () => {
    const { source, reads, tick, setActive } = setUp('full');
    await Promise.all([source.snapshot(), source.snapshot()]);
    tick(POOL_STATS_MS - 1);
    setActive(8);
    expect(byName(await source.snapshot(), 'pooled')?.pool?.clientsActive).toBe(3);
    expect(reads.sort()).toEqual(['down', 'main']);
    tick(1);
    expect(byName(await source.snapshot(), 'pooled')?.pool?.clientsActive).toBe(8);
    expect(reads.sort()).toEqual(['down', 'down', 'main', 'main']);
  });

  test('a PgBouncer that does not answer in time is down for that scrape, not a scrape that hangs', async () => {
    const source = tenantMetricsSource({
      tenants: { list: () => tenants },
      servers: { list: () => [server('main', true)] },
      level: 'full',
      log,
      waitMs: 20,
      readPools: () => new Promise(() => undefined),
    });
    const s = await source.snapshot();
    expect(s.poolers).toEqual([{ server: 'main', up: false }]);
    expect(byName(s, 'pooled')?.pool).toBeUndefined();
    expect(byName(s, 'pooled')?.ready).toBe(true);
  });

  test('basic: no console session, no pool, no last reconcile', async () => {
    const { source, reads, reconciled } = setUp('basic');
    reconciled.record('a/pooled');
    const s = await source.snapshot();
    expect(reads).toEqual([]);
    expect(s.poolers).toEqual([]);
    expect(byName(s, 'pooled')?.ready).toBe(true);
    expect(byName(s, 'pooled')?.pool).toBeUndefined();
    expect(byName(s, 'pooled')?.lastReconciledAt).toBeUndefined();
  });

  test('full: the last successful reconcile; a deleted tenant leaves neither its sample nor its time', async () => {
    const { source, list, reconciled } = setUp('full');
    reconciled.record('a/pooled', 123_000);
    reconciled.record('a/idle', 124_000);
    expect(byName(await source.snapshot(), 'pooled')?.lastReconciledAt).toBe(123_000);
    list.splice(
      list.findIndex((t) => t.metadata?.name === 'pooled'),
      1,
    );
    const s = await source.snapshot();
    expect(byName(s, 'pooled')).toBeUndefined();
    expect(reconciled.get('a/pooled')).toBeUndefined();
    expect(reconciled.get('a/idle')).toBe(124_000);
  });
});

describe('reconcile times', () => {
  test('keys of objects gone are dropped once it grows past its bound, without a scrape', () => {
    const live = new Set<string>(['ns/keep']);
    const times = new ReconcileTimes(() => live);
    times.record('ns/keep');
    for (let i = 0; i < 1024; i++) times.record(`ns/gone-${i}`);
    expect(times.size).toBe(1);
    expect(times.get('ns/keep')).toBeDefined();
  });
});
