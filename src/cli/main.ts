#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { startPoolerAgent } from '../agent/pooler-agent.js';
import { startPostgresAgent } from '../agent/postgres-agent.js';
import { renderCrdFiles } from '../api/crd-files.js';
import { loadKubeConfig } from '../kube/client.js';
import { DEFAULT_SHARD_BYTES, MAX_SHARD_BYTES, MIN_SHARD_BYTES } from '../pooler/shards.js';
import { startOperator } from '../operator.js';
import { createLogger } from '../runtime/logger.js';
import { duration, onOff, tenantMetricsLevel } from './options.js';
import type { TenantMetricsLevel } from '../runtime/metrics.js';

export { duration };

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

/** Parses a byte count such as 524288, 512Ki or 1Mi. */
export function bytes(v: string): number {
  const m = /^(\d+)(Ki|Mi)?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('must be a number of bytes such as 524288 or 512Ki');
  return Number(m[1]) * (m[2] === 'Mi' ? 1 << 20 : m[2] === 'Ki' ? 1 << 10 : 1);
}

function shardBytes(v: string): number {
  const n = bytes(v);
  if (n < MIN_SHARD_BYTES || n > MAX_SHARD_BYTES)
    throw new InvalidArgumentError(`must be from ${MIN_SHARD_BYTES} to ${MAX_SHARD_BYTES} bytes`);
  return n;
}

/** A comma-separated list of namespace names (DNS-1123 labels); empty means every namespace. */
export function namespaceList(v: string): string[] {
  const names = v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  for (const n of names)
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(n)) throw new InvalidArgumentError(`"${n}" is not a namespace name`);
  return names;
}

const program = new Command();
program.name('tenantdb').description('Tenant databases on PostgreSQL, as Kubernetes resources.');

program
  .command('operator')
  .description('Run the operator against the current kube context (or in-cluster config).')
  .option('--kubeconfig <path>', 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)')
  .option('--namespace <ns>', 'namespace of the leader Lease', process.env.POD_NAMESPACE ?? 'tenantdb-system')
  .option('--workers <n>', 'reconciles run in parallel', positiveInt, 4)
  .option('--resync <duration>', 'interval of the periodic drift re-check', duration, duration(process.env.TENANTDB_RESYNC ?? '5m'))
  .option('--metrics-port <port>', 'port of /metrics, /healthz and /readyz (0 picks a free one)', positiveInt, 8080)
  .option('--metrics-host <host>', 'address to serve metrics and health on', '0.0.0.0')
  .option(
    '--tenant-metrics <level>',
    'per-tenant series on /metrics: off, basic (ready, size, sessions, credential age: 4 series per tenant, from the cache) or full (also pool series from SHOW POOLS, credential generation, last reconcile)',
    tenantMetricsLevel,
    tenantMetricsLevel(process.env.TENANTDB_TENANT_METRICS ?? 'basic'),
  )
  .option(
    '--migration-jobs <on|off>',
    "whether TenantDatabases and TenantGroups may run migration Jobs (off by default: whoever may edit a TenantDatabase could then run an image of its choice as a pod in its namespace, with the tenant's credentials)",
    onOff,
    onOff(process.env.TENANTDB_MIGRATION_JOBS ?? 'off'),
  )
  .option('--no-leader-elect', 'run without a leader Lease (one replica only)')
  .option(
    '--watch-namespaces <list>',
    'comma-separated namespaces whose TenantDatabases and IpWhitelists the operator serves (default: all); its RBAC may then be Roles in those',
    namespaceList,
    namespaceList(process.env.TENANTDB_WATCH_NAMESPACES ?? ''),
  )
  .option(
    '--pooler-shard-bytes <bytes>',
    'bytes of tenant lines one pooler config Secret (shard) may hold',
    shardBytes,
    shardBytes(process.env.TENANTDB_POOLER_SHARD_BYTES ?? String(DEFAULT_SHARD_BYTES)),
  )
  .action(
    async (opts: {
      kubeconfig?: string;
      namespace: string;
      workers: number;
      resync: number;
      metricsPort: number;
      metricsHost: string;
      tenantMetrics: TenantMetricsLevel;
      migrationJobs: boolean;
      leaderElect: boolean;
      poolerShardBytes: number;
      watchNamespaces: string[];
    }) => {
      const log = createLogger();
      let kc;
      try {
        kc = loadKubeConfig(opts.kubeconfig);
        if (!kc.getCurrentCluster()) throw new Error('no current cluster in the kubeconfig');
      } catch (err) {
        log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'Cannot load kubeconfig');
        process.exitCode = 1;
        return;
      }
      const op = await startOperator({
        kc,
        log,
        namespace: opts.namespace,
        workers: Math.max(1, opts.workers),
        resyncMs: opts.resync,
        metricsPort: opts.metricsPort,
        metricsHost: opts.metricsHost,
        tenantMetrics: opts.tenantMetrics,
        migrationJobs: opts.migrationJobs,
        leaderElection: opts.leaderElect,
        poolerShardBytes: opts.poolerShardBytes,
        watchNamespaces: opts.watchNamespaces,
      });
      log.info({ metricsPort: op.metricsPort(), tenantMetrics: opts.tenantMetrics }, 'Operator running');
      const onSignal = (sig: string) => {
        log.info({ signal: sig }, 'Received signal');
        void op.stop();
      };
      process.once('SIGTERM', () => onSignal('SIGTERM'));
      process.once('SIGINT', () => onSignal('SIGINT'));
      const why = await op.done;
      log.info({ why }, 'Stopped');
      if (why === 'lost-leadership') process.exitCode = 1;
      // Lost leadership ends the process with a non-zero code so that the pod restarts as a standby.
      process.exit(process.exitCode ?? 0);
    },
  );

program
  .command('agent')
  .description(
    'Run an agent: beside PgBouncer (load the pooler config, RELOAD) or beside a self-hosted PostgreSQL (pg_hba.conf, pg_reload_conf()).',
  )
  .requiredOption('--secret <namespace/name>', 'the config Secret the operator renders for this agent')
  .option('--mode <mode>', 'pgbouncer or postgres', 'pgbouncer')
  .option('--kubeconfig <path>', 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)')
  .option('--dir <path>', 'pgbouncer: folder for databases.ini, userlist.txt and hba.conf, as pgbouncer.ini names them')
  .option('--pgbouncer-host <host>', 'pgbouncer: address of the admin console', '127.0.0.1')
  .option('--pgbouncer-port <port>', 'pgbouncer: port', positiveInt, 6432)
  .option('--admin-user <name>', 'pgbouncer: an admin_users entry', process.env.TENANTDB_POOLER_ADMIN_USER ?? 'tenantdb_pooler')
  .option('--admin-password-file <path>', 'pgbouncer: file with the admin password (default: $TENANTDB_POOLER_ADMIN_PASSWORD)')
  .option('--hba-file <path>', "postgres: the server's hba_file")
  .option('--base-hba-file <path>', "postgres: the server's own rules, kept after the tenant rules")
  .option('--pg-host <host>', 'postgres: address of the server', '127.0.0.1')
  .option('--pg-port <port>', 'postgres: port', positiveInt, 5432)
  .option('--pg-user <name>', 'postgres: a role that may read pg_hba_file_rules and call pg_reload_conf()', 'postgres')
  .option('--pg-database <name>', 'postgres: database to connect to', 'postgres')
  .option('--pg-password-file <path>', "postgres: file with that role's password (default: $TENANTDB_PG_PASSWORD)")
  .action(
    async (opts: {
      secret: string;
      mode: string;
      kubeconfig?: string;
      dir?: string;
      pgbouncerHost: string;
      pgbouncerPort: number;
      adminUser: string;
      adminPasswordFile?: string;
      hbaFile?: string;
      baseHbaFile?: string;
      pgHost: string;
      pgPort: number;
      pgUser: string;
      pgDatabase: string;
      pgPasswordFile?: string;
    }) => {
      const log = createLogger();
      const fail = (msg: string) => {
        log.fatal(msg);
        process.exit(2);
      };
      const m = /^([a-z0-9-]+)\/([a-z0-9.-]+)$/.exec(opts.secret);
      if (!m) return fail('--secret must be namespace/name');
      const secretFile = (file: string | undefined, env: string) => (file ? readFileSync(file, 'utf8').trim() : process.env[env]);
      let kc;
      try {
        kc = loadKubeConfig(opts.kubeconfig);
      } catch (err) {
        return fail(`cannot load kubeconfig: ${err instanceof Error ? err.message : String(err)}`);
      }
      const base = { kc, namespace: m[1] ?? '', secretName: m[2] ?? '', log };
      let agent: { stop(): Promise<void> };
      if (opts.mode === 'pgbouncer') {
        const password = secretFile(opts.adminPasswordFile, 'TENANTDB_POOLER_ADMIN_PASSWORD');
        if (!opts.dir) return fail('--dir is required in pgbouncer mode');
        if (!password) return fail('the admin password is missing: set TENANTDB_POOLER_ADMIN_PASSWORD or --admin-password-file');
        agent = await startPoolerAgent({
          ...base,
          dir: opts.dir,
          admin: { host: opts.pgbouncerHost, port: opts.pgbouncerPort, user: opts.adminUser, password },
        });
      } else if (opts.mode === 'postgres') {
        const password = secretFile(opts.pgPasswordFile, 'TENANTDB_PG_PASSWORD');
        if (!opts.hbaFile || !opts.baseHbaFile) return fail('--hba-file and --base-hba-file are required in postgres mode');
        if (!password) return fail('the password is missing: set TENANTDB_PG_PASSWORD or --pg-password-file');
        agent = startPostgresAgent({
          ...base,
          hbaFile: opts.hbaFile,
          baseFile: opts.baseHbaFile,
          pg: { host: opts.pgHost, port: opts.pgPort, user: opts.pgUser, password, database: opts.pgDatabase },
        });
      } else {
        return fail('--mode must be pgbouncer or postgres');
      }
      log.info({ mode: opts.mode, secret: opts.secret }, 'Agent running');
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', () => resolve());
        process.once('SIGINT', () => resolve());
      });
      await agent.stop();
      log.info('Stopped');
      process.exit(0);
    },
  );

program
  .command('crds')
  .description('Print the CustomResourceDefinitions as YAML.')
  .action(() => {
    process.stdout.write(Object.values(renderCrdFiles()).join('---\n'));
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`tenantdb: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
