/**
 * The local sandbox: a real control plane, a real PostgreSQL, the CRDs, a default PostgresServer,
 * the operator under its ServiceAccount, and the examples applied. Runs until interrupted.
 */
import * as k8s from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { OPERATOR_NAMESPACE, ROOT, agentKubeconfig, apply } from '../test/env/cluster.js';
import { startPooler } from '../test/env/pgbouncer.js';
import { startOperatorProcess } from '../test/env/operator.js';
import { waitFor } from '../test/env/ports.js';
import { createServerObjects, startSandbox } from '../test/env/sandbox.js';
import { kubeconfigYaml } from '../test/env/controlplane.js';

const dev = resolve(ROOT, '.dev');
const say = (s = '') => process.stdout.write(`${s}\n`);
/** Everything started so far, stopped in reverse order on exit or failure. */
const cleanups: (() => Promise<void>)[] = [];
async function cleanup(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
}

async function main(): Promise<void> {
  rmSync(join(dev, 'ready'), { force: true });
  rmSync(join(dev, 'cluster'), { recursive: true, force: true });
  mkdirSync(dev, { recursive: true });
  say('tenantdb sandbox: starting etcd, kube-apiserver, kube-controller-manager and PostgreSQL ...');
  const sb = await startSandbox(dev);
  cleanups.push(() => sb.stop());
  const kubeconfig = join(dev, 'kubeconfig');
  copyFileSync(sb.cp.adminKubeconfig, kubeconfig);
  const bin = join(dev, 'bin');
  mkdirSync(bin, { recursive: true });
  rmSync(join(bin, 'kubectl'), { force: true });
  symlinkSync(join(sb.cp.binDir, 'kubectl'), join(bin, 'kubectl'));
  const kubectl = (...args: string[]) => execFileSync(join(bin, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8' });

  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const pooler = await startPooler({
    agentKubeconfig: await agentKubeconfig(sb.cp, join(dev, 'agent.kubeconfig'), 'default-pooler'),
    secret: `${OPERATOR_NAMESPACE}/default-pooler`,
    logDir: dev,
    name: 'default',
  });
  cleanups.push(() => pooler.stop());
  await apply(kc, [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'pgbouncer-admin', namespace: OPERATOR_NAMESPACE },
      stringData: { username: pooler.admin.user, password: pooler.admin.password },
    } as k8s.KubernetesObject,
  ]);
  await createServerObjects(kc, sb.pg, 'default', {
    default: true,
    pooler: { host: pooler.host, port: pooler.port, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'pgbouncer-admin' } },
    // The operator runs on this host and checks each tenant's login, through the pooler too.
    alwaysAllowedCidrs: ['127.0.0.1/32'],
  });
  // Like a Deployment, the sandbox restarts the operator when it dies (kill it to try a crash).
  const launch = () => startOperatorProcess({ kubeconfig: sb.operatorKubeconfig, logFile: join(dev, 'operator.log'), resync: '30s' });
  let op = launch();
  cleanups.push(() => op.stop());

  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nStopping the operator, the control plane and PostgreSQL ...');
    rmSync(join(dev, 'ready'), { force: true });
    await cleanup();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  const watch = () =>
    op.child.once('exit', (code, signal) => {
      if (stopping) return;
      say(`The operator exited (${signal ?? `code ${code}`}); restarting it. Logs: .dev/operator.log`);
      setTimeout(() => {
        if (stopping) return;
        op = launch();
        watch();
      }, 1000);
    });
  watch();

  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  await waitFor(
    'PostgresServer default to be Ready',
    async () => {
      const s = (await custom.getClusterCustomObject({
        group: 'tenantdb.dev',
        version: 'v1alpha1',
        plural: 'postgresservers',
        name: 'default',
      })) as {
        status?: { conditions?: { type: string; status: string }[] };
      };
      return s.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    },
    60_000,
  );
  say(kubectl('apply', '-f', join(ROOT, 'deploy/examples')).trimEnd());
  // Each team's own identity, confined to its namespace, as a platform would hand it out.
  for (const team of ['team-a', 'team-b']) {
    const token = kubectl('create', 'token', 'team', '-n', team, '--duration=24h').trim();
    writeFileSync(join(dev, `${team}.kubeconfig`), kubeconfigYaml(sb.cp.server, sb.cp.caFile, { token }, team, team), { mode: 0o600 });
  }
  writeFileSync(join(dev, 'ready'), `${new Date().toISOString()}\n`);
  await waitFor(
    'the examples to be Ready',
    async () => {
      const out = kubectl(
        'get',
        'tdb',
        '-A',
        '-o',
        'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
      );
      const states = out.split('\n').filter(Boolean);
      return states.length > 0 && states.every((s) => s === 'True');
    },
    60_000,
  ).catch(() => undefined);

  say('');
  say(kubectl('get', 'pgs,tdb', '-A').trimEnd());
  say('');
  say('The Secret of team-a/orders (password shown as ***):');
  const secret = JSON.parse(kubectl('get', 'secret', 'orders-db', '-n', 'team-a', '-o', 'json')) as { data?: Record<string, string> };
  const data = Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
  const pw = data.password ?? '';
  for (const [k, v] of Object.entries(data).sort(([a], [b]) => a.localeCompare(b))) {
    say(`  ${k.padEnd(20)} ${pw ? v.split(encodeURIComponent(pw)).join('***').split(pw).join('***') : v}`);
  }
  say('');
  say('Try it:');
  say(`  export KUBECONFIG=${kubeconfig} PATH=${bin}:$PATH`);
  say('  kubectl get tdb -A');
  say("  psql \"$(kubectl get secret orders-db -n team-a -o jsonpath='{.data.DATABASE_URL}' | base64 -d)\" -c 'select current_user'");
  say('  kubectl apply -f - <<EOF');
  say('  apiVersion: tenantdb.dev/v1alpha1');
  say('  kind: TenantDatabase');
  say('  metadata: {name: reports, namespace: team-a}');
  say('  spec: {deletionPolicy: Delete}');
  say('  EOF');
  say('As a team, confined to its namespace (its TenantDatabases, IpWhitelists and Secrets only):');
  say('  kubectl --kubeconfig .dev/team-b.kubeconfig get tdb,secrets -n team-b');
  say('  npx tsx src/cli/kubectl-tenantdb.ts status storefront --kubeconfig .dev/team-b.kubeconfig   # the kubectl plugin');
  say(`PgBouncer: 127.0.0.1:${pooler.port} (DATABASE_URL goes through it; DIRECT_URL does not). Agent log: .dev/agent-default.log`);
  say(`Operator logs: ${join(dev, 'operator.log')}; it runs as ServiceAccount tenantdb-system/tenantdb-operator`);
  say('(kubeconfig .dev/operator.kubeconfig) and is restarted when it dies. Stop everything with Ctrl-C.');
  if (!existsSync(join(dev, 'ready'))) throw new Error('sandbox did not become ready');
}

main().catch(async (err: unknown) => {
  process.stderr.write(`tenantdb sandbox failed: ${err instanceof Error ? err.message : String(err)}\n`);
  await cleanup();
  process.exit(1);
});
