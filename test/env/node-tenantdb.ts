/**
 * tenantdb on a real node, as a platform team installs it: the chart from charts/ with the images
 * of build-images.sh, in a namespace that enforces the `restricted` Pod Security Standard; a
 * PostgreSQL on the host for the tenants; PgBouncer with the pooler agent as a native sidecar; and
 * the PostgresServer "default" that ties them together. Used by `npm run dev:cluster` and the
 * cluster tests.
 */
import * as k8s from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { OPERATOR_NAMESPACE, ROOT, apply } from './cluster.js';
import { POD_CIDR, startNode, type NodeCluster } from './node.js';
import { waitFor } from './ports.js';
import { startPostgres, type PgServer } from './postgres.js';

export const RELEASE = 'tenantdb';
export const POOLER_NAME = 'pgbouncer';
export const POOLER_ADMIN_SECRET = 'pgbouncer-admin';
export const PG_ADMIN_SECRET = 'pg-admin';

export interface TenantdbCluster {
  node: NodeCluster;
  pg: PgServer;
  kc: k8s.KubeConfig;
  /** The PgBouncer Service's ClusterIP (no cluster DNS on this node: tenants get the address). */
  poolerHost: string;
  helm(...args: string[]): string;
  helmPath: string;
  /** helm install/upgrade arguments that point the chart at the local images. */
  imageValues: string[];
  stop(): Promise<void>;
}

export interface TenantdbClusterOptions {
  dir: string;
  log?: (s: string) => void;
  /** The PostgresServer's alwaysAllowedCidrs (the pooler then lets these in whatever the IpWhitelists say). */
  alwaysAllowedCidrs?: string[];
  /** More `helm install` arguments. */
  helmArgs?: string[];
}

export function helmBinary(): string {
  return execFileSync('bash', [join(ROOT, 'scripts/build-helm.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    .trim()
    .split('\n')
    .pop()!;
}

/** A namespace that enforces the `restricted` Pod Security Standard. */
export function restrictedNamespace(name: string): k8s.KubernetesObject {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name,
      labels: {
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
        'pod-security.kubernetes.io/warn': 'restricted',
      },
    },
  };
}

/** PgBouncer (Debian stable's) with the tenantdb agent as a native sidecar, and its Service. */
export function poolerManifests(o: {
  namespace: string;
  app: { repository: string; tag: string };
  pgbouncer: { repository: string; tag: string };
  adminPassword: string;
}): k8s.KubernetesObject[] {
  const labels = { 'app.kubernetes.io/name': 'tenantdb', 'app.kubernetes.io/component': 'pgbouncer' };
  const restricted = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };
  const ini = [
    '[pgbouncer]',
    'listen_addr = 0.0.0.0',
    'listen_port = 6432',
    // No unix socket, pid file or log file: the root filesystem is read-only.
    'unix_socket_dir =',
    'auth_type = hba',
    'auth_file = /etc/pgbouncer/tenantdb/userlist.txt',
    'auth_hba_file = /etc/pgbouncer/tenantdb/hba.conf',
    'admin_users = tenantdb_pooler',
    'max_client_conn = 1000',
    'ignore_startup_parameters = extra_float_digits',
    'server_login_retry = 2',
    'max_prepared_statements = 100',
    '%include /etc/pgbouncer/tenantdb/databases.ini',
    '',
  ].join('\n');
  return [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: POOLER_ADMIN_SECRET, namespace: o.namespace },
      stringData: { username: 'tenantdb_pooler', password: o.adminPassword },
    },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: POOLER_NAME, namespace: o.namespace }, data: { 'pgbouncer.ini': ini } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: POOLER_NAME, namespace: o.namespace, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'tenantdb-pooler-agent',
            // One user for both containers: PgBouncer reads the files the agent writes.
            securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
            initContainers: [
              {
                // A native sidecar: it starts first and stays; PgBouncer starts once its files exist.
                name: 'agent',
                image: `${o.app.repository}:${o.app.tag}`,
                imagePullPolicy: 'Never',
                restartPolicy: 'Always',
                args: [
                  'agent',
                  '--mode=pgbouncer',
                  `--secret=${o.namespace}/default-pooler`,
                  '--dir=/etc/pgbouncer/tenantdb',
                  '--pgbouncer-port=6432',
                ],
                env: [
                  { name: 'TENANTDB_POOLER_ADMIN_USER', valueFrom: { secretKeyRef: { name: POOLER_ADMIN_SECRET, key: 'username' } } },
                  { name: 'TENANTDB_POOLER_ADMIN_PASSWORD', valueFrom: { secretKeyRef: { name: POOLER_ADMIN_SECRET, key: 'password' } } },
                ],
                startupProbe: {
                  exec: { command: ['test', '-s', '/etc/pgbouncer/tenantdb/databases.ini'] },
                  periodSeconds: 1,
                  failureThreshold: 120,
                },
                volumeMounts: [{ name: 'tenantdb', mountPath: '/etc/pgbouncer/tenantdb' }],
                resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '192Mi' } },
                securityContext: restricted,
              },
            ],
            containers: [
              {
                name: 'pgbouncer',
                image: `${o.pgbouncer.repository}:${o.pgbouncer.tag}`,
                imagePullPolicy: 'Never',
                args: ['/etc/pgbouncer/pgbouncer.ini'],
                ports: [{ name: 'pgbouncer', containerPort: 6432 }],
                readinessProbe: { tcpSocket: { port: 'pgbouncer' }, periodSeconds: 2 },
                volumeMounts: [
                  { name: 'config', mountPath: '/etc/pgbouncer/pgbouncer.ini', subPath: 'pgbouncer.ini' },
                  { name: 'tenantdb', mountPath: '/etc/pgbouncer/tenantdb', readOnly: true },
                ],
                resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '128Mi' } },
                securityContext: restricted,
              },
            ],
            volumes: [
              { name: 'config', configMap: { name: POOLER_NAME } },
              { name: 'tenantdb', emptyDir: {} },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: POOLER_NAME, namespace: o.namespace, labels },
      spec: { type: 'ClusterIP', selector: labels, ports: [{ name: 'pgbouncer', port: 6432, targetPort: 'pgbouncer' }] },
    },
  ] as unknown as k8s.KubernetesObject[];
}

export async function waitReady(
  kc: k8s.KubeConfig,
  kind: { group: string; plural: string },
  namespace: string | undefined,
  name: string,
  timeoutMs = 120_000,
): Promise<void> {
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  await waitFor(
    `${kind.plural} ${namespace ? `${namespace}/` : ''}${name} Ready`,
    async () => {
      const o = (
        namespace
          ? await custom.getNamespacedCustomObject({ group: kind.group, version: 'v1alpha1', namespace, plural: kind.plural, name })
          : await custom.getClusterCustomObject({ group: kind.group, version: 'v1alpha1', plural: kind.plural, name })
      ) as { status?: { conditions?: { type: string; status: string }[] } };
      return o.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    },
    timeoutMs,
    500,
  );
}

export async function startTenantdbCluster(o: TenantdbClusterOptions): Promise<TenantdbCluster> {
  const log = o.log ?? (() => undefined);
  const node = await startNode({ dir: o.dir, log });
  let pg: PgServer | undefined;
  try {
    log(`starting PostgreSQL for the tenants on ${node.address} ...`);
    pg = await startPostgres({
      listenAddresses: `127.0.0.1,${node.address}`,
      hbaLines: [`host all all ${POD_CIDR} scram-sha-256`],
      detached: true,
    });
    node.addCleanup(pg.dir);
    const helmBin = helmBinary();
    const helmHome = join(node.dir, 'helm');
    mkdirSync(helmHome, { recursive: true });
    const helm = (...args: string[]) =>
      execFileSync(helmBin, ['--kubeconfig', node.kubeconfig, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        cwd: ROOT,
        env: {
          ...process.env,
          HELM_CACHE_HOME: join(helmHome, 'cache'),
          HELM_CONFIG_HOME: join(helmHome, 'config'),
          HELM_DATA_HOME: join(helmHome, 'data'),
        },
      });
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(node.kubeconfig);

    log(`helm install ${RELEASE} charts/tenantdb in ${OPERATOR_NAMESPACE} (Pod Security: restricted) ...`);
    await apply(kc, [restrictedNamespace(OPERATOR_NAMESPACE)]);
    const imageValues = [
      `--set=image.repository=${node.images.app.repository}`,
      `--set=image.tag=${node.images.app.tag}`,
      '--set=image.pullPolicy=Never',
    ];
    helm(
      'install',
      RELEASE,
      join(ROOT, 'charts/tenantdb'),
      '-n',
      OPERATOR_NAMESPACE,
      ...imageValues,
      ...(o.helmArgs ?? []),
      '--wait',
      '--timeout=5m',
    );

    log('starting PgBouncer with the pooler agent ...');
    const poolerAdminPassword = randomBytes(18).toString('base64url');
    await apply(
      kc,
      poolerManifests({
        namespace: OPERATOR_NAMESPACE,
        app: node.images.app,
        pgbouncer: node.images.pgbouncer,
        adminPassword: poolerAdminPassword,
      }),
    );
    const poolerHost = node.kubectl('get', 'service', POOLER_NAME, '-n', OPERATOR_NAMESPACE, '-o', 'jsonpath={.spec.clusterIP}').trim();

    log('creating the PostgresServer "default" ...');
    await apply(kc, [
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: PG_ADMIN_SECRET, namespace: OPERATOR_NAMESPACE },
        stringData: { username: pg.admin.user, password: pg.admin.password },
      } as k8s.KubernetesObject,
      {
        apiVersion: 'tenantdb.dev/v1alpha1',
        kind: 'PostgresServer',
        metadata: { name: 'default' },
        spec: {
          host: node.address,
          port: pg.port,
          sslMode: 'disable',
          default: true,
          adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: PG_ADMIN_SECRET },
          pooler: { host: poolerHost, port: 6432, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: POOLER_ADMIN_SECRET } },
          allowedExtensions: ['pgcrypto', 'citext', 'hstore', 'uuid-ossp'],
          ...(o.alwaysAllowedCidrs ? { alwaysAllowedCidrs: o.alwaysAllowedCidrs } : {}),
        },
      } as k8s.KubernetesObject,
    ]);
    node.kubectl('rollout', 'status', `deployment/${POOLER_NAME}`, '-n', OPERATOR_NAMESPACE, '--timeout=300s');
    await waitReady(kc, { group: 'tenantdb.dev', plural: 'postgresservers' }, undefined, 'default');
    const started = pg;
    return {
      node,
      pg: started,
      kc,
      poolerHost,
      helm,
      helmPath: helmBin,
      imageValues,
      stop: async () => {
        // Pods first (the kubelet tears them down), then PostgreSQL, then the node and the host.
        log('stopping the pods ...');
        await node.stopPods().catch((e: unknown) => log(e instanceof Error ? e.message : String(e)));
        await started.stop();
        await node.stop();
      },
    };
  } catch (err) {
    await node.stopPods().catch(() => undefined);
    await pg?.stop();
    await node.stop().catch((e: unknown) => log(e instanceof Error ? e.message : String(e)));
    throw err;
  }
}
