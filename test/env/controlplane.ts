/**
 * A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC on) and
 * kube-controller-manager (garbage collection, namespaces, service accounts), from the binaries
 * scripts/build-control-plane.sh builds and caches.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { freePort, waitFor } from './ports.js';
import { startProcess, type Proc } from './process.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ControlPlane {
  dir: string;
  server: string;
  caFile: string;
  adminToken: string;
  adminKubeconfig: string;
  binDir: string;
  /** Kills kube-apiserver, waits, starts it again on the same port (etcd keeps the data). */
  restartApiServer(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Builds the binaries if the cache lacks them; returns their folder. */
export function controlPlaneBinaries(): string {
  const out = execFileSync('bash', [join(ROOT, 'scripts/build-control-plane.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  return out.trim().split('\n').pop() ?? '';
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

function makeCerts(dir: string, address?: string): void {
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '30',
      '-subj',
      '/CN=tenantdb-test-ca',
    ],
    dir,
  );
  writeFileSync(
    join(dir, 'server.ext'),
    `subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.0.0.1${address ? `,IP:${address}` : ''}\n` +
      'extendedKeyUsage=serverAuth\n',
  );
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=kube-apiserver'], dir);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.crt',
      '-days',
      '30',
      '-extfile',
      'server.ext',
    ],
    dir,
  );
  openssl(['genrsa', '-out', 'sa.key', '2048'], dir);
  openssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
}

export function kubeconfigYaml(
  server: string,
  caFile: string,
  user: { token: string },
  name = 'tenantdb-test',
  namespace = 'default',
): string {
  const ca = readFileSync(caFile).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    `current-context: ${name}`,
    'clusters:',
    `- name: ${name}`,
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${ca}`,
    'users:',
    `- name: ${name}`,
    '  user:',
    `    token: ${user.token}`,
    'contexts:',
    `- name: ${name}`,
    '  context:',
    `    cluster: ${name}`,
    `    user: ${name}`,
    `    namespace: ${namespace}`,
    '',
  ].join('\n');
}

function httpsGet(url: string, ca: Buffer, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { ca, headers: { Authorization: `Bearer ${token}` }, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

export interface ControlPlaneOptions {
  /**
   * Runs once the API server is up and before kube-controller-manager starts: CRDs installed here
   * are known to the garbage collector from its first discovery, not 30 s later.
   */
  beforeControllers?: (adminKubeconfig: string, binDir: string) => Promise<void>;
  /** More kube-apiserver flags (an audit policy and log, say), kept across restartApiServer. */
  apiServerArgs?: string[];
  /**
   * The control plane of a real node (test/env/node.ts): pods reach the API through the
   * `kubernetes` Service, which points at the advertised address, so the API serves on all
   * addresses, with the Endpoints reconciler, ServiceAccount token mounts and every controller on.
   */
  node?: { address: string };
}

export async function startControlPlane(baseDir?: string, opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = controlPlaneBinaries();
  const dir = baseDir ?? mkdtempSync(join(tmpdir(), 'tenantdb-cp-'));
  mkdirSync(dir, { recursive: true });
  // Keys, the admin token and etcd's data are for this user only.
  chmodSync(dir, 0o700);
  makeCerts(dir, opts.node?.address);
  const adminToken = randomBytes(24).toString('hex');
  writeFileSync(join(dir, 'tokens.csv'), `${adminToken},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });
  const procs: Proc[] = [];
  // A real node's daemons get their own process group: a terminal's Ctrl-C reaches only the
  // harness, which stops the pods before it stops them.
  const spawnOpts = opts.node ? { detached: true } : {};
  const stop = async () => {
    for (const p of procs.reverse()) await p.stop();
  };
  try {
    const [etcdPort, peerPort, apiPort, kcmPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    procs.push(
      startProcess(
        'etcd',
        join(binDir, 'etcd'),
        [
          '--name=default',
          `--data-dir=${join(dir, 'etcd')}`,
          `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
          `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
          `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
          `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
          '--unsafe-no-fsync',
          '--log-level=warn',
        ],
        join(dir, 'etcd.log'),
        spawnOpts,
      ),
    );
    await waitFor('etcd', async () => (await fetch(`http://127.0.0.1:${etcdPort}/health`)).ok, 30_000);
    const node = opts.node;
    const server = `https://${node?.address ?? '127.0.0.1'}:${apiPort}`;
    const apiArgs = [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      ...(node
        ? [
            '--bind-address=0.0.0.0',
            `--advertise-address=${node.address}`,
            '--authorization-mode=Node,RBAC',
            // Else `kubectl logs` looks the node's name up in DNS.
            '--kubelet-preferred-address-types=InternalIP',
          ]
        : [
            '--bind-address=127.0.0.1',
            '--advertise-address=127.0.0.1',
            '--endpoint-reconciler-type=none',
            '--authorization-mode=RBAC',
            '--disable-admission-plugins=ServiceAccount',
          ]),
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${join(dir, 'server.crt')}`,
      `--tls-private-key-file=${join(dir, 'server.key')}`,
      `--client-ca-file=${join(dir, 'ca.crt')}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--profiling=false',
      '--v=0',
      ...(opts.apiServerArgs ?? []),
    ];
    let apiserver = startProcess('kube-apiserver', join(binDir, 'kube-apiserver'), apiArgs, join(dir, 'kube-apiserver.log'), spawnOpts);
    procs.push({
      name: 'kube-apiserver',
      get child() {
        return apiserver.child;
      },
      logFile: apiserver.logFile,
      stop: (sig, t) => apiserver.stop(sig, t),
    });
    const ca = readFileSync(join(dir, 'ca.crt'));
    await waitFor('kube-apiserver /readyz', async () => (await httpsGet(`${server}/readyz`, ca, adminToken)).status === 200, 90_000, 300);
    const adminKubeconfig = join(dir, 'admin.kubeconfig');
    writeFileSync(adminKubeconfig, kubeconfigYaml(server, join(dir, 'ca.crt'), { token: adminToken }), { mode: 0o600 });
    await opts.beforeControllers?.(adminKubeconfig, binDir);
    procs.push(
      startProcess(
        'kube-controller-manager',
        join(binDir, 'kube-controller-manager'),
        [
          `--kubeconfig=${adminKubeconfig}`,
          `--authentication-kubeconfig=${adminKubeconfig}`,
          `--authorization-kubeconfig=${adminKubeconfig}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${kcmPort}`,
          '--leader-elect=false',
          node
            ? '--controllers=*'
            : '--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller',
          `--service-account-private-key-file=${join(dir, 'sa.key')}`,
          `--root-ca-file=${join(dir, 'ca.crt')}`,
          `--use-service-account-credentials=${node ? 'true' : 'false'}`,
          '--concurrent-gc-syncs=5',
          '--v=0',
        ],
        join(dir, 'kube-controller-manager.log'),
        spawnOpts,
      ),
    );
    // The namespace controller must be running before namespaces can be deleted; default SA shows it.
    await waitFor(
      'kube-controller-manager (default ServiceAccount)',
      async () => (await httpsGet(`${server}/api/v1/namespaces/default/serviceaccounts/default`, ca, adminToken)).status === 200,
      90_000,
      300,
    );
    return {
      dir,
      server,
      caFile: join(dir, 'ca.crt'),
      adminToken,
      adminKubeconfig,
      binDir,
      restartApiServer: async (downMs = 1000) => {
        await apiserver.stop('SIGKILL');
        await new Promise((r) => setTimeout(r, downMs));
        apiserver = startProcess('kube-apiserver', join(binDir, 'kube-apiserver'), apiArgs, join(dir, 'kube-apiserver.log'), spawnOpts);
        await waitFor(
          'kube-apiserver /readyz after restart',
          async () => (await httpsGet(`${server}/readyz`, ca, adminToken)).status === 200,
          90_000,
          300,
        );
      },
      stop: async () => {
        await stop();
        if (!baseDir) rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
