/**
 * tenantdb as a platform team installs it (`installTenantdb`, on any cluster): the chart from
 * charts/ with its pooler (PgBouncer with the agent as a native sidecar), in a namespace that
 * enforces the `restricted` Pod Security Standard, and the PostgresServer "default" that ties it to
 * a PostgreSQL. On a real node (`startTenantdbCluster`): the images of build-images.sh and a
 * PostgreSQL on the host. Used by `npm run dev:cluster` and the cluster tests.
 */
import * as k8s from '@kubernetes/client-node';
import { join } from 'node:path';
import { OPERATOR_NAMESPACE, ROOT, apply } from './cluster.js';
import { helmBinary, helmRunner } from './helm.js';
import { POD_CIDR, startNode, type Images, type NodeCluster } from './node.js';
import { waitFor } from './ports.js';
import { startPostgres, type PgServer } from './postgres.js';

export const RELEASE = 'tenantdb';
/** The chart's pooler: its Deployment and Service, and the admin Secret it creates. */
export const POOLER_NAME = `${RELEASE}-pgbouncer`;
export const POOLER_ADMIN_SECRET = `${RELEASE}-pooler-admin`;
export const POOLER_CONFIG_SECRET = 'default-pooler';
export const PG_ADMIN_SECRET = 'pg-admin';

export interface TenantdbCluster {
  node: NodeCluster;
  pg: PgServer;
  kc: k8s.KubeConfig;
  /** The PgBouncer Service's ClusterIP (no cluster DNS on this node: tenants get the address). */
  poolerHost: string;
  /** The containerd socket of the node. */
  containerdSocket: string;
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

/** A cluster to install tenantdb on, and the PostgreSQL its tenants get. */
export interface InstallTarget {
  kubeconfig: string;
  kubectl: (...args: string[]) => string;
  helm: (...args: string[]) => string;
  /** helm install/upgrade arguments that point the chart at the images the nodes hold. */
  imageValues: string[];
  /** PostgreSQL as the operator's and the applications' pods reach it, and its admin (not a superuser). */
  postgres: { host: string; port: number; admin: { user: string; password: string } };
  /** Without cluster DNS the PostgresServer names the pooler Service by its ClusterIP. */
  clusterDns: boolean;
}

export interface InstallOptions {
  log?: (s: string) => void;
  /** The PostgresServer's alwaysAllowedCidrs (the pooler then lets these in whatever the IpWhitelists say). */
  alwaysAllowedCidrs?: string[];
  /** More `helm install` arguments. */
  helmArgs?: string[];
}

/** `repository:tag` of an image reference; the registry, if any, stays in the repository. */
export function splitImage(ref: string): { repository: string; tag: string } {
  const at = ref.lastIndexOf(':');
  if (at <= ref.lastIndexOf('/') || at === ref.length - 1) throw new Error(`image ${ref} has no tag`);
  return { repository: ref.slice(0, at), tag: ref.slice(at + 1) };
}

/** The chart's values for the operator (and agent) image and the PgBouncer image, never pulled. */
export function chartImageValues(app: string, pgbouncer: string): string[] {
  const a = splitImage(app);
  const p = splitImage(pgbouncer);
  return [
    `--set=image.repository=${a.repository}`,
    `--set=image.tag=${a.tag}`,
    '--set=image.pullPolicy=Never',
    '--set=pooler.enabled=true',
    `--set=pooler.image.repository=${p.repository}`,
    `--set=pooler.image.tag=${p.tag}`,
    '--set=pooler.image.pullPolicy=Never',
  ];
}

/** The chart's values for the node's images, which cannot be pulled: pullPolicy Never. */
export function nodeImageValues(images: Images): string[] {
  const name = (i: { repository: string; tag: string }) => `${i.repository}:${i.tag}`;
  return chartImageValues(name(images.app), name(images.pgbouncer));
}

/**
 * `helm install` of the chart with its pooler into tenantdb-system (Pod Security: restricted), then
 * the PostgresServer "default" with the pooler block the chart's notes print, once Ready. Returns
 * the host name the tenants' pooled URLs carry.
 */
export async function installTenantdb(t: InstallTarget, o: InstallOptions = {}): Promise<{ kc: k8s.KubeConfig; poolerHost: string }> {
  const log = o.log ?? (() => undefined);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(t.kubeconfig);
  log(`helm install ${RELEASE} charts/tenantdb with its pooler in ${OPERATOR_NAMESPACE} (Pod Security: restricted) ...`);
  await apply(kc, [restrictedNamespace(OPERATOR_NAMESPACE)]);
  t.helm(
    'install',
    RELEASE,
    join(ROOT, 'charts/tenantdb'),
    '-n',
    OPERATOR_NAMESPACE,
    ...t.imageValues,
    // The test platform consents to migration Jobs (off by default).
    '--set=migrations.jobs=true',
    ...(o.helmArgs ?? []),
    '--wait',
    '--timeout=5m',
  );
  const poolerHost = t.clusterDns
    ? `${POOLER_NAME}.${OPERATOR_NAMESPACE}.svc`
    : t.kubectl('get', 'service', POOLER_NAME, '-n', OPERATOR_NAMESPACE, '-o', 'jsonpath={.spec.clusterIP}').trim();

  log('creating the PostgresServer "default" ...');
  await apply(kc, [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: PG_ADMIN_SECRET, namespace: OPERATOR_NAMESPACE },
      stringData: { username: t.postgres.admin.user, password: t.postgres.admin.password },
    } as k8s.KubernetesObject,
    {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'PostgresServer',
      metadata: { name: 'default' },
      spec: {
        host: t.postgres.host,
        port: t.postgres.port,
        sslMode: 'disable',
        default: true,
        adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: PG_ADMIN_SECRET },
        // As the chart's NOTES say (by the Service's ClusterIP where there is no cluster DNS).
        pooler: {
          host: poolerHost,
          port: 6432,
          adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: POOLER_ADMIN_SECRET },
          configSecretRef: { namespace: OPERATOR_NAMESPACE, name: POOLER_CONFIG_SECRET },
        },
        allowedExtensions: ['pgcrypto', 'citext', 'hstore', 'uuid-ossp'],
        ...(o.alwaysAllowedCidrs ? { alwaysAllowedCidrs: o.alwaysAllowedCidrs } : {}),
      },
    } as k8s.KubernetesObject,
  ]);
  await waitReady(kc, { group: 'tenantdb.dev', plural: 'postgresservers' }, undefined, 'default');
  return { kc, poolerHost };
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
    const helm = helmRunner(helmBin, node.kubeconfig, join(node.dir, 'helm'));
    const imageValues = nodeImageValues(node.images);
    const { kc, poolerHost } = await installTenantdb(
      {
        kubeconfig: node.kubeconfig,
        kubectl: (...args) => node.kubectl(...args),
        helm,
        imageValues,
        // Pods reach the host's PostgreSQL at the host's address.
        postgres: { host: node.address, port: pg.port, admin: pg.admin },
        clusterDns: false,
      },
      {
        log,
        ...(o.alwaysAllowedCidrs ? { alwaysAllowedCidrs: o.alwaysAllowedCidrs } : {}),
        ...(o.helmArgs ? { helmArgs: o.helmArgs } : {}),
      },
    );
    const started = pg;
    return {
      node,
      pg: started,
      kc,
      poolerHost,
      containerdSocket: node.containerdSocket,
      helm,
      helmPath: helmBin,
      imageValues,
      stop: async () => {
        // Pods first (the kubelet tears them down), then PostgreSQL, then the node and the host.
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
