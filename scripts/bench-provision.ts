/**
 * What a burst of N new tenants costs, against the real control plane, PostgreSQL, PgBouncer, agent
 * and the operator as a separate process. Figures, not assertions.
 *   npm run bench:provision -- [N] [--workers n] [--idle-minutes m] [--resync 5m] [--missing-server]
 *     [--no-leader-elect] [--profile dir] [--sources] [--node-options "..."] [--no-chart-settings]
 *     [--pg-set name=value] [--pg-cores n] [--no-floor] [--no-floor-after]
 *
 * 1. The floor: the statements the operator issues for a new tenant (the very functions of
 *    pg/tenant-sql.ts), run for N tenants over the admin sessions the operator may hold (AdminPools).
 * 2. The burst: N TenantDatabases created at once; time until each is Ready (pooler-confirmed). The
 *    operator runs as the chart runs it (its nodeOptions and mallocArenaMax from values.yaml).
 * 3. The floor once more: how far the machine's speed drifted within the run.
 * 4. Idle: per minute, what the operator does while nothing changes.
 * With --missing-server: N TenantDatabases naming a PostgresServer that does not exist, until each
 * has a status (the operator's memory at N, cheaply).
 *
 * Where the figures come from: reconciles and pooler config writes from the operator's /metrics;
 * CPU and RSS from /proc (the operator process and its children); API requests from the
 * kube-apiserver's audit log (the operator's ServiceAccount only); SQL statements from PostgreSQL's
 * log (log_statement=all for the admin role only), and the sessions started (log_connections);
 * admin sessions by sampling pg_stat_activity.
 */
import * as k8s from '@kubernetes/client-node';
import { Command, InvalidArgumentError, Option } from 'commander';
import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pLimit from 'p-limit';
import pg from 'pg';
import YAML from 'yaml';
import { makeApiClient } from '../src/kube/client.js';
import { AdminPools, tryLogin, type AdminCredentials, type ServerEndpoint } from '../src/pg/connections.js';
import { deterministicSalt, generatePassword, scramVerifier } from '../src/pg/scram.js';
import * as sql from '../src/pg/tenant-sql.js';
import { createLogger } from '../src/runtime/logger.js';
import { OPERATOR_NAMESPACE, OPERATOR_SA, agentKubeconfig, apply } from '../test/env/cluster.js';
import { startOperatorProcess } from '../test/env/operator.js';
import { startPooler } from '../test/env/pgbouncer.js';
import { freePort, waitFor } from '../test/env/ports.js';
import type { PgServer } from '../test/env/postgres.js';
import { createServerObjects, startSandbox } from '../test/env/sandbox.js';

const GROUP = 'tenantdb.dev';
const VERSION = 'v1alpha1';
const NS = 'bench';
const OPERATOR_USER = `system:serviceaccount:${OPERATOR_NAMESPACE}:${OPERATOR_SA}`;
const AGENT_USER = `system:serviceaccount:${OPERATOR_NAMESPACE}:tenantdb-pooler-agent`;
const WRITE_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);
const DDL = /^(CREATE|ALTER|DROP|GRANT|REVOKE|COMMENT)\b/i;

const say = (s = '') => process.stdout.write(`${s}\n`);

/** `name=value` of a PostgreSQL setting: the name checked here, the value by the server. */
function pgSetting(v: string, prev: [string, string][]): [string, string][] {
  const m = /^([a-z_][a-z0-9_.]*)=(.*)$/.exec(v);
  if (!m?.[1] || m[2] === undefined) throw new InvalidArgumentError('must be name=value, e.g. autovacuum=off');
  return [...prev, [m[1], m[2]]];
}

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

// --- counters read from files that grow: the audit log and PostgreSQL's log -------------------

/** Reads the lines appended to a file since the last call. */
class Tail {
  private offset = 0;
  private rest = '';
  constructor(private readonly path: string) {}
  /** Skips what is there now. */
  skip(): void {
    this.lines();
  }
  lines(): string[] {
    if (!existsSync(this.path)) return [];
    const size = statSync(this.path).size;
    if (size <= this.offset) return [];
    const fd = openSync(this.path, 'r');
    try {
      const buf = Buffer.alloc(size - this.offset);
      readSync(fd, buf, 0, buf.length, this.offset);
      this.offset = size;
      const text = this.rest + buf.toString('utf8');
      const parts = text.split('\n');
      this.rest = parts.pop() ?? '';
      return parts;
    } finally {
      closeSync(fd);
    }
  }
}

const bump = (m: Map<string, number>, k: string, by = 1) => m.set(k, (m.get(k) ?? 0) + by);
const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

interface ApiTally {
  byVerb: Map<string, number>;
  byRequest: Map<string, number>;
  failed: Map<string, number>;
}
const newApiTally = (): ApiTally => ({ byVerb: new Map(), byRequest: new Map(), failed: new Map() });

interface AuditEvent {
  stage?: string;
  verb?: string;
  user?: { username?: string };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
}

/** Requests per user from the audit log; a watch counts once, when it starts. */
function tallyAudit(lines: string[]): Map<string, ApiTally> {
  const out = new Map<string, ApiTally>();
  for (const line of lines) {
    if (!line) continue;
    let e: AuditEvent;
    try {
      e = JSON.parse(line) as AuditEvent;
    } catch {
      continue;
    }
    const verb = e.verb ?? '?';
    if (verb === 'watch' ? e.stage !== 'ResponseStarted' : e.stage !== 'ResponseComplete') continue;
    const user = e.user?.username ?? '?';
    const t = out.get(user) ?? newApiTally();
    out.set(user, t);
    bump(t.byVerb, verb);
    const r = e.objectRef;
    // In the operator's namespace, which Secret (shards by their prefix): the config and credentials reads.
    const own = r?.namespace === OPERATOR_NAMESPACE ? ` ${OPERATOR_NAMESPACE}/${(r.name ?? '').replace(/-[0-9a-f]{16}$/, '-*')}` : '';
    const what = `${verb} ${r?.resource ?? '?'}${r?.subresource ? `/${r.subresource}` : ''}${own}`;
    bump(t.byRequest, what);
    const code = e.responseStatus?.code ?? 0;
    if (code >= 400) bump(t.failed, `${what} -> ${code}`);
  }
  return out;
}

interface SqlTally {
  /** Queries (round trips): statements sent together are one. */
  queries: number;
  ddl: number;
  bySignature: Map<string, number>;
  /** Sessions started (log_connections), by who: see sessionKind. */
  sessions: Map<string, number>;
}

/** Who opened a session, from its user: set in main once the sandbox's users are known. */
let sessionKind: (user: string) => string = () => 'all';

/** The admin's queries in PostgreSQL's log (log_statement=all is set for that role only), and every session started. */
function tallySql(lines: string[]): SqlTally {
  const t: SqlTally = { queries: 0, ddl: 0, bySignature: new Map(), sessions: new Map() };
  // A query's text runs on over the lines that follow its LOG line, each starting with a tab.
  const queries: string[] = [];
  let open = false;
  for (const line of lines) {
    const c = /LOG: {2}connection authorized: user=(\S+)/.exec(line);
    if (c) {
      bump(t.sessions, sessionKind(c[1] ?? ''));
      open = false;
      continue;
    }
    const m = /LOG: {2}(?:statement|execute [^:]*): (.*)$/.exec(line);
    if (m) {
      queries.push(m[1] ?? '');
      open = true;
    } else if (open && line.startsWith('\t')) queries[queries.length - 1] += `\n${line.slice(1)}`;
    else open = false;
  }
  for (const query of queries) {
    const text = query.trim();
    t.queries++;
    // Statements sent together (one line each, ending in ';'): DDL if any of them is.
    if (text.split(/;\s*\n/).some((st) => DDL.test(st.trim()))) t.ddl++;
    const sig = text
      .replace(/'(?:[^']|'')*'/g, "'?'")
      .replace(/"(?:[^"]|"")*"/g, '"?"')
      .replace(/\s+/g, ' ')
      .slice(0, 72);
    bump(t.bySignature, sig);
  }
  return t;
}

// --- the operator process: /proc and /metrics -----------------------------------------------------

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function procStat(pid: number): { ppid: number; ticks: number; own: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces: state is field 3, utime 14 ... cstime 17.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const n = (i: number) => Number(f[i - 3] ?? 0);
    return { ppid: n(4), ticks: n(14) + n(15) + n(16) + n(17), own: n(14) + n(15) };
  } catch {
    return undefined;
  }
}

/** The process and every live descendant. */
function tree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    const pid = Number(d);
    if (!Number.isInteger(pid)) continue;
    const st = procStat(pid);
    if (st) parent.set(pid, st.ppid);
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, pp] of parent) if (pp === out[i]) out.push(pid);
  return out;
}

/** CPU seconds (user + system, children that exited included) of a process tree. */
function cpuSeconds(root: number): number {
  return tree(root).reduce((s, pid) => s + (procStat(pid)?.ticks ?? 0), 0) / CLK_TCK;
}

/**
 * CPU seconds of the other parts of the sandbox, by process name (user + system, children that
 * exited included, so PostgreSQL's ended backends count through the postmaster), of the kernel's
 * own work, and of the whole machine (/proc/stat): where the two cores went.
 */
const COMPONENTS = [
  'kube-apiserver',
  'etcd',
  'kube-controller-manager',
  'postgres',
  'pgbouncer',
  'pooler agent',
  'bench',
  'kernel',
] as const;
function componentSeconds(): Map<string, number> {
  const out = new Map<string, number>(COMPONENTS.map((c) => [c, 0]));
  // The sandbox's processes only (the bench started them): another test run's servers do not count.
  for (const pid of tree(process.pid)) {
    let comm: string;
    try {
      comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (comm === 'kube-controller') comm = 'kube-controller-manager';
      else if (pid === process.pid) comm = 'bench';
      else if (!out.has(comm)) {
        // PgBouncer fetched from Debian stable runs through that tree's own loader: its name is the
        // loader's, its command line says what it is. The agent is a node process like the operator.
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        if (argv.some((a) => a.endsWith('/pgbouncer'))) comm = 'pgbouncer';
        else if (argv.includes('agent') && argv.some((a) => a.startsWith('--dir='))) comm = 'pooler agent';
      }
    } catch {
      continue;
    }
    if (out.has(comm)) out.set(comm, (out.get(comm) ?? 0) + (procStat(pid)?.ticks ?? 0) / CLK_TCK);
  }
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
  const busy = cpu.reduce((a, b, i) => (i === 3 || i === 4 ? a : a + (b ?? 0)), 0);
  out.set('machine', busy / CLK_TCK);
  // The kernel's own work, which no process of the sandbox is charged with: its threads (kthreadd,
  // pid 2, and its children: writeback of PostgreSQL's new files, the journal, deferred network
  // work) and the time in interrupts (loopback traffic is softirq work).
  let kernel = (cpu[5] ?? 0) + (cpu[6] ?? 0);
  for (const d of readdirSync('/proc')) {
    const pid = Number(d);
    const st = Number.isInteger(pid) ? procStat(pid) : undefined;
    if (st && (pid === 2 || st.ppid === 2)) kernel += st.own;
  }
  out.set('kernel', kernel / CLK_TCK);
  return out;
}

/**
 * PostgreSQL's CPU by kind of process: the postmaster's children sampled every 250 ms from /proc
 * (their title names the role of a backend, or the kind of a background process). A process that
 * ends between two samples keeps the CPU of its last sample; what no sample saw (a login check's
 * backend can start and end between two) is the postmaster's reaped total minus the rest.
 */
class PgCpuSampler {
  private readonly last = new Map<number, { kind: string; ticks: number }>();
  private readonly ended = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly postmaster: number,
    private readonly kindOf: (title: string) => string,
  ) {}
  start(): void {
    // Every 250 ms, not 50: the bench shares the cores it measures (with --pg-cores, those of the
    // API server and the operator), and each sample reads two files per PostgreSQL process. The
    // total is exact whatever the interval (the postmaster's reaped children); only the split by
    // kind of short-lived backends is coarser (more of them in "unseen").
    this.timer = setInterval(() => this.sample(), 250);
  }
  stop(): void {
    clearInterval(this.timer);
  }
  private sample(): void {
    const live = new Set<number>();
    // The postmaster's children from its own list (a scan of all of /proc at every sample would cost the
    // machine more than what it measures); its children have none of their own.
    let children: number[];
    try {
      children = readFileSync(`/proc/${this.postmaster}/task/${this.postmaster}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    } catch {
      children = tree(this.postmaster).slice(1);
    }
    for (const pid of children) {
      const st = procStat(pid);
      if (!st) continue;
      let title: string;
      try {
        title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      } catch {
        continue;
      }
      live.add(pid);
      const prev = this.last.get(pid);
      // A backend's title changes with what it does; its kind (its role) does not, once known.
      const kind = prev && prev.kind !== PG_STARTING ? prev.kind : this.kindOf(title);
      this.last.set(pid, { kind, ticks: st.ticks });
    }
    for (const [pid, v] of this.last)
      if (!live.has(pid)) {
        bump(this.ended, v.kind, v.ticks);
        this.last.delete(pid);
      }
  }
  /** CPU seconds by kind since the server started (the postmaster's own and the unseen included). */
  totals(): Map<string, number> {
    this.sample();
    const out = new Map(this.ended);
    for (const v of this.last.values()) bump(out, v.kind, v.ticks);
    const seen = total(out);
    const all = cpuSeconds(this.postmaster) * CLK_TCK;
    const own = procStat(this.postmaster)?.own ?? 0;
    bump(out, 'postmaster', own);
    bump(out, 'unseen (ended between samples)', Math.max(0, all - seen - own));
    return new Map([...out].map(([k, v]) => [k, v / CLK_TCK]));
  }
}

/** VmRSS of a process (and its live descendants), in MiB. */
function rssMiB(root: number, children = true): number {
  let kb = 0;
  for (const pid of children ? tree(root) : [root]) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return kb / 1024;
}

type Samples = Map<string, number>;

async function scrape(port: number): Promise<Samples> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const out: Samples = new Map();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of the samples of a metric whose labels include every given pair. */
function metric(s: Samples, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [k, v] of s) {
    const brace = k.indexOf('{');
    if ((brace < 0 ? k : k.slice(0, brace)) !== name) continue;
    if (Object.entries(labels).every(([l, val]) => k.includes(`${l}="${val}"`))) sum += v;
  }
  return sum;
}

// --- admin sessions: pg_stat_activity sampled as the superuser -----------------------------------

class SessionSampler {
  private max = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;
  constructor(
    private readonly client: pg.Client,
    private readonly user: string,
  ) {}
  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          const r = await this.client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [
            this.user,
          ]);
          this.max = Math.max(this.max, r.rows[0]?.n ?? 0);
        } catch {
          /* the server is going away */
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
  }
  /** The most sessions seen since the last call. */
  take(): number {
    const m = this.max;
    this.max = 0;
    return m;
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.client.end().catch(() => undefined);
  }
}

// --- phases -----------------------------------------------------------------------------------------

const PG_BACKGROUND = [
  'checkpointer',
  'background writer',
  'walwriter',
  'autovacuum launcher',
  'autovacuum worker',
  'logical replication',
  'logger',
  'stats',
  'archiver',
];

const PG_STARTING = 'backends not yet logged in';

/**
 * The kind of a postmaster's child from its title: "postgres: <role> <database> <host> <what>" for a
 * backend, "postgres: <host>(<port>)" for one still authenticating, the postmaster's own command line for one just forked.
 */
function pgKind(title: string, admin: string, superuser: string): string {
  // Just forked, a child still has the postmaster's command line.
  if (!title.startsWith('postgres:')) return PG_STARTING;
  const t = title.replace(/^postgres:\s*/, '');
  const bg = PG_BACKGROUND.find((b) => t.startsWith(b));
  if (bg) return bg;
  const role = t.split(/\s+/)[0] ?? '';
  if (role.includes('(') || role === '[local]' || /^\d/.test(role)) return PG_STARTING;
  return role === admin ? 'admin sessions' : role === superuser ? 'superuser (the bench)' : 'tenant logins';
}

const pgDelta = (a: Map<string, number>, b: Map<string, number>) => new Map([...a].map(([k, v]) => [k, v - (b.get(k) ?? 0)]));
/** "2.0/tenant (admin 1.0, tenants 1.0)": sessions started, per tenant, by who. */
const sessionsLine = (m: Map<string, number>, n: number) =>
  `${fmt(total(m) / n, 1)}/tenant (${
    [...m]
      .sort((x, y) => y[1] - x[1])
      .map(([k, v]) => `${k} ${fmt(v / n, 2)}`)
      .join(', ') || '-'
  })`;

const pgKinds = (m: Map<string, number>) =>
  [...m]
    .filter(([, v]) => v >= 0.05)
    .sort((x, y) => y[1] - x[1])
    .map(([k, v]) => `${k} ${fmt(v, 1)} s`)
    .join(', ') || '-';

interface Phase {
  seconds: number;
  /** PostgreSQL's CPU seconds by kind of process (PgCpuSampler). */
  pg: Map<string, number>;
  api: Map<string, ApiTally>;
  sql: SqlTally;
  metrics: Samples;
  prevMetrics: Samples;
  cpu: number;
  /** CPU seconds of the sandbox's other parts and of the whole machine (componentSeconds). */
  components: Map<string, number>;
  rss: number;
  maxSessions: number;
}

class Recorder {
  private t = performance.now();
  private metrics: Samples = new Map();
  private cpu = 0;
  private components = new Map<string, number>();
  private pg = new Map<string, number>();
  constructor(
    private readonly audit: Tail,
    private readonly pgLog: Tail,
    private readonly sessions: SessionSampler,
    private readonly op: { pid: number; metricsPort: number } | undefined,
    private readonly pgCpu: PgCpuSampler,
  ) {}
  /** Starts counting from now. */
  async reset(): Promise<void> {
    await this.mark();
  }
  /** What happened since the last mark. */
  async mark(): Promise<Phase> {
    const now = performance.now();
    const metrics = this.op ? await scrape(this.op.metricsPort).catch(() => new Map<string, number>()) : new Map<string, number>();
    const cpu = this.op ? cpuSeconds(this.op.pid) : 0;
    const components = componentSeconds();
    const pgNow = this.pgCpu.totals();
    const p: Phase = {
      seconds: (now - this.t) / 1000,
      pg: pgDelta(pgNow, this.pg),
      api: tallyAudit(this.audit.lines()),
      sql: tallySql(this.pgLog.lines()),
      metrics,
      prevMetrics: this.metrics,
      cpu: cpu - this.cpu,
      components: new Map([...components].map(([k, v]) => [k, v - (this.components.get(k) ?? 0)])),
      rss: this.op ? rssMiB(this.op.pid) : 0,
      maxSessions: this.sessions.take(),
    };
    this.t = now;
    this.metrics = metrics;
    this.cpu = cpu;
    this.components = components;
    this.pg = pgNow;
    return p;
  }
}

const delta = (p: Phase, name: string, labels: Record<string, string> = {}) =>
  metric(p.metrics, name, labels) - metric(p.prevMetrics, name, labels);

const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}
const verbs = (m: Map<string, number> | undefined) =>
  [...(m ?? new Map<string, number>()).entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || '-';

function table(rows: [string, string][]): void {
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) say(`  ${k.padEnd(w)}  ${v}`);
}

function topList(title: string, m: Map<string, number>, per: number, limit = 14): void {
  const rows = [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit);
  if (rows.length === 0) return;
  say(title);
  for (const [k, v] of rows) say(`  ${String(v).padStart(7)}  ${fmt(v / per, 2).padStart(7)}/tenant  ${k}`);
}

/**
 * The burst's CPU in two parts, PostgreSQL's and the rest's (the Kubernetes side: API server, etcd,
 * operator, agent, PgBouncer, the bench), against PostgreSQL's in the floor with its logins. On a
 * machine that both saturate, wall time follows CPU: PostgreSQL's part alone, over every core,
 * bounds the burst from below whatever the rest costs.
 */
/**
 * --pg-cores: PostgreSQL's processes (the postmaster's children inherit its affinity) on the first
 * `pgCores` cores, the bench and everything it started or will start on the others. taskset -a sets
 * every thread of a process (Go's, libuv's); threads made later inherit from their maker.
 */
function splitCores(postmaster: number, pgCores: number): void {
  const cores = cpus().length;
  if (!Number.isInteger(pgCores) || pgCores < 1 || pgCores >= cores)
    throw new Error(`--pg-cores ${pgCores}: between 1 and ${cores - 1} on this ${cores}-core machine`);
  const pgList = `0-${pgCores - 1}`;
  const restList = `${pgCores}-${cores - 1}`;
  const pgPids = new Set(tree(postmaster));
  const pin = (pid: number, list: string) => {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', list, String(pid)], { stdio: 'ignore' });
    } catch {
      /* gone meanwhile */
    }
  };
  for (const pid of pgPids) pin(pid, pgList);
  for (const pid of tree(process.pid)) if (!pgPids.has(pid)) pin(pid, restList);
}

/** The cores PostgreSQL may use, and the rest's (the same cores unless --pg-cores split them). */
function coreSplit(o: { pgCores?: number | undefined }): { pg: number; rest: number; all: number } {
  const all = cpus().length;
  return o.pgCores === undefined ? { pg: all, rest: all, all } : { pg: o.pgCores, rest: all - o.pgCores, all };
}

/** The machine's busy seconds in a phase that no part above (nor the operator) was charged with: other processes of the machine. */
function untracked(p: Phase): number {
  const parts = [...p.components].filter(([k]) => k !== 'machine').reduce((a, [, v]) => a + v, 0);
  return Math.max(0, (p.components.get('machine') ?? 0) - parts - p.cpu);
}

function cpuSplit(
  components: Map<string, number>,
  floorPg: number,
  floorSeconds: number,
  burstSeconds: number,
  split: { pg: number; rest: number; all: number },
): string {
  const machine = components.get('machine') ?? 0;
  const pgBurst = components.get('postgres') ?? 0;
  // What no operator can take away: PostgreSQL's work and the API server's and etcd's for the writes.
  const kube = ['kube-apiserver', 'etcd', 'kube-controller-manager'].reduce((a, k) => a + (components.get(k) ?? 0), 0);
  const shared = split.pg === split.all;
  return [
    `postgres ${fmt(pgBurst, 1)} s (the floor with its logins ${fmt(floorPg, 1)} s)`,
    `the rest ${fmt(machine - pgBurst, 1)} s (API server, etcd and kube-controller-manager ${fmt(kube, 1)} s)`,
    `postgres alone over ${split.pg} core(s): ${fmt(pgBurst / split.pg, 1)} s = ${fmt(pgBurst / split.pg / floorSeconds, 2)} x floor`,
    shared
      ? `with those three on the same cores, an operator, agent, PgBouncer and bench that cost nothing could not go below ${fmt((pgBurst + kube) / split.all / floorSeconds, 2)} x floor`
      : `the rest over its ${split.rest} core(s): ${fmt((machine - pgBurst) / split.rest, 1)} s`,
    `the burst took ${fmt(burstSeconds, 1)} s`,
  ].join('; ');
}

// --- the floor --------------------------------------------------------------------------------------

/** The floor's figures: its time and CPU, then its logins' (timed on their own). */
interface FloorResult {
  seconds: number;
  loginSeconds: number;
  sessions: number;
  cpu: Map<string, number>;
  pg: Map<string, number>;
  loginCpu: Map<string, number>;
}

/**
 * The statements a new tenant gets from the operator (provision.ts: ensureRole, ensureDatabase and
 * its privileges, the schema public hand-over inside the new database), without the reads that
 * decide them, for N tenants at once over AdminPools: its pool for server-wide statements and its
 * single sessions inside databases, so at most maxSessionsPerServer admin sessions.
 */
async function floor(pgs: PgServer, n: number, pgCpu: PgCpuSampler): Promise<FloorResult> {
  const before = componentSeconds();
  const pgBefore = pgCpu.totals();
  const pools = new AdminPools(createLogger('silent'));
  const ep: ServerEndpoint = { host: pgs.host, port: pgs.port, sslMode: 'disable' };
  const creds: AdminCredentials = { username: pgs.admin.user, password: pgs.admin.password, database: 'postgres' };
  const pool = pools.get('floor', ep, creds);
  const limit = pLimit(pools.maxSessionsPerServer);
  const names = Array.from({ length: n }, (_, i) => `floor_${i}`);
  const passwords = new Map<string, string>();
  const t0 = performance.now();
  try {
    await Promise.all(
      names.map((name) =>
        limit(async () => {
          const password = generatePassword();
          passwords.set(name, password);
          const verifier = scramVerifier(password, deterministicSalt(name, password));
          const uid = randomUUID();
          const marker = sql.ownerMarker({ namespace: NS, name, uid, server: 'floor' });
          await sql.createRole(pool, name, verifier, 20, marker);
          // As ensureDatabase: created closed with its creation tag, then marked and opened.
          const tag = sql.creationTag(uid);
          await sql.createDatabase(pool, name, tag);
          await sql.openNewDatabase(pool, name, marker, tag, 20);
          await pools.withDatabase(ep, creds, name, (db) => sql.handOverDatabase(db, name, name, true));
        }),
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    const after = componentSeconds();
    const cpu = new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]));
    const pgCpuOfFloor = pgDelta(pgCpu.totals(), pgBefore);
    // The same floor with the one login per new tenant the operator makes to prove it (through
    // PgBouncer there; here directly, the same backend start): timed on its own, added to the floor.
    const t1 = performance.now();
    const beforeLogins = componentSeconds();
    const failed = (await Promise.all(names.map((name) => limit(async () => tryLogin(ep, name, passwords.get(name) ?? '', name))))).filter(
      (e) => e !== undefined,
    );
    if (failed.length) throw new Error(`the floor's logins failed: ${failed[0] instanceof Error ? failed[0].message : 'unknown error'}`);
    const loginSeconds = (performance.now() - t1) / 1000;
    const afterLogins = componentSeconds();
    const loginCpu = new Map([...afterLogins].map(([k, v]) => [k, v - (beforeLogins.get(k) ?? 0)]));
    // Gone again before the operator starts: its server re-check must not meet them. As the
    // superuser: DROP DATABASE ... WITH (FORCE) must also end an autovacuum worker inside.
    const su = await pgs.superClient();
    try {
      for (const name of names) {
        await sql.dropDatabase(su, name);
        await sql.dropRole(su, name);
      }
      // What the floor wrote and dropped is flushed now, not by a checkpoint during the burst,
      // which would charge the floor's writes to the operator.
      await su.query('CHECKPOINT');
    } finally {
      await su.end();
    }
    return { seconds, loginSeconds, sessions: pools.maxSessionsPerServer, cpu, pg: pgCpuOfFloor, loginCpu };
  } finally {
    await pools.closeAll();
  }
}

// --- main ---------------------------------------------------------------------------------------------

/** The chart's settings for the operator process (charts/tenantdb/values.yaml): what a user deploys. */
function chartSettings(): { nodeOptions?: string | undefined; mallocArenaMax?: string | undefined } {
  const values = (YAML.parse(readFileSync(join(import.meta.dirname, '..', 'charts', 'tenantdb', 'values.yaml'), 'utf8')) ?? {}) as {
    nodeOptions?: unknown;
    mallocArenaMax?: unknown;
  };
  // As the chart's template quotes them: a number (mallocArenaMax: 2) is taken as its text.
  const text = (v: unknown) => (typeof v === 'number' ? String(v) : typeof v === 'string' && v.trim() ? v.trim() : undefined);
  return { nodeOptions: text(values.nodeOptions), mallocArenaMax: text(values.mallocArenaMax) };
}

interface Options {
  workers?: number;
  idleMinutes: number;
  resync: string;
  missingServer: boolean;
  floor: boolean;
  floorAfter: boolean;
  timeout: number;
  keep: boolean;
  sources: boolean;
  nodeOptions?: string;
  chartSettings: boolean;
  profile?: string;
  leaderElect: boolean;
  pgSet: [string, string][];
  pgCores?: number;
}

type Td = k8s.KubernetesObject & {
  status?: { conditions?: { type: string; status: string; lastTransitionTime?: string; reason?: string }[] };
};
const readyOf = (o: Td) => o.status?.conditions?.find((c) => c.type === 'Ready');

const cleanups: (() => Promise<void>)[] = [];
async function cleanup(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
}

async function main(n: number, o: Options): Promise<void> {
  if (o.profile) {
    o.profile = resolve(o.profile);
    mkdirSync(o.profile, { recursive: true });
  }
  if (!o.sources) {
    // The operator as the image runs it: the bundle of what is checked out now, never a stale one.
    say('building the operator (npm run build) ...');
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const dir = mkdtempSync(join(tmpdir(), 'tenantdb-bench-provision-'));
  cleanups.push(async () => {
    if (o.keep) say(`logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });
  const auditLog = join(dir, 'audit.log');
  writeFileSync(
    join(dir, 'audit-policy.yaml'),
    [
      'apiVersion: audit.k8s.io/v1',
      'kind: Policy',
      'omitStages: ["RequestReceived"]',
      'rules:',
      `  - level: Metadata`,
      `    users: ["${OPERATOR_USER}", "${AGENT_USER}"]`,
      '  - level: None',
      '',
    ].join('\n'),
  );
  say(`tenantdb provisioning bench: N=${n}${o.missingServer ? ' (missing server)' : ''}; starting the sandbox in ${dir} ...`);
  const sb = await startSandbox(dir, {
    apiServerArgs: [
      `--audit-policy-file=${join(dir, 'audit-policy.yaml')}`,
      `--audit-log-path=${auditLog}`,
      '--audit-log-format=json',
      '--audit-log-mode=blocking',
      // The last of a repeated flag wins.
      ...(o.profile ? ['--profiling=true'] : []),
    ],
  });
  cleanups.push(async () => {
    // --keep: PostgreSQL's log too (its folder goes with the sandbox).
    if (o.keep) copyFileSync(join(sb.pg.dir, 'postgres.log'), join(dir, 'postgres.log'));
    await sb.stop();
  });
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(sb.cp.adminKubeconfig);
  // Connections kept alive, as kubectl applying one file does: a TLS handshake per request would
  // charge the bench's own requests to the API server's CPU in the burst.
  const custom = makeApiClient(kc, k8s.CustomObjectsApi);

  sessionKind = (user) =>
    user === sb.pg.admin.user
      ? 'admin'
      : user === sb.pg.superuser.user
        ? 'the bench'
        : /^(?:floor_\d+|bench_t\d+)$/.test(user)
          ? 'tenants'
          : user;
  // The admin's statements go to the log; the superuser's sampling does not.
  const su = await sb.pg.superClient();
  await su.query(`ALTER ROLE ${sql.id(sb.pg.admin.user)} SET log_statement = 'all'`);
  // Every session's start is logged too: sessions per tenant, by who opened them, are counted from it.
  const pgSettings: [string, string][] = [['log_connections', 'on'], ...o.pgSet];
  for (const [name, value] of pgSettings) {
    const r = await su.query<{ context: string }>('SELECT context FROM pg_catalog.pg_settings WHERE name = $1', [name]);
    const context = r.rows[0]?.context;
    if (!context) throw new Error(`--pg-set ${name}: PostgreSQL has no such setting`);
    if (context === 'postmaster' || context === 'internal') throw new Error(`--pg-set ${name}: takes effect only at a server start`);
    // ALTER SYSTEM takes no parameters: the value goes as a literal (the server checks it).
    await su.query(`ALTER SYSTEM SET ${sql.id(name)} = ${pg.escapeLiteral(value)}`);
  }
  {
    const bad = await su.query<{ name: string; error: string }>(
      'SELECT name, error FROM pg_catalog.pg_file_settings WHERE name = ANY($1) AND error IS NOT NULL',
      [pgSettings.map(([k]) => k)],
    );
    if (bad.rows[0]) throw new Error(`--pg-set ${bad.rows[0].name}: ${bad.rows[0].error}`);
    const asked = (await su.query<{ t: Date }>('SELECT pg_catalog.now() AS t')).rows[0]?.t ?? new Date(0);
    await su.query('SELECT pg_catalog.pg_reload_conf()');
    // The reload is a signal: the floor's first sessions must not start before the postmaster read it.
    await waitFor(
      'PostgreSQL to reload its settings',
      async () => {
        const c = await sb.pg.superClient();
        try {
          const r = await c.query<{ t: Date }>('SELECT pg_catalog.pg_conf_load_time() AS t');
          return (r.rows[0]?.t.getTime() ?? 0) >= asked.getTime();
        } finally {
          await c.end();
        }
      },
      10_000,
      100,
    );
  }
  const sessions = new SessionSampler(await sb.pg.superClient(), sb.pg.admin.user);
  await su.end();
  sessions.start();
  cleanups.push(() => sessions.stop());
  const postmaster = readdirSync('/proc')
    .map(Number)
    .find((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return argv[1] === '-D' && argv[2] === join(sb.pg.dir, 'data');
      } catch {
        return false;
      }
    });
  if (!postmaster) throw new Error("PostgreSQL's postmaster was not found in /proc");
  if (o.pgCores !== undefined) splitCores(postmaster, o.pgCores);
  const pgCpu = new PgCpuSampler(postmaster, (t) => pgKind(t, sb.pg.admin.user, sb.pg.superuser.user));
  pgCpu.start();
  cleanups.push(async () => pgCpu.stop());
  const pgLog = new Tail(join(sb.pg.dir, 'postgres.log'));
  const audit = new Tail(auditLog);

  await apply(kc, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } }]);
  if (!o.missingServer) {
    const pooler = await startPooler({
      agentKubeconfig: await agentKubeconfig(sb.cp, join(dir, 'agent.kubeconfig'), 'default-pooler'),
      secret: `${OPERATOR_NAMESPACE}/default-pooler`,
      logDir: dir,
      name: 'bench',
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
  }

  let floorResult: (FloorResult & { sql: SqlTally; maxSessions: number }) | undefined;
  if (o.floor && !o.missingServer) {
    say(`floor: the operator's statements for ${n} new tenants over the operator's admin sessions ...`);
    pgLog.skip();
    sessions.take();
    const f = await floor(sb.pg, n, pgCpu);
    floorResult = { ...f, sql: tallySql(pgLog.lines()), maxSessions: sessions.take() };
    say(`floor: ${fmt(f.seconds, 2)} s; one login per tenant ${fmt(f.loginSeconds, 2)} s more`);
  }

  const metricsPort = await freePort();
  // The operator as the chart runs it: its V8 heap flags and glibc's malloc arenas from the chart's
  // values, unless --node-options (or --no-chart-settings) says otherwise.
  const chart = o.chartSettings ? chartSettings() : {};
  const nodeOptions = o.nodeOptions ?? chart.nodeOptions;
  const mallocArenaMax = chart.mallocArenaMax;
  const op = startOperatorProcess({
    kubeconfig: sb.operatorKubeconfig,
    logFile: join(dir, 'operator.log'),
    resync: o.resync,
    extraArgs: [
      `--metrics-port=${metricsPort}`,
      ...(o.workers !== undefined ? [`--workers=${o.workers}`] : []),
      ...(o.leaderElect ? [] : ['--no-leader-elect']),
    ],
    built: !o.sources,
    ...(nodeOptions || o.profile
      ? { nodeOptions: [nodeOptions ?? '', o.profile ? `--cpu-prof --cpu-prof-dir=${o.profile}` : ''].join(' ').trim() }
      : {}),
    ...(mallocArenaMax ? { env: { MALLOC_ARENA_MAX: mallocArenaMax } } : {}),
  });
  cleanups.push(() => op.stop());
  const pid = op.child.pid ?? 0;
  await waitFor('the operator /readyz', async () => (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).ok, 120_000, 200);
  if (!o.missingServer) {
    await waitFor(
      'PostgresServer default to be Ready',
      async () => {
        const s = (await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: 'postgresservers',
          name: 'default',
        })) as Td;
        return readyOf(s)?.status === 'True';
      },
      120_000,
    );
  }
  // Let the start-up settle (the first server reconcile, informers' lists) before counting.
  await new Promise((r) => setTimeout(r, 3000));
  const rec = new Recorder(audit, pgLog, sessions, { pid, metricsPort }, pgCpu);
  await rec.reset();
  const rssBefore = rssMiB(pid);

  // The burst: watch first, then create all N at once (16 requests in flight).
  const names = Array.from({ length: n }, (_, i) => `t${String(i).padStart(5, '0')}`);
  const wanted = new Set(names);
  const appliedAt = new Map<string, number>();
  const doneAt = new Map<string, number>();
  const finals = new Map<string, Td>();
  const isDone = (t: Td) => (o.missingServer ? (t.status?.conditions?.length ?? 0) > 0 : readyOf(t)?.status === 'True');
  const see = (t: Td) => {
    const name = t.metadata?.name ?? '';
    if (!wanted.has(name)) return;
    finals.set(name, t);
    if (!doneAt.has(name) && isDone(t)) doneAt.set(name, performance.now());
  };
  // A watch that ends (the API server closes watches after a while) is made up for by lists.
  let watchEnded = false;
  const watch = await new k8s.Watch(kc).watch(
    `/apis/${GROUP}/${VERSION}/namespaces/${NS}/tenantdatabases`,
    {},
    (_type: string, obj: Td) => see(obj),
    () => {
      watchEnded = true;
    },
  );
  cleanups.push(async () => watch.abort());
  // --profile: the API server's CPU profile over the burst's first seconds (go tool pprof reads it).
  const apiProfile = o.profile
    ? new Promise<void>((resolve) => {
        const seconds = Math.max(10, Math.min(60, Math.round(n / 10)));
        execFile(
          join(sb.cp.binDir, 'kubectl'),
          ['--kubeconfig', sb.cp.adminKubeconfig, 'get', '--raw', `/debug/pprof/profile?seconds=${seconds}`],
          { encoding: 'buffer', maxBuffer: 256 << 20, timeout: (seconds + 30) * 1000 },
          (err, stdout) => {
            if (err) say(`profile: the API server's profile failed: ${err.message}`);
            else writeFileSync(join(o.profile ?? dir, 'kube-apiserver.pprof'), stdout);
            resolve();
          },
        );
      })
    : Promise.resolve();
  cleanups.push(() => apiProfile);
  const t0 = performance.now();
  const limit = pLimit(16);
  await Promise.all(
    names.map((name) =>
      limit(async () => {
        appliedAt.set(name, performance.now());
        await custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: 'tenantdatabases',
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'TenantDatabase',
            metadata: { name, namespace: NS },
            spec: o.missingServer ? { serverRef: { name: 'missing' } } : {},
          },
        });
      }),
    ),
  );
  const appliedSeconds = (performance.now() - t0) / 1000;
  say(
    `burst: ${n} TenantDatabases created in ${fmt(appliedSeconds, 2)} s; waiting for ${o.missingServer ? 'a status on each' : 'Ready on each'} ...`,
  );
  // The watch is the clock; should it end, a list every 5 s. (Not a list every 5 s anyway: N
  // objects serialised by the API server and parsed here each time would be the bench's own load,
  // counted in the burst: 5 MB a list at N = 1,000.)
  const deadline = Date.now() + o.timeout * 1000;
  let lastReport = Date.now();
  while (doneAt.size < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1000));
    if (Date.now() - lastReport >= 5000) {
      lastReport = Date.now();
      if (watchEnded) {
        const l = (await custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: 'tenantdatabases',
        })) as {
          items: Td[];
        };
        for (const t of l.items) see(t);
      }
      say(`  ${fmt((performance.now() - t0) / 1000, 0)} s: ${doneAt.size}/${n}${watchEnded ? ' (the watch ended: listing)' : ''}`);
    }
  }
  const burst = await rec.mark();
  const rssAloneAtBurst = rssMiB(pid, false);
  const lastDone = Math.max(...doneAt.values());
  const burstSeconds = doneAt.size ? (lastDone - t0) / 1000 : NaN;
  const perTenant = [...doneAt.entries()].map(([k, v]) => (v - (appliedAt.get(k) ?? t0)) / 1000);
  // The same from the API's own clocks (second resolution): creationTimestamp -> Ready's lastTransitionTime.
  const byApi = [...finals.values()]
    .filter((t) => readyOf(t)?.status === 'True' && readyOf(t)?.lastTransitionTime)
    .map((t) => (Date.parse(readyOf(t)?.lastTransitionTime ?? '') - Date.parse(String(t.metadata?.creationTimestamp ?? ''))) / 1000);

  // What one tenant costs the API server to store and send: its object and its Secret, as read back.
  const sample = [...finals.values()].find((t) => readyOf(t)?.status === 'True');
  const sampleSecret = (sample?.status as { secretName?: string } | undefined)?.secretName;
  const someSecret =
    o.missingServer || !sampleSecret
      ? undefined
      : await makeApiClient(kc, k8s.CoreV1Api).readNamespacedSecret({ name: sampleSecret, namespace: NS });
  const size = (x: unknown) => Buffer.byteLength(JSON.stringify(x ?? {}));

  // The floor again, now that the burst is over: the machine's speed drifts within a run (this
  // round's floors of the same statements took 10 to 19 s on one machine within an hour), and a
  // second floor shows how far. Not used for the ratio, which stays against the floor before.
  let floorAfter: FloorResult | undefined;
  if (floorResult && o.floorAfter) {
    // As before the burst: what the operator still does just after its last tenant is Ready (a
    // server reconcile, a pooler write) is not the machine's drift.
    await new Promise((r) => setTimeout(r, 3000));
    say('floor again, after the burst ...');
    floorAfter = await floor(sb.pg, n, pgCpu);
    say(`floor after: ${fmt(floorAfter.seconds, 2)} s; one login per tenant ${fmt(floorAfter.loginSeconds, 2)} s more`);
    // The idle minutes count from here: what the floor cost is not theirs.
    await rec.mark();
  }

  // Idle: nothing changes; per minute.
  const idle: Phase[] = [];
  for (let m = 0; m < o.idleMinutes; m++) {
    say(`idle: minute ${m + 1} of ${o.idleMinutes} ...`);
    await new Promise((r) => setTimeout(r, 60_000));
    idle.push(await rec.mark());
  }

  // --- the report ---
  const opApi = burst.api.get(OPERATOR_USER);
  const agentApi = burst.api.get(AGENT_USER);
  const tenantRec = delta(burst, 'tenantdb_reconcile_total', { controller: 'tenantdatabase' });
  const serverRec = delta(burst, 'tenantdb_reconcile_total', { controller: 'postgresserver' });
  const errRec = delta(burst, 'tenantdb_reconcile_total', { result: 'error' });
  const poolerWrites = delta(burst, 'tenantdb_pooler_config_writes_total');
  const poolerBytes = delta(burst, 'tenantdb_pooler_config_bytes_total');
  const tenantSecs = delta(burst, 'tenantdb_reconcile_duration_seconds_sum', { controller: 'tenantdatabase' });
  const serverSecs = delta(burst, 'tenantdb_reconcile_duration_seconds_sum', { controller: 'postgresserver' });
  say('');
  say(`=== tenantdb provisioning bench, N=${n}${o.missingServer ? ', TenantDatabases naming a missing PostgresServer' : ''} ===`);
  say(
    `operator: workers ${o.workers ?? 'CLI default'}, resync ${o.resync}${o.leaderElect ? '' : ', no leader election'}, NODE_OPTIONS '${nodeOptions ?? ''}'${mallocArenaMax ? `, MALLOC_ARENA_MAX ${mallocArenaMax}` : ''}${o.chartSettings && o.nodeOptions === undefined ? " (the chart's)" : ''}${o.pgSet.map(([k, v]) => `, PostgreSQL ${k}=${v}`).join('')}; ${n} created in ${fmt(appliedSeconds, 2)} s (16 in flight); machine: ${o.pgCores === undefined ? `${cpus().length} cores shared by all` : `PostgreSQL alone on ${o.pgCores} of ${cpus().length} cores, the rest on the others`}, absolute times are noisy`,
  );
  const rows: [string, string][] = [];
  if (floorResult) {
    rows.push([
      'floor (raw SQL)',
      `${fmt(floorResult.seconds, 2)} s over ${floorResult.sessions} admin sessions max (seen ${floorResult.maxSessions}); ${fmt(floorResult.sql.queries / n, 1)} queries/tenant, ${fmt(floorResult.sql.ddl / n, 1)} with DDL`,
    ]);
    rows.push([
      '  floor + a login each',
      `${fmt(floorResult.seconds + floorResult.loginSeconds, 2)} s (the logins ${fmt(floorResult.loginSeconds, 2)} s, postgres ${fmt(floorResult.loginCpu.get('postgres') ?? 0, 1)} s CPU): the burst is ${fmt(burstSeconds / (floorResult.seconds + floorResult.loginSeconds), 2)} x this`,
    ]);
    if (floorAfter)
      rows.push([
        '  floor after the burst',
        `${fmt(floorAfter.seconds, 2)} s, with a login each ${fmt(floorAfter.seconds + floorAfter.loginSeconds, 2)} s (the burst is ${fmt(burstSeconds / floorAfter.seconds, 2)} x this floor, ${fmt(burstSeconds / ((floorResult.seconds + floorAfter.seconds) / 2), 2)} x the mean of both): the machine's drift within the run`,
      ]);
    rows.push([
      '  floor CPU',
      `postgres ${fmt(floorResult.cpu.get('postgres') ?? 0, 1)} s (${pgKinds(floorResult.pg)}); the machine ${fmt(floorResult.cpu.get('machine') ?? 0, 1)} s busy of ${fmt(floorResult.seconds * cpus().length, 1)} s`,
    ]);
  }
  rows.push(
    [
      o.missingServer ? 'burst: all have a status' : 'burst: all Ready',
      `${fmt(burstSeconds, 2)} s${floorResult ? `  = ${fmt(burstSeconds / floorResult.seconds, 2)} x floor` : ''}  (${doneAt.size}/${n} done)`,
    ],
    [
      'per tenant apply -> done',
      `p50 ${fmt(quantile(perTenant, 0.5), 2)} s, p90 ${fmt(quantile(perTenant, 0.9), 2)} s, max ${fmt(quantile(perTenant, 1), 2)} s (watch)`,
    ],
  );
  if (byApi.length)
    rows.push([
      '  same, from the API clocks',
      `p50 ${fmt(quantile(byApi, 0.5), 0)} s, p90 ${fmt(quantile(byApi, 0.9), 0)} s (creationTimestamp -> Ready lastTransitionTime, 1 s resolution)`,
    ]);
  rows.push(
    [
      'reconciles',
      `tenant ${tenantRec} (${fmt(tenantRec / n, 2)}/tenant), server ${serverRec}, whitelist ${delta(burst, 'tenantdb_reconcile_total', { controller: 'ipwhitelist' })}, errors ${errRec}`,
    ],
    [
      'time inside reconciles',
      `tenant ${fmt(tenantSecs, 1)} s (${fmt((tenantSecs / Math.max(1, tenantRec)) * 1000, 0)} ms each), server ${fmt(serverSecs, 1)} s (${fmt((serverSecs / Math.max(1, serverRec)) * 1000, 0)} ms each)`,
    ],
    [
      'pooler config writes',
      `${poolerWrites} Secrets, ${fmt(poolerBytes / 1024, 1)} KiB (shard ${delta(burst, 'tenantdb_pooler_config_writes_total', { config: 'pooler config shard' })}, index ${delta(burst, 'tenantdb_pooler_config_writes_total', { config: 'pooler config index' })})`,
    ],
    ['operator CPU', `${fmt(burst.cpu, 1)} s = ${fmt((burst.cpu / n) * 1000, 1)} ms/tenant`],
    [
      'CPU of the rest',
      `${[...burst.components]
        .filter(([k]) => k !== 'machine')
        .map(([k, v]) => `${k} ${fmt(v, 1)} s`)
        .join(
          ', ',
        )}; the machine ${fmt(burst.components.get('machine') ?? 0, 1)} s busy of ${fmt(burst.seconds * cpus().length, 1)} s (${cpus().length} cores), of which ${fmt(untracked(burst), 1)} s in none of these nor the operator`,
    ],
    ['  postgres by process', pgKinds(burst.pg)],
    ...(floorResult
      ? [
          [
            '  where the gap is',
            cpuSplit(
              burst.components,
              (floorResult.cpu.get('postgres') ?? 0) + (floorResult.loginCpu.get('postgres') ?? 0),
              floorResult.seconds,
              burstSeconds,
              coreSplit(o),
            ),
          ] as [string, string],
        ]
      : []),
    [
      'operator RSS',
      `${fmt(rssBefore, 0)} MiB before, ${fmt(burst.rss, 0)} MiB with ${n} tenants (the operator process alone then: ${fmt(rssAloneAtBurst, 0)} MiB)`,
    ],
    [
      'objects, each',
      sample
        ? `TenantDatabase ${size(sample)} bytes (status ${size(sample.status)}, managedFields ${size(sample.metadata?.managedFields)})${someSecret ? `; its Secret ${size(someSecret)} bytes (${Object.keys(someSecret.data ?? {}).length} keys)` : ''}`
        : 'none Ready',
    ],
    ['admin sessions, max', `${burst.maxSessions} (sampled every 100 ms)`],
    [
      'SQL by the admin',
      `${burst.sql.queries} queries = ${fmt(burst.sql.queries / n, 1)}/tenant; with DDL ${burst.sql.ddl} = ${fmt(burst.sql.ddl / n, 1)}/tenant (statements sent together are one query)`,
    ],
    [
      'PostgreSQL sessions started',
      `${sessionsLine(burst.sql.sessions, n)}${floorResult ? `; the floor with its logins ${sessionsLine(floorResult.sql.sessions, n)}` : ''}`,
    ],
    [
      'API requests, operator',
      `${opApi ? total(opApi.byVerb) : 0} = ${fmt((opApi ? total(opApi.byVerb) : 0) / n, 1)}/tenant: ${verbs(opApi?.byVerb)}`,
    ],
    ['API requests, pooler agent', `${agentApi ? total(agentApi.byVerb) : 0}: ${verbs(agentApi?.byVerb)}`],
  );
  table(rows);
  say('');
  if (opApi) {
    topList('operator API requests in the burst, by kind:', opApi.byRequest, n, 20);
    if (opApi.failed.size) topList('operator API requests that failed:', opApi.failed, n);
  }
  if (agentApi) topList('pooler agent API requests in the burst:', agentApi.byRequest, n, 8);
  topList('admin SQL in the burst, by statement:', burst.sql.bySignature, n, 25);
  if (floorResult) topList('admin SQL in the floor, by statement:', floorResult.sql.bySignature, n, 12);

  if (idle.length) {
    say('');
    say(`idle, ${n} tenants${o.missingServer ? '' : ' Ready'}, nothing changing (resync ${o.resync}); per minute:`);
    const head = ['min', 'API writes', 'API reads', 'SQL', 'DDL', 'rec tenant', 'rec server', 'CPU s', 'RSS MiB', 'pooler writes'];
    say(`  ${head.map((h) => h.padStart(11)).join('')}`);
    const sums = new Array<number>(head.length).fill(0);
    idle.forEach((p, i) => {
      const api = p.api.get(OPERATOR_USER);
      const writes = [...(api?.byVerb ?? new Map<string, number>())].filter(([v]) => WRITE_VERBS.has(v)).reduce((s, [, x]) => s + x, 0);
      const reads = (api ? total(api.byVerb) : 0) - writes;
      const cols = [
        i + 1,
        writes,
        reads,
        p.sql.queries,
        p.sql.ddl,
        delta(p, 'tenantdb_reconcile_total', { controller: 'tenantdatabase' }),
        delta(p, 'tenantdb_reconcile_total', { controller: 'postgresserver' }),
        p.cpu,
        p.rss,
        delta(p, 'tenantdb_pooler_config_writes_total'),
      ];
      cols.forEach((c, j) => (sums[j] = (sums[j] ?? 0) + c));
      say(`  ${cols.map((c, j) => (j === 7 ? fmt(c, 2) : j === 8 ? fmt(c, 0) : String(c)).padStart(11)).join('')}`);
      if (api && writes) say(`      writes: ${verbs(new Map([...api.byRequest].filter(([k]) => WRITE_VERBS.has(k.split(' ')[0] ?? ''))))}`);
    });
    const avg = sums.map((s) => s / idle.length);
    say(
      `  ${['avg', ...avg.slice(1)].map((c, j) => (typeof c === 'string' ? c : fmt(c, j === 7 ? 2 : j === 8 ? 0 : 1)).padStart(11)).join('')}`,
    );
    const sig = new Map<string, number>();
    for (const p of idle) for (const [k, v] of p.sql.bySignature) bump(sig, k, v);
    topList('admin SQL while idle, by statement (all minutes):', sig, n, 10);
  }
  if (doneAt.size < n) {
    const stuck = names.filter((x) => !doneAt.has(x)).slice(0, 5);
    say(
      `not done after ${o.timeout} s: ${n - doneAt.size}, e.g. ${stuck.map((x) => `${x} (${readyOf(finals.get(x) ?? {})?.reason ?? 'no status'})`).join(', ')}`,
    );
  }
}

const program = new Command();
program
  .name('bench-provision')
  .argument('[n]', 'tenants', int, 50)
  .option('--workers <n>', "the operator's --workers (default: the CLI's default)", int)
  .option('--idle-minutes <m>', 'minutes of idle measurement after the burst', int, 1)
  .option('--resync <duration>', "the operator's --resync", '5m')
  .option('--missing-server', 'TenantDatabases naming a PostgresServer that does not exist; until each has a status', false)
  .option('--no-floor', 'skip the raw-SQL floor')
  .option('--no-floor-after', 'skip the second floor after the burst (it shows how far the machine drifted within the run)')
  .option('--timeout <s>', 'seconds to wait for the burst', int, 1800)
  .option('--keep', 'keep the logs folder (operator, agent, PostgreSQL, audit)', false)
  .option(
    '--no-leader-elect',
    'run the operator without leader election (one replica): no Lease renewals, 30 API writes a minute, while idle',
  )
  .option(
    '--node-options <flags>',
    "NODE_OPTIONS for the operator process (e.g. '--max-old-space-size=128'; default: the chart's nodeOptions)",
  )
  .option(
    '--no-chart-settings',
    "run the operator without the chart's nodeOptions (V8 heap flags) and mallocArenaMax (MALLOC_ARENA_MAX), which it runs with by default",
  )
  .option(
    '--profile <dir>',
    "CPU profiles into <dir>: the operator's (--cpu-prof, written when it stops) and the API server's over the burst (go tool pprof -top <dir>/kube-apiserver.pprof)",
  )
  .option(
    '--pg-set <name=value>',
    'a PostgreSQL setting for the whole run (ALTER SYSTEM, reloaded), e.g. autovacuum=off; repeatable',
    pgSetting,
    [],
  )
  .option(
    '--pg-cores <n>',
    'PostgreSQL on the first n cores alone, everything else (the API server, etcd, the operator, PgBouncer, the bench) on the others, as a managed PostgreSQL runs on machines of its own (default: all share every core)',
    int,
  )
  .option('--sources', 'run the operator from its sources through tsx, not built and bundled as the image runs it', false)
  .addOption(new Option('--built', 'the default now: the operator is built (npm run build) and run as the image runs it').hideHelp())
  .action(async (n: number, o: Options) => {
    let stopping = false;
    const stop = async (code: number) => {
      if (stopping) return;
      stopping = true;
      await cleanup();
      process.exit(code);
    };
    process.on('SIGINT', () => void stop(130));
    process.on('SIGTERM', () => void stop(143));
    try {
      await main(n, o);
      await stop(0);
    } catch (err) {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
      await stop(1);
    }
  });
void program.parseAsync(process.argv);
