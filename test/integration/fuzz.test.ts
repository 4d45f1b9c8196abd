/**
 * Generated objects against the real API server, then a sample of them against the real operator
 * and PostgreSQL.
 *
 * 1. Every generated spec of each kind (TENANTDB_FUZZ_RUNS, default 10,000; seed TENANTDB_FUZZ_SEED)
 *    is created with server-side dry run, so the CRD schema and its CEL rules decide. What the API
 *    server accepts, zod must accept as stored. What zod accepts and the API server refuses must
 *    break one of the CEL rules zod does not carry (listed in CEL_ONLY), and the refusal must say so.
 * 2. A few dozen accepted TenantDatabases, with the nastiest names among them, are created for real:
 *    each reaches a terminal Ready (True, or False for its current generation with a reason), and
 *    afterwards the operator neither rewrites them nor reconciles them in a loop.
 */
import * as k8s from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { z } from 'zod';
import { ipWhitelistSpec } from '../../src/api/ipwhitelist.js';
import { postgresServerSpec } from '../../src/api/postgresserver.js';
import { tenantDatabaseSpec } from '../../src/api/tenantdatabase.js';
import { waitFor } from '../env/ports.js';
import type { Proc } from '../env/process.js';
import { FUZZ_SEED, fuzzRuns, sampleSeeded } from '../fuzz/params.js';
import { SPEC_ARBS, type FuzzKind } from '../fuzz/specs.js';
import {
  GROUP,
  VERSION,
  apiMessage,
  cluster,
  condition,
  ensureDefaultServer,
  getTenant,
  namespace,
  operator,
  type Obj,
} from './harness.js';

const c = cluster();
// 10,000 per kind take about 13 minutes here (~45 dry-run creates a second on 2 cores): the default
// keeps the file near 3 minutes; TENANTDB_FUZZ_RUNS=10000 runs the full count.
const RUNS = fuzzRuns(2_000);
const CONCURRENCY = Number(process.env.TENANTDB_FUZZ_CONCURRENCY ?? 16);
const REAL = Number(process.env.TENANTDB_FUZZ_REAL ?? 30);
const NS = 'fuzz';
const REAL_NS = 'fuzz-real';

type Spec = Record<string, unknown>;

const KINDS: Record<FuzzKind, { plural: string; namespaced: boolean; schema: z.ZodType; salt: number }> = {
  TenantDatabase: { plural: 'tenantdatabases', namespaced: true, schema: tenantDatabaseSpec, salt: 1 },
  PostgresServer: { plural: 'postgresservers', namespaced: false, schema: postgresServerSpec, salt: 2 },
  IpWhitelist: { plural: 'ipwhitelists', namespaced: true, schema: ipWhitelistSpec, salt: 3 },
};

/**
 * The intended differences: rules across fields that live only in the CRD (CEL), for kubectl users.
 * The operator does not rely on them: it refuses the same specs later, in status (resolveNames for
 * the shadow name and what isolation Schema refuses, ConnectionLimitTooHigh, the CA check of the connection).
 * Each names the CEL message the API server must give. Input: the spec as zod parsed it (defaults in).
 */
const CEL_ONLY: Record<FuzzKind, { message: string; broken: (s: Spec) => boolean }[]> = {
  TenantDatabase: [
    { message: 'schemaName is only valid with isolation Schema', broken: (s) => s.schemaName !== undefined && s.isolation !== 'Schema' },
    {
      message: 'databaseName must be at most 56 bytes when shadowDatabase is true',
      broken: (s) => s.shadowDatabase === true && typeof s.databaseName === 'string' && s.databaseName.length > 56,
    },
    // Refused later in status too (resolveNames: InvalidSpec).
    {
      message: 'databaseName is not valid with isolation Schema',
      broken: (s) => s.isolation === 'Schema' && s.databaseName !== undefined,
    },
    {
      message: 'shadowDatabase is only valid with isolation Database',
      broken: (s) => s.isolation === 'Schema' && s.shadowDatabase === true,
    },
    {
      message: 'extensions are only valid with isolation Database',
      broken: (s) => s.isolation === 'Schema' && Array.isArray(s.extensions) && s.extensions.length > 0,
    },
  ],
  PostgresServer: [
    {
      message: 'caSecretRef is required when sslMode is verify-ca or verify-full',
      broken: (s) => (s.sslMode === 'verify-ca' || s.sslMode === 'verify-full') && s.caSecretRef === undefined,
    },
    {
      message: 'allowedNamespaces.selector is required when from is Selector',
      broken: (s) => {
        const a = s.allowedNamespaces as { from?: string; selector?: unknown };
        return a.from === 'Selector' && a.selector === undefined;
      },
    },
    {
      message: 'connectionLimits.default must not exceed connectionLimits.max',
      broken: (s) => {
        const l = s.connectionLimits as { default: number; max: number };
        return l.default > l.max;
      },
    },
  ],
  IpWhitelist: [],
};

interface Outcome {
  i: number;
  spec: Spec;
  accepted?: { spec: Spec };
  refused?: { code: number; message: string };
}

async function dryRunCreate(kind: FuzzKind, i: number, spec: Spec): Promise<Outcome> {
  const k = KINDS[kind];
  const body = {
    apiVersion: `${GROUP}/${VERSION}`,
    kind,
    metadata: { name: `fz-${i}`, ...(k.namespaced ? { namespace: NS } : {}) },
    spec,
  };
  const common = { group: GROUP, version: VERSION, plural: k.plural, body, dryRun: 'All' };
  for (let attempt = 0; ; attempt++) {
    try {
      const created = (
        k.namespaced
          ? await c.custom.createNamespacedCustomObject({ ...common, namespace: NS })
          : await c.custom.createClusterCustomObject(common)
      ) as { spec: Spec };
      return { i, spec, accepted: { spec: created.spec } };
    } catch (err) {
      const code = (err as { code?: number }).code ?? 0;
      // Only the API server's verdicts count; a connection hiccup or throttling is asked again.
      if ((code === 0 || code === 429 || code >= 500) && attempt < 5) {
        await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
        continue;
      }
      return { i, spec, refused: { code, message: apiMessage(err) } };
    }
  }
}

interface Verdict {
  accepted: number;
  refused: number;
  celOnly: Record<string, number>;
  disagreements: string[];
}

function judge(kind: FuzzKind, o: Outcome): { disagreement?: string; celOnly?: string[] } {
  const schema = KINDS[kind].schema;
  const show = () => JSON.stringify(o.spec).slice(0, 600);
  if (o.accepted) {
    const stored = schema.safeParse(o.accepted.spec);
    if (!stored.success) return { disagreement: `#${o.i} the API server accepted what zod refuses (${stored.error.message}): ${show()}` };
    const broken = CEL_ONLY[kind].filter((r) => r.broken(stored.data as Spec));
    if (broken.length) return { disagreement: `#${o.i} the API server accepted a spec that breaks "${broken[0]?.message}": ${show()}` };
    return {};
  }
  const refused = o.refused ?? { code: 0, message: '' };
  if (refused.code !== 422 && refused.code !== 400) return { disagreement: `#${o.i} unexpected HTTP ${refused.code}: ${refused.message}` };
  const sent = schema.safeParse(o.spec);
  if (!sent.success) return {};
  const broken = CEL_ONLY[kind].filter((r) => r.broken(sent.data as Spec));
  if (!broken.length) return { disagreement: `#${o.i} zod accepts what the API server refused (${refused.message}): ${show()}` };
  if (!broken.some((r) => refused.message.includes(r.message)))
    return { disagreement: `#${o.i} refused for another reason than ${broken.map((r) => r.message).join(', ')}: ${refused.message}` };
  return { celOnly: broken.map((r) => r.message) };
}

const results: Partial<Record<FuzzKind, Outcome[]>> = {};
let op: Proc | undefined;

beforeAll(async () => {
  await namespace(c, NS);
}, 60_000);

afterAll(async () => {
  await op?.stop();
});

describe.each(Object.keys(KINDS) as FuzzKind[])('%s: the API server and zod agree on generated specs', (kind) => {
  test(`${RUNS} specs, server-side dry run`, async () => {
    const specs = sampleSeeded(SPEC_ARBS[kind], RUNS, KINDS[kind].salt);
    const limit = pLimit(CONCURRENCY);
    const t0 = Date.now();
    const outcomes = await Promise.all(specs.map((s, i) => limit(() => dryRunCreate(kind, i, s))));
    const seconds = (Date.now() - t0) / 1000;
    results[kind] = outcomes;
    const v: Verdict = { accepted: 0, refused: 0, celOnly: {}, disagreements: [] };
    for (const o of outcomes) {
      if (o.accepted) v.accepted++;
      else v.refused++;
      const j = judge(kind, o);
      if (j.disagreement) v.disagreements.push(j.disagreement);
      for (const m of j.celOnly ?? []) v.celOnly[m] = (v.celOnly[m] ?? 0) + 1;
    }
    console.log(
      `${kind}: seed ${FUZZ_SEED}, ${RUNS} specs in ${seconds.toFixed(1)} s (concurrency ${CONCURRENCY}): ` +
        `${v.accepted} accepted, ${v.refused} refused, refused only by CEL: ${JSON.stringify(v.celOnly)}`,
    );
    expect(v.disagreements.slice(0, 10)).toEqual([]);
    // The generator reaches both sides of the schema.
    expect(v.accepted).toBeGreaterThan(RUNS / 10);
    expect(v.refused).toBeGreaterThan(RUNS / 10);
  }, 900_000);
});

/** Accepted TenantDatabase specs of as many shapes as there are, nasty names first. */
function diverseTenants(outcomes: readonly Outcome[], count: number): Spec[] {
  const accepted = outcomes.filter((o) => o.accepted).map((o) => o.accepted?.spec ?? {});
  const shape = (s: Spec) =>
    [
      typeof s.databaseName === 'string' ? (s.databaseName.length >= 56 ? 'longdb' : 'db') : '-',
      typeof s.roleName === 'string' ? (s.roleName.length >= 56 ? 'longrole' : 'role') : '-',
      s.shadowDatabase ? 'shadow' : '-',
      s.isolation,
      (s.extensions as string[]).length ? 'ext' : '-',
      (s.connectionLimit as number) > 100 ? 'over' : '-',
      (s.pooling as { enabled: boolean }).enabled ? 'pool' : '-',
    ].join(' ');
  const groups = new Map<string, Spec[]>();
  for (const s of accepted) groups.set(shape(s), [...(groups.get(shape(s)) ?? []), s]);
  const out: Spec[] = [];
  // Shapes with chosen names, the longest first: they are what a hostile tenant controls.
  const score = (k: string) => (k.includes('long') ? 0 : k.includes('db') || k.includes('role') ? 1 : 2);
  const queues = [...groups.entries()].sort((a, b) => score(a[0]) - score(b[0])).map(([, q]) => q);
  for (let round = 0; out.length < count && queues.some((q) => q.length > round); round++) {
    for (const q of queues) {
      const s = q[round];
      if (s && out.length < count) out.push(s);
    }
  }
  return out;
}

function metricsPort(logFile: string): number {
  const line = readFileSync(logFile, 'utf8')
    .split('\n')
    .find((l) => l.includes('"metricsPort"'));
  return (JSON.parse(line ?? '{}') as { metricsPort?: number }).metricsPort ?? 0;
}

async function reconcileCount(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^tenantdb_reconcile_total\{controller="tenantdatabase",result="[a-z]+"\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

/** Ready=True, or Ready=False for the current generation with a reason: nothing more will happen without a change. */
function terminal(o: Obj | undefined): boolean {
  const ready = condition(o, 'Ready') as { status: string; reason: string; observedGeneration?: number } | undefined;
  if (!o || !ready) return false;
  if (ready.status === 'True') return true;
  const gen = o.metadata.generation;
  return ready.status === 'False' && !!ready.reason && ready.observedGeneration === gen && o.status?.observedGeneration === gen;
}

test('accepted TenantDatabases, created for real, each reach a terminal state and stay quiet', async () => {
  const outcomes = results.TenantDatabase;
  if (!outcomes) throw new Error('the dry-run test of TenantDatabase did not run');
  const picked = diverseTenants(outcomes, REAL).map((s, i) => {
    // The sandbox's one server (a serverRef to a server that does not exist only waits for it), and
    // Delete, so that nothing is left on the shared PostgreSQL for the next test files.
    const { serverRef: _, schemaName, ...rest } = s;
    if (i % 2) return { ...rest, ...(schemaName === undefined ? {} : { schemaName }), deletionPolicy: 'Delete' };
    // Every other one is made provisionable, names kept, so that the way to Ready=True is taken too.
    const allowed = ['pgcrypto', 'citext', 'hstore', 'uuid-ossp'];
    return {
      ...rest,
      isolation: 'Database',
      extensions: (s.extensions as string[]).filter((e) => allowed.includes(e)),
      connectionLimit: Math.min(s.connectionLimit as number, 20),
      deletionPolicy: 'Delete',
    };
  });
  expect(picked.length).toBeGreaterThanOrEqual(Math.min(REAL, 20));

  op = operator(c, 'fuzz', '3s');
  await ensureDefaultServer(c);
  await namespace(c, REAL_NS);
  const names = picked.map((_, i) => `t${i}`);
  await Promise.all(
    picked.map((spec, i) =>
      c.custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: REAL_NS,
        plural: 'tenantdatabases',
        body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'TenantDatabase', metadata: { name: names[i] }, spec },
      }),
    ),
  );

  const t0 = Date.now();
  const settled = await waitFor(
    `${names.length} TenantDatabases to reach a terminal state`,
    async () => {
      const objs = await Promise.all(names.map((n) => getTenant(c, REAL_NS, n)));
      return objs.every(terminal) ? (objs as Obj[]) : undefined;
    },
    180_000,
    1000,
  ).catch(async (err: unknown) => {
    const objs = await Promise.all(names.map((n) => getTenant(c, REAL_NS, n)));
    const stuck = objs.filter((o) => !terminal(o)).map((o, i) => `${o?.metadata.name ?? i}: ${JSON.stringify(o?.status ?? null)}`);
    throw new Error(`${String(err)}; not terminal: ${stuck.slice(0, 5).join(' | ')}`, { cause: err });
  });
  const reasons = settled.map((o) => `${condition(o, 'Ready')?.status}/${condition(o, 'Ready')?.reason}`);
  const tally: Record<string, number> = {};
  for (const r of reasons) tally[r] = (tally[r] ?? 0) + 1;
  console.log(`${names.length} real TenantDatabases terminal in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${JSON.stringify(tally)}`);
  expect(settled.some((o) => condition(o, 'Ready')?.status === 'True')).toBe(true);
  // An unexpected exception is no terminal state: its message says what broke.
  const crashed = settled
    .filter((o) => condition(o, 'Ready')?.reason === 'ReconcileError')
    .map((o) => `${o.metadata.name}: ${condition(o, 'Ready')?.message} ${JSON.stringify(o.spec)}`);
  expect(crashed).toEqual([]);

  // Quiet afterwards: over 10 s, no status rewrites beyond a periodic refresh, and reconciles no
  // more often than the 3 s resync asks for.
  const port = metricsPort(join(c.env.dir, 'operator-fuzz.log'));
  expect(port).toBeGreaterThan(0);
  const writes = new Map<string, number>();
  const watch = new k8s.Watch(c.kc);
  const req = await watch.watch(
    `/apis/${GROUP}/${VERSION}/namespaces/${REAL_NS}/tenantdatabases`,
    { resourceVersion: '0' },
    (type: string, obj: { metadata?: { name?: string } }) => {
      if (type === 'MODIFIED') writes.set(obj.metadata?.name ?? '', (writes.get(obj.metadata?.name ?? '') ?? 0) + 1);
    },
    () => undefined,
  );
  await new Promise((r) => setTimeout(r, 1000));
  writes.clear();
  const before = await reconcileCount(port);
  await new Promise((r) => setTimeout(r, 10_000));
  const reconciles = (await reconcileCount(port)) - before;
  req.abort();
  const busiest = Math.max(0, ...writes.values());
  // The operator serves every tenant earlier test files left in the sandbox too, each on the same resync.
  const served = (
    (await c.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'tenantdatabases' })) as { items: unknown[] }
  ).items.length;
  console.log(
    `over 10 s: ${reconciles} reconciles of ${served} tenants (${names.length} of them new), at most ${busiest} status writes to one`,
  );
  expect(busiest).toBeLessThanOrEqual(2);
  expect(reconciles).toBeLessThanOrEqual(served * 6);

  await Promise.all(
    names.map((name) =>
      c.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: REAL_NS, plural: 'tenantdatabases', name }),
    ),
  );
  await waitFor(
    'the fuzzed TenantDatabases to be gone',
    async () => (await Promise.all(names.map((n) => getTenant(c, REAL_NS, n)))).every((o) => !o),
    120_000,
    1000,
  );
}, 600_000);
