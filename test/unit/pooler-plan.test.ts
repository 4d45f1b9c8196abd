import {
  MAX_CIDRS_PER_TENANT,
  admitWhitelists,
  planServerHba,
  type WhitelistView,
} from '../../src/controllers/postgresserver/pooler-plan.js';
import { renderServerHba } from '../../src/pooler/render.js';

const list = (name: string, created: string, cidrs: number): WhitelistView => ({
  metadata: { name, creationTimestamp: created as unknown as Date },
  spec: { entries: Array.from({ length: cidrs }, (_, i) => ({ cidr: `10.${Math.floor(i / 250)}.${i % 250}.0/24` })) },
});

describe('admitWhitelists', () => {
  test.each([
    { lists: [list('a', '2024-01-01', 10), list('b', '2024-01-02', 20)], admitted: ['a', 'b'], refused: [] },
    { lists: [list('new', '2024-01-02', 200), list('old', '2024-01-01', 100)], admitted: ['old'], refused: ['new'] },
    { lists: [list('b', '2024-01-01', MAX_CIDRS_PER_TENANT), list('a', '2024-01-01', 1)], admitted: ['a'], refused: ['b'] },
    { lists: [list('big', '2024-01-01', MAX_CIDRS_PER_TENANT + 1), list('small', '2024-01-02', 5)], admitted: ['small'], refused: ['big'] },
  ])('oldest first within the budget: $admitted admitted, $refused refused', ({ lists, admitted, refused }) => {
    const r = admitWhitelists(lists);
    expect(r.admitted.map((w) => w.metadata?.name)).toEqual(admitted);
    expect(r.refused.map((w) => w.metadata?.name)).toEqual(refused);
  });
});

describe('planServerHba', () => {
  const always = ['10.99.0.0/16'];
  const t = (role: string, created: string, cidrs: string[] = ['192.0.2.0/24'], namespace = 'ns') => ({
    namespace,
    role,
    databases: [role],
    allowedCidrs: cidrs,
    created,
  });
  const size = (role: string, cidrs: string[]) => renderServerHba([{ databases: [role], role, allowedCidrs: cidrs }], always).length;

  test('every tenant keeps its rules when the budget holds them', () => {
    const r = planServerHba([t('b_role', '2024-01-02'), t('a_role', '2024-01-01')], always);
    expect(r.tenants.map((x) => x.role)).toEqual(['a_role', 'b_role']);
    expect(r.closed.size).toBe(0);
  });

  test('past the budget the newest tenant is closed, not left open', () => {
    const budget = size('old_role', ['192.0.2.0/24']) + size('new_role', []) + 1;
    const r = planServerHba([t('new_role', '2024-01-02'), t('old_role', '2024-01-01')], always, budget);
    expect([...r.closed]).toEqual(['new_role']);
    expect(r.tenants.find((x) => x.role === 'new_role')?.allowedCidrs).toEqual([]);
    expect(r.tenants.find((x) => x.role === 'old_role')?.allowedCidrs).toEqual(['192.0.2.0/24']);
  });

  test('one namespace piling up rules closes its own newest tenants, not a later namespace within its share', () => {
    const many = (n: number) => Array.from({ length: 200 }, (_, i) => `10.${n}.${i}.0/24`);
    const hog = Array.from({ length: 8 }, (_, i) => t(`hog_${i}`, `2024-01-0${i + 1}`, many(i), 'evil'));
    const late = t('late_role', '2024-02-01', ['198.51.100.0/24'], 'good');
    const each = size('hog_0', many(0));
    // Room for about four of the hog's tenants in all.
    const budget = 4 * each + size('late_role', ['198.51.100.0/24']);
    const r = planServerHba([...hog, late], always, budget);
    expect(r.closed.has('late_role')).toBe(false);
    expect(r.tenants.find((x) => x.role === 'late_role')?.allowedCidrs).toEqual(['198.51.100.0/24']);
    expect(r.closed.size).toBeGreaterThanOrEqual(4);
    // The hog keeps its oldest tenants' rules and loses its newest.
    expect(r.closed.has('hog_0')).toBe(false);
    expect(r.closed.has('hog_7')).toBe(true);
    expect(renderServerHba(r.tenants, always).length).toBeLessThanOrEqual(budget);
  });

  test('a tenant whose names are syntax is left out, the others stay', () => {
    const r = planServerHba(
      [t('all', '2024-01-01'), { ...t('ok_role', '2024-01-02'), databases: ['ok_role', 'replication'] }, t('fine', '2024-01-03')],
      always,
    );
    expect(r.tenants.map((x) => x.role)).toEqual(['fine']);
  });
});
