import { deriveIdentifier, MAX_DERIVED } from '../../src/api/naming.js';
import { PG_IDENTIFIER } from '../../src/api/common.js';

describe('deriveIdentifier', () => {
  test.each([
    ['shop', 'orders', 'shop_orders'],
    ['team-a', 'my-app', 'team_a_my_app'],
    ['ns', 'a.b.c', 'ns_a_b_c'],
    ['42team', 'app', 't_42team_app'],
    ['pg-tools', 'db', 't_pg_tools_db'],
  ])('%s/%s -> %s', (ns, name, want) => {
    expect(deriveIdentifier(ns, name)).toBe(want);
  });

  test('long names keep a readable prefix, end in a hash and fit with room for _shadow', () => {
    const a = deriveIdentifier('namespace-with-a-long-name', 'x'.repeat(200));
    const b = deriveIdentifier('namespace-with-a-long-name', `${'x'.repeat(199)}y`);
    expect(a.length).toBeLessThanOrEqual(MAX_DERIVED);
    expect(`${a}_shadow`.length).toBeLessThanOrEqual(63);
    expect(a).toMatch(/^namespace_with_a_long_name_x+_[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
    expect(a).toMatch(PG_IDENTIFIER);
  });

  test('is stable', () => {
    expect(deriveIdentifier('a', 'b'.repeat(100))).toBe(deriveIdentifier('a', 'b'.repeat(100)));
  });
});
