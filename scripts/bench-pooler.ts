/**
 * Prints how long a new tenant takes from apply to a working pooled login, and how long an
 * IpWhitelist change takes from apply to being enforced (and its deletion to reopening), against
 * the real control plane, PostgreSQL, PgBouncer, agent and operator. Figures, not assertions.
 *   npm run bench -- [rounds]
 */
import * as k8s from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { OPERATOR_NAMESPACE, agentKubeconfig, apply } from '../test/env/cluster.js';
import { startOperatorProcess } from '../test/env/operator.js';
import { startPooler } from '../test/env/pgbouncer.js';
import { boundSocket, waitFor } from '../test/env/ports.js';
import { createServerObjects, startSandbox } from '../test/env/sandbox.js';

const rounds = Number(process.argv[2] ?? 5);

async function login(url: string, localAddress = '127.0.0.1'): Promise<boolean> {
  const c = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 2000,
    stream: boundSocket(localAddress),
  });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function timeUntil(fn: () => Promise<boolean>, timeoutMs = 60_000): Promise<number> {
  const t0 = performance.now();
  await waitFor('the condition', async () => (await fn()) || undefined, timeoutMs, 20);
  return performance.now() - t0;
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return `median ${at(0.5).toFixed(0)} ms, min ${(s[0] ?? 0).toFixed(0)} ms, max ${(s[s.length - 1] ?? 0).toFixed(0)} ms (n=${s.length})`;
};

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tenantdb-bench-'));
  const sb = await startSandbox(dir);
  const pooler = await startPooler({
    agentKubeconfig: await agentKubeconfig(sb.cp, join(dir, 'agent.kubeconfig'), 'default-pooler'),
    secret: `${OPERATOR_NAMESPACE}/default-pooler`,
    logDir: dir,
    name: 'bench',
  });
  const op = startOperatorProcess({ kubeconfig: sb.operatorKubeconfig, logFile: join(dir, 'operator.log'), resync: '5m' });
  try {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(sb.cp.adminKubeconfig);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    await apply(kc, [
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'pgbouncer-admin', namespace: OPERATOR_NAMESPACE },
        stringData: { username: pooler.admin.user, password: pooler.admin.password },
      } as k8s.KubernetesObject,
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bench' } },
    ]);
    await createServerObjects(kc, sb.pg, 'default', {
      default: true,
      pooler: { host: pooler.host, port: pooler.port, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'pgbouncer-admin' } },
      // The operator runs on this host and checks each tenant's login, through the pooler too.
      alwaysAllowedCidrs: ['127.0.0.1/32'],
    });
    const pooledUrl = async (name: string) => {
      try {
        const s = await core.readNamespacedSecret({ name: `${name}-db`, namespace: 'bench' });
        return Buffer.from(s.data?.DATABASE_URL ?? '', 'base64').toString('utf8');
      } catch {
        return '';
      }
    };
    // A first tenant warms the operator's connections; it is not measured.
    const tenant = (name: string) =>
      apply(kc, [
        {
          apiVersion: 'tenantdb.dev/v1alpha1',
          kind: 'TenantDatabase',
          metadata: { name, namespace: 'bench' },
          spec: {},
        } as k8s.KubernetesObject,
      ]);
    await tenant('warmup');
    await timeUntil(async () => login(await pooledUrl('warmup')));

    const provision: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const name = `t${i}`;
      const t0 = performance.now();
      await tenant(name);
      await waitFor('a pooled login', async () => (await login(await pooledUrl(name))) || undefined, 60_000, 20);
      provision.push(performance.now() - t0);
    }

    const url = await pooledUrl('warmup');
    const restrict: number[] = [];
    const reopen: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t0 = performance.now();
      await apply(kc, [
        {
          apiVersion: 'tenantdb.dev/v1alpha1',
          kind: 'IpWhitelist',
          metadata: { name: 'wl', namespace: 'bench' },
          spec: { tenantDatabaseRef: { name: 'warmup' }, entries: [{ cidr: '127.0.0.2/32' }] },
        } as k8s.KubernetesObject,
      ]);
      await waitFor('enforcement', async () => !(await login(url, '127.0.0.3')) || undefined, 60_000, 20);
      restrict.push(performance.now() - t0);
      if (!(await login(url, '127.0.0.2'))) throw new Error('the allowed address was refused');
      const t1 = performance.now();
      await custom.deleteNamespacedCustomObject({
        group: 'tenantdb.dev',
        version: 'v1alpha1',
        namespace: 'bench',
        plural: 'ipwhitelists',
        name: 'wl',
      });
      await waitFor('reopening', async () => (await login(url, '127.0.0.3')) || undefined, 60_000, 20);
      reopen.push(performance.now() - t1);
    }
    console.log(`new tenant, apply -> working pooled login:        ${stats(provision)}`);
    console.log(`IpWhitelist apply -> other address refused:       ${stats(restrict)}`);
    console.log(`IpWhitelist delete -> other address accepted:     ${stats(reopen)}`);
  } finally {
    await op.stop();
    await pooler.stop();
    await sb.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
