/**
 * Per-tenant session defaults (spec.settings) on a real PostgreSQL: set on the tenant's login roles
 * in its database, in force for its sessions directly and through the pooler, put back when the
 * tenant changes them, reset when the spec drops them; a schema tenant keeps its search_path.
 */
import type { Pooler } from '../env/pgbouncer.js';
import type { Proc } from '../env/process.js';
import { waitFor } from '../env/ports.js';
import {
  applyTenant,
  cluster,
  condition,
  getTenant,
  namespace,
  operator,
  queryWith,
  readSecretData,
  startPooledServer,
  tenantReady,
  waitForCondition,
} from './harness.js';

const c = cluster();
let op: Proc;
let pooler: Pooler;
const SERVER = 'tuned';
const NS = 'tuned';

beforeAll(async () => {
  op = operator(c, 'settings');
  await namespace(c, NS);
  pooler = await startPooledServer(c, SERVER, { sharedDatabase: 'tuned_shared' });
}, 120_000);

afterAll(async () => {
  await op?.stop();
  await pooler?.stop();
});

const SHOW = "SELECT current_setting('statement_timeout') AS st, current_setting('TimeZone') AS tz, current_setting('search_path') AS sp";

test.each([
  ['Database', 'db'],
  ['Schema', 'sch'],
])(
  'isolation %s: settings are in force directly and pooled, repaired when the tenant changes them, reset when dropped',
  async (isolation, name) => {
    const base = { serverRef: { name: SERVER }, isolation, passwordRotation: { strategy: 'Overlap', gracePeriod: '5s' } };
    await applyTenant(c, NS, name, { ...base, settings: { statement_timeout: '1500ms', timezone: 'Europe/Paris' } });
    await tenantReady(c, NS, name);
    const s = (await readSecretData(c, NS, `${name}-db`)) ?? {};
    for (const url of [s.DIRECT_URL ?? '', s.DATABASE_URL ?? '']) {
      const [row] = await queryWith(url, SHOW);
      expect(row).toMatchObject({ st: '1500ms', tz: 'Europe/Paris' });
      if (isolation === 'Schema') expect(row?.sp).toBe(s.schema);
      await expect(queryWith(url, 'SELECT pg_sleep(3)')).rejects.toThrow(/statement timeout/);
    }

    // The tenant changes its own default; the next full look (a spec change here) puts it back.
    await queryWith(s.DIRECT_URL ?? '', `ALTER ROLE CURRENT_USER IN DATABASE ${s.database} SET timezone TO 'UTC'`).catch(() => undefined);
    await queryWith(s.DIRECT_URL ?? '', `ALTER ROLE ${s.username} IN DATABASE ${s.database} SET timezone TO 'UTC'`);
    await applyTenant(c, NS, name, { ...base, settings: { statement_timeout: '2s', timezone: 'Europe/Paris' } });
    await waitFor(
      'the settings repaired',
      async () => {
        const [row] = await queryWith(s.DIRECT_URL ?? '', SHOW);
        return row?.st === '2s' && row.tz === 'Europe/Paris' ? true : undefined;
      },
      30_000,
    );

    // After a rotation to the other login role the same defaults hold.
    await applyTenant(c, NS, name, { ...base, settings: { statement_timeout: '2s', timezone: 'Europe/Paris' } });
    const { setHeaderOptions } = await import('@kubernetes/client-node');
    await c.custom.patchNamespacedCustomObject(
      {
        group: 'tenantdb.dev',
        version: 'v1alpha1',
        namespace: NS,
        plural: 'tenantdatabases',
        name,
        body: { metadata: { annotations: { 'tenantdb.dev/rotate-password': 'r1' } } },
      },
      setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    const rotated = await waitFor(
      'the switch to the second login role',
      async () => {
        const x = await readSecretData(c, NS, `${name}-db`);
        return x && x.username !== s.username ? x : undefined;
      },
      30_000,
    );
    const [twin] = await queryWith(rotated.DIRECT_URL ?? '', SHOW);
    expect(twin).toMatchObject({ st: '2s', tz: 'Europe/Paris' });
    if (isolation === 'Schema') expect(twin?.sp).toBe(s.schema);

    // Dropped from the spec: back to the server's defaults.
    await applyTenant(c, NS, name, base);
    await waitFor(
      'the settings reset',
      async () => {
        const [row] = await queryWith(rotated.DIRECT_URL ?? '', SHOW);
        return row?.st === '0' ? row : undefined;
      },
      30_000,
    );
    expect(condition(await getTenant(c, NS, name), 'Ready')?.status).toBe('True');
  },
  120_000,
);

test('a value PostgreSQL refuses is in status, and nothing else changes', async () => {
  await applyTenant(c, NS, 'bad', { serverRef: { name: SERVER }, settings: { work_mem: '3TB', timezone: 'Nowhere/Atlantis' } });
  const t = await waitForCondition(() => getTenant(c, NS, 'bad'), 'Ready', 'False', 'InvalidSetting', 30_000);
  expect(condition(t, 'Stalled')?.status).toBe('True');
  expect(condition(t, 'Ready')?.message).toMatch(/work_mem/);
});

test('a size quota: QuotaExceeded and a Warning Event past it, Ready stays True; back within it, False', async () => {
  await applyTenant(c, NS, 'big', { serverRef: { name: SERVER }, quota: { size: '40Mi' } });
  const ready = await tenantReady(c, NS, 'big');
  expect(condition(ready, 'QuotaExceeded')).toMatchObject({ status: 'False', reason: 'WithinQuota' });
  const s = (await readSecretData(c, NS, 'big-db')) ?? {};
  await queryWith(s.DIRECT_URL ?? '', 'CREATE TABLE blob AS SELECT g, repeat(md5(g::text), 20) AS pad FROM generate_series(1, 80000) g');
  // A full look (a spec change) measures again.
  await applyTenant(c, NS, 'big', { serverRef: { name: SERVER }, quota: { size: '40Mi' }, settings: { timezone: 'UTC' } });
  const over = await waitForCondition(() => getTenant(c, NS, 'big'), 'QuotaExceeded', 'True', 'OverQuota', 30_000);
  expect(condition(over, 'Ready')?.status).toBe('True');
  expect(condition(over, 'QuotaExceeded')?.message).toMatch(/past its quota of 40Mi/);
  await waitFor('the Warning Event', async () => {
    const ev = await c.core.listNamespacedEvent({ namespace: NS, fieldSelector: 'involvedObject.name=big' });
    return ev.items.some((e) => e.reason === 'QuotaExceeded' && e.type === 'Warning') || undefined;
  });
  await applyTenant(c, NS, 'big', { serverRef: { name: SERVER }, quota: { size: '1Gi' }, settings: { timezone: 'UTC' } });
  await waitForCondition(() => getTenant(c, NS, 'big'), 'QuotaExceeded', 'False', 'WithinQuota', 30_000);
}, 90_000);
