/**
 * TenantDatabasePlan: the exact SQL, Secret, pooler and HBA changes the operator would make for a
 * TenantDatabase spec (applied or only a file), computed from the live server. The provisioning
 * steps of a TenantDatabase run, observed, on sessions that let reads through and record every
 * other statement (src/pg/recording.ts); the platform's limits, which an observed tenant's reconcile
 * enforces, are recorded too. Nothing is written but this object's status.
 *
 * Whoever may create a plan in a namespace learns what it could learn by applying the spec there
 * (the same names are checked, the same refusals given) and nothing of other namespaces: the plan
 * is for a TenantDatabase of the plan's own namespace.
 */
import type { Logger } from 'pino';
import type { CachedTenantDatabasePlan } from '../../api/cached.js';
import { TENANT_DATABASE_PLAN } from '../../api/kinds.js';
import { GROUP, VERSION, API_VERSION } from '../../api/common.js';
import { tenantDatabase, type TenantDatabase } from '../../api/tenantdatabase.js';
import { tenantDatabasePlan, type TenantDatabasePlan, type TenantDatabasePlanStatus } from '../../api/tenantdatabaseplan.js';
import { customResourceApi, httpStatus } from '../../kube/client.js';
import type { ReconcileResult } from '../../runtime/controller.js';
import { RetryableError, errorMessage } from '../../runtime/errors.js';
import { commitStatus } from '../../runtime/status.js';
import { splitKey, type OperatorContext } from '../context.js';
import { BY_NAMESPACE } from '../watches.js';
import { planProvisioning } from '../tenantdatabase/reconcile.js';
import { configChanges } from './config-diff.js';

/** A plan is deleted this long after it was answered (the plugin deletes its own at once). */
export const PLAN_TTL_MS = 10 * 60_000;
/** Plans of one namespace waiting for an answer at once; one more is refused at once (TooManyPlans). */
export const MAX_PLANS_PER_NAMESPACE = 10;
/** Lines of each list a status holds (the CRD allows 200). */
const PLAN_LINES = 150;

const plannedAtOf = (raw: CachedTenantDatabasePlan): number | undefined => {
  const t = Date.parse(raw.status?.plannedAt ?? '');
  return Number.isNaN(t) ? undefined : t;
};

const createdAt = (p: CachedTenantDatabasePlan): number => new Date(p.metadata?.creationTimestamp ?? 0).getTime() || 0;

export async function reconcileTenantDatabasePlan(ctx: OperatorContext, key: string, log: Logger): Promise<ReconcileResult> {
  const { namespace, name } = splitKey(key);
  const raw = ctx.plans.get(name, namespace);
  if (!raw) return {};
  const api = customResourceApi(ctx.clients, TENANT_DATABASE_PLAN);
  const meta = { name, namespace, resourceVersion: raw.metadata?.resourceVersion ?? '', generation: raw.metadata?.generation };
  const answeredAt = plannedAtOf(raw);
  const answered = answeredAt !== undefined && raw.status?.observedGeneration === raw.metadata?.generation;
  // Answered: gone once its time is up; never answered (its status could not be written): gone too.
  if (answered || Date.now() - createdAt(raw) > PLAN_TTL_MS) {
    const left = (answered ? answeredAt : createdAt(raw)) + PLAN_TTL_MS - Date.now();
    if (left > 0) return { requeueAfterMs: left };
    try {
      await ctx.clients.custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: TENANT_DATABASE_PLAN.plural,
        namespace: namespace ?? '',
        name,
      });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
    }
    return {};
  }
  const answer = async (status: Partial<TenantDatabasePlanStatus>, ready: { ok: boolean; reason: string; message: string }) => {
    await commitStatus(api, meta, raw.status, {
      fields: { plannedAt: new Date().toISOString(), ...status },
      observed: [{ type: 'Ready', status: ready.ok ? 'True' : 'False', reason: ready.reason, message: ready.message }],
      terminal: true,
    });
    return { requeueAfterMs: PLAN_TTL_MS };
  };
  const parsed = tenantDatabasePlan.safeParse(raw);
  if (!parsed.success) {
    const message = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    return answer({}, { ok: false, reason: 'InvalidSpec', message });
  }
  const plan = parsed.data;
  // A namespace has at most a few plans waiting: one more is refused at once, so that a flood of
  // plans costs its own namespace, not the others (the controller answers one plan at a time).
  const mine = createdAt(raw);
  const ahead = ctx.plans
    .byIndex(BY_NAMESPACE, namespace ?? '')
    .filter(
      (p) => plannedAtOf(p) === undefined && (createdAt(p) < mine || (createdAt(p) === mine && (p.metadata?.name ?? '') < name)),
    ).length;
  if (ahead >= MAX_PLANS_PER_NAMESPACE)
    return answer(
      {},
      {
        ok: false,
        reason: 'TooManyPlans',
        message: `namespace ${namespace} has ${ahead} plans waiting for an answer already (at most ${MAX_PLANS_PER_NAMESPACE}); create this one again once they are answered`,
      },
    );
  try {
    return await answer(...(await computePlan(ctx, plan, log)));
  } catch (err) {
    if (!(err instanceof RetryableError)) throw err;
    // Said in status (no Event: a plan changes nothing, and says so only in itself), tried again.
    await commitStatus(api, meta, raw.status, {
      observed: [{ type: 'Ready', status: 'False', reason: err.reason, message: err.message }],
      terminal: false,
    });
    return { requeueAfterMs: 10_000 };
  }
}

/** A list as a status holds it: at most PLAN_LINES lines, the rest counted; each line at most 1 KiB. */
function capped(lines: string[]): string[] {
  const cut = lines.map((l) => (l.length > 1024 ? `${l.slice(0, 1020)} ...` : l));
  return cut.length > PLAN_LINES ? [...cut.slice(0, PLAN_LINES - 1), `... and ${cut.length - PLAN_LINES + 1} more`] : cut;
}

type Answer = [Partial<TenantDatabasePlanStatus>, { ok: boolean; reason: string; message: string }];

async function computePlan(ctx: OperatorContext, plan: TenantDatabasePlan, log: Logger): Promise<Answer> {
  const namespace = plan.metadata.namespace ?? '';
  const target = plan.spec.tenantDatabase;
  const liveRaw = ctx.tenants.get(target.name, namespace);
  const live = liveRaw ? tenantDatabase.safeParse(liveRaw) : undefined;
  if (live && !live.success)
    return [{ tenantExists: true }, { ok: false, reason: 'TenantInvalid', message: `TenantDatabase ${target.name} has an invalid spec` }];
  const existing = live?.data;
  if (existing?.metadata.deletionTimestamp)
    return [{ tenantExists: true }, { ok: false, reason: 'TenantDeleting', message: `TenantDatabase ${target.name} is being deleted` }];
  // A tenant not applied yet is planned under this plan's uid, which no marker on any server names.
  const planUid = plan.metadata.uid;
  const td: TenantDatabase = {
    apiVersion: API_VERSION,
    kind: 'TenantDatabase',
    metadata: existing
      ? existing.metadata
      : { name: target.name, namespace, uid: planUid, resourceVersion: '0', generation: 1, annotations: {} },
    spec: target.spec,
    ...(existing?.status ? { status: existing.status } : {}),
  };
  const rlog = log.child({ kind: 'TenantDatabasePlan', namespace, name: plan.metadata.name, tenant: target.name });
  let p: Awaited<ReturnType<typeof planProvisioning>>;
  try {
    p = await planProvisioning(ctx, td, rlog);
  } catch (err) {
    // Not reachable now (no admin Secret, the server down): said in status and tried again.
    throw err instanceof RetryableError ? err : new RetryableError('PlanFailed', errorMessage(err));
  }
  const mark = (l: string) => (existing ? l : l.split(planUid).join('<uid of the new TenantDatabase>'));
  const notes: string[] = [];
  if (target.spec.managementPolicy === 'Observe')
    notes.push('managementPolicy is Observe: the operator would run none of this, only report it; this is what Manage would do');
  notes.push(
    'not in this plan: a rotation (the annotation or the schedule) and migration Jobs; the allow-lists are the IpWhitelists that name this tenant now',
  );
  if (p.rec.cut) notes.push(p.rec.cut);
  const ready = p.outcome.conditions.find((c) => c.type === 'Ready');
  // The observation step is the last one an observed reconcile reaches: a plan that ends anywhere
  // else ends at a refusal.
  const reached = !!p.outcome.status.observation;
  const config =
    reached && p.names && p.serverName ? configChanges(ctx, td, p.names, p.serverName, p.rec.newPassword) : { pooler: [], serverHba: [] };
  const status: Partial<TenantDatabasePlanStatus> = {
    tenantExists: !!existing,
    result: reached
      ? {
          reason: 'Planned',
          message: `a managed reconcile would make ${p.rec.statements.length} statement(s) of change on PostgresServer ${p.serverName ?? '?'}`,
        }
      : { reason: ready?.reason ?? 'Unknown', message: ready?.message ?? '' },
    sql: capped(p.rec.statements.map(mark)),
    secret: capped(p.rec.notes.map(mark)),
    pooler: capped(config.pooler),
    serverHba: capped(config.serverHba),
    notes,
  };
  const changes = p.rec.statements.length + p.rec.notes.length + config.pooler.length + config.serverHba.length;
  return [
    status,
    {
      ok: true,
      reason: 'Planned',
      message: reached
        ? changes
          ? `${changes} change(s) planned for TenantDatabase ${target.name}`
          : `TenantDatabase ${target.name} is as this spec asks: nothing to change`
        : `the operator would refuse TenantDatabase ${target.name}: ${status.result?.reason ?? ''}`,
    },
  ];
}
