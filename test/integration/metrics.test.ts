/**
 * The per-tenant series on the real operator's /metrics: values from a Ready tenant's status, its
 * pool in a real PgBouncer while a pooled session is open, its credential generation after a
 * rotation, gone once it is deleted; none at --tenant-metrics=off; the default (basic) without
 * the pool series.
 */
import * as k8s from '@kubernetes/client-node';
import pg from 'pg';
import { OPERATOR_NAMESPACE } from '../env/cluster.js';
import type { Pooler } from '../env/pgbouncer.js';
import { waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import {
  applyServer,
  applyTenant,
  cluster,
  deleteTenant,
  getServer,
  getTenant,
  namespace,
  operator,
  readSecretData,
  scrapeOperator,
  seriesValue,
  startServerPooler,
  tenantReady,
  waitForCondition,
  waitTenantGone,
} from './harness.js';

const c = cluster();
const SERVER = 'metered';
const NS = 'metrics';
let op: Proc | undefined;
let pooler: Pooler;
let opName = 'metrics-full';

const labels = (name: string) => ({ namespace: NS, name, server: SERVER });
const scrape = () => scrapeOperator(c, opName);
/** Waits until a scrape satisfies `ok`; returns that scrape. */
const scrapeUntil = (what: string, ok: (text: string) => boolean, timeoutMs = 30_000) =>
  waitFor(
    what,
    async () => {
      const text = await scrape();
      return ok(text) ? text : undefined;
    },
    timeoutMs,
    500,
  );
const status = async (name: string) =>
  ((await getTenant(c, NS, name))?.status ?? {}) as {
    sizeBytes?: number;
    activeConnections?: number;
    credentials?: { generation?: number; rotatedAt?: string };
  };

beforeAll(async () => {
  await namespace(c, NS);
  pooler = await startServerPooler(c, SERVER);
  op = operator(c, opName, undefined, ['--tenant-metrics=full']);
  await applyServer(c, SERVER, {
    host: c.env.pg.host,
    port: c.env.pg.port,
    sslMode: 'disable',
    adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: `${SERVER}-admin` },
    pooler: { host: pooler.host, port: pooler.port, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: `${SERVER}-pgbouncer` } },
    alwaysAllowedCidrs: ['127.0.0.1/32'],
  });
  await waitForCondition(() => getServer(c, SERVER), 'PoolerReady', 'True', 'Applied');
  await applyTenant(c, NS, 'shop', { serverRef: { name: SERVER }, pooling: { poolSize: 2 } });
  await applyTenant(c, NS, 'direct', { serverRef: { name: SERVER }, pooling: { enabled: false } });
  await tenantReady(c, NS, 'shop');
  await tenantReady(c, NS, 'direct');
}, 180_000);

afterAll(async () => {
  await op?.stop();
  await pooler?.stop();
});

test("a Ready tenant's series carry its status: ready 1, its size, its sessions, its credential age and generation, its last reconcile", async () => {
  const meta = (await getTenant(c, NS, 'shop'))?.metadata as { creationTimestamp?: string } | undefined;
  const created = Date.parse(meta?.creationTimestamp ?? '');
  const text = await scrapeUntil('the series of shop to match its status', (t) => {
    return seriesValue(t, 'tenantdb_tenant_ready', labels('shop')) === 1;
  });
  const st = await status('shop');
  expect(st.sizeBytes).toBeGreaterThan(0);
  // Status may be refreshed between the scrape and the read: compare with the next scrape too.
  const size = seriesValue(text, 'tenantdb_tenant_size_bytes', labels('shop'));
  const again = seriesValue(await scrape(), 'tenantdb_tenant_size_bytes', labels('shop'));
  expect([size, again]).toContain(st.sizeBytes);
  expect(seriesValue(text, 'tenantdb_tenant_sessions', labels('shop'))).toBeGreaterThanOrEqual(0);
  await scrapeUntil(
    'the sessions series to be status.activeConnections',
    (t) => seriesValue(t, 'tenantdb_tenant_sessions', labels('shop')) === st.activeConnections,
  );
  const age = seriesValue(text, 'tenantdb_tenant_credential_age_seconds', labels('shop')) ?? -1;
  expect(age).toBeGreaterThanOrEqual(0);
  expect(age).toBeLessThanOrEqual((Date.now() - created) / 1000 + 2);
  expect(seriesValue(text, 'tenantdb_tenant_credential_generation', labels('shop'))).toBe(0);
  const last = seriesValue(text, 'tenantdb_tenant_last_reconcile_timestamp_seconds', labels('shop')) ?? 0;
  expect(last).toBeGreaterThanOrEqual(created / 1000 - 1);
  expect(last).toBeLessThanOrEqual(Date.now() / 1000);
  expect(seriesValue(text, 'tenantdb_tenant_ready', labels('direct'))).toBe(1);
  expect(seriesValue(text, 'tenantdb_pooler_stats_up', { server: SERVER })).toBe(1);
});

test("a pooled session shows in the tenant's pool series from the real PgBouncer, and leaves it when it ends; an unpooled tenant has none", async () => {
  await scrapeUntil('shop to have no pooled client', (t) => seriesValue(t, 'tenantdb_tenant_pool_clients_active', labels('shop')) === 0);
  const url = (await readSecretData(c, NS, 'shop-db'))?.DATABASE_URL ?? '';
  expect(new URL(url).port).toBe(String(pooler.port));
  const session = new pg.Client({ connectionString: url });
  session.on('error', () => undefined);
  await session.connect();
  try {
    // In a transaction the client holds a server connection (transaction pooling).
    await session.query('BEGIN');
    await session.query('SELECT 1');
    const text = await scrapeUntil(
      'the open session in the pool series',
      (t) =>
        (seriesValue(t, 'tenantdb_tenant_pool_clients_active', labels('shop')) ?? 0) >= 1 &&
        (seriesValue(t, 'tenantdb_tenant_pool_servers_active', labels('shop')) ?? 0) >= 1,
    );
    expect(seriesValue(text, 'tenantdb_tenant_pool_clients_waiting', labels('shop'))).toBe(0);
    expect(seriesValue(text, 'tenantdb_tenant_pool_servers_idle', labels('shop'))).toBeGreaterThanOrEqual(0);
    expect(seriesValue(text, 'tenantdb_tenant_pool_clients_active', labels('direct'))).toBeUndefined();
    await session.query('COMMIT');
  } finally {
    await session.end().catch(() => undefined);
  }
  await scrapeUntil('the ended session to leave the pool series', (t) => {
    return (
      seriesValue(t, 'tenantdb_tenant_pool_clients_active', labels('shop')) === 0 &&
      seriesValue(t, 'tenantdb_tenant_pool_servers_active', labels('shop')) === 0
    );
  });
});

test('a rotation (the rotate-password annotation) moves the credential generation to 1 and the age back to about 0', async () => {
  const before = seriesValue(await scrape(), 'tenantdb_tenant_credential_age_seconds', labels('shop')) ?? 0;
  await c.custom.patchNamespacedCustomObject(
    {
      group: 'tenantdb.dev',
      version: 'v1alpha1',
      namespace: NS,
      plural: 'tenantdatabases',
      name: 'shop',
      body: { metadata: { annotations: { 'tenantdb.dev/rotate-password': `metrics-${Date.now()}` } } },
    },
    k8s.setHeaderOptions('Content-Type', 'application/merge-patch+json'),
  );
  await waitFor('status.credentials.generation 1', async () => (await status('shop')).credentials?.generation === 1);
  const rotatedAt = Date.parse((await status('shop')).credentials?.rotatedAt ?? '');
  const text = await scrapeUntil(
    'the generation series to be 1',
    (t) => seriesValue(t, 'tenantdb_tenant_credential_generation', labels('shop')) === 1,
  );
  const age = seriesValue(text, 'tenantdb_tenant_credential_age_seconds', labels('shop')) ?? -1;
  expect(age).toBeGreaterThanOrEqual(0);
  expect(age).toBeLessThanOrEqual((Date.now() - rotatedAt) / 1000 + 1);
  expect(before).toBeGreaterThan(age);
});

test("a deleted tenant's series are gone at the next scrape; the others stay", async () => {
  expect(await scrape()).toContain(`namespace="${NS}",name="shop"`);
  await deleteTenant(c, NS, 'shop');
  await waitTenantGone(c, NS, 'shop');
  // Other test files' tenants may be named shop too: only this namespace's counts.
  const text = await scrapeUntil('no series of shop', (t) => !t.includes(`namespace="${NS}",name="shop"`), 30_000);
  expect(text).not.toMatch(/namespace="metrics",name="shop"/);
  expect(seriesValue(text, 'tenantdb_tenant_ready', labels('direct'))).toBe(1);
  expect(text).toMatch(/^tenantdb_tenant_size_bytes\{/m);
});

test('the default (basic) has the four basic series and no pool, generation or last-reconcile series; off has no per-tenant series at all', async () => {
  await op?.stop();
  opName = 'metrics-basic';
  op = operator(c, opName);
  // Its caches are filled once it leads: the tenant it reconciled shows.
  let text = await scrapeUntil(
    'the basic operator to report direct',
    (t) => seriesValue(t, 'tenantdb_tenant_ready', labels('direct')) === 1,
    60_000,
  );
  for (const n of ['tenantdb_tenant_size_bytes', 'tenantdb_tenant_sessions', 'tenantdb_tenant_credential_age_seconds'])
    expect(`${n} ${seriesValue(text, n, labels('direct')) !== undefined}`).toBe(`${n} true`);
  for (const n of [
    'tenantdb_tenant_pool_clients_active',
    'tenantdb_tenant_credential_generation',
    'tenantdb_tenant_last_reconcile_timestamp_seconds',
    'tenantdb_pooler_stats_up',
  ])
    expect(text).not.toContain(n);

  await op.stop();
  opName = 'metrics-off';
  op = operator(c, opName, undefined, ['--tenant-metrics=off']);
  text = await scrapeUntil(
    'the off operator to have reconciled direct',
    (t) => (seriesValue(t, 'tenantdb_reconcile_total', { controller: 'tenantdatabase', result: 'success' }) ?? 0) >= 1,
    60_000,
  );
  expect(seriesValue(text, 'tenantdb_leader')).toBe(1);
  expect(text).not.toMatch(/tenantdb_tenant_|tenantdb_pooler_stats_up/);
});
