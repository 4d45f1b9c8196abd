/**
 * The Helm chart, judged as a platform team would before admitting it: `helm lint --strict`; the
 * values schema refuses bad values; the output of `helm template` for the default values and for
 * several others is accepted by the real kube-apiserver (server-side dry run, strict field
 * validation), and its pods are admitted by the API server's PodSecurity admission in a namespace
 * that enforces `restricted` (and a pod that breaks the standard is refused there); the alerts
 * name metrics the operator really exports; the `helm test` Pod's check passes against a real
 * operator and fails without one; deploy/ is the chart's default install; `helm install`,
 * `upgrade` and `uninstall` against the real API server do what the README says of CRDs, the
 * pooler's admin password and namespaced RBAC.
 */
import type * as k8s from '@kubernetes/client-node';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { renderChartCrdTemplates } from '../../src/api/crd-files.js';
import { KINDS } from '../../src/api/kinds.js';
import { createMetrics } from '../../src/runtime/metrics.js';
import { ROOT, apply, readManifests } from '../env/cluster.js';
import { controlPlaneBinaries } from '../env/controlplane.js';
import { CHART, KUBE_VERSION, helm, renderChart, renderChartError, type Manifest } from '../env/helm.js';
import { freePort } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import { cluster, operator } from './harness.js';

const c = cluster();
const dir = mkdtempSync(join(tmpdir(), 'tenantdb-chart-'));
const kubectlPath = join(controlPlaneBinaries(), 'kubectl');
const RESTRICTED_NS = 'chart-restricted';

function kubectl(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(kubectlPath, ['--kubeconfig', c.env.adminKubeconfig, ...args], { input, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const toYaml = (objs: unknown[]) => objs.map((o) => stringify(o)).join('---\n');
const ofKind = (objs: Manifest[], kind: string) => objs.filter((o) => o.kind === kind);
/** The one object of a kind (and name), typed as the caller reads it. */
function one<T = Manifest>(objs: Manifest[], kind: string, name?: string): T {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ''}, found ${found.length}`);
  return found[0] as unknown as T;
}
const deployment = (objs: Manifest[], name: string) => one<k8s.V1Deployment>(objs, 'Deployment', name);
const podSpec = (objs: Manifest[], name: string) => deployment(objs, name).spec?.template.spec as k8s.V1PodSpec;
const rules = (objs: Manifest[], kind: string, name: string) => one<k8s.V1ClusterRole>(objs, kind, name).rules ?? [];

interface ServiceMonitor {
  apiVersion: string;
  metadata: k8s.V1ObjectMeta;
  spec: {
    namespaceSelector: { matchNames: string[] };
    selector: { matchLabels: Record<string, string> };
    endpoints: { port: string; honorLabels?: boolean }[];
  };
}
interface PrometheusRule {
  spec: {
    groups: {
      rules: {
        alert: string;
        expr: string;
        for: string;
        labels: { severity: string };
        annotations: { summary: string; description: string };
      }[];
    }[];
  };
}

/** The pod templates of the rendered workloads, and the Pods (the helm test). */
function podSpecs(objs: Manifest[]): { name: string; spec: k8s.V1PodSpec }[] {
  return objs.flatMap((o) => {
    if (o.kind === 'Deployment') return [{ name: o.metadata.name, spec: podSpec(objs, o.metadata.name) }];
    if (o.kind === 'Pod') return [{ name: o.metadata.name, spec: one<k8s.V1Pod>(objs, 'Pod', o.metadata.name).spec as k8s.V1PodSpec }];
    return [];
  });
}

/** The prometheus-operator kinds: their CRDs are not in the test cluster, they are checked below. */
const MONITORING = new Set(['ServiceMonitor', 'PrometheusRule']);

interface ValueSet {
  namespace: string;
  values: Record<string, unknown>;
  check(objs: Manifest[], ns: string): void;
}

const digest = `sha256:${'ab'.repeat(32)}`;

const SETS: Record<string, ValueSet> = {
  defaults: {
    namespace: 'chart-defaults',
    values: {},
    check: (objs, ns) => {
      const crds = ofKind(objs, 'CustomResourceDefinition');
      expect(crds).toHaveLength(KINDS.length);
      expect(crds.map((o) => o.metadata.annotations?.['helm.sh/resource-policy'])).toEqual(KINDS.map(() => 'keep'));
      expect(deployment(objs, 'tenantdb-operator').spec?.replicas).toBe(2);
      expect(podSpec(objs, 'tenantdb-operator').containers[0]?.image).toBe('tenantdb:0.1.0');
      expect(one<k8s.V1PodDisruptionBudget>(objs, 'PodDisruptionBudget').spec?.minAvailable).toBe(1);
      expect(one<k8s.V1Service>(objs, 'Service', 'tenantdb-metrics').spec?.ports?.[0]?.port).toBe(8080);
      expect(one(objs, 'Pod').metadata.annotations?.['helm.sh/hook']).toBe('test');
      expect(rules(objs, 'ClusterRole', 'tenantdb-operator').some((r) => r.resources?.includes('secrets'))).toBe(true);
      expect(objs.filter((o) => o.metadata.namespace !== undefined && o.metadata.namespace !== ns)).toEqual([]);
      expect(objs.some((o) => MONITORING.has(o.kind) || o.metadata.name.includes('pgbouncer'))).toBe(false);
      expect(podSpec(objs, 'tenantdb-operator').containers[0]?.args).toContain('--tenant-metrics=basic');
      expect(objs.some((o) => o.metadata.name.includes('grafana'))).toBe(false);
    },
  },
  watchNamespaces: {
    namespace: 'chart-scoped',
    values: { watchNamespaces: ['chart-team-a', 'chart-team-b'], logLevel: 'debug' },
    check: (objs, ns) => {
      const args = podSpec(objs, 'tenantdb-operator').containers[0]?.args;
      expect(args).toContain('--watch-namespaces=chart-team-a,chart-team-b');
      expect(
        ofKind(objs, 'Role')
          .filter((r) => r.metadata.name === 'tenantdb-operator')
          .map((r) => r.metadata.namespace)
          .sort(),
      ).toEqual(['chart-scoped', 'chart-team-a', 'chart-team-b'].sort());
      const cluster = rules(objs, 'ClusterRole', 'tenantdb-operator');
      expect(cluster.some((r) => r.resources?.includes('secrets'))).toBe(false);
      expect(cluster.find((r) => r.resources?.includes('namespaces'))?.resourceNames).toEqual(['chart-team-a', 'chart-team-b']);
      expect(ns).toBe('chart-scoped');
    },
  },
  poolerAndMonitoring: {
    namespace: 'chart-pooler',
    values: {
      pooler: { enabled: true, postgresServer: 'main', config: { max_client_conn: 1000, pool_mode: 'transaction' } },
      metrics: {
        tenantMetrics: 'full',
        serviceMonitor: { enabled: true, labels: { release: 'prometheus' } },
        prometheusRule: { enabled: true },
        grafanaDashboard: { enabled: true, annotations: { grafana_folder: 'Databases' } },
      },
      logFormat: 'text',
      image: { repository: 'tenantdb', tag: '0.1.0', digest, pullPolicy: 'Never' },
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'databases', effect: 'NoSchedule' }],
      topologySpreadConstraints: [
        {
          maxSkew: 1,
          topologyKey: 'topology.kubernetes.io/zone',
          whenUnsatisfiable: 'ScheduleAnyway',
          labelSelector: { matchLabels: { 'app.kubernetes.io/component': 'operator' } },
        },
      ],
      priorityClassName: 'tenantdb-chart-test',
      podAnnotations: { 'example.com/team': 'platform' },
      podLabels: { 'example.com/tier': 'control' },
      serviceAccount: { create: true, annotations: { 'example.com/role': 'tenantdb' } },
    },
    check: (objs, ns) => {
      const spec = podSpec(objs, 'tenantdb-pgbouncer');
      const agent = spec.initContainers?.[0];
      expect(agent?.restartPolicy).toBe('Always');
      expect(agent?.startupProbe?.exec?.command).toEqual(['test', '-s', '/etc/pgbouncer/tenantdb/databases.ini']);
      expect(agent?.args).toContain(`--secret=${ns}/main-pooler`);
      expect(agent?.image).toBe(`tenantdb:0.1.0@${digest}`);
      expect(spec.containers[0]?.image).toBe('tenantdb-pgbouncer:0.1.0');
      expect(spec.containers[0]?.readinessProbe?.tcpSocket?.port).toBe('pgbouncer');
      expect(rules(objs, 'Role', 'tenantdb-pooler-agent')[0]?.resourceNames).toContain('main-pooler');
      const ini = one<k8s.V1ConfigMap>(objs, 'ConfigMap', 'tenantdb-pgbouncer').data?.['pgbouncer.ini'];
      expect(ini).toMatch(/^max_client_conn = 1000$/m);
      expect(ini).toMatch(/^admin_users = tenantdb_pooler$/m);
      expect(ini).toMatch(/^%include \/etc\/pgbouncer\/tenantdb\/databases.ini$/m);
      const admin = one<k8s.V1Secret>(objs, 'Secret', 'tenantdb-pooler-admin');
      expect(Buffer.from(admin.data?.password ?? '', 'base64').toString()).toMatch(/^[A-Za-z0-9]{32}$/);
      expect(one<k8s.V1Service>(objs, 'Service', 'tenantdb-pgbouncer').spec?.type).toBe('ClusterIP');
      expect(one<k8s.V1PodDisruptionBudget>(objs, 'PodDisruptionBudget', 'tenantdb-pgbouncer').spec?.minAvailable).toBe(1);
      const op = deployment(objs, 'tenantdb-operator').spec?.template;
      expect(op?.spec?.containers[0]?.env).toContainEqual({ name: 'LOG_FORMAT', value: 'text' });
      expect(op?.metadata?.labels?.['example.com/tier']).toBe('control');
      expect(op?.spec?.priorityClassName).toBe('tenantdb-chart-test');
      expect(one(objs, 'ServiceAccount', 'tenantdb-operator').metadata.annotations).toEqual({ 'example.com/role': 'tenantdb' });
      expect(op?.spec?.containers[0]?.args).toContain('--tenant-metrics=full');
      const dashboard = one<k8s.V1ConfigMap>(objs, 'ConfigMap', 'tenantdb-grafana-dashboard');
      expect(dashboard.metadata?.namespace).toBe(ns);
      expect(dashboard.metadata?.labels?.grafana_dashboard).toBe('1');
      expect(dashboard.metadata?.annotations).toEqual({ grafana_folder: 'Databases' });
      expect(JSON.parse(dashboard.data?.['tenantdb.json'] ?? '')).toEqual(
        JSON.parse(readFileSync(join(CHART, 'files/grafana-dashboard.json'), 'utf8')),
      );
    },
  },
  minimal: {
    namespace: 'chart-minimal',
    values: {
      crds: { enabled: false, keep: false },
      replicas: 1,
      extraArgs: ['--no-leader-elect'],
      metrics: { service: { enabled: false } },
      tests: { enabled: false },
      serviceAccount: { create: false, name: 'platform-operator' },
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/os', operator: 'In', values: ['linux'] }] }],
          },
        },
      },
    },
    check: (objs) => {
      for (const kind of ['CustomResourceDefinition', 'PodDisruptionBudget', 'Service', 'Pod']) expect(ofKind(objs, kind)).toEqual([]);
      // The agent's identity stays; the operator's is the platform's own.
      expect(ofKind(objs, 'ServiceAccount').map((o) => o.metadata.name)).toEqual(['tenantdb-pooler-agent']);
      const spec = podSpec(objs, 'tenantdb-operator');
      expect(spec.serviceAccountName).toBe('platform-operator');
      expect(spec.containers[0]?.args?.at(-1)).toBe('--no-leader-elect');
      expect(spec.affinity?.podAntiAffinity).toBeUndefined();
      expect(one<k8s.V1ClusterRoleBinding>(objs, 'ClusterRoleBinding').subjects?.[0]?.name).toBe('platform-operator');
    },
  },
  poolerLoadBalancer: {
    namespace: 'chart-lb',
    values: {
      crds: { enabled: true, keep: false },
      pooler: {
        enabled: true,
        replicas: 3,
        admin: { username: 'pooler_admin', existingSecret: 'platform-pgbouncer-admin' },
        service: { type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/8'] },
        podDisruptionBudget: { enabled: true, minAvailable: null, maxUnavailable: 1 },
        tls: { secretName: 'pgbouncer-tls', clientSslMode: 'require', serverCASecretName: 'postgres-ca' },
        config: { server_tls_sslmode: 'verify-full' },
      },
      argocd: { healthChecks: { enabled: true, namespace: 'chart-argocd' } },
    },
    check: (objs) => {
      expect(ofKind(objs, 'CustomResourceDefinition').every((o) => o.metadata.annotations === undefined)).toBe(true);
      const svc = one<k8s.V1Service>(objs, 'Service', 'tenantdb-pgbouncer');
      expect(svc.spec?.type).toBe('LoadBalancer');
      expect(svc.spec?.externalTrafficPolicy).toBe('Local');
      expect(one<k8s.V1PodDisruptionBudget>(objs, 'PodDisruptionBudget', 'tenantdb-pgbouncer').spec).toMatchObject({ maxUnavailable: 1 });
      expect(ofKind(objs, 'Secret')).toEqual([]);
      const agent = podSpec(objs, 'tenantdb-pgbouncer').initContainers?.[0];
      expect(agent?.env?.[0]?.valueFrom?.secretKeyRef?.name).toBe('platform-pgbouncer-admin');
      expect(agent?.args).toContain('--admin-user=pooler_admin');
      const ini = one<k8s.V1ConfigMap>(objs, 'ConfigMap', 'tenantdb-pgbouncer').data?.['pgbouncer.ini'];
      expect(ini).toMatch(/^client_tls_sslmode = require$/m);
      expect(ini).toMatch(/^client_tls_key_file = \/etc\/pgbouncer\/tls\/tls.key$/m);
      expect(ini).toMatch(/^server_tls_ca_file = \/etc\/pgbouncer\/server-ca\/ca.crt$/m);
      expect(ini).toMatch(/^server_tls_sslmode = verify-full$/m);
      const volumes = podSpec(objs, 'tenantdb-pgbouncer').volumes ?? [];
      expect(volumes.find((v) => v.name === 'tls')?.secret?.secretName).toBe('pgbouncer-tls');
      expect(volumes.find((v) => v.name === 'server-ca')?.secret?.secretName).toBe('postgres-ca');
      expect(one(objs, 'ConfigMap', 'tenantdb-argocd-health').metadata.namespace).toBe('chart-argocd');
    },
  },
};

const rendered = new Map<string, Manifest[]>();

beforeAll(async () => {
  const nsLabels = { 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest' };
  const namespaces = [
    RESTRICTED_NS,
    'chart-release',
    'chart-team-a',
    'chart-team-b',
    'chart-argocd',
    ...Object.values(SETS).map((s) => s.namespace),
  ];
  await apply(
    c.kc,
    namespaces.map((name) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: nsLabels } })),
  );
  await apply(c.kc, [
    {
      apiVersion: 'scheduling.k8s.io/v1',
      kind: 'PriorityClass',
      metadata: { name: 'tenantdb-chart-test' },
      value: 1000,
    } as k8s.KubernetesObject,
  ]);
  for (const [name, set] of Object.entries(SETS)) rendered.set(name, renderChart(dir, { namespace: set.namespace, values: set.values }));
}, 600_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('helm lint', () => {
  test.each(Object.keys(SETS))('passes --strict with the %s values', (name) => {
    const set = SETS[name] as ValueSet;
    const file = join(dir, `lint-${name}.yaml`);
    writeFileSync(file, stringify(set.values));
    const r = helm(['lint', CHART, '--strict', '--kube-version', KUBE_VERSION, '--namespace', set.namespace, '--values', file], dir);
    expect(r.stderr + r.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(r.status).toBe(0);
  });
});

describe('the values schema refuses bad values', () => {
  test.each<[string, Record<string, unknown>, RegExp]>([
    ['an unknown key', { replica: 3 }, /replica/],
    ['an unknown nested key', { pooler: { enable: true } }, /enable/],
    ['a pull policy Kubernetes does not know', { image: { repository: 'tenantdb', pullPolicy: 'Sometimes' } }, /pullPolicy/],
    ['a log format the operator does not know', { logFormat: 'xml' }, /logFormat/],
    ['a namespace that is no DNS label', { watchNamespaces: ['Team_A'] }, /watchNamespaces/],
    ['a malformed digest', { image: { repository: 'tenantdb', pullPolicy: 'Always', digest: 'latest' } }, /digest/],
    ['a memory limit with a space', { resources: { limits: { memory: '256 MB' } } }, /memory/],
    [
      'a PgBouncer setting the chart owns',
      { pooler: { enabled: true, postgresServer: 'x', config: { listen_port: 7000 } } },
      /listen_port|config/,
    ],
    [
      'a TLS file set beside pooler.tls',
      { pooler: { enabled: true, postgresServer: 'x', config: { client_tls_key_file: '/key' } } },
      /client_tls_key_file|config/,
    ],
    [
      'a PgBouncer setting that would add a line to pgbouncer.ini',
      { pooler: { enabled: true, postgresServer: 'x', config: { server_reset_query: 'DISCARD ALL\nauth_type = trust' } } },
      /server_reset_query/,
    ],
    ['a string for replicas', { replicas: 'two' }, /replicas/],
    ['a security context field that does not exist', { securityContext: { readOnlyRootFileSystem: true } }, /readOnlyRootFileSystem/],
    ['a resync the operator cannot parse', { resync: '5 minutes' }, /resync/],
    ['a malloc arena count that is no number', { mallocArenaMax: 'two' }, /mallocArenaMax/],
    ['a per-tenant metrics level the operator does not know', { metrics: { port: 8080, tenantMetrics: 'all' } }, /tenantMetrics/],
  ])('%s', (_what, values, message) => {
    const err = renderChartError(dir, { namespace: 'chart-defaults', values });
    expect(err).toMatch(/schema/i);
    expect(err).toMatch(message);
  });

  test('a Kubernetes older than 1.31 (no CEL isCIDR for the CRDs) is refused', () => {
    expect(renderChartError(dir, { namespace: 'chart-defaults', kubeVersion: '1.30.9' })).toMatch(/kubeVersion|incompatible/i);
  });
});

describe.each(Object.keys(SETS))('with the %s values', (name) => {
  const set = SETS[name] as ValueSet;
  const objs = () => rendered.get(name) ?? [];

  test('the rendered objects are what those values ask for', () => {
    set.check(objs(), set.namespace);
  });

  test('the real API server accepts every object (server-side dry run, strict field validation)', () => {
    const docs = objs().filter((o) => !MONITORING.has(o.kind));
    const r = kubectl(
      [
        'apply',
        '--server-side',
        '--dry-run=server',
        '--validate=strict',
        '--force-conflicts',
        '--field-manager=tenantdb-chart-test',
        '-f',
        '-',
      ],
      toYaml(docs),
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(docs.length);
  });

  test('its pods are admitted where the restricted Pod Security Standard is enforced', () => {
    const pods = podSpecs(objs());
    expect(pods.length).toBeGreaterThan(0);
    for (const p of pods) {
      const r = kubectl(
        ['create', '--dry-run=server', '--validate=strict', '-f', '-'],
        stringify({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: `${name.toLowerCase()}-${p.name}`, namespace: RESTRICTED_NS },
          spec: p.spec,
        }),
      );
      expect(`${p.name}: ${r.stderr}`).toBe(`${p.name}: `);
      expect(r.status).toBe(0);
    }
  });
});

describe('Pod Security admission is what enforces the standard here', () => {
  test.each<[string, Record<string, unknown>, RegExp]>([
    [
      'privilege escalation',
      { securityContext: { allowPrivilegeEscalation: true, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } } },
      /allowPrivilegeEscalation/,
    ],
    // Helm merges maps with the defaults: a key goes only when set to null.
    ['no seccomp profile and no runAsNonRoot', { podSecurityContext: { seccompProfile: null, runAsNonRoot: null } }, /seccompProfile/],
  ])('an operator pod with %s is refused', (_what, values, message) => {
    const objs = renderChart(dir, { namespace: 'chart-defaults', values });
    const spec = podSpec(objs, 'tenantdb-operator');
    const r = kubectl(
      ['create', '--dry-run=server', '-f', '-'],
      stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'breaks-restricted', namespace: RESTRICTED_NS }, spec }),
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/violates PodSecurity "restricted/);
    expect(r.stderr).toMatch(message);
  });
});

describe('monitoring', () => {
  const objs = () => rendered.get('poolerAndMonitoring') ?? [];

  test('the ServiceMonitor selects the metrics Service and scrapes its port', () => {
    const sm = one<ServiceMonitor>(objs(), 'ServiceMonitor');
    const svc = one<k8s.V1Service>(objs(), 'Service', 'tenantdb-metrics');
    expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(sm.metadata.labels?.release).toBe('prometheus');
    expect(sm.spec.namespaceSelector.matchNames).toEqual([svc.metadata?.namespace]);
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(svc.metadata?.labels?.[k]).toBe(v);
    expect(sm.spec.endpoints.map((e) => e.port)).toEqual([svc.spec?.ports?.[0]?.name]);
    // The per-tenant series keep the tenant's namespace instead of exported_namespace.
    expect(sm.spec.endpoints.map((e) => e.honorLabels)).toEqual([true]);
  });

  test("every alert is complete and names only metrics the operator exports, on the chart's Service", async () => {
    const rule = one<PrometheusRule>(objs(), 'PrometheusRule');
    const exported = new Set<string>();
    for (const m of await createMetrics().registry.getMetricsAsJSON()) {
      exported.add(m.name);
      if (m.type.toString() === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m.name + s);
    }
    const alerts = rule.spec.groups.flatMap((g) => g.rules);
    expect(alerts.length).toBeGreaterThanOrEqual(5);
    for (const r of alerts) {
      expect(r.alert).toMatch(/^Tenantdb[A-Za-z]+$/);
      expect(['warning', 'critical']).toContain(r.labels.severity);
      expect(r.for).toMatch(/^\d+m$/);
      expect(r.annotations.summary.length).toBeGreaterThan(10);
      const names = [...r.expr.matchAll(/\b(tenantdb_[a-z_]+)\b/g)].map((m) => m[1] as string);
      for (const n of names) expect(`${r.alert}: ${n} ${exported.has(n) ? 'exported' : 'not exported'}`).toBe(`${r.alert}: ${n} exported`);
      expect(r.expr).toContain('namespace="chart-pooler", service="tenantdb-metrics"');
    }
  });
});

describe('the helm test Pod', () => {
  let op: Proc | undefined;
  afterAll(async () => {
    await op?.stop();
  });

  /** Runs the test Pod's own command here, with the Service address Kubernetes would give it. */
  function runTestPod(port: number, attempts: string): Promise<{ code: number | null; out: string }> {
    const objs = renderChart(dir, { namespace: 'chart-defaults', values: { metrics: { port } } });
    const container = one<k8s.V1Pod>(objs, 'Pod').spec?.containers[0];
    expect(container?.command).toEqual(['node', '-e']);
    const child = spawn(process.execPath, ['-e', container?.args?.[0] ?? ''], {
      env: { PATH: process.env.PATH, TENANTDB_METRICS_SERVICE_HOST: '127.0.0.1', TENANTDB_TEST_ATTEMPTS: attempts },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    return new Promise((resolve) => child.once('exit', (code) => resolve({ code, out })));
  }

  test('passes against a running operator', async () => {
    const port = await freePort();
    op = operator(c, 'chart-helm-test', undefined, [`--metrics-port=${port}`]);
    const r = await runTestPod(port, '60');
    expect(r.out).toContain(`the operator answers at http://127.0.0.1:${port}`);
    expect(r.code).toBe(0);
  });

  test('fails where no operator answers', async () => {
    const r = await runTestPod(await freePort(), '1');
    expect(r.out).toContain('the operator does not answer');
    expect(r.code).toBe(1);
  });
});

describe('deploy/ is the chart with its default values', () => {
  /** Labels only Helm sets; everything else must agree. */
  const HELM_ONLY = ['helm.sh/chart', 'app.kubernetes.io/managed-by'];

  type Normalized = { metadata: k8s.V1ObjectMeta; spec?: { template?: { metadata?: k8s.V1ObjectMeta } }; rules?: unknown[] };
  function normalize(o: Manifest): Normalized {
    const copy = JSON.parse(JSON.stringify(o)) as Normalized;
    const strip = (m: k8s.V1ObjectMeta | undefined) => {
      for (const k of HELM_ONLY) delete m?.labels?.[k];
    };
    strip(copy.metadata);
    strip(copy.spec?.template?.metadata);
    if (copy.rules) {
      // RBAC: the same permissions however they are grouped into rules.
      copy.rules = (copy.rules as k8s.V1PolicyRule[])
        .flatMap((r) =>
          (r.apiGroups ?? []).flatMap((g) =>
            (r.resources ?? []).flatMap((res) => (r.verbs ?? []).map((v) => `${g}/${res} ${v} ${(r.resourceNames ?? []).join(',')}`)),
          ),
        )
        .sort();
    }
    return copy;
  }
  const key = (o: Manifest) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;

  test('kubectl kustomize deploy/ gives the same objects as helm template (except the Namespace and the CRDs)', () => {
    const r = kubectl(['kustomize', join(ROOT, 'deploy')]);
    expect(r.stderr).toBe('');
    const fromDeploy = parseAllDocuments(r.stdout).map((d) => d.toJS() as Manifest);
    const fromChart = renderChart(dir, { namespace: 'tenantdb-system', skipTests: true });
    // Documented differences: deploy/ creates the Namespace (Helm: --create-namespace); the CRDs
    // are applied from crds/ (compared below).
    const chartObjs = new Map(fromChart.filter((o) => o.kind !== 'CustomResourceDefinition').map((o) => [key(o), normalize(o)]));
    const deployObjs = new Map(fromDeploy.filter((o) => o.kind !== 'Namespace').map((o) => [key(o), normalize(o)]));
    expect([...deployObjs.keys()].sort()).toEqual([...chartObjs.keys()].sort());
    for (const [k, o] of chartObjs) expect({ [k]: deployObjs.get(k) }).toEqual({ [k]: o });
    expect(one(fromDeploy, 'Namespace').metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  test("deploy/pgbouncer-example.yaml is the chart's pooler (pooler.enabled=true), but for the admin's password", () => {
    const fromChart = renderChart(dir, { namespace: 'tenantdb-system', skipTests: true, values: { pooler: { enabled: true } } }).filter(
      (o) => o.metadata.labels?.['app.kubernetes.io/component'] === 'pgbouncer',
    );
    const fromExample = readManifests('deploy/pgbouncer-example.yaml') as Manifest[];
    const chartSecret = one<k8s.V1Secret>(fromChart, 'Secret');
    const exampleSecret = one<k8s.V1Secret>(fromExample, 'Secret');
    expect(Buffer.from(chartSecret.data?.username ?? '', 'base64').toString()).toBe(exampleSecret.stringData?.username);
    const comparable = (o: Manifest) => {
      const n = normalize(o) as Normalized & { data?: unknown; stringData?: unknown };
      if (o.kind === 'Secret') {
        delete n.data;
        delete n.stringData;
      }
      // The chart rolls the pods when pgbouncer.ini changes.
      const annotations = n.spec?.template?.metadata?.annotations;
      delete annotations?.['checksum/pgbouncer-ini'];
      if (annotations && Object.keys(annotations).length === 0) delete n.spec?.template?.metadata?.annotations;
      return n;
    };
    const chartObjs = new Map(fromChart.map((o) => [key(o), comparable(o)]));
    const exampleObjs = new Map(fromExample.map((o) => [key(o), comparable(o)]));
    expect([...exampleObjs.keys()].sort()).toEqual([...chartObjs.keys()].sort());
    for (const [k, o] of chartObjs) expect({ [k]: exampleObjs.get(k) }).toEqual({ [k]: o });
  });

  test("the chart's CRDs are crds/ (plus the chart's labels and the keep annotation)", () => {
    const fromChart = renderChart(dir, { namespace: 'tenantdb-system', skipTests: true });
    for (const file of Object.keys(renderChartCrdTemplates())) {
      const plain = parse(readFileSync(join(ROOT, 'crds', file), 'utf8')) as Manifest;
      const templated = one(fromChart, 'CustomResourceDefinition', plain.metadata.name);
      expect(templated.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
      expect(templated.metadata.labels?.['app.kubernetes.io/part-of']).toBe('tenantdb');
      expect({ ...templated, metadata: { name: templated.metadata.name } }).toEqual({ ...plain, metadata: { name: plain.metadata.name } });
    }
  });
});

describe('helm install, upgrade and uninstall against the real API server', () => {
  const release = 'chart-it';
  const ns = 'chart-release';
  const prefix = 'chart-it-tenantdb';
  const run = (args: string[]) => helm([...args, '--kubeconfig', c.env.adminKubeconfig, '--namespace', ns], dir);
  const exists = (args: string[]) => kubectl(['get', ...args, '-o', 'name']).status === 0;
  const adminPassword = () => {
    const r = kubectl(['get', 'secret', `${prefix}-pooler-admin`, '-n', ns, '-o', 'jsonpath={.data.password}']);
    expect(r.status).toBe(0);
    return Buffer.from(r.stdout, 'base64').toString();
  };

  afterAll(() => {
    run(['uninstall', release, '--ignore-not-found']);
  });

  test('CRDs upgrade with the release and stay after uninstall, with their objects; the pooler password survives upgrades', async () => {
    // The CRDs exist already (applied from crds/, as a user without Helm would): the release takes them over.
    const install = run(['install', release, CHART, '--take-ownership', '--set', 'pooler.enabled=true']);
    expect(install.stderr).toBe('');
    expect(install.status).toBe(0);
    expect(install.stdout).toContain(`configSecretRef: {namespace: ${ns}, name: default-pooler}`);
    const crd = kubectl(['get', 'crd', 'tenantdatabases.tenantdb.dev', '-o', 'json']);
    const meta = (JSON.parse(crd.stdout) as { metadata: k8s.V1ObjectMeta }).metadata;
    expect(meta.annotations?.['meta.helm.sh/release-name']).toBe(release);
    expect(meta.annotations?.['helm.sh/resource-policy']).toBe('keep');
    for (const o of [
      `deployment/${prefix}-operator`,
      `deployment/${prefix}-pgbouncer`,
      `service/${prefix}-pgbouncer`,
      `pdb/${prefix}-operator`,
    ])
      expect(`${o} ${exists([o, '-n', ns])}`).toBe(`${o} true`);
    const password = adminPassword();

    const upgrade = run(['upgrade', release, CHART, '--reuse-values', '--set', 'watchNamespaces={chart-team-a}']);
    expect(upgrade.stderr).toBe('');
    expect(upgrade.status).toBe(0);
    expect(adminPassword()).toBe(password);
    expect(exists(['role', `${prefix}-operator`, '-n', 'chart-team-a'])).toBe(true);
    const clusterRole = JSON.parse(kubectl(['get', 'clusterrole', `${prefix}-operator`, '-o', 'json']).stdout) as k8s.V1ClusterRole;
    expect(clusterRole.rules?.some((r) => r.resources?.includes('secrets'))).toBe(false);

    await apply(c.kc, [
      {
        apiVersion: 'tenantdb.dev/v1alpha1',
        kind: 'IpWhitelist',
        metadata: { name: 'kept', namespace: 'chart-team-a' },
        spec: { tenantDatabaseRef: { name: 'none' }, entries: [{ cidr: '10.1.0.0/16', description: 'office' }] },
      } as k8s.KubernetesObject,
    ]);
    const uninstall = run(['uninstall', release]);
    expect(uninstall.status).toBe(0);
    expect(uninstall.stdout + uninstall.stderr).toMatch(/kept due to the resource policy/);
    expect(exists([`deployment/${prefix}-operator`, '-n', ns])).toBe(false);
    expect(exists([`clusterrole/${prefix}-operator`])).toBe(false);
    expect(exists(['role', `${prefix}-operator`, '-n', 'chart-team-a'])).toBe(false);
    for (const name of ['postgresservers', 'tenantdatabases', 'ipwhitelists']) expect(exists([`crd/${name}.tenantdb.dev`])).toBe(true);
    expect(exists(['ipwhitelist', 'kept', '-n', 'chart-team-a'])).toBe(true);
    kubectl(['delete', 'ipwhitelist', 'kept', '-n', 'chart-team-a', '--wait=false']);
  });
});
