/**
 * A real single-node Kubernetes on this machine: the control plane of controlplane.ts serving on
 * the host's address, kube-scheduler, containerd with runc and the CNI bridge, the kubelet and
 * kube-proxy (iptables), with the images of scripts/build-images.sh imported. No registry is used:
 * pods run images that are already there (imagePullPolicy Never). See host.ts for what it changes
 * on the host and how that is put back.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from './controlplane.js';
import { ROOT } from './cluster.js';
import { freePort, waitFor } from './ports.js';
import { startProcess, type Proc } from './process.js';
import { ctr, lockHost, recordHost, restoreHost, saveHostState, stateFile, type HostState } from './host.js';

/** The pod network: its own bridge and subnet, so that nothing else on the host is touched. */
export const BRIDGE = 'tenantdb0';
export const POD_CIDR = '10.89.0.0/24';
export const POD_GATEWAY = '10.89.0.1';
export const SERVICE_CIDR = '10.0.0.0/24';
export const NODE_NAME = 'tenantdb-node';
/** What a run keeps in its folder besides its logs. */
const RUN_DATA = ['cluster', 'containerd', 'cni', 'kubelet', 'kubelet-plugins', 'pod-logs', 'kubectl-cache', 'helm'];
/** Daemons in their own process group: a terminal's Ctrl-C reaches only the harness, which stops the pods first. */
const DETACHED = { detached: true };

export interface Images {
  /** Full name → archive, as build-images.sh prints them. */
  archives: Record<string, string>;
  /** The operator and agent image, as a chart names it (repository:tag). */
  app: { repository: string; tag: string };
  /** The PgBouncer image. */
  pgbouncer: { repository: string; tag: string };
  /** psql for the application pods of the tests. */
  client: { repository: string; tag: string };
}

export interface NodeCluster {
  dir: string;
  /** The host's address: the API server, the node and host services (PostgreSQL) are reached there. */
  address: string;
  cp: ControlPlane;
  kubeconfig: string;
  /** containerd's socket (`ctr -a`). */
  containerdSocket: string;
  images: Images;
  kubectl(...args: string[]): string;
  /** Adds a folder to remove at teardown (a server's data outside the run folder). */
  addCleanup(dir: string): void;
  /** Deletes every pod and waits until the kubelet has torn them down. */
  stopPods(): Promise<void>;
  /** Stops the pods, the node and the control plane, and restores the host; throws if it differs. */
  stop(): Promise<void>;
}

export interface NodeOptions {
  dir: string;
  log?: (s: string) => void;
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20, ...opts });
}

/** The address of the interface that holds the default route. */
export function hostAddress(): string {
  const routes = JSON.parse(run('ip', ['-j', 'route', 'show', 'default'])) as { dev?: string }[];
  const dev = routes[0]?.dev;
  if (!dev) throw new Error('no default route: cannot tell the address pods reach the host at');
  const addrs = JSON.parse(run('ip', ['-j', '-4', 'addr', 'show', 'dev', dev])) as { addr_info?: { local?: string; scope?: string }[] }[];
  const a = addrs[0]?.addr_info?.find((i) => i.scope === 'global')?.local;
  if (!a) throw new Error(`no IPv4 address on ${dev}`);
  return a;
}

/** Builds (or finds cached) the node binaries; returns their folder. */
export function nodeBinaries(): string {
  return (
    run('bash', [join(ROOT, 'scripts/build-node.sh')])
      .trim()
      .split('\n')
      .pop() ?? ''
  );
}

/** Builds (or finds cached) the images; returns their names and archives. */
export function buildImages(): Images {
  const archives: Record<string, string> = {};
  for (const line of run('bash', [join(ROOT, 'scripts/build-images.sh')])
    .trim()
    .split('\n')) {
    const [ref, file] = line.split(' ');
    if (ref && file) archives[ref] = file;
  }
  const short = (ref: string) => {
    const name = ref.replace(/^docker\.io\/library\//, '');
    const i = name.lastIndexOf(':');
    return { repository: name.slice(0, i), tag: name.slice(i + 1) };
  };
  const app = Object.keys(archives).find((r) => /\/tenantdb:/.test(r));
  const pgb = Object.keys(archives).find((r) => /\/tenantdb-pgbouncer:/.test(r));
  const client = Object.keys(archives).find((r) => /\/tenantdb-psql:/.test(r));
  if (!app || !pgb || !client) throw new Error('build-images.sh did not name the tenantdb, tenantdb-pgbouncer and tenantdb-psql images');
  return { archives, app: short(app), pgbouncer: short(pgb), client: short(client) };
}

/** Debian packages of the node; installed when missing, like scripts/setup.sh does. */
export function ensureNodePackages(): void {
  run('bash', [
    '-c',
    `. ${join(ROOT, 'scripts/apt-ensure.sh')} && apt_ensure containerd runc containernetworking-plugins iptables conntrack`,
  ]);
}

function containerdConfig(r: string): string {
  return `version = 2
root = "${r}/containerd/root"
state = "${r}/containerd/state"
[grpc]
  address = "${r}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  # Imported from build-images.sh, never pulled.
  sandbox_image = "localhost/tenantdb-pause:3.10"
  # Without CAP_SYS_RESOURCE runc cannot lower a sandbox's oom_score_adj: clamp it instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${r}/cni/net.d"
`;
}

function cniConfig(r: string): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'tenantdb',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: POD_CIDR, gateway: POD_GATEWAY }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: join(r, 'cni/ipam'),
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(r: string): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://${r}/containerd.sock
cgroupDriver: cgroupfs
failSwapOn: false
# Test-only shortcuts: the API server reaches the kubelet without a client certificate.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
volumePluginDir: ${r}/kubelet-plugins
podLogsDir: ${r}/pod-logs
# Imported images cannot be pulled again.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
`;
}

function kubeProxyConfig(r: string, kubeconfig: string): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: ${POD_CIDR}
hostnameOverride: ${NODE_NAME}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
clientConnection: {kubeconfig: ${kubeconfig}}
# Leave nf_conntrack_max alone.
conntrack: {maxPerCore: 0}
`;
}

/**
 * Brings the node up in dir (a folder of this run only). On failure everything started is stopped
 * and the host restored before the error is thrown.
 */
export async function startNode(o: NodeOptions): Promise<NodeCluster> {
  const log = o.log ?? (() => undefined);
  if (process.getuid?.() !== 0) throw new Error('a real node needs root (containerd, the kubelet and iptables)');
  mkdirSync(o.dir, { recursive: true });
  const dir = realpathSync(o.dir);
  const release = await lockHost(dir, log);
  let state: HostState | undefined;
  const procs: Proc[] = [];
  let cp: ControlPlane | undefined;
  const stopAll = async (): Promise<string[]> => {
    for (const p of procs.splice(0).reverse()) await p.stop('SIGTERM', 5000);
    await cp?.stop();
    cp = undefined;
    return state ? restoreHost(state) : [];
  };
  try {
    ensureNodePackages();
    log('building or finding the node binaries and images (cached) ...');
    const nodeBin = nodeBinaries();
    const images = buildImages();
    const address = hostAddress();

    // Start clean: the folder of an earlier run (its data only; host.ts restored the host).
    for (const d of [...RUN_DATA, 'logs']) rmSync(join(dir, d), { recursive: true, force: true });
    state = recordHost(dir, BRIDGE);
    saveHostState(state);
    const logs = join(dir, 'logs');
    mkdirSync(logs, { recursive: true });

    log(`starting etcd, kube-apiserver (${address}) and kube-controller-manager ...`);
    cp = await startControlPlane(join(dir, 'cluster'), { node: { address } });
    const kubeconfig = cp.adminKubeconfig;
    const kubectlBin = join(cp.binDir, 'kubectl');
    const kubectl = (...args: string[]) =>
      execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, KUBECACHEDIR: join(dir, 'kubectl-cache') },
        maxBuffer: 64 << 20,
      });

    const schedPort = await freePort();
    procs.push(
      startProcess(
        'kube-scheduler',
        join(nodeBin, 'kube-scheduler'),
        [
          `--kubeconfig=${kubeconfig}`,
          `--authentication-kubeconfig=${kubeconfig}`,
          `--authorization-kubeconfig=${kubeconfig}`,
          '--leader-elect=false',
          '--bind-address=127.0.0.1',
          `--secure-port=${schedPort}`,
        ],
        join(logs, 'kube-scheduler.log'),
        DETACHED,
      ),
    );

    log('starting containerd, the kubelet and kube-proxy ...');
    mkdirSync(join(dir, 'cni/net.d'), { recursive: true });
    writeFileSync(join(dir, 'containerd.toml'), containerdConfig(dir));
    writeFileSync(join(dir, 'cni/net.d/10-tenantdb.conflist'), cniConfig(dir));
    writeFileSync(join(dir, 'kubelet.yaml'), kubeletConfig(dir));
    writeFileSync(join(dir, 'kube-proxy.yaml'), kubeProxyConfig(dir, kubeconfig));
    const sock = join(dir, 'containerd.sock');
    procs.push(
      startProcess('containerd', 'containerd', ['--config', join(dir, 'containerd.toml')], join(logs, 'containerd.log'), DETACHED),
    );
    await waitFor('containerd', async () => (ctr(sock, 'version'), true), 30_000, 200);
    for (const [ref, file] of Object.entries(images.archives)) {
      ctr(sock, 'images', 'import', file);
      log(`  imported ${ref}`);
    }
    procs.push(
      startProcess(
        'kubelet',
        join(nodeBin, 'kubelet'),
        [
          `--config=${join(dir, 'kubelet.yaml')}`,
          `--kubeconfig=${kubeconfig}`,
          `--root-dir=${join(dir, 'kubelet')}`,
          `--cert-dir=${join(dir, 'kubelet/pki')}`,
          `--hostname-override=${NODE_NAME}`,
          `--node-ip=${address}`,
        ],
        join(logs, 'kubelet.log'),
        DETACHED,
      ),
    );
    procs.push(
      startProcess(
        'kube-proxy',
        join(nodeBin, 'kube-proxy'),
        [`--config=${join(dir, 'kube-proxy.yaml')}`],
        join(logs, 'kube-proxy.log'),
        DETACHED,
      ),
    );
    await waitFor(
      `node ${NODE_NAME} Ready`,
      async () => kubectl('get', 'node', NODE_NAME, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') === 'True',
      120_000,
      500,
    );
    const started = cp;
    const extra: string[] = [];
    return {
      dir,
      address,
      cp: started,
      kubeconfig,
      containerdSocket: sock,
      images,
      kubectl,
      addCleanup: (d) => {
        extra.push(d);
        if (state) {
          state.extraDirs = [...extra];
          saveHostState(state);
        }
      },
      stopPods: () => {
        log('stopping the pods ...');
        return stopPods(kubectl, sock);
      },
      stop: async () => {
        await stopPods(kubectl, sock).catch((e: unknown) => log(`  ${e instanceof Error ? e.message : String(e)}`));
        log('stopping the node and the control plane, restoring the host ...');
        const left = await stopAll();
        release();
        if (left.length) throw new Error(`the host differs from before the run:\n  ${left.join('\n  ')}`);
        rmSync(stateFile(dir), { force: true });
        // The image file systems and pod folders (hundreds of MB); the logs stay.
        for (const d of RUN_DATA) rmSync(join(dir, d), { recursive: true, force: true });
      },
    };
  } catch (err) {
    const left = await stopAll().catch(() => []);
    release();
    if (left.length) log(`the host differs from before the run:\n  ${left.join('\n  ')}`);
    throw err;
  }
}

/**
 * The kubelet tears pods down properly (CNI DEL, volumes, netns): stop the node taking new pods,
 * delete every pod, and wait until containerd runs no task.
 */
async function stopPods(kubectl: (...a: string[]) => string, sock: string): Promise<void> {
  kubectl('cordon', NODE_NAME);
  kubectl('delete', 'pods', '--all', '--all-namespaces', '--grace-period=1', '--wait=false');
  await waitFor(
    'containerd to run no task',
    async () => {
      const out = ctr(sock, 'tasks', 'ls', '-q').trim();
      if (!out) return true;
      // Pods recreated since (a controller's) are deleted too.
      kubectl('delete', 'pods', '--all', '--all-namespaces', '--grace-period=1', '--wait=false');
      return false;
    },
    90_000,
    1000,
  );
}
