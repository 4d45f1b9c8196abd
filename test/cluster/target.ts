/**
 * The cluster the end-to-end checks run against, behind one small interface: the real node of
 * test/env/node.ts (`npm run test:cluster`), or a kind cluster that scripts/kind-e2e.sh made with
 * Docker. Global set-up describes the cluster in a JSON file (jest runs the tests in another
 * context); `openTarget` turns that description back into the few things the tests do with it.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';

/** What the checks need to know of a cluster, as global set-up writes it. */
export interface TargetInfo {
  name: 'node' | 'kind';
  /** A folder of this run for kubectl's and helm's caches. */
  dir: string;
  kubeconfig: string;
  kubectl: string;
  helm: string;
  /** helm install/upgrade arguments that point the chart at the images the nodes hold. */
  imageValues: string[];
  /** The image of the application pods: a shell and psql, present on the nodes (pullPolicy Never). */
  clientImage: string;
  /** What the tenants' DATABASE_URL names as the pooler: the Service's ClusterIP, or its DNS name. */
  poolerHost: string;
  /** How the nodes' containerd is reached: the real node's socket, or `docker exec` into a kind node. */
  runtime: { containerdSocket: string } | { docker: string };
  /** PostgreSQL as its superuser: directly from the tests' process, or by `kubectl exec` into its pod. */
  superuser: { host: string; port: number; user: string; password: string } | { namespace: string; pod: string; user: string };
}

export interface ClusterTarget {
  info: TargetInfo;
  kubectl: (...args: string[]) => string;
  /** kubectl with `input` on its standard input (`apply -f -`). */
  kubectlIn: (input: string, ...args: string[]) => string;
  helm: (...args: string[]) => string;
  /**
   * Kills a pod as a crash would: SIGKILL to its containers through the node's containerd (nothing
   * runs its shutdown, a Lease is not handed back), then the pod is deleted so that it is not restarted.
   */
  killPod: (namespace: string, name: string) => void;
  /** The first column of each row of a query run as PostgreSQL's superuser. */
  superuserQuery: (sql: string) => Promise<string[]>;
}

/** `ctr` in the k8s.io namespace of one node's containerd. */
type NodeCtr = (node: string, ...args: string[]) => string;

function run(cmd: string, args: string[], input?: string, env?: NodeJS.ProcessEnv): string {
  return execFileSync(cmd, args, {
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
    maxBuffer: 64 << 20,
    ...(input === undefined ? {} : { input }),
    ...(env ? { env } : {}),
  });
}

/** The container IDs of `{.status.containerStatuses[*].containerID}` (`containerd://<id>`). */
export function containerIds(statuses: string): string[] {
  return statuses
    .split(/\s+/)
    .filter(Boolean)
    .map((s) => {
      const m = /^containerd:\/\/([0-9a-f]+)$/.exec(s);
      if (!m?.[1]) throw new Error(`not a containerd container ID: ${s}`);
      return m[1];
    });
}

function nodeCtr(runtime: TargetInfo['runtime']): NodeCtr {
  if ('containerdSocket' in runtime) {
    const sock = runtime.containerdSocket;
    // One node: the host's own containerd.
    return (_node, ...args) => run('ctr', ['-a', sock, '-n', 'k8s.io', ...args]);
  }
  // A kind node is a container named as the node; containerd runs inside with its default socket.
  const docker = runtime.docker;
  return (node, ...args) => run(docker, ['exec', node, 'ctr', '-n', 'k8s.io', ...args]);
}

/** kubectl against one cluster, its cache in `dir`; the first argument is its standard input. */
export function kubectlRunner(bin: string, kubeconfig: string, dir: string): (input: string, ...args: string[]) => string {
  const env = { ...process.env, KUBECACHEDIR: join(dir, 'kubectl-cache') };
  return (input, ...args) => run(bin, ['--kubeconfig', kubeconfig, ...args], input, env);
}

export function openTarget(info: TargetInfo): ClusterTarget {
  const kubectlIn = kubectlRunner(info.kubectl, info.kubeconfig, info.dir);
  const kubectl = (...args: string[]) => kubectlIn('', ...args);
  const helmEnv = {
    ...process.env,
    HELM_CACHE_HOME: join(info.dir, 'helm/cache'),
    HELM_CONFIG_HOME: join(info.dir, 'helm/config'),
    HELM_DATA_HOME: join(info.dir, 'helm/data'),
  };
  const helm = (...args: string[]) => run(info.helm, ['--kubeconfig', info.kubeconfig, ...args], '', helmEnv);
  const ctr = nodeCtr(info.runtime);
  const su = info.superuser;

  return {
    info,
    kubectl,
    kubectlIn,
    helm,
    killPod: (namespace, name) => {
      const node = kubectl('get', 'pod', name, '-n', namespace, '-o', 'jsonpath={.spec.nodeName}').trim();
      const ids = containerIds(kubectl('get', 'pod', name, '-n', namespace, '-o', 'jsonpath={.status.containerStatuses[*].containerID}'));
      if (!node || ids.length === 0) throw new Error(`pod ${namespace}/${name} runs no container to kill`);
      for (const id of ids) ctr(node, 'tasks', 'kill', '--signal', 'SIGKILL', id);
      kubectl('delete', 'pod', name, '-n', namespace, '--grace-period=0', '--force');
    },
    superuserQuery: async (sql) => {
      if ('pod' in su) {
        // The server's own socket inside its pod (trusted there); -A -t: one row per line.
        const out = kubectl('exec', '-n', su.namespace, su.pod, '--', 'psql', '-U', su.user, '-d', 'postgres', '-XAtc', sql);
        return out.split('\n').filter(Boolean);
      }
      const c = new pg.Client({ host: su.host, port: su.port, user: su.user, password: su.password, database: 'postgres' });
      await c.connect();
      try {
        const rows = (await c.query<unknown[]>({ text: sql, rowMode: 'array' })).rows;
        return rows.map((r) => String(r[0]));
      } finally {
        await c.end();
      }
    },
  };
}
