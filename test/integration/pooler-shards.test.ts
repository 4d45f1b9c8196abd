/**
 * The pooler config cut into shards: with a small budget a handful of tenants take several Secrets,
 * the real agent assembles them, and the real PgBouncer serves every tenant.
 */
import { join } from 'node:path';
import { OPERATOR_NAMESPACE, agentKubeconfig, apply } from '../env/cluster.js';
import { startPooler, type Pooler } from '../env/pgbouncer.js';
import type { Proc } from '../env/process.js';
import { waitFor } from '../env/ports.js';
import { SHARD_OF_LABEL } from '../../src/pooler/shards.js';
import { configHash } from '../../src/pooler/contract.js';
import { showDatabases } from '../../src/pg/pgbouncer-console.js';
import {
  apiMessage,
  applyServer,
  applyTenant,
  cluster,
  condition,
  deleteTenant,
  getServer,
  namespace,
  operator,
  queryWith,
  readPoolerConfig,
  readSecretData,
  tenantReady,
  waitForCondition,
  waitTenantGone,
} from './harness.js';

const c = cluster();
let op: Proc;
let pooler: Pooler;
const SERVER = 'sharded';
const INDEX = `${SERVER}-pooler`;
const NS = 'shards';
const BUDGET = 4096;
const TENANTS = ['t0', 't1', 't2', 't3', 't4', 't5', 't6', 't7'];
const opArgs = [`--pooler-shard-bytes=${BUDGET}`];

const secret = (name: string, data: Record<string, string>) =>
  apply(c.kc, [{ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: OPERATOR_NAMESPACE }, stringData: data } as never]);
const pooledUrl = async (tenant: string) => (await readSecretData(c, NS, `${tenant}-db`))?.DATABASE_URL ?? '';
const pools = async () => showDatabases({ host: pooler.host, port: pooler.port, ...pooler.admin });
/** The shard Secrets that exist for the index, whether it names them or not. */
const shardSecrets = async () =>
  (await c.core.listNamespacedSecret({ namespace: OPERATOR_NAMESPACE, labelSelector: `${SHARD_OF_LABEL}=${INDEX}` })).items;
/** Waits until the agent runs the index now in the API and every shard of it is named; returns the shard names. */
const settled = async (): Promise<string[]> =>
  waitFor(
    'the agent to apply the current index, and the stale shards to go',
    async () => {
      const index = await c.core.readNamespacedSecret({ name: INDEX, namespace: OPERATOR_NAMESPACE });
      const data = Object.fromEntries(Object.entries(index.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
      if (index.metadata?.annotations?.['tenantdb.dev/agent-applied'] !== configHash(data)) return undefined;
      const { shards } = await readPoolerConfig(c, OPERATOR_NAMESPACE, INDEX);
      const existing = (await shardSecrets()).map((s) => s.metadata?.name ?? '').sort();
      return existing.join() === [...shards].sort().join() ? shards : undefined;
    },
    60_000,
    250,
  );

beforeAll(async () => {
  op = operator(c, 'shards', '3s', opArgs);
  await namespace(c, NS);
  const kubeconfig = await agentKubeconfig(
    { server: c.env.server, caFile: c.env.caFile, adminKubeconfig: c.env.adminKubeconfig },
    join(c.env.dir, 'agent-shards.kubeconfig'),
    INDEX,
  );
  pooler = await startPooler({ agentKubeconfig: kubeconfig, secret: `${OPERATOR_NAMESPACE}/${INDEX}`, logDir: c.env.dir, name: SERVER });
  await secret('sharded-admin', { username: c.env.pg.admin.user, password: c.env.pg.admin.password });
  await secret('sharded-pgbouncer', { username: pooler.admin.user, password: pooler.admin.password });
  await applyServer(c, SERVER, {
    host: c.env.pg.host,
    port: c.env.pg.port,
    sslMode: 'disable',
    adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'sharded-admin' },
    pooler: { host: pooler.host, port: pooler.port, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'sharded-pgbouncer' } },
  });
  await waitForCondition(() => getServer(c, SERVER), 'PoolerReady', 'True', 'Applied');
}, 120_000);

afterAll(async () => {
  await op?.stop();
  await pooler?.stop();
});

test('a handful of tenants take several shards, each within the budget, and PgBouncer serves them all', async () => {
  for (const t of TENANTS) await applyTenant(c, NS, t, { serverRef: { name: SERVER }, deletionPolicy: 'Delete' });
  for (const t of TENANTS) await tenantReady(c, NS, t);
  const shards = await settled();
  expect(shards.length).toBeGreaterThanOrEqual(3);
  const server = await getServer(c, SERVER);
  for (const s of await shardSecrets()) {
    const bytes = Object.values(s.data ?? {}).reduce((n, v) => n + Buffer.from(v, 'base64').length, 0);
    expect(bytes).toBeLessThanOrEqual(BUDGET);
    expect(s.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('tenantdb');
    expect(s.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'PostgresServer',
      name: SERVER,
      uid: server?.metadata.uid,
      controller: true,
    });
  }
  const served = await pools();
  for (const t of TENANTS) expect(served.has(`shards_${t}`)).toBe(true);
  for (const t of TENANTS) expect((await queryWith(await pooledUrl(t)))[0]).toEqual({ u: `shards_${t}`, d: `shards_${t}` });
  expect(condition(await getServer(c, SERVER), 'PoolerReady')?.message).toMatch(new RegExp(`\\(${shards.length} shard\\(s\\)\\)`));
});

test('a tenant added or removed replaces one shard; the stale one is deleted', async () => {
  const before = await settled();
  await applyTenant(c, NS, 't8', { serverRef: { name: SERVER }, deletionPolicy: 'Delete' });
  await tenantReady(c, NS, 't8');
  const after = await waitFor(
    'the new shard',
    async () => {
      const s = await settled();
      return s.join() !== before.join() ? s : undefined;
    },
    30_000,
  );
  expect(after.filter((s) => !before.includes(s))).toHaveLength(1);
  expect(before.filter((s) => !after.includes(s))).toHaveLength(1);
  expect((await queryWith(await pooledUrl('t8')))[0]).toMatchObject({ u: 'shards_t8' });

  await deleteTenant(c, NS, 't8');
  await waitTenantGone(c, NS, 't8');
  // The cut depends only on the tenants: the same tenants give the very same shards again.
  await waitFor('the shards of before', async () => ((await settled()).join() === before.join() ? true : undefined), 30_000);
  // The agent loads what the shards say a moment after they are written.
  await waitFor('PgBouncer to drop the pool', async () => !(await pools()).has('shards_t8') || undefined, 30_000);
  for (const t of TENANTS) expect((await queryWith(await pooledUrl(t)))[0]).toMatchObject({ u: `shards_${t}` });
});

test('a tenant cannot be named like the console: the API server refuses it, and the renderer would leave it out', async () => {
  const err = await applyTenant(c, NS, 'console', { serverRef: { name: SERVER }, databaseName: 'pgbouncer' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(apiMessage(err)).toMatch(/databaseName must not be one of .*pgbouncer/);
  // The renderer's own refusal (for objects stored before that rule) is in test/unit/pooler-names.test.ts.
  const { files } = await readPoolerConfig(c, OPERATOR_NAMESPACE, INDEX);
  expect(files['databases.ini']).not.toMatch(/^pgbouncer /m);
  for (const t of TENANTS) expect((await queryWith(await pooledUrl(t)))[0]).toMatchObject({ u: `shards_${t}` });
});

test('a shard with a line that would be syntax is refused and reported on the index; PgBouncer keeps every tenant', async () => {
  await op.stop(); // so that nothing puts the good config back while we look
  const shard = `${INDEX}-injected`;
  try {
    const good = await c.core.readNamespacedSecret({ name: INDEX, namespace: OPERATOR_NAMESPACE });
    // A console entry would stop PgBouncer reading the rest of databases.ini, and RELOAD would still succeed.
    const files = {
      'databases.ini': `pgbouncer = host=${c.env.pg.host} port=${c.env.pg.port} dbname=postgres\n`,
      'userlist.txt': '',
      'hba.conf': '',
    };
    const hash = configHash(files);
    await c.core.createNamespacedSecret({
      namespace: OPERATOR_NAMESPACE,
      body: {
        metadata: { name: shard, labels: { 'app.kubernetes.io/managed-by': 'tenantdb', [SHARD_OF_LABEL]: INDEX } },
        stringData: files,
      },
    });
    const index = `${shard} ${hash} a\n${Buffer.from(good.data?.shards ?? '', 'base64').toString('utf8')}`;
    await c.core.replaceNamespacedSecret({
      name: INDEX,
      namespace: OPERATOR_NAMESPACE,
      body: { ...good, data: { shards: Buffer.from(index).toString('base64') } },
    });
    const refused = await waitFor(
      'the agent to refuse',
      async () => {
        const s = await c.core.readNamespacedSecret({ name: INDEX, namespace: OPERATOR_NAMESPACE });
        return s.metadata?.annotations?.['tenantdb.dev/agent-error'];
      },
      30_000,
    );
    expect(refused).toContain(`shard ${shard}: databases.ini:1: alias pgbouncer is PgBouncer's admin console`);
    const served = await pools();
    for (const t of TENANTS) expect(served.has(`shards_${t}`)).toBe(true);
  } finally {
    op = operator(c, 'shards-2', '3s', opArgs);
  }
  await waitForCondition(() => getServer(c, SERVER), 'PoolerReady', 'True', 'Applied');
  await c.core.deleteNamespacedSecret({ name: shard, namespace: OPERATOR_NAMESPACE });
  await settled();
});
