/** Allow-lists on the direct path: the agent beside a self-hosted PostgreSQL manages its pg_hba.conf. */
import { join } from 'node:path';
import { OPERATOR_NAMESPACE, agentKubeconfig, apply } from '../env/cluster.js';
import { startPgAgent } from '../env/pg-agent.js';
import { startPostgres, type PgServer } from '../env/postgres.js';
import type { Proc } from '../env/process.js';
import { waitFor } from '../env/ports.js';
import {
  applyServer,
  applyTenant,
  cluster,
  condition,
  getServer,
  getTenant,
  namespace,
  newPassword,
  operator,
  queryFrom,
  readSecretData,
  rotatePassword,
  tenantReady,
  waitForCondition,
  type Obj,
} from './harness.js';

const c = cluster();
const NS = 'direct';
const SERVER = 'selfhosted';
let op: Proc;
let agent: Proc;
let pgs: PgServer;

const getWhitelist = async (name: string) =>
  (await c.custom
    .getNamespacedCustomObject({ group: 'tenantdb.dev', version: 'v1alpha1', namespace: NS, plural: 'ipwhitelists', name })
    .catch(() => undefined)) as Obj | undefined;
const directUrl = async (tenant: string) => (await readSecretData(c, NS, `${tenant}-db`))?.DIRECT_URL ?? '';
const refusedFrom = async (addr: string, url: string) =>
  queryFrom(addr, url).then(
    () => false,
    () => true,
  );

beforeAll(async () => {
  pgs = await startPostgres();
  op = operator(c, 'hba');
  await namespace(c, NS);
  const kubeconfig = await agentKubeconfig(
    { server: c.env.server, caFile: c.env.caFile, adminKubeconfig: c.env.adminKubeconfig },
    join(c.env.dir, 'pg-agent.kubeconfig'),
    `${SERVER}-hba`,
  );
  agent = startPgAgent(pgs, kubeconfig, `${OPERATOR_NAMESPACE}/${SERVER}-hba`, join(c.env.dir, 'pg-agent.log'));
  await apply(c.kc, [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'selfhosted-admin', namespace: OPERATOR_NAMESPACE },
      stringData: { username: pgs.admin.user, password: pgs.admin.password },
    } as never,
  ]);
  await applyServer(c, SERVER, {
    host: pgs.host,
    port: pgs.port,
    sslMode: 'disable',
    adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'selfhosted-admin' },
    hba: { mode: 'Agent' },
    // The operator's own checks come from 127.0.0.1.
    alwaysAllowedCidrs: ['127.0.0.1/32'],
  });
  await waitForCondition(() => getServer(c, SERVER), 'HbaApplied', 'True', 'Applied');
}, 120_000);

afterAll(async () => {
  await op?.stop();
  await agent?.stop();
  await pgs?.stop();
});

test("a whitelist is enforced on direct connections by the server's own pg_hba.conf; other tenants are untouched; deleting reopens", async () => {
  await applyTenant(c, NS, 'delta', { serverRef: { name: SERVER } });
  await applyTenant(c, NS, 'epsilon', { serverRef: { name: SERVER } });
  await tenantReady(c, NS, 'delta');
  await tenantReady(c, NS, 'epsilon');
  const delta = await directUrl('delta');
  const epsilon = await directUrl('epsilon');
  expect(await refusedFrom('127.0.0.3', delta)).toBe(false);

  await apply(c.kc, [
    {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'IpWhitelist',
      metadata: { name: 'office', namespace: NS },
      spec: { tenantDatabaseRef: { name: 'delta' }, entries: [{ cidr: '127.0.0.2/32' }] },
    } as never,
  ]);
  const wl = await waitForCondition(() => getWhitelist('office'), 'Applied', 'True');
  expect(condition(wl, 'Applied')?.message).toMatch(/enforced on direct connections by the server's pg_hba.conf/);
  expect(wl.status?.ruleCount).toBe(1);
  const td = await waitForCondition(() => getTenant(c, NS, 'delta'), 'AccessRulesApplied', 'True', 'Enforced');
  expect(condition(td, 'AccessRulesApplied')?.message).toMatch(/pg_hba\.conf/);

  await expect(queryFrom('127.0.0.3', delta)).rejects.toMatchObject({ code: '28000' });
  expect(await refusedFrom('127.0.0.2', delta)).toBe(false);
  expect(await refusedFrom('127.0.0.3', epsilon)).toBe(false);
  // The operator keeps working from the always-allowed address: the tenant stays Ready.
  await tenantReady(c, NS, 'delta');

  await c.custom.deleteNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: NS,
    plural: 'ipwhitelists',
    name: 'office',
  });
  await waitFor('the tenant to reopen', async () => !(await refusedFrom('127.0.0.3', delta)) || undefined, 30_000, 300);
});

test('rules the agent refuses are not loaded; the server keeps its last good pg_hba.conf', async () => {
  const url = await directUrl('epsilon');
  await op.stop();
  try {
    const name = `${SERVER}-hba`;
    const good = await c.core.readNamespacedSecret({ name, namespace: OPERATOR_NAMESPACE });
    await c.core.replaceNamespacedSecret({
      name,
      namespace: OPERATOR_NAMESPACE,
      body: { ...good, data: { 'pg_hba.conf': Buffer.from('host all all 0.0.0.0/0 trust\n').toString('base64') } },
    });
    const refused = await waitFor(
      'the agent to refuse',
      async () =>
        (await c.core.readNamespacedSecret({ name, namespace: OPERATOR_NAMESPACE })).metadata?.annotations?.['tenantdb.dev/agent-error'],
      30_000,
    );
    expect(refused).toMatch(/method trust is not allowed/);
    expect(await refusedFrom('127.0.0.3', url)).toBe(false);
    // trust was not loaded: a wrong password is still refused.
    await expect(queryFrom('127.0.0.1', url.replace(/:[^:@]+@/, ':wrong@'))).rejects.toMatchObject({ code: '28P01' });
  } finally {
    op = operator(c, 'hba-2');
  }
  await waitForCondition(() => getServer(c, SERVER), 'HbaApplied', 'True', 'Applied');
});

test('a file PostgreSQL itself rejects is put back, not reloaded, and the server status says why', async () => {
  const { appendFileSync, readFileSync, writeFileSync } = await import('node:fs');
  const base = join(pgs.dir, 'base_hba.conf');
  const hbaFile = join(pgs.dir, 'data', 'pg_hba.conf');
  const goodBase = readFileSync(base, 'utf8');
  const before = readFileSync(hbaFile, 'utf8');
  // The server's own base rules get a line PostgreSQL cannot parse; the agent's line checks do not
  // cover them, so only pg_hba_file_rules can catch it.
  appendFileSync(base, 'host all all 10.0.0.0/8 no-such-method\n');
  try {
    await apply(c.kc, [
      {
        apiVersion: 'tenantdb.dev/v1alpha1',
        kind: 'IpWhitelist',
        metadata: { name: 'lab', namespace: NS },
        spec: { tenantDatabaseRef: { name: 'epsilon' }, entries: [{ cidr: '127.0.0.2/32' }] },
      } as never,
    ]);
    const srv = await waitForCondition(() => getServer(c, SERVER), 'HbaApplied', 'False', 'AgentRejected');
    expect(condition(srv, 'HbaApplied')?.message).toMatch(
      /PostgreSQL rejects the file: line \d+: invalid authentication method "no-such-method"/,
    );
    expect(readFileSync(hbaFile, 'utf8')).toBe(before);
    const wl = await waitForCondition(() => getWhitelist('lab'), 'Applied', 'False', 'AgentRejected');
    expect(condition(wl, 'Applied')?.message).toMatch(/refused/);
    // The tenant whose rules were refused is not Ready, and says why.
    await waitForCondition(() => getTenant(c, NS, 'epsilon'), 'Ready', 'False', 'AccessRulesRejected');
    // The last good rules are in force: epsilon is still open from anywhere.
    expect(await refusedFrom('127.0.0.3', await directUrl('epsilon'))).toBe(false);
  } finally {
    writeFileSync(base, goodBase);
  }
  // With the base fixed, the next change goes through.
  await apply(c.kc, [
    {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'IpWhitelist',
      metadata: { name: 'lab', namespace: NS },
      spec: { tenantDatabaseRef: { name: 'epsilon' }, entries: [{ cidr: '127.0.0.2/31' }] },
    } as never,
  ]);
  await waitForCondition(() => getServer(c, SERVER), 'HbaApplied', 'True', 'Applied');
  await waitForCondition(() => getWhitelist('lab'), 'Applied', 'True');
  await waitForCondition(() => getTenant(c, NS, 'epsilon'), 'Ready', 'True');
  expect(await refusedFrom('127.0.0.4', await directUrl('epsilon'))).toBe(true);
});

test("an Overlap tenant's second login is named in its allow-list rules: it logs in from listed addresses only", async () => {
  await applyTenant(c, NS, 'zeta', { serverRef: { name: SERVER }, passwordRotation: { strategy: 'Overlap', gracePeriod: '1h' } });
  await tenantReady(c, NS, 'zeta');
  await apply(c.kc, [
    {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'IpWhitelist',
      metadata: { name: 'zeta-office', namespace: NS },
      spec: { tenantDatabaseRef: { name: 'zeta' }, entries: [{ cidr: '127.0.0.2/32' }] },
    } as never,
  ]);
  await waitForCondition(() => getTenant(c, NS, 'zeta'), 'AccessRulesApplied', 'True', 'Enforced');
  const before = (await readSecretData(c, NS, 'zeta-db')) ?? {};
  await rotatePassword(c, NS, 'zeta', 'z1');
  const after = await newPassword(c, NS, 'zeta-db', before.password);
  expect(after.username).toBe('direct_zeta-2');
  // The rule naming both logins is in the server's own pg_hba.conf, which PostgreSQL loaded.
  expect(await queryFrom('127.0.0.2', after.DIRECT_URL ?? '', 'SELECT current_user AS u, session_user AS s')).toEqual([
    { u: 'direct_zeta', s: 'direct_zeta-2' },
  ]);
  await expect(queryFrom('127.0.0.3', after.DIRECT_URL ?? '')).rejects.toMatchObject({ code: '28000' });
  expect(await queryFrom('127.0.0.2', before.DIRECT_URL ?? '')).toEqual([{ u: 'direct_zeta' }]);
});
