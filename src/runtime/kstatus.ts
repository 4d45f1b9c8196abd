/**
 * Status in the kstatus conventions, so that `kubectl wait`, Flux's health checks and Argo CD tell
 * progress, failure and done apart:
 * - `Ready`: True when the object is what its spec asks;
 * - `Reconciling`: True while the operator works toward it or waits for something outside that
 *   will come (a pooler reload, a server that is not reachable yet);
 * - `Stalled`: True when it cannot get there without a change by someone (invalid spec, Conflict,
 *   a server it may not use). Such a reconcile is not retried in a loop; a change wakes it.
 * `observedGeneration` says which generation these describe. Conditions are computed by pure
 * functions from what a reconcile observed; one writer per controller puts them on the object.
 */
import type { Condition } from '../api/common.js';
import { setConditions, type ConditionInput } from './conditions.js';

export type Phase = 'Ready' | 'Progressing' | 'Stalled';

/** The phase a set of conditions stands for: from Ready, and whether a not-ready result is terminal. */
export function phaseOf(conds: readonly ConditionInput[], terminal: boolean): Phase {
  const ready = conds.find((c) => c.type === 'Ready');
  if (ready?.status === 'True') return 'Ready';
  return terminal ? 'Stalled' : 'Progressing';
}

/** Reconciling and Stalled for a phase, with Ready's reason and message where they are True. */
export function kstatusConditions(ready: ConditionInput | undefined, phase: Phase): ConditionInput[] {
  const reason = ready?.reason ?? phase;
  const message = ready?.message ?? '';
  return [
    phase === 'Progressing'
      ? { type: 'Reconciling', status: 'True', reason, message }
      : {
          type: 'Reconciling',
          status: 'False',
          reason: phase,
          message: phase === 'Ready' ? 'up to date' : 'stalled: see the Stalled condition',
        },
    phase === 'Stalled'
      ? { type: 'Stalled', status: 'True', reason, message }
      : {
          type: 'Stalled',
          status: 'False',
          reason: phase,
          message: phase === 'Ready' ? 'up to date' : 'in progress: see the Reconciling condition',
        },
  ];
}

/**
 * The full condition list after a reconcile: the previous list updated with what was observed,
 * plus Reconciling and Stalled; every condition carries the generation it was computed for.
 */
export function observedConditions(
  prev: readonly Condition[] | undefined,
  observed: readonly ConditionInput[],
  terminal: boolean,
  generation: number | undefined,
  now = new Date(),
): Condition[] {
  const ready = observed.find((c) => c.type === 'Ready') ?? prev?.find((c) => c.type === 'Ready');
  const phase = phaseOf(ready ? [ready] : [], terminal);
  return setConditions(prev, [...observed, ...kstatusConditions(ready, phase)], generation, now);
}
