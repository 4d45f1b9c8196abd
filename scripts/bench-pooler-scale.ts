/**
 * How the sharded pooler config behaves at scale, against the real API server, the real agent and
 * the real PgBouncer: renders N tenants (each with a verifier of the real shape, a quarter with small
 * allow-lists), writes the shards and the index with the operator's own code, and prints the shards
 * and their sizes, the render time, the time until the agent applied the config and PgBouncer's
 * SHOW DATABASES lists every tenant, PgBouncer's RSS, and how many shards one more tenant rewrites.
 * Figures, not assertions.
 *   npm run bench:pooler-scale -- [N] [shard bytes]
 */
import * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PostgresServer } from '../src/api/postgresserver.js';
import type { OperatorContext } from '../src/controllers/context.js';
import { MANAGED_BY, MANAGED_BY_LABEL } from '../src/controllers/context.js';
import { showDatabases } from '../src/pg/pgbouncer-console.js';
import { writePoolerShards } from '../src/controllers/postgresserver/pooler-shards.js';
import { makeClients } from '../src/kube/client.js';
import type { PoolerInput, PoolerTenant } from '../src/pooler/render.js';
import { DEFAULT_SHARD_BYTES, renderPoolerShards } from '../src/pooler/shards.js';
import { AGENT_APPLIED_ANNOTATION, AGENT_ERROR_ANNOTATION } from '../src/pooler/contract.js';
import { resilientInformer } from '../src/runtime/informer.js';
import { createLogger } from '../src/runtime/logger.js';
import { OPERATOR_NAMESPACE, agentKubeconfig } from '../test/env/cluster.js';
import { startPooler } from '../test/env/pgbouncer.js';
import { waitFor } from '../test/env/ports.js';
import { createServerObjects, startSandbox } from '../test/env/sandbox.js';

const n = Number(process.argv[2] ?? 20_000);
const budget = Number(process.argv[3] ?? DEFAULT_SHARD_BYTES);
const INDEX = 'default-pooler';

/** A verifier of the real shape and size (random keys: no login is made with it). */
const verifier = () =>
  `SCRAM-SHA-256$4096:${randomBytes(16).toString('base64')}$${randomBytes(32).toString('base64')}:${randomBytes(32).toString('base64')}`;

function tenant(i: number): PoolerTenant {
  const name = `team_${i % 250}_service_${i}`;
  const cidrs = [`10.${(i >> 8) & 255}.${i & 255}.0/24`, `203.0.113.${i % 256}/32`, `2001:db8:${(i % 65536).toString(16)}::/48`];
  return {
    alias: name,
    database: name,
    role: name,
    verifier: verifier(),
    poolMode: 'transaction',
    poolSize: 10,
    maxDbConnections: 0,
    maxClientConnections: 100,
    allowedCidrs: i % 4 === 0 ? cidrs.slice(0, 1 + (i % 3)) : undefined,
  };
}

const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
const ms = (t: number) => `${t.toFixed(0)} ms`;

function rssOf(pid: number | undefined): string {
  if (!pid) return 'unknown';
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? `${(Number(m[1]) / 1024).toFixed(1)} MiB` : 'unknown';
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tenantdb-bench-scale-'));
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
  const sb = await startSandbox(dir);
  const pooler = await startPooler({
    agentKubeconfig: await agentKubeconfig(sb.cp, join(dir, 'agent.kubeconfig'), INDEX),
    secret: `${OPERATOR_NAMESPACE}/${INDEX}`,
    logDir: dir,
    name: 'bench-scale',
  });
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(sb.operatorKubeconfig); // the operator's identity and RBAC
  const clients = makeClients(kc);
  const secrets = resilientInformer<k8s.V1Secret>(
    kc,
    '/api/v1/secrets',
    () => clients.core.listSecretForAllNamespaces({ labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` }),
    { onChange: () => undefined },
    log,
    `${MANAGED_BY_LABEL}=${MANAGED_BY}`,
  );
  try {
    const admin = new k8s.KubeConfig();
    admin.loadFromFile(sb.cp.adminKubeconfig);
    await createServerObjects(admin, sb.pg, 'default');
    const server = (await admin.makeApiClient(k8s.CustomObjectsApi).getClusterCustomObject({
      group: 'tenantdb.dev',
      version: 'v1alpha1',
      plural: 'postgresservers',
      name: 'default',
    })) as PostgresServer;
    await secrets.start();
    // Only what writePoolerShards uses of the operator's context.
    const ctx = {
      clients,
      log,
      secrets,
      config: { namespace: OPERATOR_NAMESPACE, resyncMs: 300_000, poolerShardBytes: budget },
    } as unknown as OperatorContext;
    const ref = { namespace: OPERATOR_NAMESPACE, name: INDEX };
    const pgbAdmin = { host: pooler.host, port: pooler.port, ...pooler.admin };

    const tenants = Array.from({ length: n }, (_, i) => tenant(i));
    const input = (ts: PoolerTenant[]): PoolerInput => ({
      serverHost: sb.pg.host,
      serverPort: sb.pg.port,
      tenants: ts,
      alwaysAllowedCidrs: ['10.244.0.0/16'],
    });
    const t0 = performance.now();
    const cfg = renderPoolerShards(input(tenants), INDEX, budget);
    const renderMs = performance.now() - t0;
    const sizes = cfg.shards.map((s) => s.bytes).sort((a, b) => a - b);
    const total = sizes.reduce((a, b) => a + b, 0);

    /** Writes the config; returns the times until the agent applied it and until SHOW DATABASES lists `expect` tenants. */
    const deploy = async (ts: PoolerTenant[], expect: (pools: Map<string, unknown>) => boolean) => {
      const start = performance.now();
      const st = await writePoolerShards(ctx, server, ref, input(ts), budget);
      const written = performance.now() - start;
      await waitFor(
        'the agent to apply the index',
        async () => {
          const s = await clients.core.readNamespacedSecret({ name: INDEX, namespace: OPERATOR_NAMESPACE });
          const err = s.metadata?.annotations?.[AGENT_ERROR_ANNOTATION];
          if (err?.startsWith(`${st.hash}:`)) throw new Error(`the agent refused the config: ${err}`);
          return s.metadata?.annotations?.[AGENT_APPLIED_ANNOTATION] === st.hash || undefined;
        },
        600_000,
        50,
      );
      const applied = performance.now() - start;
      await waitFor('SHOW DATABASES to list every tenant', async () => expect(await showDatabases(pgbAdmin)) || undefined, 600_000, 100);
      return { written, applied, listed: performance.now() - start };
    };

    const first = await deploy(tenants, (p) => tenants.every((t) => p.has(t.alias)));
    const rssAfter = rssOf(pooler.pgbouncer.child.pid);

    // One tenant more, three times over: how many shards each rewrites, and what a reload costs.
    const rounds: string[] = [];
    let current = tenants;
    let shards = cfg.shards;
    for (let k = 0; k < 3; k++) {
      const extra = tenant(n + k);
      const grown = [...current, extra];
      const next = renderPoolerShards(input(grown), INDEX, budget);
      const before = new Set(shards.map((s) => s.name));
      const rewritten = next.shards.filter((s) => !before.has(s.name));
      await waitFor(
        'the cache to hold the shards',
        async () => shards.every((s) => secrets.get(s.name, OPERATOR_NAMESPACE)) || undefined,
        60_000,
      );
      const t = await deploy(grown, (p) => p.has(extra.alias));
      rounds.push(
        `one tenant more rewrites:         ${rewritten.length} shard(s) of ${next.shards.length} (${rewritten.map((s) => kib(s.bytes)).join(', ')}); ` +
          `written ${ms(t.written)}, applied ${ms(t.applied)}, listed ${ms(t.listed)}; PgBouncer RSS ${rssOf(pooler.pgbouncer.child.pid)}`,
      );
      current = grown;
      shards = next.shards;
    }

    console.log(
      `tenants:                          ${n} (${tenants.filter((t) => t.allowedCidrs).length} with allow-lists), shard budget ${kib(budget)}`,
    );
    console.log(
      `shards:                           ${cfg.shards.length}, ${kib(total)} in all; size min ${kib(sizes[0] ?? 0)}, median ${kib(sizes[sizes.length >> 1] ?? 0)}, max ${kib(sizes[sizes.length - 1] ?? 0)}`,
    );
    console.log(`render:                           ${ms(renderMs)}`);
    console.log(`first config written to the API:  ${ms(first.written)}`);
    console.log(`... applied by the agent:         ${ms(first.applied)}`);
    console.log(`... SHOW DATABASES lists all ${n}: ${ms(first.listed)}`);
    console.log(`PgBouncer RSS:                    ${rssAfter}`);
    for (const r of rounds) console.log(r);
  } finally {
    await secrets.stop().catch(() => undefined);
    await pooler.stop();
    await sb.stop();
    if (process.env.KEEP) console.log(`logs in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
