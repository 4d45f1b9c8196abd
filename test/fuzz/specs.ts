/**
 * Specs of the three kinds, generated inside the zod schemas and past them: each field is usually a
 * plausible value, sometimes a boundary, a hostile string, a wrong type or absent, and objects
 * sometimes carry keys no schema knows.
 */
import fc from 'fast-check';
import { isCidr } from '../../src/api/common.js';
import { hostileCidr, hostileName } from './names.js';

type Spec = Record<string, unknown>;

const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -5, max: 5 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 8 }),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 2 }),
);

/**
 * Two modes: `clean` draws every value from inside the schema (boundaries included) and is what
 * reaches the decisions after zod; the other also draws wrong types, hostile strings and values
 * past the bounds, so that most of its objects are refused somewhere.
 */
function kit(clean: boolean) {
  /** A field's value: from `good`, or (not clean) sometimes of the wrong type or from `bad`. */
  const field = <T>(good: fc.Arbitrary<T>, bad?: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
    clean
      ? good
      : fc.oneof(
          { arbitrary: good, weight: 14 },
          { arbitrary: wrongType, weight: 1 },
          { arbitrary: bad ?? wrongType, weight: bad ? 2 : 0 },
        );
  /** An object whose fields are each present or not, and (not clean) sometimes has a key too many. */
  const object = (fields: Record<string, fc.Arbitrary<unknown>>, required: string[] = []): fc.Arbitrary<Spec> => {
    const requiredKeys = required.filter((k) => k in fields);
    const base = fc.record(fields, { requiredKeys });
    if (clean) return base;
    return fc
      .tuple(
        base,
        fc.option(fc.tuple(fc.constantFrom('extra', 'Host', 'spec', 'status', '__proto__x', 'x-y'), wrongType), {
          freq: 12,
          nil: undefined,
        }),
      )
      .map(([o, extra]) => (extra ? { ...o, [extra[0]]: extra[1] } : o));
  };
  /** Sometimes (not clean) drops a required field. */
  const mostlyRequired = (o: fc.Arbitrary<Spec>, keys: string[]) =>
    clean
      ? o
      : fc.tuple(o, fc.option(fc.constantFrom(...keys), { freq: 15, nil: undefined })).map(([x, drop]) => {
          if (drop === undefined) return x;
          const { [drop]: _, ...rest } = x;
          return rest;
        });
  const int = (min: number, max: number) =>
    field(
      fc.oneof({ arbitrary: fc.integer({ min, max }), weight: 4 }, { arbitrary: fc.constantFrom(min, max), weight: 1 }),
      fc.constantFrom(min - 1, max + 1, 1.5, -0.5, 2 ** 31, 2 ** 53 - 1, 2 ** 53 + 2, 2 ** 63, -(2 ** 63)),
    );
  const oneOf = (values: string[], near: string[]) => field(fc.constantFrom(...values), fc.constantFrom(...near));
  return { field, object, mostlyRequired, int, oneOf };
}

const label = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/);
const NAME_EDGES = [
  'a',
  'a'.repeat(63),
  'a'.repeat(64),
  `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`, // 253
];
/** DNS-1123 subdomains, with the boundaries of their length. */
const goodDnsName: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: label, weight: 6 },
  { arbitrary: fc.array(label, { minLength: 2, maxLength: 4 }).map((xs) => xs.join('.')), weight: 2 },
  { arbitrary: fc.constantFrom(...NAME_EDGES, 'all', 'pgbouncer', '0', 'a-b'), weight: 1 },
);
const badDnsName = fc.oneof(
  fc.constantFrom(
    `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`,
    'A',
    'a_b',
    '-a',
    'a-',
    'a..b',
    '.a',
    'a b',
    '',
  ),
  hostileName,
);
/** Names of all kinds, for the metadata of generated objects (filtered there to what the API admits). */
export const dnsName: fc.Arbitrary<string> = fc.oneof({ arbitrary: goodDnsName, weight: 4 }, { arbitrary: badDnsName, weight: 1 });

const goodIdent = fc.oneof(
  { arbitrary: fc.stringMatching(/^[a-z_][a-z0-9_]{0,62}$/), weight: 8 },
  {
    arbitrary: fc.constantFrom(
      'a'.repeat(56),
      'a'.repeat(57),
      'a'.repeat(63),
      'all',
      'pgbouncer',
      'postgres',
      'pg_x',
      'public',
      'template1',
    ),
    weight: 2,
  },
);
const goodExtension = fc.oneof(
  { arbitrary: fc.constantFrom('pgcrypto', 'uuid-ossp', 'citext', 'hstore', 'pg_trgm', 'a'.repeat(63)), weight: 4 },
  { arbitrary: fc.stringMatching(/^[a-z_][a-z0-9_-]{0,62}$/), weight: 1 },
);
const badExtension = fc.oneof(fc.constantFrom('-x', 'a'.repeat(64), 'Pgcrypto', 'a b', '"x"', 'x;y'), hostileName);
const goodCidr = hostileCidr.filter((c) => isCidr(c));
const goodHost = fc.oneof(
  { arbitrary: fc.domain(), weight: 4 },
  { arbitrary: fc.ipV4(), weight: 2 },
  { arbitrary: fc.ipV6(), weight: 1 },
  { arbitrary: fc.constantFrom('localhost', 'db', 'a'.repeat(253), 'DB.Example', '::1'), weight: 1 },
);
const badHost = fc.constantFrom('a'.repeat(254), '-db', 'db-', 'db internal', 'db\nx', 'db=x', '', 'db_x', 'db/x');
const goodLabelKey = fc.oneof(label, fc.constantFrom('tenantdb.dev/team', 'a'.repeat(317)));
const goodText = (max: number) =>
  fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.constantFrom('x'.repeat(max), '\u00e9'.repeat(max), '\u{1f600}'.repeat(max), '\u{1f600}'.repeat(max / 2 + 1), 'a\nb', ''),
  );
const badText = (max: number) => fc.constantFrom('x'.repeat(max + 1), '\u00e9'.repeat(max + 1), '\u{1f600}'.repeat(max + 1));

function tenantDatabaseSpecOf(clean: boolean): fc.Arbitrary<Spec> {
  const { field, object, int, oneOf } = kit(clean);
  const ident = field(goodIdent, hostileName);
  return object({
    serverRef: field(object({ name: field(goodDnsName, badDnsName) }, ['name'])),
    isolation: oneOf(['Database', 'Schema'], ['database', 'schema', '', 'Shared']),
    databaseName: ident,
    schemaName: ident,
    roleName: ident,
    connectionLimit: int(-1, 100_000),
    pooling: field(
      object({
        enabled: field(fc.boolean()),
        poolMode: oneOf(['session', 'transaction', 'statement'], ['Session', 'tx', '']),
        poolSize: int(1, 10_000),
        maxDbConnections: int(0, 100_000),
      }),
    ),
    extensions: field(
      fc.array(field(goodExtension, badExtension), { maxLength: 32 }),
      fc.array(goodExtension, { minLength: 33, maxLength: 34 }),
    ),
    shadowDatabase: field(fc.boolean()),
    secretName: field(goodDnsName, badDnsName),
    deletionPolicy: oneOf(['Retain', 'Delete'], ['retain', 'Orphan', '']),
  }).chain((spec) =>
    // Fields of the other isolation mode are refused: mostly left out, so that generated specs
    // still reach inside the schema as often as past it.
    fc.nat(9).map((r) => {
      if (r >= 8) return spec;
      const drop = spec.isolation === 'Schema' ? ['databaseName', 'shadowDatabase', 'extensions'] : ['schemaName'];
      return Object.fromEntries(Object.entries(spec).filter(([k]) => !drop.includes(k)));
    }),
  );
}

function postgresServerSpecOf(clean: boolean): fc.Arbitrary<Spec> {
  const { field, object, mostlyRequired, int, oneOf } = kit(clean);
  const name = field(goodDnsName, badDnsName);
  const secretRef = field(object({ namespace: name, name }, ['namespace', 'name']));
  const host = field(goodHost, badHost);
  const labelKey = field(goodLabelKey, fc.constantFrom('a'.repeat(318)));
  return mostlyRequired(
    object(
      {
        host,
        port: int(1, 65535),
        sslMode: oneOf(['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'], ['Require', 'verify', '']),
        caSecretRef: secretRef,
        adminSecretRef: secretRef,
        default: field(fc.boolean()),
        publicHost: host,
        pooler: field(object({ host, port: int(1, 65535), adminSecretRef: secretRef, configSecretRef: secretRef }, ['host'])),
        hba: field(object({ mode: oneOf(['None', 'Agent'], ['none', 'agent', '']), configSecretRef: secretRef })),
        alwaysAllowedCidrs: field(
          fc.array(field(goodCidr, hostileCidr), { maxLength: 4 }),
          fc.constant(Array.from({ length: 65 }, () => '10.0.0.0/8')),
        ),
        sharedDatabase: field(goodIdent, hostileName),
        allowedExtensions: field(fc.array(field(goodExtension, badExtension), { maxLength: 8 })),
        allowedNamespaces: field(
          object({
            from: oneOf(['All', 'Selector'], ['all', 'None']),
            selector: field(
              object({
                matchLabels: field(fc.dictionary(goodLabelKey, field(label, fc.constantFrom('a'.repeat(64))), { maxKeys: 3 })),
                matchExpressions: field(
                  fc.array(
                    object(
                      {
                        key: labelKey,
                        operator: oneOf(['In', 'NotIn', 'Exists', 'DoesNotExist'], ['in', 'Gt']),
                        values: field(fc.array(label, { maxLength: 3 })),
                      },
                      ['key', 'operator'],
                    ),
                    { maxLength: 3 },
                  ),
                ),
              }),
            ),
          }),
        ),
        connectionLimits: field(object({ default: int(1, 100_000), max: int(1, 100_000), enforceBudget: field(fc.boolean()) })),
        maxTenants: int(0, 2 ** 53 - 1),
      },
      ['host', 'adminSecretRef'],
    ),
    ['host', 'adminSecretRef'],
  );
}

function ipWhitelistSpecOf(clean: boolean): fc.Arbitrary<Spec> {
  const { field, object, mostlyRequired } = kit(clean);
  const entry = object({ cidr: field(goodCidr, hostileCidr), description: field(goodText(256), badText(256)) }, ['cidr']);
  const many = (n: number) => Array.from({ length: n }, (_, i) => ({ cidr: `10.${i >> 8}.${i & 255}.0/24` }));
  return mostlyRequired(
    object(
      {
        tenantDatabaseRef: field(object({ name: field(goodDnsName, badDnsName) }, ['name'])),
        entries: field(
          fc.oneof(
            { arbitrary: fc.array(entry, { minLength: 1, maxLength: 6 }), weight: 8 },
            { arbitrary: fc.constant(many(256)), weight: 1 },
          ),
          fc.constantFrom([], many(257)),
        ),
      },
      ['tenantDatabaseRef', 'entries'],
    ),
    ['tenantDatabaseRef', 'entries'],
  );
}

/** Half from inside the schema, half from past it. */
const both = (of: (clean: boolean) => fc.Arbitrary<Spec>) => fc.oneof(of(true), of(false));

export const tenantDatabaseSpecArb = both(tenantDatabaseSpecOf);
export const postgresServerSpecArb = both(postgresServerSpecOf);
export const ipWhitelistSpecArb = both(ipWhitelistSpecOf);

export const SPEC_ARBS = {
  TenantDatabase: tenantDatabaseSpecArb,
  PostgresServer: postgresServerSpecArb,
  IpWhitelist: ipWhitelistSpecArb,
} as const;
export type FuzzKind = keyof typeof SPEC_ARBS;
