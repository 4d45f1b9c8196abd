/**
 * tenantdb on a real node, as a platform team installs it: the chart from charts/ with its pooler
 * (PgBouncer with the agent as a native sidecar) and the images of build-images.sh, in a namespace
 * that enforces the `restricted` Pod Security Standard; a PostgreSQL on the host for the tenants;
 * and the PostgresServer "default" that ties them together. Used by `npm run dev:cluster` and the
 * cluster tests.
 */
import * as k8s from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { OPERATOR_NAMESPACE, ROOT, apply } from './cluster.js';
import { helmBinary } from './helm.js';
import { POD_CIDR, startNode, type NodeCluster } from './node.js';
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

    log(`helm install ${RELEASE} charts/tenantdb with its pooler in ${OPERATOR_NAMESPACE} (Pod Security: restricted) ...`);
    await apply(kc, [restrictedNamespace(OPERATOR_NAMESPACE)]);
    // The images are on the node already and cannot be pulled: pullPolicy Never.
    const imageValues = [
      `--set=image.repository=${node.images.app.repository}`,
      `--set=image.tag=${node.images.app.tag}`,
      '--set=image.pullPolicy=Never',
      '--set=pooler.enabled=true',
      `--set=pooler.image.repository=${node.images.pgbouncer.repository}`,
      `--set=pooler.image.tag=${node.images.pgbouncer.tag}`,
      '--set=pooler.image.pullPolicy=Never',
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
          // As the chart's NOTES say, with the Service's ClusterIP for its name (no cluster DNS here).
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
