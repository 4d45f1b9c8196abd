import type { CustomResourceApi } from '../kube/client.js';
import { conditions as conditionList, type Condition } from '../api/common.js';
import { jsonEqual, type ConditionInput } from './conditions.js';
import { observedConditions } from './kstatus.js';

interface Meta {
  name: string;
  namespace?: string | undefined;
  resourceVersion: string;
  finalizers?: string[] | undefined;
}

/**
 * Writes status only when it differs from what the object carries. A JSON merge patch of the
 * whole status: fields present before and absent now are sent as null so that they go.
 */
export async function writeStatusIfChanged(
  api: CustomResourceApi,
  meta: Meta,
  current: Record<string, unknown> | undefined,
  next: Record<string, unknown>,
): Promise<boolean> {
  const clean = Object.fromEntries(Object.entries(next).filter(([, v]) => v !== undefined));
  if (jsonEqual(current ?? {}, clean)) return false;
  const patch: Record<string, unknown> = { ...clean };
  for (const k of Object.keys(current ?? {})) if (!(k in clean)) patch[k] = null;
  await api.patchStatus(meta.name, meta.namespace, patch);
  return true;
}

/**
 * Finalizer changes carry the resourceVersion they were computed from: a merge patch replaces the
 * whole list, so a stale list would drop another controller's finalizer. A conflict is retried.
 */
export async function addFinalizer(api: CustomResourceApi, meta: Meta, finalizer: string): Promise<boolean> {
  const list = meta.finalizers ?? [];
  if (list.includes(finalizer)) return false;
  await api.patchMeta(meta.name, meta.namespace, { metadata: { resourceVersion: meta.resourceVersion, finalizers: [...list, finalizer] } });
  return true;
}

export async function removeFinalizer(api: CustomResourceApi, meta: Meta, finalizer: string): Promise<boolean> {
  const list = meta.finalizers ?? [];
  if (!list.includes(finalizer)) return false;
  await api.patchMeta(meta.name, meta.namespace, {
    metadata: { resourceVersion: meta.resourceVersion, finalizers: list.filter((f) => f !== finalizer) },
  });
  return true;
}

export interface StatusUpdate {
  /** Status fields besides conditions and observedGeneration (undefined ones are left as they were). */
  fields?: Record<string, unknown>;
  /** The conditions this reconcile observed; Reconciling and Stalled are derived from Ready. */
  observed: readonly ConditionInput[];
  /** Whether a not-ready result needs a change by someone (Stalled) rather than time (Reconciling). */
  terminal: boolean;
}

export interface StatusTransition {
  changed: boolean;
  before: readonly Condition[];
  after: readonly Condition[];
}

/**
 * The one status writer every controller uses: once per reconcile, the previous status updated with
 * what the reconcile observed, in the kstatus conventions, with observedGeneration; written only when
 * it differs. Returns the condition lists before and after, for Events on transitions.
 */
export async function commitStatus(
  api: CustomResourceApi,
  meta: Meta & { generation?: number | undefined },
  current: unknown,
  u: StatusUpdate,
): Promise<StatusTransition> {
  const prev: Record<string, unknown> = current && typeof current === 'object' ? { ...current } : {};
  // Status is output, but whoever may write it could put anything there: a list that is not
  // conditions is replaced, not merged.
  const had = conditionList.safeParse(prev.conditions);
  const before = had.success ? (had.data ?? []) : [];
  const fields = Object.fromEntries(Object.entries(u.fields ?? {}).filter(([, v]) => v !== undefined));
  const conditions = observedConditions(before, u.observed, u.terminal, meta.generation);
  const next = { ...prev, ...fields, conditions, observedGeneration: meta.generation };
  const changed = await writeStatusIfChanged(api, meta, prev, next);
  return { changed, before, after: conditions };
}

/** A condition's change of status or reason between two lists, for Events. */
export function transitioned(t: StatusTransition, type: string): Condition | undefined {
  const before = t.before.find((c) => c.type === type);
  const after = t.after.find((c) => c.type === type);
  if (!t.changed || !after || (before?.status === after.status && before?.reason === after.reason)) return undefined;
  return after;
}
