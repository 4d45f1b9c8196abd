/**
 * plan: what applying a TenantDatabase manifest would do, before it is applied. The API server is
 * asked first, with a server-side dry run (its defaults, its schema and CEL rules: a refused change
 * is reported with the API server's own message and nothing else); then the spec it would store is
 * compared with the live one, and each difference is said as what the operator will do about it,
 * on the server, in the pooler and in the Secret. Then the operator is asked for the exact plan (a
 * TenantDatabasePlan it answers from the live server, deleted once read): the SQL statements, the
 * Secret's keys, the pooler's and the server's HBA lines. Nothing else is written.
 */
import { Option, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { GROUP, VERSION } from '../../api/common.js';
import { TENANT_DATABASE, TENANT_DATABASE_PLAN } from '../../api/kinds.js';
import type { TenantDatabasePlanStatus } from '../../api/tenantdatabaseplan.js';
import { duration } from '../options.js';
import { deriveIdentifier, holderRoleName, MAX_SCHEMA, schemaAlias, shadowDatabaseName } from '../../api/naming.js';
import { postgresServer, type PostgresServer } from '../../api/postgresserver.js';
import { tenantDatabase, type TenantDatabase } from '../../api/tenantdatabase.js';
import { renamedFromStatus } from '../../controllers/tenantdatabase/resolve.js';
import { ROTATE_ANNOTATION } from '../../controllers/tenantdatabase/secret.js';
import { PROGRAM, examples, note, print, sessionOf } from './command.js';
import { CliError, describeError, statusCode } from './errors.js';
import { renderData } from './format.js';
import { checkName, checkNamespace, type Session } from './session.js';

export interface PlanStep {
  /** Where the change lands: server (PostgreSQL), pooler, secret, status, or none (later or never). */
  where: 'server' | 'pooler' | 'secret' | 'tenant' | 'later';
  what: string;
  /** Data is lost or access is taken away. */
  destructive?: boolean;
}

export interface TenantPlan {
  namespace: string;
  name: string;
  action: 'create' | 'update' | 'unchanged' | 'refused';
  steps: PlanStep[];
  /** The API server's answer when it refuses the manifest. */
  refusal?: string;
  /** The operator's exact plan, from the live server (absent when it could not be asked). */
  exact?: ExactPlan;
}

/** What the operator answered in a TenantDatabasePlan's status. */
export interface ExactPlan {
  /** Where the steps end: Planned, or the refusal the tenant would report (Conflict, ...). */
  result: { reason: string; message: string };
  sql: string[];
  secret: string[];
  pooler: string[];
  serverHba: string[];
  notes: string[];
}

type Spec = TenantDatabase['spec'];

const limitOf = (v: number, server: PostgresServer | undefined, field: 'connection' | 'client'): string => {
  if (v !== -1) return String(v);
  const d = field === 'connection' ? server?.spec.connectionLimits.default : server?.spec.pooler?.clientLimits?.default;
  return d !== undefined ? `${d} (the server's default)` : "the server's default";
};

/** The names a tenant gets, as the operator derives them (resolve.ts), for a plan's words. */
function namesOf(ns: string, name: string, spec: Spec, server: PostgresServer | undefined) {
  const derived = deriveIdentifier(ns, name);
  const role = spec.roleName ?? derived;
  if (spec.isolation === 'Schema') {
    const schema = spec.schemaName ?? deriveIdentifier(ns, name, MAX_SCHEMA);
    const shared = server?.spec.sharedDatabase ?? "the server's sharedDatabase";
    return { role, database: shared, schema, alias: schemaAlias(schema), secret: spec.secretName ?? `${name}-db` };
  }
  const database = spec.databaseName ?? derived;
  return { role, database, schema: undefined, alias: database, secret: spec.secretName ?? `${name}-db` };
}

/**
 * What the operator will do to take a tenant from `live` (undefined: it does not exist yet) to
 * `next`, both as the API server stores them (defaults in). Pure: tested in tables.
 */
export function planTenant(
  ns: string,
  name: string,
  live: TenantDatabase | undefined,
  next: TenantDatabase,
  server: PostgresServer | undefined,
): TenantPlan {
  const steps: PlanStep[] = [];
  const s = next.spec;
  const n = namesOf(ns, name, s, server);
  const pooled = s.pooling.enabled && (server ? !!server.spec.pooler : true);
  const poolWords = `${s.pooling.poolMode} pooling, pool_size ${s.pooling.poolSize}, client limit ${limitOf(s.pooling.maxClientConnections, server, 'client')}`;
  if (!live) {
    steps.push({
      where: 'server',
      what: `create role ${n.role} (LOGIN${s.suspend ? ' off: suspended' : ''}, connection limit ${limitOf(s.connectionLimit, server, 'connection')}) with a generated password`,
    });
    if (n.schema !== undefined) {
      steps.push({
        where: 'server',
        what: `create schema ${n.schema} in shared database ${n.database}, owned by ${n.role}; search_path set for ${n.role} there`,
      });
    } else {
      steps.push({
        where: 'server',
        what: `create database ${n.database} (from template0, owned by the operator; ${n.role} gets CONNECT, CREATE, TEMPORARY and schema public)`,
      });
      if (s.shadowDatabase)
        steps.push({ where: 'server', what: `create database ${shadowDatabaseName(n.database)} (Prisma's shadow database)` });
      if (s.extensions.length) steps.push({ where: 'server', what: `create extensions ${s.extensions.join(', ')} as ${n.role}` });
    }
    if (s.readOnly)
      steps.push({
        where: 'server',
        what: `read-only from the start: role ${holderRoleName(n.role)} holds what ${n.role} owns; ${n.role} may read only`,
      });
    steps.push({
      where: 'secret',
      what: `write Secret ${n.secret} with the connection details${s.secretTemplate.presets.length ? ` (presets ${s.secretTemplate.presets.join(', ')})` : ''}`,
    });
    if (pooled) steps.push({ where: 'pooler', what: `add pool ${n.alias} (${poolWords})` });
    return { namespace: ns, name, action: 'create', steps };
  }

  const l = live.spec;
  const before = namesOf(ns, name, l, server);
  // Names are kept once the objects exist (status names them): the API server lets a name be added
  // to a spec that had none, but the operator refuses the change (ImmutableName).
  const renamed = renamedFromStatus(n, live.status);
  if (renamed.length)
    return {
      namespace: ns,
      name,
      action: 'refused',
      steps: [],
      refusal: `the operator would refuse it (ImmutableName): ${renamed.join('; ')}`,
    };
  if (l.connectionLimit !== s.connectionLimit)
    steps.push({
      where: 'server',
      what: `connection limit of role ${n.role}${n.schema === undefined ? ` and database ${n.database}` : ''}: ${limitOf(l.connectionLimit, server, 'connection')} -> ${limitOf(s.connectionLimit, server, 'connection')}`,
    });
  if (l.suspend !== s.suspend)
    steps.push(
      s.suspend
        ? {
            where: 'server',
            what: `suspend: role ${n.role} may no longer log in, directly or through the pooler${s.endSessionsOnSuspend ? '; its open sessions are ended' : '; open sessions go on'} (data kept)`,
            destructive: s.endSessionsOnSuspend,
          }
        : { where: 'server', what: `resume: role ${n.role} may log in again, directly and through the pooler` },
    );
  const holder = holderRoleName(n.role);
  if (l.readOnly !== s.readOnly)
    steps.push(
      s.readOnly
        ? {
            where: 'server',
            what: `read-only: the objects of ${n.role} pass to role ${holder}; ${n.role} keeps SELECT and loses every other table privilege and CREATE (grants to PUBLIC on its tables are taken away); open sessions go on under the new rights`,
            destructive: true,
          }
        : { where: 'server', what: `read-write: role ${n.role} gets back its objects from ${holder} and may write and create again` },
    );
  const lq = l.quota;
  const sq = s.quota;
  if (JSON.stringify(lq) !== JSON.stringify(sq))
    steps.push({
      where: 'later',
      what: sq
        ? `quota ${sq.size}: past it, ${sq.action === 'ReadOnly' ? `role ${n.role} becomes read-only (TRUNCATE still allowed) until it is back under` : 'QuotaExceeded and a Warning Event (writes go on)'}${lq ? ` (was ${lq.size}, ${lq.action})` : ''}`
        : 'no quota (a quota read-only switch is undone)',
      destructive: sq?.action === 'ReadOnly' && lq?.action !== 'ReadOnly',
    });
  const added = s.extensions.filter((e) => !l.extensions.includes(e));
  const removed = l.extensions.filter((e) => !s.extensions.includes(e));
  if (added.length) steps.push({ where: 'server', what: `create extensions ${added.join(', ')} as ${n.role}` });
  if (removed.length) steps.push({ where: 'later', what: `extensions ${removed.join(', ')} leave the spec but are not dropped` });
  if (l.shadowDatabase !== s.shadowDatabase && n.schema === undefined) {
    const shadow = shadowDatabaseName(n.database);
    steps.push(
      s.shadowDatabase
        ? { where: 'server', what: `create database ${shadow} (Prisma's shadow database)` }
        : { where: 'server', what: `drop database ${shadow} (Prisma's shadow database) and its data`, destructive: true },
    );
  }
  const lp = l.pooling;
  const sp = s.pooling;
  if (lp.enabled !== sp.enabled) {
    steps.push(
      sp.enabled
        ? { where: 'pooler', what: `add pool ${n.alias} (${poolWords}); pooled URLs in the Secret point at the pooler` }
        : {
            where: 'pooler',
            what: `remove pool ${n.alias}; pooled URLs in the Secret become the direct ones (pooled clients lose their pool)`,
            destructive: true,
          },
    );
  } else if (sp.enabled && JSON.stringify(lp) !== JSON.stringify(sp)) {
    const changes: string[] = [];
    if (lp.poolMode !== sp.poolMode) changes.push(`pool_mode ${lp.poolMode} -> ${sp.poolMode}`);
    if (lp.poolSize !== sp.poolSize) changes.push(`pool_size ${lp.poolSize} -> ${sp.poolSize}`);
    if (lp.maxDbConnections !== sp.maxDbConnections) changes.push(`max_db_connections ${lp.maxDbConnections} -> ${sp.maxDbConnections}`);
    if (lp.maxClientConnections !== sp.maxClientConnections)
      changes.push(
        `client limit ${limitOf(lp.maxClientConnections, server, 'client')} -> ${limitOf(sp.maxClientConnections, server, 'client')}`,
      );
    steps.push({ where: 'pooler', what: `pool ${n.alias}: ${changes.join(', ')} (PgBouncer reloads; open clients stay)` });
  }
  if (before.secret !== n.secret)
    steps.push({
      where: 'secret',
      what: `move the connection details from Secret ${before.secret} to ${n.secret} (the old one is deleted)`,
      destructive: true,
    });
  if (JSON.stringify(l.secretTemplate) !== JSON.stringify(s.secretTemplate))
    steps.push({ where: 'secret', what: `rewrite Secret ${n.secret}'s keys (secretTemplate changed)` });
  const rotate = next.metadata.annotations?.[ROTATE_ANNOTATION];
  const overlap = s.passwordRotation.strategy === 'Overlap';
  if (rotate && rotate !== live.metadata.annotations?.[ROTATE_ANNOTATION])
    steps.push(
      overlap
        ? {
            where: 'server',
            what: `rotate the credentials (request ${rotate}): the Secret switches to the other login role of ${n.role} with a new password once it logs in; the current one keeps working for ${s.passwordRotation.gracePeriod}, then is refused`,
          }
        : {
            where: 'server',
            what: `rotate the password of ${n.role} (request ${rotate}): the Secret gets the new one; clients that have not re-read it fail their next login`,
            destructive: true,
          },
    );
  for (const name of Object.keys({ ...l.settings, ...s.settings }).sort() as (keyof typeof s.settings)[]) {
    const was = l.settings[name];
    const want = s.settings[name];
    if (was === want) continue;
    steps.push({
      where: 'server',
      what:
        want === undefined
          ? `reset ${name} for role ${n.role} in ${n.database} (was ${was})`
          : `set ${name} to ${want} for role ${n.role} in ${n.database}${was === undefined ? '' : ` (was ${was})`}`,
    });
  }
  if (JSON.stringify(l.adoption) !== JSON.stringify(s.adoption) && s.adoption)
    steps.push({
      where: 'server',
      what:
        s.adoption.from === 'Retained'
          ? 'take over what was kept (deletionPolicy Retain) for an earlier TenantDatabase of this name, if anything was'
          : `take over the existing role ${n.role} and ${n.schema !== undefined ? `schema ${n.schema}` : `database ${n.database}`} (with the server's consent in spec.unmanagedAdoption)${s.adoption.passwordSecretRef ? `, keeping the password in Secret ${s.adoption.passwordSecretRef.name}` : ', with a new password'}`,
    });
  const lr = l.passwordRotation;
  const sr = s.passwordRotation;
  if (lr.strategy !== sr.strategy)
    steps.push({
      where: 'later',
      what:
        sr.strategy === 'Overlap'
          ? `rotations switch between two login roles (${n.role} and a second one acting as it) with a grace period of ${sr.gracePeriod} (strategy InPlace -> Overlap)`
          : 'rotations set a new password on the login role in use, without a grace period (strategy Overlap -> InPlace)',
      destructive: sr.strategy === 'InPlace',
    });
  else if (overlap && lr.gracePeriod !== sr.gracePeriod)
    steps.push({ where: 'later', what: `grace period of the previous login after a rotation: ${lr.gracePeriod} -> ${sr.gracePeriod}` });
  if (lr.interval !== sr.interval)
    steps.push({
      where: 'later',
      what: sr.interval
        ? `rotate on a schedule, every ${sr.interval} (was ${lr.interval ?? 'on demand only'})`
        : 'rotate on demand only (no schedule)',
    });
  if (l.deletionPolicy !== s.deletionPolicy)
    steps.push({
      where: 'later',
      what: `on deletion: ${s.deletionPolicy === 'Delete' ? `drop ${n.schema !== undefined ? `schema ${n.schema}` : `database ${n.database}`} and role ${n.role} with their data` : 'keep the data, take the login away'} (deletionPolicy ${l.deletionPolicy} -> ${s.deletionPolicy})`,
      destructive: s.deletionPolicy === 'Delete',
    });
  return { namespace: ns, name, action: steps.length ? 'update' : 'unchanged', steps };
}

/** The operator's answer, as the table output shows it. */
export function exactLines(x: ExactPlan): string[] {
  const out: string[] = [];
  if (x.result.reason !== 'Planned') out.push(`  the operator would stop at: ${x.result.reason}: ${x.result.message}`);
  const section = (title: string, lines: string[]) => {
    if (!lines.length) return;
    out.push(`  ${title}:`);
    for (const l of lines) out.push(`    ${l}`);
  };
  section('SQL, in order (on the live server now)', x.sql);
  section('Secret', x.secret);
  section('PgBouncer', x.pooler);
  section('pg_hba.conf', x.serverHba);
  if (x.result.reason === 'Planned' && !x.sql.length && !x.secret.length && !x.pooler.length && !x.serverHba.length)
    out.push('  exact plan: nothing to change on the server, in the Secret or in the pooler');
  for (const n of x.notes) out.push(`  (${n})`);
  return out;
}

interface ManifestDoc {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  spec?: unknown;
}

/** The TenantDatabases of a manifest file (- for stdin); other kinds are skipped with a note. */
export function tenantsOfManifest(text: string, source: string): { docs: ManifestDoc[]; skipped: string[] } {
  const docs: ManifestDoc[] = [];
  const skipped: string[] = [];
  for (const d of parseAllDocuments(text)) {
    if (d.errors.length) throw new CliError(`${source}: not YAML: ${d.errors[0]?.message ?? 'parse error'}`);
    const o = d.toJSON() as ManifestDoc | null;
    if (!o) continue;
    if (o.kind === 'TenantDatabase' && o.apiVersion === `${GROUP}/${VERSION}`) docs.push(o);
    else skipped.push(`${o.kind ?? '?'} ${o.metadata?.name ?? '?'}`);
  }
  return { docs, skipped };
}

async function planOne(s: Session, doc: ManifestDoc, exact: { timeoutMs: number }): Promise<TenantPlan> {
  const name = checkName('TenantDatabase', doc.metadata?.name ?? '');
  const namespace = checkNamespace(doc.metadata?.namespace ?? s.namespace);
  const base = { group: GROUP, version: VERSION, plural: TENANT_DATABASE.plural, namespace };
  const body = { ...doc, metadata: { ...doc.metadata, name, namespace } };
  let liveRaw: { metadata?: { resourceVersion?: string } } | undefined;
  try {
    liveRaw = (await s.call(() => s.custom.getNamespacedCustomObject({ ...base, name }))) as typeof liveRaw;
  } catch (err) {
    if (statusCode(err) !== 404) throw err;
  }
  let dry: unknown;
  try {
    dry = await s.call(() =>
      liveRaw
        ? s.custom.replaceNamespacedCustomObject({
            ...base,
            name,
            dryRun: 'All',
            body: { ...body, metadata: { ...body.metadata, resourceVersion: liveRaw.metadata?.resourceVersion } },
          })
        : s.custom.createNamespacedCustomObject({ ...base, dryRun: 'All', body }),
    );
  } catch (err) {
    const code = statusCode(err);
    if (code === 422 || code === 400) return { namespace, name, action: 'refused', steps: [], refusal: describeError(err) };
    throw err;
  }
  // A dry-run create may leave out what only a stored object has.
  const dryMeta = (dry as { metadata?: Record<string, unknown> } | undefined)?.metadata ?? {};
  const next = tenantDatabase.safeParse({ ...(dry as object), metadata: { uid: 'planned', resourceVersion: '0', ...dryMeta } });
  if (!next.success)
    return {
      namespace,
      name,
      action: 'refused',
      steps: [],
      refusal: `the operator would refuse it: ${next.error.issues[0]?.message ?? 'invalid'}`,
    };
  const live = liveRaw ? tenantDatabase.safeParse(liveRaw) : undefined;
  // The server's defaults and names, when these rights may read PostgresServers; else the plan
  // says "the server's default".
  let server: PostgresServer | undefined;
  try {
    const list = (await s.call(() => s.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'postgresservers' }))) as {
      items?: unknown[];
    };
    const servers = (list.items ?? []).flatMap((x) => {
      const p = postgresServer.safeParse(x);
      return p.success ? [p.data] : [];
    });
    const named = next.data.spec.serverRef?.name;
    const defaults = servers.filter((x) => x.spec.default);
    server = named ? servers.find((x) => x.metadata.name === named) : defaults.length === 1 ? defaults[0] : undefined;
  } catch {
    // Not readable with these rights.
  }
  const words = planTenant(namespace, name, live?.success ? live.data : undefined, next.data, server);
  if (words.action === 'refused' || exact.timeoutMs <= 0) return words;
  const asked = await askOperator(s, namespace, name, (dry as { spec?: unknown }).spec, exact.timeoutMs);
  if (typeof asked === 'string') {
    note(`TenantDatabase ${namespace}/${name}: no exact plan: ${asked}`);
    return words;
  }
  return { ...words, exact: asked };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Asks the operator for the exact plan: creates a TenantDatabasePlan with the spec the API server
 * would store, waits for its answer, deletes it. Returns the answer, or why there is none.
 */
async function askOperator(s: Session, namespace: string, name: string, spec: unknown, timeoutMs: number): Promise<ExactPlan | string> {
  const base = { group: GROUP, version: VERSION, plural: TENANT_DATABASE_PLAN.plural, namespace };
  let created: { metadata?: { name?: string; generation?: number } };
  try {
    created = (await s.call(() =>
      s.custom.createNamespacedCustomObject({
        ...base,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: TENANT_DATABASE_PLAN.kind,
          metadata: { generateName: `${name.slice(0, 40)}-plan-`, namespace },
          spec: { tenantDatabase: { name, spec } },
        },
      }),
    )) as typeof created;
  } catch (err) {
    const code = statusCode(err);
    if (code === 403)
      return `these credentials may not create tenantdatabaseplans in namespace ${namespace} (the exact SQL needs that right)`;
    if (code === 404) return 'the TenantDatabasePlan kind is not installed (an older tenantdb)';
    return describeError(err);
  }
  const planName = created.metadata?.name ?? '';
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const got = (await s.call(() => s.custom.getNamespacedCustomObject({ ...base, name: planName }))) as {
        metadata?: { generation?: number };
        status?: TenantDatabasePlanStatus;
      };
      const st = got.status;
      if (st?.plannedAt && st.observedGeneration === got.metadata?.generation) {
        const ready = st.conditions?.find((c) => c.type === 'Ready');
        if (ready?.status !== 'True') return `the operator could not plan it: ${ready?.reason ?? '?'}: ${ready?.message ?? ''}`;
        return {
          result: st.result ?? { reason: 'Unknown', message: '' },
          sql: st.sql ?? [],
          secret: st.secret ?? [],
          pooler: st.pooler ?? [],
          serverHba: st.serverHba ?? [],
          notes: st.notes ?? [],
        };
      }
      if (Date.now() >= deadline) {
        const why = st?.conditions?.find((c) => c.type === 'Ready');
        return `the operator did not answer within ${Math.round(timeoutMs / 1000)}s${why ? ` (${why.reason}: ${why.message})` : ' (is it running, and does it watch this namespace?)'}`;
      }
      await sleep(300);
    }
  } finally {
    await s
      .call(() => s.custom.deleteNamespacedCustomObject({ ...base, name: planName }))
      .catch(() => note(`could not delete TenantDatabasePlan ${namespace}/${planName}; the operator deletes it within 10 minutes`));
  }
}

export function registerPlanCommand(program: Command): void {
  const cmd = program
    .command('plan')
    .description(
      "what applying a TenantDatabase manifest would do, without applying it: the API server's dry run (defaults, schema, immutable fields), then each change as what the operator will do in PostgreSQL, the pooler and the Secret",
    )
    .requiredOption('-f, --filename <file>', 'the manifest (YAML, several documents allowed; - for stdin)')
    .option('--no-sql', 'only compare the specs: do not ask the operator for the exact SQL, pooler and HBA changes')
    .addOption(
      new Option('--timeout <duration>', 'how long to wait for the operator to answer, per TenantDatabase (10s, 1m)')
        .argParser(duration)
        .default(30_000, '30s'),
    )
    .action(async (opts: { filename: string; sql: boolean; timeout: number }, c: Command) => {
      const s = sessionOf(c);
      let text: string;
      try {
        text = readFileSync(opts.filename === '-' ? 0 : opts.filename, 'utf8');
      } catch (err) {
        throw new CliError(`cannot read ${opts.filename}: ${describeError(err)}`);
      }
      const { docs, skipped } = tenantsOfManifest(text, opts.filename);
      if (!docs.length) throw new CliError(`${opts.filename} holds no TenantDatabase (${GROUP}/${VERSION})`);
      const plans: TenantPlan[] = [];
      for (const d of docs) plans.push(await planOne(s, d, { timeoutMs: opts.sql ? opts.timeout : 0 }));
      if (s.output !== 'table') {
        print(renderData(s.output, { plans, skipped }));
      } else {
        const lines: string[] = [];
        for (const p of plans) {
          lines.push(`TenantDatabase ${p.namespace}/${p.name}: ${p.action}${p.refusal ? `: ${p.refusal}` : ''}`);
          for (const st of p.steps) lines.push(`  ${st.destructive ? '!' : '-'} [${st.where}] ${st.what}`);
          if (p.exact) lines.push(...exactLines(p.exact));
        }
        if (skipped.length) lines.push(`(not planned: ${skipped.join(', ')})`);
        print(lines.join('\n'));
        if (plans.some((p) => p.steps.some((st) => st.destructive))) note('! marks a step that loses data or takes access away');
      }
      // Refused by the API server, or where the operator would stop (a Conflict, a namespace not admitted, ...).
      if (plans.some((p) => p.action === 'refused' || (p.exact && p.exact.result.reason !== 'Planned'))) process.exitCode = 2;
    });
  examples(cmd, [
    ['only the spec comparison, without asking the operator', `${PROGRAM} plan -f orders.yaml --no-sql`],
    ['what a changed manifest would do', `${PROGRAM} plan -f orders.yaml`],
    ['from a GitOps render, as JSON', `kustomize build . | ${PROGRAM} plan -f - -o json`],
  ]);
}
