import { majorOf } from '../../src/pg/tenant-sql.js';

test("a server_version's major, and 0 for what is not one", () => {
  expect(majorOf('15.4')).toBe(15);
  expect(majorOf('17.2 (Debian 17.2-1.pgdg120+1)')).toBe(17);
  expect(majorOf('9.6.24')).toBe(9);
  expect(majorOf('18beta1')).toBe(18);
  expect(majorOf(undefined)).toBe(0);
  expect(majorOf('')).toBe(0);
  expect(majorOf('unknown')).toBe(0);
});
