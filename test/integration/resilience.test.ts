/** The operator killed mid-reconcile, two replicas with one leader, health and metrics. */
import * as k8s from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { OPERATOR_NAMESPACE } from '../env/cluster.js';
import { join } from 'node:path';
import type { Proc } from '../env/process.js';
import { waitFor } from '../env/ports.js';
import {
  applyTenant,
  cluster,
  condition,
  ensureDefaultServer,
  getTenant,
  namespace,
  operator,
  queryWith,
  readSecretData,
  scrapeOperator,
  seriesValue,
  superQuery,
  tenantIdentity,
  tenantReady,
  waitForCondition,
} from './harness.js';

const c = cluster();
const procs: Proc[] = [];
const start = (name: string) => {
  const p = operator(c, name);
  procs.push(p);
  return p;
};

afterAll(async () => {
  for (const p of procs) await p.stop();
});

const logOf = (name: string) => {
  try {
    return readFileSync(join(c.env.dir, `operator-${name}.log`), 'utf8');
  } catch {
    return '';
  }
};

async function assertTenantsIntact(ns: string, names: string[]): Promise<void> {
  for (const n of names) {
    const td = await tenantReady(c, ns, n, 90_000);
    const s = (await readSecretData(c, ns, `${n}-db`)) ?? {};
    expect((await queryWith(s.DATABASE_URL ?? ''))[0]).toEqual({ u: td.status?.roleName, d: td.status?.databaseName });
  }
  const prefix = `${ns.replace(/-/g, '_')}_`;
  const dbs = await superQuery<{ datname: string; comment: string | null }>(
    c,
    "SELECT datname, shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname LIKE $1 AND datname NOT LIKE '%\\_shadow' ORDER BY 1",
    [`${prefix}%`],
  );
  const roles = await superQuery<{ rolname: string }>(c, 'SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY 1', [`${prefix}%`]);
  const expected = names.map((n) => `${prefix}${n.replace(/-/g, '_')}`).sort();
  // Exactly one database and one role per tenant: no duplicates, no orphans, every database marked.
  expect(dbs.map((d) => d.datname)).toEqual(expected);
  expect(roles.map((r) => r.rolname)).toEqual(expected);
  for (const d of dbs) expect(d.comment).toMatch(/^managed by tenantdb; tenantdatabase=/);
  const secrets = await c.core.listNamespacedSecret({ namespace: ns, labelSelector: 'app.kubernetes.io/managed-by=tenantdb' });
  expect(secrets.items.map((s) => s.metadata?.name).sort()).toEqual(names.map((n) => `${n}-db`).sort());
}

test('killed mid-reconcile and restarted, the operator ends where it would have without the kill', async () => {
  const first = start('crash-1');
  await ensureDefaultServer(c);
  await namespace(c, 'crash');
  const names = ['t1', 't2', 't3', 't4', 't5', 't6'];
  let i = 0;
  for (const delay of [120, 300, 600]) {
    const p = i === 0 ? first : start(`crash-${i + 1}`);
    await waitFor('leadership', async () => logOf(`crash-${i + 1}`).includes('Controllers started') || undefined, 60_000);
    for (const n of names.slice(i * 2, i * 2 + 2)) await applyTenant(c, 'crash', n, { shadowDatabase: true });
    await new Promise((r) => setTimeout(r, delay));
    await p.stop('SIGKILL');
    i++;
  }
  const last = start('crash-4');
  try {
    await assertTenantsIntact('crash', names);
    // Shadow databases too: one each.
    const shadows = await superQuery(c, "SELECT count(*)::int AS n FROM pg_database WHERE datname LIKE 'crash\\_%\\_shadow'");
    expect(shadows[0]?.n).toBe(6);
  } finally {
    await last.stop();
  }
}, 300_000);

test('two replicas: one leads, the other takes over when the leader dies', async () => {
  await namespace(c, 'ha');
  const a = start('ha-a');
  await waitFor('a leader', async () => logOf('ha-a').includes('Controllers started') || undefined, 60_000);
  const b = start('ha-b');
  await waitFor('the standby to start', async () => logOf('ha-b').includes('Waiting for the leader Lease') || undefined, 30_000);
  try {
    await applyTenant(c, 'ha', 'one');
    await tenantReady(c, 'ha', 'one');
    expect(logOf('ha-b')).not.toContain('Controllers started');

    await a.stop('SIGKILL');
    await waitFor('the standby to take over', async () => logOf('ha-b').includes('Controllers started') || undefined, 60_000);
    await applyTenant(c, 'ha', 'two');
    await tenantReady(c, 'ha', 'two');
  } finally {
    await a.stop();
    await b.stop();
  }
  expect(logOf('ha-b')).toContain('Stopped');
}, 180_000);

test('health and metrics are served, and SIGTERM shuts down cleanly and hands the Lease back', async () => {
  const p = start('metrics');
  await waitFor('controllers', async () => logOf('metrics').includes('Controllers started') || undefined, 60_000);
  const line = logOf('metrics')
    .split('\n')
    .find((l) => l.includes('"metricsPort"'));
  const port = (JSON.parse(line ?? '{}') as { metricsPort?: number }).metricsPort;
  expect(port).toBeGreaterThan(0);
  await waitFor('/readyz', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 || undefined, 30_000);
  expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  const metrics = await waitFor(
    'a first reconcile in the metrics',
    async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return /tenantdb_reconcile_total\{controller="(tenantdatabase|postgresserver)",result="success"\} \d+/.test(text) ? text : undefined;
    },
    30_000,
  );
  expect(metrics).toMatch(/tenantdb_leader 1/);
  const t0 = Date.now();
  await p.stop('SIGTERM');
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect(p.child.exitCode).toBe(0);
  // The Lease was released: the next replica leads at once instead of waiting for expiry.
  const q = start('after-metrics');
  const t1 = Date.now();
  await waitFor('the next leader', async () => logOf('after-metrics').includes('Controllers started') || undefined, 30_000);
  expect(Date.now() - t1).toBeLessThan(10_000);
  await q.stop();
}, 120_000);

test('a leader whose Lease is taken exits non-zero, so that its pod restarts as a standby', async () => {
  const p = start('lease-lost');
  await waitFor('leadership', async () => logOf('lease-lost').includes('Controllers started') || undefined, 60_000);
  const coordination = c.kc.makeApiClient(k8s.CoordinationV1Api);
  const id = { name: 'tenantdb-operator', namespace: OPERATOR_NAMESPACE };
  // Another replica holds the Lease now, as after a partition that outlasted the renew deadline.
  await waitFor(
    'the Lease taken over',
    async () => {
      const lease = await coordination.readNamespacedLease(id);
      lease.spec = { ...lease.spec, holderIdentity: 'another-replica', renewTime: new k8s.V1MicroTime(), leaseDurationSeconds: 60 };
      await coordination.replaceNamespacedLease({ ...id, body: lease });
      return true;
    },
    15_000,
  );
  try {
    await waitFor('the old leader to exit', async () => (p.child.exitCode !== null ? true : undefined), 30_000);
    expect(p.child.exitCode).not.toBe(0);
    expect(logOf('lease-lost')).toContain('Lease taken by another replica');
  } finally {
    await coordination.deleteNamespacedLease(id).catch(() => undefined);
  }
}, 120_000);

test('names a tenant adds to its provisioned TenantDatabase stay refused when the operator starts again', async () => {
  // The API server lets a name be added to a spec that had none (a transition rule does not see a
  // missing field). The operator refuses it by the objects' markers; right after a start, before
  // its server's catalog is read, it must not take the new names for a new tenant's.
  const first = start('rename-1');
  await ensureDefaultServer(c);
  const team = await tenantIdentity(c, 'rename');
  await team.apply('TenantDatabase', 'keep', {});
  const ready = await tenantReady(c, 'rename', 'keep', 90_000);
  expect(ready.status?.roleName).toBe('rename_keep');
  // As the tenant, with its own token.
  await team.apply('TenantDatabase', 'keep', { roleName: 'rename_second', databaseName: 'rename_second' });
  await waitForCondition(() => getTenant(c, 'rename', 'keep'), 'Ready', 'False', 'ImmutableName');
  // A first reconcile that fails after making the role and database (a time zone PostgreSQL
  // refuses) records no names in status and asks the server for no new catalog read: names added
  // then are held to the objects' markers all the same.
  await team.apply('TenantDatabase', 'half', { settings: { timezone: 'Nowhere/Atlantis' } });
  const half = await waitForCondition(() => getTenant(c, 'rename', 'half'), 'Ready', 'False', 'InvalidSetting', 60_000);
  expect(half.status?.roleName).toBeUndefined();
  await team.apply('TenantDatabase', 'half', { settings: {}, roleName: 'rename_half_2nd', databaseName: 'rename_half_2nd' });
  const refused = await waitForCondition(() => getTenant(c, 'rename', 'half'), 'Ready', 'False', 'ImmutableName', 60_000);
  expect(condition(refused, 'Ready')?.message).toMatch(/rename_half; (roleName|databaseName) cannot change to rename_half_2nd/);
  await first.stop('SIGKILL');
  const second = start('rename-2');
  try {
    // Its first reconciles of the tenant and of the server are over, and then some.
    await waitFor(
      'the restarted operator to reconcile the server and the tenant',
      async () => {
        const text = await scrapeOperator(c, 'rename-2').catch(() => '');
        const server = seriesValue(text, 'tenantdb_reconcile_total', { controller: 'postgresserver', result: 'success' }) ?? 0;
        const tenant = ['success', 'error', 'terminal', 'requeue'].reduce(
          (n, result) => n + (seriesValue(text, 'tenantdb_reconcile_total', { controller: 'tenantdatabase', result }) ?? 0),
          0,
        );
        return (server >= 1 && tenant >= 1) || undefined;
      },
      90_000,
    );
    await new Promise((r) => setTimeout(r, 3000));
    const made = await superQuery<{ name: string }>(
      c,
      "SELECT rolname AS name FROM pg_roles WHERE rolname IN ('rename_second', 'rename_half_2nd') UNION ALL SELECT datname FROM pg_database WHERE datname IN ('rename_second', 'rename_half_2nd')",
    );
    expect(made).toEqual([]);
    const td = await getTenant(c, 'rename', 'keep');
    expect(condition(td, 'Ready')).toMatchObject({ status: 'False', reason: 'ImmutableName' });
    expect(condition(td, 'Ready')?.message).toMatch(/the role is rename_keep; roleName cannot change to rename_second/);
    // The tenant's own role and database are as they were: it still logs in with its Secret.
    const s = (await readSecretData(c, 'rename', 'keep-db')) ?? {};
    expect((await queryWith(s.DIRECT_URL ?? s.DATABASE_URL ?? ''))[0]).toEqual({ u: 'rename_keep', d: 'rename_keep' });
    // A tenant whose derived names were another's (a Conflict, nothing made) still gets the names it
    // sets afterwards, as the README tells it to: no object carries its marker.
    await team.apply('TenantDatabase', 'x-y', {});
    await tenantReady(c, 'rename', 'x-y', 90_000);
    await namespace(c, 'rename-x');
    await applyTenant(c, 'rename-x', 'y');
    await waitForCondition(() => getTenant(c, 'rename-x', 'y'), 'Ready', 'False', 'Conflict');
    await applyTenant(c, 'rename-x', 'y', { roleName: 'rename_x_y_2nd', databaseName: 'rename_x_y_2nd' });
    const second2 = await tenantReady(c, 'rename-x', 'y', 90_000);
    expect([second2.status?.roleName, second2.status?.databaseName]).toEqual(['rename_x_y_2nd', 'rename_x_y_2nd']);
  } finally {
    await second.stop();
  }
}, 240_000);
