/** Names a hostile tenant might choose, and an oracle, written apart from the code under test, for which are safe. */
import fc from 'fast-check';

/** Words that are syntax in the HBA files' database and user columns. */
export const HBA_WORDS = ['all', 'sameuser', 'samerole', 'samegroup', 'replication'] as const;
/** Everything that is syntax somewhere in the pooler's files (pgbouncer: its admin console). */
export const CONFIG_WORDS = [...HBA_WORDS, 'pgbouncer'] as const;

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

/** Whether a name may stand unquoted in the files, in that place. */
export function safeInFiles(use: 'alias' | 'database' | 'role', name: string): boolean {
  // A schema tenant's alias: schema.<identifier>, which no database name can be (no dot).
  if (use === 'alias' && name.startsWith('schema.')) return /^[a-z_][a-z0-9_]*$/.test(name.slice(7)) && utf8(name) <= 63;
  if (!/^[a-z_][a-z0-9_]*$/.test(name) || utf8(name) > 63) return false;
  const words: readonly string[] = use === 'alias' ? CONFIG_WORDS : HBA_WORDS;
  return !words.includes(name);
}

/** Names that sit on a boundary or carry syntax of the files or of SQL. */
export const NASTY_NAMES = [
  ...CONFIG_WORDS,
  'ALL',
  'All',
  '"all"',
  "'all'",
  '+all',
  '@all',
  'samehost',
  'samenet',
  'public',
  'postgres',
  'template0',
  'template1',
  'pg_signal_backend',
  'tenantdb_pooler',
  'a b',
  'a=b',
  'a = b',
  'a\nb',
  'a\r\nb',
  'a\tb',
  'a"b',
  'a""b',
  "a'b",
  'a\\b',
  'a,b',
  'a;b',
  'a; DROP ROLE x; --',
  '"; DROP DATABASE x; --',
  "'; DROP DATABASE x; --",
  '#a',
  'a#b',
  'a\u0000b',
  '',
  ' ',
  '_',
  '1a',
  'a-b',
  'a.b',
  'a$b',
  '$$',
  '\u00e9',
  '\u212a', // the Kelvin sign, which lower-cases to an ASCII k
  '\uff41', // a full-width a
  'a\u00a0b',
  'a'.repeat(56),
  'a'.repeat(57),
  'a'.repeat(63),
  'a'.repeat(64),
  '\u00e9'.repeat(31) + 'a', // 63 bytes in UTF-8, 32 characters
  '\u00e9'.repeat(32), // 64 bytes in UTF-8, 32 characters
  '\u{1f600}'.repeat(16), // 64 bytes, 16 code points
  '\u{1f600}'.repeat(15) + 'abc', // 63 bytes
  'schema.app',
  'schema.all',
  'schema.',
  'schema.a.b',
  'schema.A',
  'schema.9x',
  'schema. x',
  `schema.${'s'.repeat(56)}`, // 63 bytes
  `schema.${'s'.repeat(57)}`, // 64 bytes
  '.app',
  'app.',
];

const ident = fc.stringMatching(/^[a-z_][a-z0-9_]{0,62}$/);
const SYNTAX = [' ', '=', '\n', '\r', '"', "'", ',', '#', '\t', '%', '/', '\\', ';', '\u0000', '$', '-', 'A', '\u00e9'];

/** An identifier with one character of syntax put somewhere in it. */
const spliced = fc
  .tuple(ident, fc.nat(), fc.constantFrom(...SYNTAX))
  .map(([s, i, c]) => s.slice(0, i % (s.length + 1)) + c + s.slice(i % (s.length + 1)));

/** Mostly plausible names, many hostile ones. */
export const hostileName: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: ident, weight: 5 },
  { arbitrary: fc.constantFrom(...NASTY_NAMES), weight: 3 },
  { arbitrary: spliced, weight: 2 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 70 }), weight: 1 },
  { arbitrary: fc.string({ unit: 'grapheme', minLength: 60, maxLength: 70 }), weight: 1 },
);

/** A small set of plausible names, so that generated tenants collide (shared roles, claimed aliases). */
export const collidingName = fc.constantFrom('app', 'app_a', 'app_b', 'shop', 'shop_eu', '_x', 'z9');

const v4 = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, b]) => `${a}/${b}`);
const v6 = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([a, b]) => `${a}/${b}`);

export const NASTY_CIDRS = [
  '0.0.0.0/0',
  '::/0',
  '10.0.0.0/33',
  '::/129',
  '10.0.0.0',
  '10.0.0.0/',
  '/8',
  '10.0.0.0/8 trust',
  '10.0.0.0/8\nhost all all 0.0.0.0/0 trust',
  ' 10.0.0.0/8',
  '10.0.0.0/-1',
  '10.0.0.0/8/8',
  '010.0.0.0/8',
  '10.0.0.0/08',
  '10.0.0.0/0008',
  'fe80::1%eth0/64',
  '::ffff:10.0.0.1/128',
  '1.2.3.4.5/32',
  '256.0.0.0/8',
  'all/0',
  'samehost',
  'samenet',
  '',
];

export const hostileCidr: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: v4, weight: 4 },
  { arbitrary: v6, weight: 2 },
  { arbitrary: fc.constantFrom(...NASTY_CIDRS), weight: 2 },
  { arbitrary: fc.string({ maxLength: 20 }), weight: 1 },
);
