/**
 * A kill loop: the real control plane, PostgreSQL, PgBouncer and agent, the operator as a child
 * process (as in production), a few hundred TenantDatabases and some IpWhitelists applied, then
 * deleted (Delete and Retain), rotated and changed, while the operator is killed with SIGKILL N
 * times at seeded random points and restarted. After the last restart it waits for convergence and
 * checks what a crash could have broken: orphans, duplicates, lost Secrets, tenants not Ready, and
 * PgBouncer against the Ready tenants. Prints a summary and exits non-zero when a check fails.
 *   npm run chaos -- [N] [--tenants 300] [--seed S] [--settle 300] [--resync 5m] [--keep]
 * Logs (one operator log per incarnation) stay in the printed folder.
 */
import * as k8s from '@kubernetes/client-node';
import { Command } from 'commander';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { deriveIdentifier } from '../src/api/naming.js';
import { MANAGED_BY, MANAGED_BY_LABEL } from '../src/controllers/context.js';
import { reload, showDatabases, type PoolEntry } from '../src/pg/pgbouncer-console.js';
import { ROTATED_ANNOTATION, ROTATE_ANNOTATION } from '../src/controllers/tenantdatabase/secret.js';
import { TOMBSTONE, managedObjects, type ManagedObject } from '../src/pg/tenant-sql.js';
import { OPERATOR_NAMESPACE, agentKubeconfig } from '../test/env/cluster.js';
import { startOperatorProcess } from '../test/env/operator.js';
import { startPooler, type Pooler } from '../test/env/pgbouncer.js';
import { boundSocket } from '../test/env/ports.js';
import type { Proc } from '../test/env/process.js';
import { createServerObjects, startSandbox, type Sandbox } from '../test/env/sandbox.js';

const GROUP = 'tenantdb.dev';
const VERSION = 'v1alpha1';
const FIELD_MANAGER = 'tenantdb-chaos';

const program = new Command()
  .name('chaos')
  .argument('[kills]', 'how many times the operator is killed', '20')
  .option('--tenants <n>', 'TenantDatabases to apply', '300')
  .option('--seed <n>', 'seed of the random choices (default: from the clock)')
  .option('--settle <seconds>', 'how long to wait for convergence after the last restart', '300')
  .option('--resync <duration>', "the operator's --resync", '5m')
  .option('--workers <n>', "the operator's --workers", '4')
  .option('--keep', 'leave the sandbox running after the checks (Ctrl-C ends it)')
  .parse();
const opts = program.opts<{ tenants: string; seed?: string; settle: string; resync: string; workers: string; keep?: boolean }>();
const KILLS = Number(program.args[0] ?? 20);
const TENANTS = Number(opts.tenants);
const SEED = opts.seed !== undefined ? Number(opts.seed) : Date.now() % 1_000_000;
const SETTLE_MS = Number(opts.settle) * 1000;
if (![KILLS, TENANTS, SEED, SETTLE_MS].every((n) => Number.isInteger(n) && n >= 0)) {
  console.error('usage: npm run chaos -- [N] [--tenants 300] [--seed S] [--settle seconds]');
  process.exit(2);
}

// --- seeded randomness ----------------------------------------------------------------------------
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(SEED);
const between = (lo: number, hi: number) => Math.floor(lo + rand() * (hi - lo + 1));
const chance = (p: number) => rand() < p;
function pick<T>(xs: readonly T[]): T {
  return xs[Math.floor(rand() * xs.length)] as T;
}
function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const clock = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(7)}s`;
const say = (s = '') => process.stdout.write(`${s}\n`);
const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

// --- what the script asked for: the ledger --------------------------------------------------------
interface TenantPlan {
  namespace: string;
  name: string;
  index: number;
  policy: 'Delete' | 'Retain';
  pooling: { enabled: boolean; poolMode: 'session' | 'transaction'; poolSize: number };
  shadow: boolean;
  extensions: string[];
  secretName?: string;
  uid?: string | undefined;
  applied: boolean;
  deleted: boolean;
  /** The last rotation request, and the password the Secret held just before it (if any). */
  rotation?: { value: string; before?: string | undefined };
}
interface WhitelistPlan {
  namespace: string;
  name: string;
  tenant: string;
  /** A loopback address this list admits (for the enforcement sample). */
  loopback: string;
  cidrs: string[];
  applied: boolean;
  deleted: boolean;
}
const key = (ns: string, name: string) => `${ns}/${name}`;

const NAMESPACES = Math.max(1, Math.min(10, Math.ceil(TENANTS / 30)));
const tenants: TenantPlan[] = [];
for (let i = 0; i < TENANTS; i++) {
  const t: TenantPlan = {
    namespace: `chaos-${i % NAMESPACES}`,
    name: `t${String(i).padStart(4, '0')}`,
    index: i,
    policy: chance(0.5) ? 'Delete' : 'Retain',
    pooling: { enabled: !chance(0.1), poolMode: chance(0.3) ? 'session' : 'transaction', poolSize: between(2, 20) },
    shadow: chance(0.05),
    extensions: chance(0.05) ? ['pgcrypto'] : [],
    applied: false,
    deleted: false,
  };
  if (chance(0.05)) t.secretName = `${t.name}-creds`;
  tenants.push(t);
}
const byKey = new Map(tenants.map((t) => [key(t.namespace, t.name), t]));
const whitelists: WhitelistPlan[] = [];
const loopbackFor = (i: number) => `127.2.${(i >> 8) & 255}.${i & 255 || 1}`;
for (const t of tenants) {
  if (t.index % 5 !== 0) continue;
  const i = whitelists.length;
  whitelists.push({
    namespace: t.namespace,
    name: `wl-${t.name}`,
    tenant: t.name,
    loopback: loopbackFor(i + 1),
    cidrs: [`${loopbackFor(i + 1)}/32`, `10.${(i >> 8) & 255}.${i & 255}.0/24`],
    applied: false,
    deleted: false,
  });
}

function tenantManifest(t: TenantPlan): k8s.KubernetesObject {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'TenantDatabase',
    metadata: { name: t.name, namespace: t.namespace },
    spec: {
      deletionPolicy: t.policy,
      pooling: t.pooling,
      ...(t.shadow ? { shadowDatabase: true } : {}),
      ...(t.extensions.length ? { extensions: t.extensions } : {}),
      ...(t.secretName ? { secretName: t.secretName } : {}),
    },
  } as k8s.KubernetesObject;
}
function whitelistManifest(w: WhitelistPlan): k8s.KubernetesObject {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'IpWhitelist',
    metadata: { name: w.name, namespace: w.namespace },
    spec: { tenantDatabaseRef: { name: w.tenant }, entries: w.cidrs.map((cidr) => ({ cidr, description: 'chaos' })) },
  } as k8s.KubernetesObject;
}

// --- kube helpers -------------------------------------------------------------------------------
let kc: k8s.KubeConfig;
let objects: k8s.KubernetesObjectApi;
let core: k8s.CoreV1Api;
let custom: k8s.CustomObjectsApi;
const httpCode = (err: unknown) => (err as { code?: number }).code;

async function ssa(o: k8s.KubernetesObject, manager = FIELD_MANAGER): Promise<k8s.KubernetesObject> {
  return objects.patch(o, undefined, undefined, manager, true, k8s.PatchStrategy.ServerSideApply);
}

/** Runs fn over xs with at most `n` at a time, as a GitOps sync or a script with xargs -P would. */
async function parallel<T>(xs: readonly T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, xs.length) }, async () => {
      while (next < xs.length) await fn(xs[next++] as T);
    }),
  );
}

interface TdView {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    generation?: number;
    deletionTimestamp?: string;
    annotations?: Record<string, string>;
  };
  spec: { pooling?: { enabled?: boolean; poolMode?: string; poolSize?: number }; deletionPolicy?: string; secretName?: string };
  status?: {
    observedGeneration?: number;
    databaseName?: string;
    roleName?: string;
    secretName?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
  };
}
async function listTenants(): Promise<TdView[]> {
  const r = (await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'tenantdatabases' })) as { items: TdView[] };
  return r.items;
}
async function listWhitelists(): Promise<TdView[]> {
  const r = (await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'ipwhitelists' })) as { items: TdView[] };
  return r.items;
}
const cond = (o: TdView, type: string) => o.status?.conditions?.find((c) => c.type === type);
/** A whitelist is settled when enforced, or (its tenant pools not) when it says plainly that it cannot be. */
function whitelistSettled(o: TdView, w: WhitelistPlan): boolean {
  if (isReady(o)) return true;
  const t = byKey.get(key(w.namespace, w.tenant));
  return !!t && !t.pooling.enabled && cond(o, 'Ready')?.reason === 'NotEnforced' && o.status?.observedGeneration === o.metadata.generation;
}
const isReady = (o: TdView) => cond(o, 'Ready')?.status === 'True' && o.status?.observedGeneration === o.metadata.generation;

// --- the operator, killed and restarted -----------------------------------------------------------
interface Incarnation {
  n: number;
  proc: Proc;
  logFile: string;
  identity: string;
  startedAt: number;
}
let dir = '';
let sandbox: Sandbox | undefined;
let pooler: Pooler | undefined;
let current: Incarnation | undefined;
const incarnations: Incarnation[] = [];
const IDENTITY = 'chaos-operator-0';

function startOperator(freshIdentity: boolean): Incarnation {
  const n = incarnations.length + 1;
  // A container restarted in its pod keeps its POD_NAME and takes its Lease back at once; a
  // replaced pod has a new name and waits for the old Lease to expire.
  const identity = freshIdentity ? `chaos-operator-${n}` : (current?.identity ?? IDENTITY);
  const logFile = join(dir, `operator-${String(n).padStart(3, '0')}.log`);
  const proc = startOperatorProcess({
    kubeconfig: sandbox?.operatorKubeconfig ?? '',
    logFile,
    resync: opts.resync,
    identity,
    extraArgs: [`--workers=${opts.workers}`],
  });
  const inc = { n, proc, logFile, identity, startedAt: Date.now() };
  incarnations.push(inc);
  current = inc;
  return inc;
}

/** Waits for a new line of this incarnation's log whose msg matches; undefined on timeout. */
async function waitForLog(inc: Incarnation, from: number, re: RegExp, timeoutMs: number): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  let offset = from;
  let rest = '';
  while (Date.now() < deadline && inc.proc.child.exitCode === null) {
    if (existsSync(inc.logFile)) {
      const fd = openSync(inc.logFile, 'r');
      try {
        const buf = Buffer.alloc(1 << 20);
        for (;;) {
          const n = readSync(fd, buf, 0, buf.length, offset);
          if (n <= 0) break;
          offset += n;
          rest += buf.subarray(0, n).toString('utf8');
        }
      } finally {
        closeSync(fd);
      }
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        try {
          const m = (JSON.parse(line) as { msg?: unknown }).msg;
          const msg = typeof m === 'string' ? m : '';
          if (re.test(msg)) return msg;
        } catch {
          /* not JSON (a stack trace) */
        }
      }
    }
    await sleep(15);
  }
  return undefined;
}
const logSize = (inc: Incarnation) => (existsSync(inc.logFile) ? readFileSync(inc.logFile).length : 0);

// --- workload steps -------------------------------------------------------------------------------
interface Step {
  what: string;
  kind: 'apply' | 'delete' | 'rotate' | 'whitelist';
  run(): Promise<void>;
}
const counts = { applied: 0, deleted: 0, deletedDelete: 0, deletedRetain: 0, rotations: 0, wlApplied: 0, wlChanged: 0, wlDeleted: 0 };

function buildSteps(): Step[] {
  const steps: Step[] = [];
  const burst = Math.max(5, Math.ceil(TENANTS / 12));
  for (let i = 0; i < tenants.length; i += burst) {
    const ts = tenants.slice(i, i + burst);
    steps.push({
      what: `apply ${ts.length} tenants (${ts[0]?.name}..${ts[ts.length - 1]?.name}) and their whitelists`,
      kind: 'apply',
      run: async () => {
        await parallel(ts, 8, async (t) => {
          const o = await ssa(tenantManifest(t));
          t.uid = o.metadata?.uid;
          t.applied = true;
          counts.applied++;
        });
        const wls = whitelists.filter((w) => ts.some((t) => t.namespace === w.namespace && t.name === w.tenant));
        await parallel(wls, 8, async (w) => {
          await ssa(whitelistManifest(w));
          w.applied = true;
          counts.wlApplied++;
        });
      },
    });
  }
  // Churn: disjoint sets, so that a rotation or a whitelist change never aims at a deleted tenant.
  const order = shuffle([...tenants]);
  const nDelete = Math.round(TENANTS * 0.3);
  const doomed = order.slice(0, nDelete);
  const survivors = order.slice(nDelete);
  const rotated = survivors.slice(0, Math.max(1, Math.round(TENANTS * 0.2)));
  // A few get a second request later: only the last one must be answered.
  rotated.push(...rotated.slice(0, Math.max(1, Math.round(rotated.length / 10))));
  const churn: Step[] = [];
  for (let i = 0; i < doomed.length; i += 10) {
    const ts = doomed.slice(i, i + 10);
    churn.push({
      what: `delete ${ts.length} tenants (${ts.filter((t) => t.policy === 'Delete').length} Delete, ${ts.filter((t) => t.policy === 'Retain').length} Retain) and their whitelists`,
      kind: 'delete',
      run: async () => {
        await parallel(ts, 8, async (t) => {
          t.deleted = true;
          counts.deleted++;
          if (t.policy === 'Delete') counts.deletedDelete++;
          else counts.deletedRetain++;
          await custom
            .deleteNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: t.namespace,
              plural: 'tenantdatabases',
              name: t.name,
            })
            .catch((err: unknown) => {
              if (httpCode(err) !== 404) throw err;
            });
          for (const w of whitelists.filter((x) => x.namespace === t.namespace && x.tenant === t.name && !x.deleted)) {
            w.deleted = true;
            await custom
              .deleteNamespacedCustomObject({
                group: GROUP,
                version: VERSION,
                namespace: w.namespace,
                plural: 'ipwhitelists',
                name: w.name,
              })
              .catch(() => undefined);
          }
        });
      },
    });
  }
  for (let i = 0; i < rotated.length; i += 10) {
    const ts = rotated.slice(i, i + 10);
    churn.push({
      what: `rotate the passwords of ${ts.length} tenants`,
      kind: 'rotate',
      run: async () => {
        await parallel(ts, 8, async (t) => {
          const value = `chaos-${SEED}-${Date.now().toString(36)}-${between(0, 1e6)}`;
          let before: string | undefined;
          try {
            const s = await core.readNamespacedSecret({ name: t.secretName ?? `${t.name}-db`, namespace: t.namespace });
            before = s.data?.password ? Buffer.from(s.data.password, 'base64').toString('utf8') : undefined;
          } catch {
            before = undefined;
          }
          t.rotation = { value, before: t.rotation ? undefined : before };
          counts.rotations++;
          await ssa(
            {
              apiVersion: `${GROUP}/${VERSION}`,
              kind: 'TenantDatabase',
              metadata: { name: t.name, namespace: t.namespace, annotations: { [ROTATE_ANNOTATION]: value } },
            },
            `${FIELD_MANAGER}-rotate`,
          );
        });
      },
    });
  }
  const live = (w: WhitelistPlan) => !doomed.some((t) => t.namespace === w.namespace && t.name === w.tenant);
  const lists = shuffle(whitelists.filter(live));
  const changed = lists.slice(0, Math.ceil(lists.length / 3));
  const dropped = lists.slice(changed.length, changed.length + Math.ceil(lists.length / 5));
  const fresh = shuffle(survivors.filter((t) => t.index % 5 !== 0)).slice(0, Math.ceil(lists.length / 5));
  const extra: WhitelistPlan[] = fresh.map((t) => {
    const i = whitelists.length;
    const w: WhitelistPlan = {
      namespace: t.namespace,
      name: `wl-late-${t.name}`,
      tenant: t.name,
      loopback: loopbackFor(i + 1),
      cidrs: [`${loopbackFor(i + 1)}/32`],
      applied: false,
      deleted: false,
    };
    whitelists.push(w);
    return w;
  });
  const wlOps: (() => Promise<void>)[] = [
    ...changed.map((w) => async () => {
      // A new address replaces the old one: the old one must stop working, the new one must work.
      const i = whitelists.indexOf(w) + 1000;
      w.loopback = loopbackFor(i);
      w.cidrs = [`${w.loopback}/32`, `192.0.2.${i % 250}/32`];
      await ssa(whitelistManifest(w));
      counts.wlChanged++;
    }),
    ...dropped.map((w) => async () => {
      w.deleted = true;
      await custom
        .deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: w.namespace, plural: 'ipwhitelists', name: w.name })
        .catch(() => undefined);
      counts.wlDeleted++;
    }),
    ...extra.map((w) => async () => {
      await ssa(whitelistManifest(w));
      w.applied = true;
      counts.wlApplied++;
    }),
  ];
  shuffle(wlOps);
  for (let i = 0; i < wlOps.length; i += 8) {
    const ops = wlOps.slice(i, i + 8);
    churn.push({
      what: `change ${ops.length} whitelists (edit, delete or add)`,
      kind: 'whitelist',
      run: () => parallel(ops, 8, (op) => op()),
    });
  }
  return [...steps, ...shuffle(churn)];
}

// --- monitors while the chaos runs ---------------------------------------------------------------
/** Live tenants whose pool vanished from PgBouncer, and whitelisted tenants whose HBA lines opened up. */
const flaps: { at: string; alias: string; incarnation: number }[] = [];
const openings: { at: string; alias: string; incarnation: number }[] = [];
let monitorStop = false;
/** Incarnations that ended before the script killed them. */
const selfExits: string[] = [];
const byAlias = new Map(tenants.map((t) => [deriveIdentifier(t.namespace, t.name), t]));
const aliasOwner = (alias: string) => byAlias.get(alias);
async function monitor(admin: { host: string; port: number; user: string; password: string }, hbaFile: string): Promise<void> {
  let seen = new Set<string>();
  const restricted = new Set<string>();
  while (!monitorStop) {
    try {
      const now = new Set((await showDatabases(admin)).keys());
      for (const a of seen) {
        const t = aliasOwner(a);
        if (!now.has(a) && t && !t.deleted) flaps.push({ at: clock(), alias: a, incarnation: current?.n ?? 0 });
      }
      seen = now;
    } catch {
      /* PgBouncer busy; next round */
    }
    try {
      const lines = readFileSync(hbaFile, 'utf8').split('\n');
      const open = new Set<string>();
      const closed = new Set<string>();
      for (const l of lines) {
        const [, alias, , cidr, method] = l.split(/\s+/);
        if (!alias || alias === 'all') continue;
        if (method === 'reject') closed.add(alias);
        else if (cidr === '0.0.0.0/0') open.add(alias);
      }
      for (const a of open) {
        if (!restricted.has(a)) continue;
        const t = aliasOwner(a);
        const listed = t && whitelists.some((w) => w.namespace === t.namespace && w.tenant === t.name && w.applied && !w.deleted);
        if (listed) openings.push({ at: clock(), alias: a, incarnation: current?.n ?? 0 });
        restricted.delete(a);
      }
      for (const a of closed) restricted.add(a);
    } catch {
      /* the file is being replaced */
    }
    await sleep(1000);
  }
}

// --- the checks ---------------------------------------------------------------------------------
async function login(config: pg.ClientConfig, localAddress?: string): Promise<string | undefined> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 10_000, ...(localAddress ? { stream: boundSocket(localAddress) } : {}) });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.query('SELECT 1');
    return undefined;
  } catch (err) {
    return errText(err);
  } finally {
    await c.end().catch(() => undefined);
  }
}
const decode = (s: k8s.V1Secret, k: string) => (s.data?.[k] ? Buffer.from(s.data[k], 'base64').toString('utf8') : undefined);
const markerTenant = (comment: string) => /tenantdatabase=([^;]+);/.exec(comment)?.[1] ?? '?';

interface Row {
  check: string;
  count: number;
  fail: boolean;
  details: string[];
}
const rows: Row[] = [];
function report(check: string, details: string[], fail = true): void {
  rows.push({ check, count: details.length, fail: fail && details.length > 0, details });
}

/** The last lines of the operator logs that mention any of the needles, for a failure's context. */
function logExcerpt(needles: string[], max = 6): string[] {
  const out: string[] = [];
  for (const f of readdirSync(dir)
    .filter((x) => x.startsWith('operator-'))
    .sort()) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (needles.some((n) => n && line.includes(n))) out.push(`${f}: ${line.length > 400 ? `${line.slice(0, 400)}…` : line}`);
    }
  }
  return out.slice(-max);
}

async function checks(sb: Sandbox, pl: Pooler): Promise<void> {
  const live = await listTenants();
  const liveUids = new Set(live.map((t) => t.metadata.uid));
  const planByUid = new Map(tenants.filter((t) => t.uid).map((t) => [t.uid as string, t]));
  const su = await sb.pg.superClient();
  let objs: ManagedObject[];
  let roles: { rolname: string; rolcanlogin: boolean }[];
  let dbs: string[];
  try {
    objs = await managedObjects(su);
    roles = (await su.query<{ rolname: string; rolcanlogin: boolean }>('SELECT rolname, rolcanlogin FROM pg_roles')).rows;
    dbs = (await su.query<{ datname: string }>('SELECT datname FROM pg_database')).rows.map((r) => r.datname);
  } finally {
    await su.end();
  }

  // Orphans and retained objects.
  const orphans: string[] = [];
  const retained: string[] = [];
  const retainedWithLogin: string[] = [];
  for (const o of objs) {
    if (liveUids.has(o.uid)) continue;
    const plan = planByUid.get(o.uid);
    const what = `${o.kind} ${o.name} (${markerTenant(o.comment)}, uid ${o.uid})`;
    if (plan?.policy === 'Retain') {
      retained.push(what);
      if (o.kind === 'role' && roles.find((r) => r.rolname === o.name)?.rolcanlogin) retainedWithLogin.push(`${what} can still log in`);
    } else orphans.push(`${what}: ${plan ? 'deletionPolicy Delete' : 'no TenantDatabase of this run has this uid'}`);
  }
  const marked = new Set(objs.map((o) => `${o.kind}/${o.name}`));
  const unmarkedDbs = dbs.filter((d) => !['postgres', 'template0', 'template1'].includes(d) && !marked.has(`database/${d}`));
  const unmarkedRoles = roles
    .map((r) => r.rolname)
    .filter((r) => !r.startsWith('pg_') && ![sb.pg.superuser.user, sb.pg.admin.user].includes(r) && !marked.has(`role/${r}`));
  for (const d of unmarkedDbs) orphans.push(`database ${d} carries no marker`);
  for (const r of unmarkedRoles) orphans.push(`role ${r} carries no marker`);
  const secrets = (await core.listSecretForAllNamespaces({ labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` })).items;
  for (const s of secrets) {
    const owner = s.metadata?.ownerReferences?.find((r) => r.kind === 'TenantDatabase');
    if (!owner) continue;
    if (!liveUids.has(owner.uid))
      orphans.push(`Secret ${s.metadata?.namespace}/${s.metadata?.name}: owner ${owner.name} (uid ${owner.uid}) is gone`);
  }
  report('orphans (Delete policy or unmarked)', orphans);
  report('retained objects of deleted Retain tenants (expected)', retained, false);
  report('retained roles that can still log in', retainedWithLogin);

  // Duplicates and tombstones.
  const dup: string[] = [];
  const groups = new Map<string, string[]>();
  for (const o of objs) {
    const purpose = o.kind === 'database' && o.name.endsWith('_shadow') ? 'shadow database' : o.kind;
    const k = `${o.uid} ${purpose}`;
    groups.set(k, [...(groups.get(k) ?? []), o.name]);
  }
  for (const [k, names] of groups) if (names.length > 1) dup.push(`uid ${k}: ${names.join(', ')}`);
  for (const o of objs) if (o.name.includes('_gone_') || o.comment.endsWith(TOMBSTONE)) dup.push(`tombstoned role ${o.name} left behind`);
  for (const r of roles)
    if (r.rolname.includes('_gone_') && !marked.has(`role/${r.rolname}`)) dup.push(`tombstoned role ${r.rolname} (unmarked)`);
  report('duplicates and tombstones', dup);

  // Tenants that should be there, are, and are Ready.
  const notReady: string[] = [];
  const missing: string[] = [];
  const stillThere: string[] = [];
  for (const t of tenants) {
    const o = live.find((x) => x.metadata.namespace === t.namespace && x.metadata.name === t.name);
    if (t.deleted) {
      if (o)
        stillThere.push(
          `${key(t.namespace, t.name)} (${t.policy}) still exists: ${cond(o, 'Ready')?.reason ?? '-'}: ${cond(o, 'Ready')?.message ?? ''}`,
        );
      continue;
    }
    if (!o) {
      missing.push(`${key(t.namespace, t.name)} does not exist`);
      continue;
    }
    if (!isReady(o)) {
      const c = cond(o, 'Ready');
      notReady.push(
        `${key(t.namespace, t.name)}: ${c?.status ?? 'no status'} ${c?.reason ?? ''}: ${c?.message ?? ''} (observedGeneration ${o.status?.observedGeneration}/${o.metadata.generation})`,
      );
    }
  }
  report('tenants not Ready', [...missing, ...notReady]);
  report('deleted tenants still present (finalizer)', stillThere);

  // Secrets of Ready tenants, each password tried directly.
  const lost: string[] = [];
  const rotation: string[] = [];
  const ready = live.filter(isReady);
  await parallel(ready, 6, async (o) => {
    const name = o.status?.secretName ?? o.spec.secretName ?? `${o.metadata.name}-db`;
    let s: k8s.V1Secret;
    try {
      s = await core.readNamespacedSecret({ name, namespace: o.metadata.namespace });
    } catch (err) {
      lost.push(`${key(o.metadata.namespace, o.metadata.name)}: Secret ${name} ${httpCode(err) === 404 ? 'is missing' : errText(err)}`);
      return;
    }
    const err = await login({
      host: decode(s, 'host') ?? '',
      port: Number(decode(s, 'port')),
      user: decode(s, 'user') ?? '',
      password: decode(s, 'password') ?? '',
      database: decode(s, 'database') ?? '',
    });
    if (err) lost.push(`${key(o.metadata.namespace, o.metadata.name)}: the Secret's password does not log in directly: ${err}`);
    const plan = byKey.get(key(o.metadata.namespace, o.metadata.name));
    if (plan?.rotation) {
      const answered = s.metadata?.annotations?.[ROTATED_ANNOTATION];
      if (answered !== plan.rotation.value)
        rotation.push(
          `${key(o.metadata.namespace, o.metadata.name)}: rotation ${plan.rotation.value} answered as ${answered ?? 'nothing'}`,
        );
      else if (plan.rotation.before && plan.rotation.before === decode(s, 'password'))
        rotation.push(
          `${key(o.metadata.namespace, o.metadata.name)}: rotation ${plan.rotation.value} answered, but the password is the one before it`,
        );
    }
  });
  report('lost Secrets (missing, or the password does not log in)', lost);
  report('rotations not answered', rotation);

  // PgBouncer against the Ready tenants that pool.
  const admin = { host: pl.host, port: pl.port, user: pl.admin.user, password: pl.admin.password };
  const entries: Map<string, PoolEntry> = await showDatabases(admin);
  entries.delete('pgbouncer');
  const pooled = ready.filter((o) => o.spec.pooling?.enabled !== false);
  const disagree: string[] = [];
  for (const o of pooled) {
    const alias = o.status?.databaseName ?? '';
    const e = entries.get(alias);
    const want = { mode: o.spec.pooling?.poolMode ?? 'transaction', size: o.spec.pooling?.poolSize ?? 10 };
    if (!e) disagree.push(`missing: ${alias} (${key(o.metadata.namespace, o.metadata.name)} is Ready)`);
    else if (e.poolMode !== want.mode || e.poolSize !== want.size)
      disagree.push(`wrong: ${alias} is ${e.poolMode}/${e.poolSize}, spec says ${want.mode}/${want.size}`);
  }
  const pooledAliases = new Set(pooled.map((o) => o.status?.databaseName));
  const liveAliases = new Map(live.map((o) => [o.status?.databaseName, o]));
  for (const alias of entries.keys()) {
    if (pooledAliases.has(alias)) continue;
    const o = liveAliases.get(alias);
    disagree.push(
      `extra: ${alias} ${o ? `(${key(o.metadata.namespace, o.metadata.name)}: ${isReady(o) ? `pooling ${String(o.spec.pooling?.enabled)}` : 'not Ready'})` : '(no live tenant)'}`,
    );
  }
  // A pooled login with the Secret's DATABASE_URL, for a sample.
  const sample = shuffle([...pooled]).slice(0, Math.min(25, pooled.length));
  await parallel(sample, 5, async (o) => {
    const s = await core.readNamespacedSecret({ name: o.status?.secretName ?? `${o.metadata.name}-db`, namespace: o.metadata.namespace });
    const err = await login({ connectionString: decode(s, 'DATABASE_URL') ?? '' });
    if (err) disagree.push(`pooled login failed: ${key(o.metadata.namespace, o.metadata.name)}: ${err}`);
  });
  report(`pooler disagreement (${entries.size} entries, ${pooled.length} Ready pooled tenants, ${sample.length} pooled logins)`, disagree);

  // Whitelists: Applied, and enforced at PgBouncer for a sample (the listed address in, another out).
  const wlLive = await listWhitelists();
  const wlProblems: string[] = [];
  for (const w of whitelists.filter((x) => x.applied && !x.deleted)) {
    const o = wlLive.find((x) => x.metadata.namespace === w.namespace && x.metadata.name === w.name);
    if (!o) wlProblems.push(`${key(w.namespace, w.name)} does not exist`);
    else if (!whitelistSettled(o, w))
      wlProblems.push(`${key(w.namespace, w.name)}: ${cond(o, 'Ready')?.reason ?? 'no status'}: ${cond(o, 'Ready')?.message ?? ''}`);
  }
  for (const w of whitelists.filter((x) => x.deleted)) {
    if (wlLive.some((x) => x.metadata.namespace === w.namespace && x.metadata.name === w.name))
      wlProblems.push(`${key(w.namespace, w.name)} was deleted but still exists`);
  }
  const enforced = shuffle(whitelists.filter((w) => w.applied && !w.deleted)).slice(0, 10);
  for (const w of enforced) {
    const o = pooled.find((x) => x.metadata.namespace === w.namespace && x.metadata.name === w.tenant);
    if (!o) continue;
    const s = await core.readNamespacedSecret({ name: o.status?.secretName ?? `${o.metadata.name}-db`, namespace: o.metadata.namespace });
    const url = decode(s, 'DATABASE_URL') ?? '';
    const inside = await login({ connectionString: url }, w.loopback);
    if (inside) wlProblems.push(`${key(w.namespace, w.name)}: a pooled login from listed ${w.loopback} failed: ${inside}`);
    if (!(await login({ connectionString: url }, '127.3.0.1')))
      wlProblems.push(`${key(w.namespace, w.name)}: a pooled login from unlisted 127.3.0.1 was accepted`);
  }
  report(`whitelists not Applied or not enforced (${enforced.length} sampled)`, wlProblems);
  report('operator exits not caused by the script', selfExits);
  report(
    'pool entries of live tenants lost during the run (monitor)',
    [...new Set(flaps.map((f) => `${f.alias} (incarnation ${f.incarnation})`))],
    false,
  );
  report('whitelisted tenants opened to everyone during the run (monitor)', [
    ...new Set(openings.map((f) => `${f.alias} at ${f.at} (incarnation ${f.incarnation})`)),
  ]);
}

// --- convergence --------------------------------------------------------------------------------
async function converged(pl: Pooler): Promise<{ done: boolean; summary: string }> {
  const live = await listTenants();
  const wanted = tenants.filter((t) => !t.deleted);
  const ready = live.filter((o) => !byKey.get(key(o.metadata.namespace, o.metadata.name))?.deleted && isReady(o));
  const lingering = live.filter((o) => byKey.get(key(o.metadata.namespace, o.metadata.name))?.deleted);
  const entries = await showDatabases({ host: pl.host, port: pl.port, user: pl.admin.user, password: pl.admin.password }).catch(
    () => new Map<string, PoolEntry>(),
  );
  entries.delete('pgbouncer');
  const wantPooled = new Set(ready.filter((o) => o.spec.pooling?.enabled !== false).map((o) => o.status?.databaseName));
  const extra = [...entries.keys()].filter((a) => !wantPooled.has(a)).length;
  const wl = await listWhitelists();
  const wlPending = whitelists.filter(
    (w) =>
      w.applied &&
      !w.deleted &&
      !wl.some((x) => x.metadata.namespace === w.namespace && x.metadata.name === w.name && whitelistSettled(x, w)),
  ).length;
  // A rotation asked for just before the last kill is part of what the operator must finish.
  const rotating = wanted.filter((t) => t.rotation);
  let rotPending = 0;
  for (const t of rotating) {
    const s = await core.readNamespacedSecret({ name: t.secretName ?? `${t.name}-db`, namespace: t.namespace }).catch(() => undefined);
    if (s?.metadata?.annotations?.[ROTATED_ANNOTATION] !== t.rotation?.value) rotPending++;
  }
  const done = ready.length === wanted.length && lingering.length === 0 && extra === 0 && wlPending === 0 && rotPending === 0;
  return {
    done,
    summary: `${ready.length}/${wanted.length} Ready, ${lingering.length} deletions pending, ${entries.size} pooler entries (${extra} extra), ${wlPending} whitelists pending, ${rotPending} rotations pending`,
  };
}

// --- main ---------------------------------------------------------------------------------------
async function main(): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'tenantdb-chaos-'));
  say(`tenantdb chaos: ${KILLS} kills, ${TENANTS} tenants in ${NAMESPACES} namespaces, ${whitelists.length} whitelists, seed ${SEED}`);
  say(`logs: ${dir}`);
  const sb = await startSandbox(dir);
  sandbox = sb;
  const pl = await startPooler({
    agentKubeconfig: await agentKubeconfig(sb.cp, join(dir, 'agent.kubeconfig'), 'default-pooler'),
    secret: `${OPERATOR_NAMESPACE}/default-pooler`,
    logDir: dir,
    name: 'chaos',
  });
  pooler = pl;
  // Every pooled login leaves an idle server connection in its pool for server_idle_timeout (600 s
  // by default): a few hundred tenants would hold all of the sandbox server's 300 connections.
  const ini = join(pl.dir, 'pgbouncer.ini');
  writeFileSync(ini, readFileSync(ini, 'utf8').replace(/^%include /m, 'server_idle_timeout = 20\n%include '));
  await reload({ host: pl.host, port: pl.port, user: pl.admin.user, password: pl.admin.password });

  kc = new k8s.KubeConfig();
  kc.loadFromFile(sb.cp.adminKubeconfig);
  objects = k8s.KubernetesObjectApi.makeApiClient(kc);
  core = kc.makeApiClient(k8s.CoreV1Api);
  custom = kc.makeApiClient(k8s.CustomObjectsApi);
  for (const o of [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'pgbouncer-admin', namespace: OPERATOR_NAMESPACE },
      stringData: { username: pl.admin.user, password: pl.admin.password },
    },
    ...Array.from({ length: NAMESPACES }, (_, i) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `chaos-${i}` } })),
  ])
    await ssa(o);
  await createServerObjects(kc, sb.pg, 'default', {
    default: true,
    pooler: { host: pl.host, port: pl.port, adminSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'pgbouncer-admin' } },
    // The operator runs on this host and checks each tenant's login, through the pooler too.
    alwaysAllowedCidrs: ['127.0.0.1/32'],
  });
  void monitor({ host: pl.host, port: pl.port, user: pl.admin.user, password: pl.admin.password }, join(pl.dir, 'conf', 'hba.conf'));

  const steps = buildSteps();
  const applySteps = steps.filter((s) => s.kind === 'apply').length;
  say(`${clock()} sandbox up; ${steps.length} workload steps over ${KILLS} kills`);
  let inc = startOperator(false);
  const modes = new Map<string, number>();
  let stepIndex = 0;
  for (let k = 0; k < KILLS; k++) {
    const upTo = Math.floor(((k + 1) * steps.length) / KILLS);
    const mine = steps.slice(stepIndex, upTo);
    stepIndex = upTo;
    const r = rand();
    // Mostly the operator is let come up first, so that the kill lands in its work, not its start.
    const startup = mine.length === 0 && r < 0.25;
    const waitUp = !startup && (mine.length === 0 || r < 0.8);
    if (waitUp && !(await waitForLog(inc, 0, /Controllers started/, 60_000))) say(`${clock()} [${inc.n}] not started within 60 s`);
    const from = logSize(inc);
    for (const s of mine) {
      say(`${clock()} [${inc.n}] ${s.what}`);
      await s.run().catch((err: unknown) => say(`${clock()}     step failed: ${errText(err)}`));
    }
    let mode: string;
    let detail: string;
    if (startup) {
      mode = 'during startup';
      const d = Math.max(0, between(0, 4000) - (Date.now() - inc.startedAt));
      await sleep(d);
      detail = `${Date.now() - inc.startedAt} ms after spawn`;
    } else if (mine.length > 0 && r < 0.5) {
      mode = mine.some((s) => s.kind === 'delete') ? 'right after a delete burst' : 'right after a burst';
      const d = between(0, 500);
      detail = `${d} ms`;
      await sleep(d);
    } else if (r < (mine.length > 0 ? 0.8 : 0.65)) {
      const deleting = mine.some((s) => s.kind === 'delete');
      const rotating = mine.some((s) => s.kind === 'rotate');
      const re = deleting
        ? /Dropped database|Dropped role|Disabled login/
        : rotating
          ? /Rotated password/
          : pick(
              stepIndex <= applySteps
                ? [/Created role/, /Created database/, /Created Secret/, /Updated pooler|pooler config|shard/i]
                : [/Dropped|Disabled login/, /Updated pooler|pooler config|shard/i, /Rotated password|Repaired/],
            );
      mode = deleting ? 'mid-deletion (on log)' : 'on log line';
      const hit = await waitForLog(inc, from, re, 12_000);
      const d = between(0, 30);
      await sleep(d);
      detail = hit ? `${d} ms after "${hit.slice(0, 80)}"` : `no ${re.source} within 12 s`;
      if (!hit) mode = 'on log line (timed out)';
    } else {
      mode = 'random delay';
      const d = between(500, 8000);
      detail = `${d} ms`;
      await sleep(d);
    }
    modes.set(mode, (modes.get(mode) ?? 0) + 1);
    const up = Date.now() - inc.startedAt;
    const child = inc.proc.child;
    if (child.exitCode !== null || child.signalCode !== null) {
      selfExits.push(`incarnation ${inc.n} exited by itself (${child.signalCode ?? `code ${child.exitCode}`}); see ${inc.logFile}`);
      say(`${clock()} [${inc.n}] the operator had exited by itself (${child.signalCode ?? `code ${child.exitCode}`})`);
    }
    await inc.proc.stop('SIGKILL');
    say(`${clock()} [${inc.n}] kill ${k + 1}/${KILLS}: ${mode}, ${detail} (up ${(up / 1000).toFixed(1)} s)`);
    await sleep(between(0, 1000));
    inc = startOperator(chance(0.1));
    if (inc.identity !== incarnations[incarnations.length - 2]?.identity)
      say(`${clock()} [${inc.n}] restarted as a new pod (${inc.identity})`);
  }
  say(`${clock()} last restart done (incarnation ${inc.n}); waiting up to ${SETTLE_MS / 1000} s for convergence`);
  const settleStart = Date.now();
  let last = '';
  let done = false;
  while (Date.now() - settleStart < SETTLE_MS) {
    const c = await converged(pl).catch((err: unknown) => ({ done: false, summary: `(${errText(err)})` }));
    if (c.summary !== last) say(`${clock()}     ${c.summary}`);
    last = c.summary;
    if (c.done) {
      done = true;
      break;
    }
    await sleep(5000);
  }
  const settleS = ((Date.now() - settleStart) / 1000).toFixed(0);
  say(`${clock()} ${done ? `converged in ${settleS} s` : `NOT converged after ${settleS} s`}`);
  monitorStop = true;
  await checks(sb, pl);
  if (!done) rows.push({ check: 'converged within the settle time', count: 1, fail: true, details: [last] });

  say('');
  say(`seed ${SEED}; ${KILLS} kills; ${incarnations.length} operator incarnations; logs in ${dir}`);
  say(
    `workload: ${counts.applied} tenants applied, ${counts.deleted} deleted (${counts.deletedDelete} Delete, ${counts.deletedRetain} Retain), ${counts.rotations} rotation requests, ` +
      `${counts.wlApplied} whitelists applied, ${counts.wlChanged} changed, ${counts.wlDeleted} deleted (plus those of deleted tenants)`,
  );
  say(`kills: ${[...modes.entries()].map(([m, n]) => `${n} ${m}`).join(', ')}`);
  say('');
  const w = Math.max(...rows.map((r) => r.check.length));
  say(`${'check'.padEnd(w)}  count  result`);
  say(`${'-'.repeat(w)}  -----  ------`);
  for (const r of rows) say(`${r.check.padEnd(w)}  ${String(r.count).padStart(5)}  ${r.fail ? 'FAIL' : r.count ? 'note' : 'ok'}`);
  for (const r of rows.filter((x) => x.count > 0)) {
    say('');
    say(`${r.fail ? 'FAIL' : 'note'}: ${r.check}`);
    for (const d of r.details.slice(0, 30)) say(`  - ${d}`);
    if (r.details.length > 30) say(`  ... and ${r.details.length - 30} more`);
    if (r.fail) {
      // What the operator logged about the first few objects concerned.
      const needles = r.details
        .slice(0, 3)
        .flatMap((d) => [
          /chaos-\d+\/t\d{4}/.exec(d)?.[0],
          /uid ([0-9a-f-]{36})/.exec(d)?.[1],
          /\b(chaos_\d+_t\d{4}(?:_shadow)?)\b/.exec(d)?.[1],
        ])
        .filter((x): x is string => !!x)
        .map((x) => (x.includes('/') ? `"name":"${x.split('/')[1] ?? ''}"` : x));
      const lines = logExcerpt(needles);
      if (lines.length) {
        say('  operator log (last lines naming them):');
        for (const l of lines) say(`    ${l}`);
      }
    }
  }
  const failed = rows.some((r) => r.fail);
  say('');
  say(failed ? 'RESULT: FAIL' : 'RESULT: ok');
  process.exitCode = failed ? 1 : 0;
  if (opts.keep) {
    say('Sandbox kept running (Ctrl-C ends it).');
    await new Promise<void>((r) => process.once('SIGINT', () => r()));
  }
}

async function cleanup(): Promise<void> {
  monitorStop = true;
  await current?.proc.stop().catch(() => undefined);
  await pooler?.stop().catch(() => undefined);
  await sandbox?.stop().catch(() => undefined);
}

process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
main()
  .catch((err: unknown) => {
    console.error(`chaos failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 2;
  })
  .finally(() => cleanup())
  .finally(() => process.exit(process.exitCode ?? 0))
  .catch(() => undefined);
