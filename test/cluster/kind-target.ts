/**
 * The kind side of the cluster tests. scripts/kind-e2e.sh made the cluster, built the images with
 * Docker and loaded them onto its nodes, and runs PostgreSQL in a pod; it says so in TENANTDB_E2E_*
 * variables. tenantdb is installed here as on the real node (installTenantdb), and the cluster is
 * described for the tests (TargetInfo).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { helmRunner } from '../env/helm.js';
import { chartImageValues, installTenantdb } from '../env/node-tenantdb.js';
import { kubectlRunner, type TargetInfo } from './target.js';

/** What kind-e2e.sh hands over. */
export interface KindEnv {
  kubeconfig: string;
  kubectl: string;
  helm: string;
  docker: string;
  appImage: string;
  pgbouncerImage: string;
  clientImage: string;
  postgres: {
    /** As pods reach it (a Service's DNS name). */
    host: string;
    port: number;
    admin: { user: string; password: string };
    /** Its pod, for the tests' superuser queries over the server's own socket. */
    namespace: string;
    pod: string;
    superuser: string;
  };
}

/** Reads kind-e2e.sh's variables; names every one that is missing or wrong. */
export function kindEnv(env: Record<string, string | undefined>): KindEnv {
  const missing: string[] = [];
  const need = (name: string): string => {
    const v = env[name];
    if (!v) missing.push(name);
    return v ?? '';
  };
  const kubeconfig = need('KUBECONFIG');
  const appImage = need('TENANTDB_E2E_APP_IMAGE');
  const pgbouncerImage = need('TENANTDB_E2E_PGBOUNCER_IMAGE');
  const clientImage = need('TENANTDB_E2E_CLIENT_IMAGE');
  const host = need('TENANTDB_E2E_PG_HOST');
  const user = need('TENANTDB_E2E_PG_ADMIN_USER');
  const password = need('TENANTDB_E2E_PG_ADMIN_PASSWORD');
  const podRef = need('TENANTDB_E2E_PG_POD');
  const port = Number(env.TENANTDB_E2E_PG_PORT ?? '5432');
  if (missing.length) throw new Error(`the kind target needs ${missing.join(', ')} (scripts/kind-e2e.sh sets them)`);
  if (kubeconfig.includes(':')) throw new Error('KUBECONFIG must name one file');
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`TENANTDB_E2E_PG_PORT is not a port: ${env.TENANTDB_E2E_PG_PORT}`);
  const [namespace = '', pod = '', ...rest] = podRef.split('/');
  if (!namespace || !pod || rest.length) throw new Error(`TENANTDB_E2E_PG_POD must be <namespace>/<pod>: ${podRef}`);
  return {
    kubeconfig,
    kubectl: env.TENANTDB_KUBECTL ?? 'kubectl',
    helm: env.TENANTDB_HELM ?? 'helm',
    docker: env.TENANTDB_DOCKER ?? 'docker',
    appImage,
    pgbouncerImage,
    clientImage,
    postgres: { host, port, admin: { user, password }, namespace, pod, superuser: env.TENANTDB_E2E_PG_SUPERUSER ?? 'postgres' },
  };
}

/** Installs tenantdb on the kind cluster; the cluster itself belongs to kind-e2e.sh. */
export async function setUpKind(o: {
  dir: string;
  log: (s: string) => void;
  env: Record<string, string | undefined>;
}): Promise<TargetInfo> {
  const k = kindEnv(o.env);
  mkdirSync(o.dir, { recursive: true });
  const kubectlIn = kubectlRunner(k.kubectl, k.kubeconfig, o.dir);
  const imageValues = chartImageValues(k.appImage, k.pgbouncerImage);
  const { poolerHost } = await installTenantdb(
    {
      kubeconfig: k.kubeconfig,
      kubectl: (...args) => kubectlIn('', ...args),
      helm: helmRunner(k.helm, k.kubeconfig, join(o.dir, 'helm')),
      imageValues,
      postgres: { host: k.postgres.host, port: k.postgres.port, admin: k.postgres.admin },
      clusterDns: true,
    },
    { log: o.log },
  );
  return {
    name: 'kind',
    dir: o.dir,
    kubeconfig: k.kubeconfig,
    kubectl: k.kubectl,
    helm: k.helm,
    imageValues,
    clientImage: k.clientImage,
    poolerHost,
    runtime: { docker: k.docker },
    superuser: { namespace: k.postgres.namespace, pod: k.postgres.pod, user: k.postgres.superuser },
  };
}
