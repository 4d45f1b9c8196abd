import type { Condition } from '../api/common.js';

export type Status = 'True' | 'False' | 'Unknown';

export interface ConditionInput {
  type: string;
  status: Status;
  reason: string;
  message: string;
}

/**
 * Sets a condition in a list, keeping lastTransitionTime when the status did not change, as
 * apimachinery's meta.SetStatusCondition does. Returns a new list; the input is not mutated.
 */
export function setCondition(
  list: readonly Condition[] | undefined,
  c: ConditionInput,
  generation?: number,
  now = new Date(),
): Condition[] {
  const prev = (list ?? []).find((x) => x.type === c.type);
  const next: Condition = {
    type: c.type,
    status: c.status,
    reason: c.reason,
    message: c.message,
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
  const others = (list ?? []).filter((x) => x.type !== c.type);
  return [...others, next].sort((a, b) => a.type.localeCompare(b.type));
}

export function setConditions(
  list: readonly Condition[] | undefined,
  cs: readonly ConditionInput[],
  generation?: number,
  now = new Date(),
): Condition[] {
  return cs.reduce<Condition[]>((acc, c) => setCondition(acc, c, generation, now), [...(list ?? [])]);
}

/** Deep equality for JSON values, used to skip status writes that would change nothing. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => jsonEqual(x, bb[i]));
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const ak = Object.keys(ao).filter((k) => ao[k] !== undefined);
  const bk = Object.keys(bo).filter((k) => bo[k] !== undefined);
  return ak.length === bk.length && ak.every((k) => jsonEqual(ao[k], bo[k]));
}
