/**
 * Migrations on a real cluster: the operator (from its image, installed by the chart) creates the
 * migration Jobs, the kubelet runs them in a namespace that enforces the `restricted` Pod Security
 * Standard, and the migration (psql against DIRECT_URL, from the tenant's own Secret) changes the
 * tenant's database. A tenant is Ready only after its migration succeeded; a changed template runs
 * again; a TenantGroup rolls its template across the members at most maxParallel at a time and
 * stops at the first failure, naming the tenant and its Job.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { waitFor } from '../env/ports.js';
import { openTarget, type TargetInfo } from './target.js';

const target = openTarget(JSON.parse(readFileSync(process.env.TENANTDB_CLUSTER_ENV ?? '', 'utf8')) as TargetInfo);
const { kubectl, kubectlIn } = target;
const NS = 'migrations';
const image = target.info.clientImage;

const apply = (o: object) => kubectlIn(JSON.stringify(o), 'apply', '-f', '-');
const jsonOf = <T>(...args: string[]): T => JSON.parse(kubectl(...args, '-o', 'json')) as T;

interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
}
interface Tdb {
  status?: {
    databaseName?: string;
    conditions?: Cond[];
    migration?: { phase?: string; jobName?: string; templateHash?: string; source?: string; message?: string };
  };
}
interface Tg {
  status?: {
    conditions?: Cond[];
    rollout?: { halted?: boolean; failedTenant?: string; failedJob?: string; succeeded?: number; failed?: number; members?: number };
  };
}
interface Job {
  metadata: { name: string; labels?: Record<string, string>; ownerReferences?: { kind: string; name: string }[] };
  spec: {
    template: {
      spec: {
        automountServiceAccountToken?: boolean;
        serviceAccountName?: string;
        containers: { env?: { name: string; value?: string }[] }[];
      };
    };
  };
  status?: { conditions?: { type: string; status: string }[] };
}

const tdb = (name: string) => jsonOf<Tdb>('get', 'tdb', name, '-n', NS);
const ready = (t: Tdb) => t.status?.conditions?.find((c) => c.type === 'Ready');
const jobs = (selector: string) => jsonOf<{ items: Job[] }>('get', 'jobs', '-n', NS, '-l', selector).items;
const finished = (j: Job) =>
  j.status?.conditions?.some((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True') ?? false;

/** A migration as a team writes one: psql against DIRECT_URL, stopping at the first error. */
function psqlMigration(sql: string, before = ''): { image: string; imagePullPolicy: string; command: string[] } {
  return {
    image,
    imagePullPolicy: 'Never',
    command: ['sh', '-c', `set -e\n${before}\npsql "$DIRECT_URL" -X -v ON_ERROR_STOP=1 -c "${sql}"`],
  };
}

function tenant(name: string, spec: Record<string, unknown> = {}, labels: Record<string, string> = {}) {
  return { apiVersion: 'tenantdb.dev/v1alpha1', kind: 'TenantDatabase', metadata: { name, namespace: NS, labels }, spec };
}

/** Whether a table exists in a tenant's database, asked as PostgreSQL's superuser. */
async function tableExists(database: string, table: string): Promise<boolean> {
  const su = target.info.superuser;
  const sql = `select to_regclass('public.${table}') is not null`;
  if ('pod' in su) {
    return kubectl('exec', '-n', su.namespace, su.pod, '--', 'psql', '-U', su.user, '-d', database, '-XAtc', sql).trim() === 't';
  }
  const c = new pg.Client({ host: su.host, port: su.port, user: su.user, password: su.password, database });
  await c.connect();
  try {
    return (await c.query<{ x: boolean }>(`${sql} as x`)).rows[0]?.x === true;
  } finally {
    await c.end();
  }
}

async function waitReady(name: string, timeoutMs = 180_000): Promise<Tdb> {
  return waitFor(
    `TenantDatabase ${NS}/${name} Ready`,
    async () => {
      const t = tdb(name);
      return ready(t)?.status === 'True' ? t : undefined;
    },
    timeoutMs,
    500,
  );
}

function events(name: string, reason: string): string[] {
  return kubectl(
    'get',
    'events',
    '-n',
    NS,
    '--field-selector',
    `involvedObject.name=${name},reason=${reason}`,
    '-o',
    'jsonpath={range .items[*]}{.message}{"\\n"}{end}',
  )
    .split('\n')
    .filter(Boolean);
}

beforeAll(() => {
  apply({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: NS, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } },
  });
});

test('a tenant with a migration becomes Ready only after its Job succeeded, and the migration changed its database', async () => {
  // The pause keeps the Job running long enough to see the gate closed.
  apply(
    tenant('inventory', { deletionPolicy: 'Delete', migration: psqlMigration('create table widgets (id int primary key)', 'sleep 6') }),
  );
  const running = await waitFor(
    'the migration to run',
    async () => {
      const t = tdb('inventory');
      return t.status?.migration?.phase === 'Running' ? t : undefined;
    },
    120_000,
    250,
  );
  // Provisioned, but not Ready while the migration runs.
  expect(ready(running)).toMatchObject({ status: 'False', reason: 'MigrationRunning' });
  expect(running.status?.conditions?.find((c) => c.type === 'SecretReady')?.status).toBe('True');

  const done = await waitReady('inventory');
  expect(done.status?.migration).toMatchObject({ phase: 'Succeeded', source: 'TenantDatabase' });
  expect(done.status?.conditions?.find((c) => c.type === 'Migrated')).toMatchObject({ status: 'True', reason: 'MigrationSucceeded' });
  expect(await tableExists(done.status?.databaseName ?? '', 'widgets')).toBe(true);

  // The Job: in the tenant's namespace, owned by the TenantDatabase, no token, no credential in its spec.
  const jobName = done.status?.migration?.jobName ?? '';
  const job = jsonOf<Job>('get', 'job', jobName, '-n', NS);
  expect(job.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'TenantDatabase', name: 'inventory' })]);
  expect(job.spec.template.spec.automountServiceAccountToken).toBe(false);
  expect(job.spec.template.spec.serviceAccountName ?? 'default').toBe('default');
  const password = Buffer.from(kubectl('get', 'secret', 'inventory-db', '-n', NS, '-o', 'jsonpath={.data.password}'), 'base64').toString();
  expect(password.length).toBeGreaterThanOrEqual(24);
  expect(JSON.stringify(job)).not.toContain(password);
  expect(events('inventory', 'MigrationSucceeded').join('\n')).toContain(jobName);
});

test('changing the template runs the migration again, under a new Job', async () => {
  const before = tdb('inventory').status?.migration;
  kubectl(
    'patch',
    'tdb',
    'inventory',
    '-n',
    NS,
    '--type=merge',
    '-p',
    JSON.stringify({ spec: { migration: psqlMigration('create table gadgets (id int primary key)') } }),
  );
  const after = await waitFor(
    'the new template to be migrated',
    async () => {
      const t = tdb('inventory');
      const m = t.status?.migration;
      return m?.templateHash !== before?.templateHash && m?.phase === 'Succeeded' && ready(t)?.status === 'True' ? t : undefined;
    },
    120_000,
    500,
  );
  expect(after.status?.migration?.jobName).not.toBe(before?.jobName);
  expect(await tableExists(after.status?.databaseName ?? '', 'gadgets')).toBe(true);
  // Each run is one Job; the earlier one stays until its TTL, for its logs.
  expect(
    jobs('tenantdb.dev/tenantdatabase=inventory')
      .map((j) => j.metadata.name)
      .sort(),
  ).toEqual([before?.jobName, after.status?.migration?.jobName].sort());
});

test("a TenantGroup's rollout stops at the first failure and names the tenant and its Job; fixed, it goes on at most maxParallel at a time", async () => {
  const members = ['m-a', 'm-b', 'm-c', 'm-d'];
  for (const m of members) apply(tenant(m, { deletionPolicy: 'Delete' }, { app: 'merchants' }));
  // All four provisioned first: the rollout goes by name among members that can migrate, and one
  // still being provisioned would be passed over (m-c could start before m-a).
  for (const m of members) await waitReady(m);
  // m-b's migration fails; the others take a few seconds.
  const failing = psqlMigration(
    'create table orders (id int primary key)',
    'case "$PGDATABASE" in *m_b) echo "m-b refuses" >&2; exit 3;; esac\nsleep 4',
  );
  apply({
    apiVersion: 'tenantdb.dev/v1alpha1',
    kind: 'TenantGroup',
    metadata: { name: 'merchants', namespace: NS },
    spec: { selector: { matchLabels: { app: 'merchants' } }, migration: { ...failing, maxParallel: 2 } },
  });
  const halted = await waitFor(
    'the rollout to halt at m-b',
    async () => {
      const g = jsonOf<Tg>('get', 'tg', 'merchants', '-n', NS);
      return g.status?.rollout?.halted ? g : undefined;
    },
    180_000,
    500,
  );
  const failedJob = halted.status?.rollout?.failedJob ?? '';
  expect(halted.status?.rollout).toMatchObject({ halted: true, failedTenant: 'm-b', failed: 1 });
  expect(failedJob).toMatch(/^m-b-migrate-[0-9a-f]{10}$/);
  expect(halted.status?.conditions?.find((c) => c.type === 'Migrated')).toMatchObject({ status: 'False', reason: 'RolloutHalted' });
  expect(events('merchants', 'RolloutHalted').join('\n')).toContain(failedJob);

  // m-b is not Ready and says why; its Warning Event names the Job.
  const b = await waitFor('m-b to report its failed migration', async () => {
    const t = tdb('m-b');
    return ready(t)?.reason === 'MigrationFailed' ? t : undefined;
  });
  expect(b.status?.migration).toMatchObject({ phase: 'Failed', jobName: failedJob, source: 'TenantGroup/merchants' });
  expect(events('m-b', 'MigrationFailed').join('\n')).toContain(failedJob);
  // m-a ran beside it (maxParallel 2) and succeeded; m-c and m-d never started.
  const a = await waitReady('m-a');
  expect(a.status?.migration?.phase).toBe('Succeeded');
  expect(await tableExists(a.status?.databaseName ?? '', 'orders')).toBe(true);
  expect(
    jobs('tenantdb.dev/tenantgroup=merchants')
      .map((j) => j.metadata.labels?.['tenantdb.dev/tenantdatabase'] ?? '')
      .sort(),
  ).toEqual(['m-a', 'm-b']);
  for (const m of ['m-c', 'm-d']) {
    const t = await waitFor(`${m} to say the rollout is halted`, async () => {
      const x = tdb(m);
      return x.status?.migration?.message?.includes('halted at m-b') ? x : undefined;
    });
    expect(ready(t)).toMatchObject({ status: 'False', reason: 'MigrationPending' });
  }

  // A fixed template rolls over all four, never more than two at a time.
  const fixed = psqlMigration('create table if not exists orders (id int primary key)', 'sleep 4');
  kubectl('patch', 'tg', 'merchants', '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { migration: fixed } }));
  let most = 0;
  const hashOfOld = failedJob.slice(-10);
  await waitFor(
    'the fixed rollout to complete',
    async () => {
      const now = jobs('tenantdb.dev/tenantgroup=merchants').filter((j) => j.metadata.labels?.['tenantdb.dev/template-hash'] !== hashOfOld);
      most = Math.max(most, now.filter((j) => !finished(j)).length);
      const g = jsonOf<Tg>('get', 'tg', 'merchants', '-n', NS);
      return g.status?.conditions?.some((c) => c.type === 'Migrated' && c.status === 'True') ? g : undefined;
    },
    240_000,
    250,
  );
  expect(most).toBe(2);
  for (const m of members) {
    const t = await waitReady(m);
    expect(t.status?.migration).toMatchObject({ phase: 'Succeeded', source: 'TenantGroup/merchants' });
    expect(await tableExists(t.status?.databaseName ?? '', 'orders')).toBe(true);
  }
  expect(events('merchants', 'RolloutComplete').length).toBeGreaterThanOrEqual(1);
});
