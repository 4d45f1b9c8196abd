import { kstatusConditions, observedConditions, phaseOf } from '../../src/runtime/kstatus.js';
import type { ConditionInput } from '../../src/runtime/conditions.js';

const ready = (status: ConditionInput['status'], reason = 'R', message = 'm'): ConditionInput => ({
  type: 'Ready',
  status,
  reason,
  message,
});
const byType = (list: { type: string; status: string; reason: string }[]) => Object.fromEntries(list.map((c) => [c.type, c]));

test('the phase follows Ready, and a not-ready result is Stalled only when terminal', () => {
  expect(phaseOf([ready('True')], true)).toBe('Ready');
  expect(phaseOf([ready('False')], true)).toBe('Stalled');
  expect(phaseOf([ready('False')], false)).toBe('Progressing');
  expect(phaseOf([ready('Unknown')], false)).toBe('Progressing');
  expect(phaseOf([], false)).toBe('Progressing');
});

test('Reconciling and Stalled are True only in their phase, with the reason of Ready', () => {
  const p = byType(kstatusConditions(ready('False', 'PoolerNotReady'), 'Progressing'));
  expect(p.Reconciling).toMatchObject({ status: 'True', reason: 'PoolerNotReady' });
  expect(p.Stalled).toMatchObject({ status: 'False' });
  const s = byType(kstatusConditions(ready('False', 'Conflict'), 'Stalled'));
  expect(s.Stalled).toMatchObject({ status: 'True', reason: 'Conflict' });
  expect(s.Reconciling).toMatchObject({ status: 'False' });
  const r = byType(kstatusConditions(ready('True', 'Provisioned'), 'Ready'));
  expect(r.Stalled?.status).toBe('False');
  expect(r.Reconciling?.status).toBe('False');
});

test('observed conditions carry the generation, keep other conditions and transition times', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const first = observedConditions(
    [],
    [ready('False', 'Waiting'), { type: 'RoleReady', status: 'True', reason: 'P', message: '' }],
    false,
    1,
    t0,
  );
  expect(first.every((c) => c.observedGeneration === 1)).toBe(true);
  const second = observedConditions(first, [ready('False', 'StillWaiting')], false, 2, new Date('2026-01-01T00:01:00Z'));
  const c = byType(second);
  expect(c.RoleReady).toBeDefined();
  // Still False: the transition time stays.
  expect(second.find((x) => x.type === 'Ready')?.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
  expect(c.Reconciling).toMatchObject({ status: 'True', reason: 'StillWaiting' });
});
