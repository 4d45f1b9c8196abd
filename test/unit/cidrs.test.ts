import { cidrContains, intersectAllowLists } from '../../src/pooler/cidrs.js';

test.each([
  ['10.0.0.0/8', '10.1.2.0/24', true],
  ['10.1.2.0/24', '10.0.0.0/8', false],
  ['10.0.0.0/8', '11.0.0.0/8', false],
  ['0.0.0.0/0', '192.168.1.7/32', true],
  ['127.0.0.0/29', '127.0.0.3/32', true],
  ['127.0.0.0/29', '127.0.0.9/32', false],
  ['2001:db8::/32', '2001:db8:1::/48', true],
  ['2001:db8::/32', '2001:db9::/48', false],
  ['::/0', '10.0.0.0/8', false],
  ['fd00::/8', 'fd12:3456::1/128', true],
])('%s contains %s: %s', (outer, inner, expected) => {
  expect(cidrContains(outer, inner)).toBe(expected);
});

test('the meet of allow-lists: list-less members narrow nothing, disjoint lists leave nothing', () => {
  expect(intersectAllowLists([])).toBeUndefined();
  expect(intersectAllowLists([undefined, undefined])).toBeUndefined();
  expect(intersectAllowLists([undefined, ['10.0.0.0/8']])).toEqual(['10.0.0.0/8']);
  expect(intersectAllowLists([['127.0.0.0/29'], ['127.0.0.3/32']])).toEqual(['127.0.0.3/32']);
  expect(
    intersectAllowLists([
      ['10.0.0.0/8', '192.168.0.0/16'],
      ['10.1.0.0/16', '172.16.0.0/12'],
    ]),
  ).toEqual(['10.1.0.0/16']);
  expect(intersectAllowLists([['10.0.0.0/8'], ['192.168.0.0/16']])).toEqual([]);
  expect(intersectAllowLists([['2001:db8::/32', '10.0.0.0/8'], ['2001:db8:5::/48']])).toEqual(['2001:db8:5::/48']);
});
