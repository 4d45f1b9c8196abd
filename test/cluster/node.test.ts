/**
 * tenantdb as a platform team runs it, on a real cluster: the chart's operator pods under the
 * `restricted` Pod Security Standard, applications in pods that use the tenant Secret, directly and
 * through PgBouncer, allow-lists by pod address, leader hand-over, helm upgrade and uninstall.
 * One file, in order: the later steps change the installation. The cluster is the real node here
 * (`npm run test:cluster`) or kind (scripts/kind-e2e.sh): see target.ts for what differs.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../env/cluster.js';
import { waitFor } from '../env/ports.js';
import { openTarget, type TargetInfo } from './target.js';

const target = openTarget(JSON.parse(readFileSync(process.env.TENANTDB_CLUSTER_ENV ?? '', 'utf8')) as TargetInfo);
const { kubectl, kubectlIn, helm } = target;
const env = target.info;
const NS = 'tenantdb-system';
const APP_NS = 'shop';
const psqlImage = env.clientImage;

/** The error text of a failed command (kubectl writes its reasons to stderr). */
function failure(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    const e = err as { stderr?: string; message?: string };
    return `${e.stderr ?? ''}${e.message ?? ''}`;
  }
  throw new Error('expected the command to fail');
}

const restrictedContainer = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
};
const restrictedPod = { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } };

/** An application pod with the tenant Secret as its environment, as an app would use it. */
function appPod(name: string, secret: string, command: string[]): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: APP_NS, labels: { app: 'tenantdb-e2e' } },
    spec: {
      restartPolicy: 'Never',
      securityContext: restrictedPod,
      containers: [
        {
          name: 'app',
          image: psqlImage,
          imagePullPolicy: 'Never',
          command,
          envFrom: [{ secretRef: { name: secret } }],
          securityContext: restrictedContainer,
        },
      ],
    },
  });
}

/** Runs a pod to its end; returns its phase and log. */
async function runPod(name: string, secret: string, script: string): Promise<{ phase: string; log: string }> {
  kubectl('delete', 'pod', name, '-n', APP_NS, '--ignore-not-found', '--wait=true');
  kubectlIn(appPod(name, secret, ['sh', '-c', script]), 'apply', '-f', '-');
  const phase = await waitFor(
    `pod ${name} to finish`,
    async () => {
      const p = kubectl('get', 'pod', name, '-n', APP_NS, '-o', 'jsonpath={.status.phase}');
      return p === 'Succeeded' || p === 'Failed' ? p : undefined;
    },
    120_000,
    500,
  );
  const log = kubectl('logs', name, '-n', APP_NS);
  kubectl('delete', 'pod', name, '-n', APP_NS, '--wait=false');
  return { phase, log };
}

/** Both ways in with the Secret: PG* variables (direct) and DATABASE_URL (through PgBouncer). */
const LOGIN_SCRIPT = [
  'set -e',
  'echo "direct $(psql -XAtc "select current_user")"',
  'echo "pooled $(psql "$DATABASE_URL" -XAtc "select current_user")"',
  'echo "pooler-host $(echo "$DATABASE_URL" | sed -e "s/.*@//" -e "s/[:/].*//")"',
].join('\n');

async function expectLogins(tenant: string, role: string): Promise<void> {
  const { phase, log } = await runPod(`login-${tenant}`, `${tenant}-db`, LOGIN_SCRIPT);
  expect({ phase, log }).toEqual({ phase: 'Succeeded', log: `direct ${role}\npooled ${role}\npooler-host ${env.poolerHost}\n` });
}

function tenant(name: string, spec: Record<string, unknown> = {}): string {
  return JSON.stringify({ apiVersion: 'tenantdb.dev/v1alpha1', kind: 'TenantDatabase', metadata: { name, namespace: APP_NS }, spec });
}

async function tenantReady(name: string): Promise<void> {
  await waitFor(
    `TenantDatabase ${APP_NS}/${name} Ready`,
    async () => kubectl('get', 'tdb', name, '-n', APP_NS, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') === 'True',
    180_000,
    500,
  );
}

function operatorPods(): { name: string; ip: string; ready: boolean }[] {
  const out = kubectl(
    'get',
    'pods',
    '-n',
    NS,
    '-l',
    'app.kubernetes.io/component=operator',
    '-o',
    'jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\\n"}{end}',
  );
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '))
    .filter((f) => !f[3])
    .map(([name = '', ip = '', ready = '']) => ({ name, ip, ready: ready === 'True' }));
}

function leaseHolder(): string {
  return kubectl('get', 'lease', 'tenantdb-operator', '-n', NS, '-o', 'jsonpath={.spec.holderIdentity}');
}

beforeAll(() => {
  kubectlIn(
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: APP_NS, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } },
    }),
    'apply',
    '-f',
    '-',
  );
});

test('the operator runs as two Ready replicas in a namespace that enforces restricted Pod Security', async () => {
  expect(kubectl('get', 'namespace', NS, '-o', 'jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}')).toBe('restricted');
  await waitFor('two Ready operator pods', async () => {
    const pods = operatorPods();
    return pods.length === 2 && pods.every((p) => p.ready);
  });
  expect(leaseHolder()).toMatch(/^tenantdb-operator-/);
  // The chart's own test: a pod (restricted too) asks the operator's Service for /readyz and /metrics.
  expect(helm('test', 'tenantdb', '-n', NS, '--timeout=3m')).toMatch(/Phase:\s+Succeeded/);
  // The namespace really refuses what restricted forbids: a pod that says nothing of its security.
  const refused = failure(() =>
    kubectlIn(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'unrestricted', namespace: NS },
        spec: { containers: [{ name: 'c', image: psqlImage, imagePullPolicy: 'Never' }] },
      }),
      'apply',
      '-f',
      '-',
    ),
  );
  expect(refused).toMatch(/violates PodSecurity "restricted/);
});

test('an application pod with the tenant Secret as envFrom logs in directly and through the PgBouncer Service', async () => {
  kubectlIn(tenant('orders', { deletionPolicy: 'Delete' }), 'apply', '-f', '-');
  await tenantReady('orders');
  await expectLogins('orders', 'shop_orders');
});

test('an IpWhitelist decides which pod addresses get in through the pooler', async () => {
  kubectlIn(tenant('guarded'), 'apply', '-f', '-');
  await tenantReady('guarded');
  for (const p of ['allowed', 'other']) kubectlIn(appPod(p, 'guarded-db', ['sleep', '3600']), 'apply', '-f', '-');
  kubectl('wait', '-n', APP_NS, '--for=condition=Ready', 'pod/allowed', 'pod/other', '--timeout=120s');
  const ip = (p: string) => kubectl('get', 'pod', p, '-n', APP_NS, '-o', 'jsonpath={.status.podIP}');
  const pooled = (p: string) => {
    try {
      return kubectl('exec', '-n', APP_NS, p, '--', 'sh', '-c', 'psql "$DATABASE_URL" -XAtc "select current_user"').trim();
    } catch (err) {
      return `refused: ${(err as { stderr?: string }).stderr ?? ''}`;
    }
  };
  expect(pooled('allowed')).toBe('shop_guarded');
  expect(pooled('other')).toBe('shop_guarded');

  // The operator checks each tenant's pooled login from its own pods: they stay on the list.
  const entries = [ip('allowed'), ...operatorPods().map((p) => p.ip)].map((a) => ({ cidr: `${a}/32` }));
  kubectlIn(
    JSON.stringify({
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'IpWhitelist',
      metadata: { name: 'guarded-allowed', namespace: APP_NS },
      spec: { tenantDatabaseRef: { name: 'guarded' }, entries },
    }),
    'apply',
    '-f',
    '-',
  );
  const refusedOther = await waitFor('the pooler to refuse the other pod', async () => {
    const r = pooled('other');
    return r.startsWith('refused') ? r : undefined;
  });
  expect(refusedOther).toMatch(/pg_hba|not allowed|rejected|no pg_hba|FATAL/i);
  expect(pooled('allowed')).toBe('shop_guarded');
  // Direct logins are not the pooler's to refuse (the server's pg_hba.conf is not managed here).
  expect(kubectl('exec', '-n', APP_NS, 'other', '--', 'psql', '-XAtc', 'select current_user').trim()).toBe('shop_guarded');

  kubectl('delete', 'ipwhitelist', 'guarded-allowed', '-n', APP_NS);
  await waitFor('the pooler to let the other pod in again', async () => pooled('other') === 'shop_guarded');
  kubectl('delete', 'pod', 'allowed', 'other', '-n', APP_NS, '--grace-period=1', '--wait=false');
});

test('kubectl tenantdb psql --pod runs psql in a pod of the tenant namespace with its Secret, and removes the pod', () => {
  const plugin = (input: string, ...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/kubectl-tenantdb.ts'), '--kubeconfig', env.kubeconfig, ...args], {
      input,
      encoding: 'utf8',
      cwd: ROOT,
      timeout: 180_000,
    });
  // A script from this machine, through the pooler (the default path), from the pod network.
  const ok = plugin('select current_user;\nselect 6 * 7;\n', 'psql', 'orders', '-n', APP_NS, '--pod', '--image', psqlImage, '--', '-XAt');
  expect({ status: ok.status, out: ok.stdout.trim() }).toEqual({ status: 0, out: 'shop_orders\n42' });
  // psql's own exit code comes back (3: a script stopped by ON_ERROR_STOP).
  const failed = plugin(
    'select nope;\n',
    'psql',
    'orders',
    '-n',
    APP_NS,
    '--pod',
    '--image',
    psqlImage,
    '--direct',
    '--',
    '-XAt',
    '-v',
    'ON_ERROR_STOP=1',
  );
  expect(failed.status).toBe(3);
  expect(failed.stdout + failed.stderr).toMatch(/column "nope" does not exist/);
  // No pod is left behind, and none ever held the password in its spec.
  expect(kubectl('get', 'pods', '-n', APP_NS, '-l', 'app.kubernetes.io/name=tenantdb-psql', '-o', 'name').trim()).toBe('');
  // An image that is not there is said plainly, and its pod removed too.
  const missing = plugin('', 'psql', 'orders', '-n', APP_NS, '--pod', '--image', 'localhost/no-such-image:1', '--pod-timeout', '60');
  expect(missing.status).not.toBe(0);
  expect(missing.stderr).toMatch(/cannot start: (ErrImageNeverPull|ErrImagePull|ImagePullBackOff)/);
  expect(missing.stderr).not.toMatch(/at .*\.ts:\d+/);
  expect(kubectl('get', 'pods', '-n', APP_NS, '-l', 'app.kubernetes.io/name=tenantdb-psql', '-o', 'name').trim()).toBe('');
});

test('killing the leader pod hands over to another replica and reconciling goes on', async () => {
  const leader = leaseHolder();
  const pods = operatorPods();
  expect(pods.map((p) => p.name)).toContain(leader);
  // SIGKILL: the leader cannot hand the Lease back; once it expires, a live replica takes it: the
  // standby, or the pod the Deployment starts in the killed one's place (both try every 2 s, and
  // which tries first after the expiry is a race, not something to assert).
  target.killPod(NS, leader);
  const next = await waitFor('another replica to take the Lease', async () => {
    const h = leaseHolder();
    return h && h !== leader ? h : undefined;
  });
  expect(operatorPods().map((p) => p.name)).toContain(next);
  kubectlIn(tenant('after-handover'), 'apply', '-f', '-');
  await tenantReady('after-handover');
  await expectLogins('after-handover', 'shop_after_handover');
});

test('helm upgrade with changed values keeps every tenant working', async () => {
  helm(
    'upgrade',
    'tenantdb',
    join(ROOT, 'charts/tenantdb'),
    '-n',
    NS,
    ...env.imageValues,
    '--set=logLevel=debug',
    '--set=workers=2',
    '--set=resync=2m',
    '--wait',
    '--timeout=5m',
  );
  const args = kubectl('get', 'deployment', 'tenantdb-operator', '-n', NS, '-o', 'jsonpath={.spec.template.spec.containers[0].args}');
  expect(args).toContain('--workers=2');
  await waitFor('two Ready operator pods of the new revision', async () => {
    const ready = kubectl(
      'get',
      'deployment',
      'tenantdb-operator',
      '-n',
      NS,
      '-o',
      'jsonpath={.status.updatedReplicas}/{.status.readyReplicas}/{.status.replicas}',
    );
    return ready === '2/2/2';
  });
  for (const t of ['orders', 'guarded', 'after-handover']) await tenantReady(t);
  kubectlIn(tenant('after-upgrade'), 'apply', '-f', '-');
  await tenantReady('after-upgrade');
  await expectLogins('orders', 'shop_orders');
  await expectLogins('after-upgrade', 'shop_after_upgrade');
});

test('helm uninstall leaves the tenant databases, roles and Secrets in place', async () => {
  helm('uninstall', 'tenantdb', '-n', NS, '--wait', '--timeout=5m');
  await waitFor('the operator pods to be gone', async () => operatorPods().length === 0);
  // The CRDs (kept by Helm) and so the TenantDatabases remain; with no operator nothing is dropped,
  // whatever the deletion policy (Delete acts when a TenantDatabase is deleted, not its operator).
  const names = ['orders', 'guarded', 'after-handover', 'after-upgrade'];
  expect(kubectl('get', 'tdb', '-n', APP_NS, '-o', 'jsonpath={.items[*].metadata.name}').split(' ').sort()).toEqual([...names].sort());
  for (const t of names) expect(kubectl('get', 'secret', `${t}-db`, '-n', APP_NS, '-o', 'name')).toBe(`secret/${t}-db\n`);
  const dbs = await target.superuserQuery("select datname from pg_database where datname like 'shop_%' order by 1");
  expect(dbs).toEqual(['shop_after_handover', 'shop_after_upgrade', 'shop_guarded', 'shop_orders']);
  const { phase, log } = await runPod('direct-after-uninstall', 'orders-db', 'psql -XAtc "select current_user"');
  expect({ phase, log }).toEqual({ phase: 'Succeeded', log: 'shop_orders\n' });
});
