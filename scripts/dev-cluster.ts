/**
 * `npm run dev:cluster`: tenantdb on a real single-node Kubernetes on this machine (kubelet,
 * containerd, kube-proxy, kube-scheduler beside the cached control plane), installed with the Helm
 * chart, with PgBouncer and the examples. Runs until interrupted; then stops everything and puts the
 * host back as it found it. Needs root.
 */
import { copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { OPERATOR_NAMESPACE, ROOT } from '../test/env/cluster.js';
import { POD_CIDR } from '../test/env/node.js';
import { waitFor } from '../test/env/ports.js';
import { startTenantdbCluster, waitReady, type TenantdbCluster } from '../test/env/node-tenantdb.js';
import { restoreFromDir } from '../test/env/host.js';

const dir = resolve(ROOT, '.cluster');
const say = (s = '') => process.stdout.write(`${s}\n`);
const started = Date.now();
const elapsed = () => `${Math.round((Date.now() - started) / 1000)} s`;

async function main(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  rmSync(join(dir, 'ready'), { force: true });
  // Leftovers of a run that was killed before it could clean up.
  const left = await restoreFromDir(dir);
  if (left.length) throw new Error(`the host still differs after an earlier run:\n  ${left.join('\n  ')}`);

  let cluster: TenantdbCluster | undefined;
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    rmSync(join(dir, 'ready'), { force: true });
    say('\nStopping the pods, the node, the control plane and PostgreSQL; restoring the host ...');
    try {
      if (cluster) await cluster.stop();
      else {
        // Interrupted while coming up: stop what was started, from the record in .cluster/.
        const diffs = await restoreFromDir(dir);
        if (diffs.length) throw new Error(`the host differs from before the run:\n  ${diffs.join('\n  ')}`);
      }
      say('Done: the host is as it was.');
    } catch (err) {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      code = code || 1;
    }
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  say('tenantdb on a real node: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy');
  try {
    cluster = await startTenantdbCluster({
      dir,
      log: (s) => say(`[${elapsed()}] ${s}`),
      // The operator checks each tenant's login through PgBouncer from its pod: this node's pods
      // may always log in; IpWhitelists then govern clients from elsewhere.
      alwaysAllowedCidrs: [POD_CIDR],
    });
  } catch (err) {
    stopping = true;
    throw err;
  }
  if (stopping) return;
  const { node } = cluster;
  const kubeconfig = join(dir, 'kubeconfig');
  copyFileSync(node.kubeconfig, kubeconfig);
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  for (const [name, target] of [
    ['kubectl', join(node.cp.binDir, 'kubectl')],
    ['helm', cluster.helmPath],
  ] as const) {
    rmSync(join(bin, name), { force: true });
    symlinkSync(target, join(bin, name));
  }

  say(`[${elapsed()}] applying deploy/examples ...`);
  say(node.kubectl('apply', '--server-side', '-f', join(ROOT, 'deploy/examples')).trimEnd());
  for (const [ns, name] of [
    ['team-a', 'orders'],
    ['team-b', 'storefront'],
  ] as const) {
    await waitReady(cluster.kc, { group: 'tenantdb.dev', plural: 'tenantdatabases' }, ns, name);
  }
  await waitFor('the operator pods to be Ready', async () => {
    const out = node.kubectl(
      'get',
      'pods',
      '-n',
      OPERATOR_NAMESPACE,
      '-o',
      'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
    );
    const s = out.split('\n').filter(Boolean);
    return s.length > 0 && s.every((x) => x === 'True');
  });
  writeFileSync(join(dir, 'ready'), `${new Date().toISOString()}\n`);

  say('');
  say(node.kubectl('get', 'nodes,pods', '-o', 'wide', '-n', OPERATOR_NAMESPACE).trimEnd());
  say('');
  say(node.kubectl('get', 'pgs,tdb', '-A').trimEnd());
  say('');
  say(`Ready in ${elapsed()}. Try it:`);
  say(`  export KUBECONFIG=${kubeconfig} PATH=${bin}:$PATH`);
  say('  kubectl get pods -A');
  const psqlImage = `${node.images.client.repository}:${node.images.client.tag}`;
  const overrides = JSON.stringify({
    spec: {
      containers: [
        {
          name: 'psql',
          image: psqlImage,
          imagePullPolicy: 'Never',
          command: ['sh', '-c', 'psql -XAtc "select current_user" && psql "$DATABASE_URL" -XAtc "select 1"'],
          envFrom: [{ secretRef: { name: 'orders-db' } }],
        },
      ],
    },
  });
  say(`  kubectl -n team-a run psql --restart=Never --image=${psqlImage} --overrides='${overrides}'`);
  say("  kubectl -n team-a wait pod/psql --for=jsonpath='{.status.phase}'=Succeeded && kubectl -n team-a logs psql");
  say(`PostgreSQL for the tenants: ${node.address}:${cluster.pg.port}; PgBouncer: ${cluster.poolerHost}:6432 (its Service).`);
  say(`Logs: ${join(dir, 'logs')} (node), kubectl logs -n ${OPERATOR_NAMESPACE} deploy/tenantdb-operator. Stop with Ctrl-C.`);
}

main().catch(async (err: unknown) => {
  process.stderr.write(`tenantdb dev:cluster failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
