import { adminReserveCondition } from '../../src/controllers/postgresserver/reserve.js';

const slots = (o: Partial<Parameters<typeof adminReserveCondition>[0]> = {}) => ({
  maxConnections: 100,
  superuserReserved: 3,
  reserved: 0,
  adminMayUseReserved: false,
  superuser: false,
  ...o,
});

describe('adminReserveCondition', () => {
  test.each([
    ['a superuser admin', slots({ superuser: true }), [200], 'True', 'Superuser'],
    ['reserved slots the admin may use', slots({ reserved: 10, adminMayUseReserved: true }), [500], 'True', 'ReservedConnections'],
    ['reserved slots too few for the operator', slots({ reserved: 4, adminMayUseReserved: true }), [500], 'False', 'NoReserve'],
    ['reserved slots the admin may not use', slots({ reserved: 10 }), [500], 'False', 'NoReserve'],
    ['limits that fit beside the operator', slots(), [20, 20, 20, 29], 'True', 'WithinBudget'],
    ['limits one too many', slots(), [20, 20, 20, 30], 'False', 'NoReserve'],
    ['no limit counts as every connection', slots(), [-1], 'False', 'NoReserve'],
  ])('%s', (_what, s, limits, status, reason) => {
    const c = adminReserveCondition(s, limits, 8, 'admin');
    expect([c.status, c.reason]).toEqual([status, reason]);
  });

  test('the message says what to do', () => {
    expect(adminReserveCondition(slots(), [200], 8, 'tenantdb_admin').message).toMatch(
      /GRANT pg_use_reserved_connections TO tenantdb_admin/,
    );
  });
});
