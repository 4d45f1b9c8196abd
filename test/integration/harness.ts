/** What the integration tests share: the run's environment, admin clients and small waiting helpers. */
import * as k8s from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { startOperatorProcess } from '../env/operator.js';
import { boundSocket, waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import { OPERATOR_NAMESPACE, agentKubeconfig, apply, installCrds, operatorKubeconfig } from '../env/cluster.js';
import { startControlPlane } from '../env/controlplane.js';
import { startPooler, type Pooler } from '../env/pgbouncer.js';

export interface TestEnv {
  dir: string;
  adminKubeconfig: string;
  operatorKubeconfig: string;
  server: string;
  caFile: string;
  pg: { host: string; port: number; dir: string; superuser: { user: string; password: string }; admin: { user: string; password: string } };
}

export function testEnv(): TestEnv {
  const f = process.env.TENANTDB_TEST_ENV;
  if (!f) throw new Error('TENANTDB_TEST_ENV is not set: run integration tests through jest (npm test)');
  return JSON.parse(readFileSync(f, 'utf8')) as TestEnv;
}

export const GROUP = 'tenantdb.dev';
export const VERSION = 'v1alpha1';

export interface Cluster {
  env: TestEnv;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
}

export function cluster(): Cluster {
  const env = testEnv();
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(env.adminKubeconfig);
  return { env, kc, core: kc.makeApiClient(k8s.CoreV1Api), custom: kc.makeApiClient(k8s.CustomObjectsApi) };
}

export interface OwnCluster extends Cluster {
  stop(): Promise<void>;
}

/**
 * A control plane of a test file's own, beside the run's PostgreSQL, for what the shared one must
 * not hold: `looseSpecs` installs those kinds' CRDs without a spec schema (see installCrds), so that
 * the file can store specs the operator refuses. Every helper here takes the result as it takes
 * cluster(); the operator started with operator() watches this control plane.
 */
export async function ownCluster(name: string, opts: { looseSpecs?: string[] } = {}): Promise<OwnCluster> {
  const shared = testEnv();
  const dir = join(shared.dir, name);
  const cp = await startControlPlane(join(dir, 'cluster'), {
    // Before kube-controller-manager starts: its garbage collector then knows the kinds at once.
    beforeControllers: async (kubeconfig, binDir) => {
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(kubeconfig);
      await installCrds(kc, join(binDir, 'kubectl'), kubeconfig, opts);
    },
  });
  try {
    const env: TestEnv = {
      ...shared,
      dir,
      adminKubeconfig: cp.adminKubeconfig,
      operatorKubeconfig: await operatorKubeconfig(cp, join(dir, 'operator.kubeconfig')),
      server: cp.server,
      caFile: cp.caFile,
    };
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(env.adminKubeconfig);
    return { env, kc, core: kc.makeApiClient(k8s.CoreV1Api), custom: kc.makeApiClient(k8s.CustomObjectsApi), stop: () => cp.stop() };
  } catch (err) {
    await cp.stop();
    throw err;
  }
}

/**
 * The operator as a process. Without `resync` it runs with the CLI's default periodic re-check (5
 * minutes), so a test sees only what the watches bring; a test of drift repair passes a short one.
 */
export function operator(c: Cluster, name: string, resync?: string, extraArgs: string[] = []): Proc {
  return startOperatorProcess({
    kubeconfig: c.env.operatorKubeconfig,
    logFile: join(c.env.dir, `operator-${name}.log`),
    ...(resync ? { resync } : {}),
    identity: name,
    extraArgs,
  });
}

/**
 * The /metrics text of an operator started with operator(c, name): its port is the one it logged
 * (`metricsPort`, chosen at start) in its run's log, the last start's when the name was reused.
 */
export async function scrapeOperator(c: Cluster, name: string): Promise<string> {
  const logFile = join(c.env.dir, `operator-${name}.log`);
  const port = await waitFor(`operator ${name} to log its metricsPort`, () => {
    const line = readFileSync(logFile, 'utf8')
      .split('\n')
      .findLast((l) => l.includes('"metricsPort"'));
    return Promise.resolve((JSON.parse(line ?? '{}') as { metricsPort?: number }).metricsPort);
  });
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

/** The value of one series in a /metrics text (labels matched exactly), or undefined when absent. */
export function seriesValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = (m[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? [];
    if (got.sort().join(',') === want) return Number(m[3]);
  }
  return undefined;
}

/** The pooler config as the agent assembles it: the index's shards, in order, from the API. */
export async function readPoolerConfig(
  c: Cluster,
  namespace: string,
  indexName: string,
): Promise<{ shards: string[]; files: Record<'databases.ini' | 'userlist.txt' | 'hba.conf', string> }> {
  const { parsePoolerIndex } = await import('../../src/pooler/shards.js');
  const { assemblePoolerFiles } = await import('../../src/pooler/render.js');
  const index = parsePoolerIndex((await readSecretData(c, namespace, indexName)) ?? {});
  if (!index.ok) throw new Error(index.error);
  const parts = [];
  for (const e of index.shards) {
    const d = (await readSecretData(c, namespace, e.name)) ?? {};
    parts.push({ 'databases.ini': d['databases.ini'] ?? '', 'userlist.txt': d['userlist.txt'] ?? '', 'hba.conf': d['hba.conf'] ?? '' });
  }
  return { shards: index.shards.map((e) => e.name), files: assemblePoolerFiles(parts) };
}

export async function namespace(c: Cluster, name: string): Promise<void> {
  await apply(c.kc, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }]);
}

export type Obj = {
  metadata: {
    name: string;
    namespace?: string;
    uid: string;
    generation?: number;
    resourceVersion?: string;
    deletionTimestamp?: string;
    finalizers?: string[];
  };
  spec: Record<string, unknown>;
  status?: Record<string, unknown> & { conditions?: { type: string; status: string; reason: string; message: string }[] };
};

export async function applyServer(c: Cluster, name: string, spec: Record<string, unknown>): Promise<void> {
  await apply(c.kc, [{ apiVersion: `${GROUP}/${VERSION}`, kind: 'PostgresServer', metadata: { name }, spec } as k8s.KubernetesObject]);
}

export async function applyTenant(c: Cluster, ns: string, name: string, spec: Record<string, unknown> = {}): Promise<void> {
  await apply(c.kc, [
    { apiVersion: `${GROUP}/${VERSION}`, kind: 'TenantDatabase', metadata: { name, namespace: ns }, spec } as k8s.KubernetesObject,
  ]);
}

export async function getTenant(c: Cluster, ns: string, name: string): Promise<Obj | undefined> {
  try {
    return (await c.custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: 'tenantdatabases',
      name,
    })) as Obj;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export async function getServer(c: Cluster, name: string): Promise<Obj | undefined> {
  try {
    return (await c.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'postgresservers', name })) as Obj;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export function condition(o: Obj | undefined, type: string) {
  return o?.status?.conditions?.find((x) => x.type === type);
}

/** Waits until the condition has the status (and reason, when given); returns the object. */
export async function waitForCondition(
  get: () => Promise<Obj | undefined>,
  type: string,
  status: string,
  reason?: string,
  timeoutMs = 60_000,
): Promise<Obj> {
  let last: Obj | undefined;
  try {
    return await waitFor(
      `${type}=${status}${reason ? ` (${reason})` : ''}`,
      async () => {
        last = await get();
        const cnd = condition(last, type);
        return cnd && cnd.status === status && (!reason || cnd.reason === reason) ? last : undefined;
      },
      timeoutMs,
      250,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last conditions: ${JSON.stringify(last?.status?.conditions ?? null)}`, { cause: err });
  }
}

export const tenantReady = (c: Cluster, ns: string, name: string, timeoutMs?: number) =>
  waitForCondition(() => getTenant(c, ns, name), 'Ready', 'True', undefined, timeoutMs);

export async function deleteTenant(c: Cluster, ns: string, name: string): Promise<void> {
  await c.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: 'tenantdatabases', name });
}

export async function waitTenantGone(c: Cluster, ns: string, name: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(`TenantDatabase ${ns}/${name} to be gone`, async () => !(await getTenant(c, ns, name)), timeoutMs);
}

export async function readSecretData(c: Cluster, ns: string, name: string): Promise<Record<string, string> | undefined> {
  try {
    const s = await c.core.readNamespacedSecret({ name, namespace: ns });
    return Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

/** Asks for a rotation of a tenant's password (the rotate-password annotation), as the admin. */
export async function rotatePassword(c: Cluster, ns: string, name: string, value: string): Promise<void> {
  await c.custom.patchNamespacedCustomObject(
    {
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: 'tenantdatabases',
      name,
      body: { metadata: { annotations: { 'tenantdb.dev/rotate-password': value } } },
    },
    k8s.setHeaderOptions('Content-Type', 'application/merge-patch+json'),
  );
}

/** The Secret's data once its password is no longer `password` (a rotation wrote it). */
export function newPassword(c: Cluster, ns: string, secret: string, password: string | undefined, timeoutMs = 60_000, intervalMs = 200) {
  return waitFor(
    `a new password in Secret ${ns}/${secret}`,
    async () => {
      const s = await readSecretData(c, ns, secret);
      return s && s.password !== password ? s : undefined;
    },
    timeoutMs,
    intervalMs,
  );
}

/** Connects with a connection string as an application would and runs one query. */
export async function queryWith(
  connectionString: string,
  text = 'SELECT current_user AS u, current_database() AS d',
  localAddress?: string,
): Promise<pg.QueryResultRow[]> {
  const client = new pg.Client({
    connectionString,
    connectionTimeoutMillis: 5000,
    ...(localAddress ? { stream: boundSocket(localAddress) } : {}),
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The same, from a chosen loopback source address (127.0.0.2, ...), for allow-list tests. */
export const queryFrom = (localAddress: string, connectionString: string, text = 'SELECT current_user AS u') =>
  queryWith(connectionString, text, localAddress);

export async function superClient(c: Cluster, database = 'postgres'): Promise<pg.Client> {
  const p = c.env.pg;
  const client = new pg.Client({ host: p.host, port: p.port, user: p.superuser.user, password: p.superuser.password, database });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

export async function superQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  c: Cluster,
  text: string,
  values?: unknown[],
  database = 'postgres',
): Promise<R[]> {
  const client = await superClient(c, database);
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

export async function ensureDefaultServer(c: Cluster): Promise<void> {
  const { createServerObjects } = await import('../env/sandbox.js');
  const p = c.env.pg;
  await createServerObjects(c.kc, { host: p.host, port: p.port, admin: p.admin } as never, 'default', { default: true });
  await waitForCondition(() => getServer(c, 'default'), 'Ready', 'True');
}

export function sqlError(err: unknown): string {
  return (err as { code?: string }).code ?? String(err);
}

/**
 * A tenant team's own identity: a ServiceAccount in its namespace with a Role that allows exactly
 * what a platform gives a team (its TenantDatabases, IpWhitelists and Secrets, nothing cluster-wide),
 * authenticated through a real token. Security tests act through it, never as the admin.
 */
export interface Tenant {
  namespace: string;
  kc: k8s.KubeConfig;
  custom: k8s.CustomObjectsApi;
  core: k8s.CoreV1Api;
  apply(
    kind: 'TenantDatabase' | 'IpWhitelist' | 'TenantGroup',
    name: string,
    spec: Record<string, unknown>,
    extra?: { annotations?: Record<string, string>; labels?: Record<string, string> },
  ): Promise<void>;
}

export async function tenantIdentity(c: Cluster, ns: string): Promise<Tenant> {
  await namespace(c, ns);
  await apply(c.kc, [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'team', namespace: ns } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'team', namespace: ns },
      rules: [
        {
          apiGroups: ['tenantdb.dev'],
          resources: ['tenantdatabases', 'ipwhitelists', 'tenantgroups'],
          verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
        },
        { apiGroups: ['tenantdb.dev'], resources: ['tenantdatabaseplans'], verbs: ['get', 'list', 'watch', 'create', 'delete'] },
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'team', namespace: ns },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'team' },
      subjects: [{ kind: 'ServiceAccount', name: 'team', namespace: ns }],
    },
  ] as k8s.KubernetesObject[]);
  const tr = await c.core.createNamespacedServiceAccountToken({
    name: 'team',
    namespace: ns,
    body: { spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3600 } },
  });
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: c.env.server, caFile: c.env.caFile }],
    users: [{ name: `team-${ns}`, token: tr.status?.token ?? '' }],
    contexts: [{ name: 'c', cluster: 'c', user: `team-${ns}` }],
    currentContext: 'c',
  });
  return {
    namespace: ns,
    kc,
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    core: kc.makeApiClient(k8s.CoreV1Api),
    apply: (kind, name, spec, extra) =>
      apply(
        kc,
        [
          {
            apiVersion: `${GROUP}/${VERSION}`,
            kind,
            metadata: {
              name,
              namespace: ns,
              ...(extra?.annotations ? { annotations: extra.annotations } : {}),
              ...(extra?.labels ? { labels: extra.labels } : {}),
            },
            spec,
          } as k8s.KubernetesObject,
        ],
        `team-${ns}`,
      ),
  };
}

/** The API server's message for a refused request. */
export function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      return String((JSON.parse(body) as { message?: string }).message ?? body);
    } catch {
      return body;
    }
  }
  return String((err as Error).message ?? err);
}

/**
 * Drops a tenant role as a human with the admin's rights would have to: what it owns in its database
 * goes to the admin, its grants are revoked, and the role is dropped in one transaction, so that a
 * re-check running in between cannot hand anything back.
 */
export async function dropRoleByHand(c: Cluster, role: string, database: string): Promise<void> {
  const admin = c.env.pg.admin.user;
  await superQuery(c, `REASSIGN OWNED BY ${pg.escapeIdentifier(role)} TO ${pg.escapeIdentifier(admin)}`, [], database);
  await superQuery(
    c,
    `BEGIN; REVOKE ALL ON DATABASE ${pg.escapeIdentifier(database)} FROM ${pg.escapeIdentifier(role)}; DROP ROLE ${pg.escapeIdentifier(role)}; COMMIT`,
  );
}

/** The spec of a PostgresServer on the run's PostgreSQL, with the pooler startServerPooler started for it. */
export function pooledServerSpec(c: Cluster, server: string, pooler: Pooler, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    host: c.env.pg.host,
    port: c.env.pg.port,
    sslMode: 'disable',
    adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: `${server}-admin` },
    pooler: { host: pooler.host, port: pooler.port, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: `${server}-pgbouncer` } },
    ...extra,
  };
}

/** A PgBouncer and its agent, and the PostgresServer using them, once the pooler has applied its first config. */
export async function startPooledServer(c: Cluster, server: string, extra: Record<string, unknown> = {}): Promise<Pooler> {
  const pooler = await startServerPooler(c, server);
  await applyServer(c, server, pooledServerSpec(c, server, pooler, extra));
  await waitForCondition(() => getServer(c, server), 'PoolerReady', 'True', 'Applied');
  return pooler;
}

/**
 * A real PgBouncer with the agent beside it for the PostgresServer `server`, and the Secrets such a
 * server names in the operator's namespace: `<server>-admin` (the PostgreSQL admin) and
 * `<server>-pgbouncer` (PgBouncer's console).
 */
export async function startServerPooler(c: Cluster, server: string): Promise<Pooler> {
  const kubeconfig = await agentKubeconfig(
    { server: c.env.server, caFile: c.env.caFile, adminKubeconfig: c.env.adminKubeconfig },
    join(c.env.dir, `${server}-agent.kubeconfig`),
    `${server}-pooler`,
  );
  const pooler = await startPooler({
    agentKubeconfig: kubeconfig,
    secret: `${OPERATOR_NAMESPACE}/${server}-pooler`,
    logDir: c.env.dir,
    name: server,
  });
  const secret = (name: string, data: Record<string, string>) =>
    apply(c.kc, [{ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: OPERATOR_NAMESPACE }, stringData: data } as never]);
  await secret(`${server}-admin`, { username: c.env.pg.admin.user, password: c.env.pg.admin.password });
  await secret(`${server}-pgbouncer`, { username: pooler.admin.user, password: pooler.admin.password });
  return pooler;
}

/** A TenantDatabasePlan's answer, as the operator writes it in status. */
export interface PlanAnswer {
  conditions?: { type: string; status: string; reason: string; message: string }[];
  plannedAt?: string;
  tenantExists?: boolean;
  result?: { reason: string; message: string };
  sql?: string[];
  secret?: string[];
  pooler?: string[];
  serverHba?: string[];
  notes?: string[];
}

/**
 * Asks the operator for a plan through `custom` (a team's own client, or the admin's): creates a
 * TenantDatabasePlan for TenantDatabase `name` of `ns` with `spec`, waits for the answer, deletes it.
 */
export async function askPlan(custom: k8s.CustomObjectsApi, ns: string, name: string, spec: Record<string, unknown>): Promise<PlanAnswer> {
  const base = { group: 'tenantdb.dev', version: 'v1alpha1', plural: 'tenantdatabaseplans', namespace: ns };
  const created = (await custom.createNamespacedCustomObject({
    ...base,
    body: {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'TenantDatabasePlan',
      metadata: { generateName: `${name}-plan-`, namespace: ns },
      spec: { tenantDatabase: { name, spec } },
    },
  })) as { metadata: { name: string } };
  try {
    return await waitFor(
      `the plan for ${ns}/${name}`,
      async () => {
        const p = (await custom.getNamespacedCustomObject({ ...base, name: created.metadata.name })) as { status?: PlanAnswer };
        return p.status?.plannedAt ? p.status : undefined;
      },
      60_000,
    );
  } finally {
    await custom.deleteNamespacedCustomObject({ ...base, name: created.metadata.name }).catch(() => undefined);
  }
}
