import { jsonEqual, setCondition, setConditions } from '../../src/runtime/conditions.js';

const t0 = new Date('2026-01-01T00:00:00Z');
const t1 = new Date('2026-01-01T01:00:00Z');

describe('setCondition', () => {
  test('keeps lastTransitionTime when the status does not change', () => {
    const a = setCondition([], { type: 'Ready', status: 'False', reason: 'A', message: 'a' }, 1, t0);
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'B', message: 'b' }, 2, t1);
    expect(b[0]).toEqual({
      type: 'Ready',
      status: 'False',
      reason: 'B',
      message: 'b',
      lastTransitionTime: '2026-01-01T00:00:00Z',
      observedGeneration: 2,
    });
    const c = setCondition(b, { type: 'Ready', status: 'True', reason: 'C', message: 'c' }, 2, t1);
    expect(c[0]?.lastTransitionTime).toBe('2026-01-01T01:00:00Z');
  });

  test('keeps other conditions and a stable order', () => {
    const list = setConditions(
      [],
      [
        { type: 'Ready', status: 'True', reason: 'R', message: '' },
        { type: 'DatabaseReady', status: 'True', reason: 'R', message: '' },
      ],
      1,
      t0,
    );
    expect(list.map((x) => x.type)).toEqual(['DatabaseReady', 'Ready']);
    expect(jsonEqual(list, setConditions(list, [{ type: 'Ready', status: 'True', reason: 'R', message: '' }], 1, t1))).toBe(true);
  });
});

describe('jsonEqual', () => {
  test.each([
    [{ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }, true],
    [{ a: 1 }, { a: 1, b: undefined }, true],
    [{ a: 1 }, { a: 2 }, false],
    [[1, 2], [2, 1], false],
    [null, {}, false],
  ])('%j vs %j', (a, b, want) => expect(jsonEqual(a, b)).toBe(want));
});
