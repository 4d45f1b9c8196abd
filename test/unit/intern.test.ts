import { Interner } from '../../src/runtime/intern.js';

describe('Interner', () => {
  test('values are unchanged, nested ones too; unique keys and long strings stay out of the pool', () => {
    const i = new Interner(100, 30);
    const obj = {
      apiVersion: 'tenantdb.dev/v1alpha1',
      metadata: { uid: 'u-1', resourceVersion: '42', finalizers: ['tenantdb.dev/finalizer'] },
      status: { conditions: [{ type: 'Ready', message: 'x'.repeat(50) }] },
      spec: { connectionLimit: 5, suspend: false },
    };
    const before = JSON.stringify(obj);
    i.walk(obj);
    expect(JSON.stringify(obj)).toBe(before);
    // apiVersion, the finalizer and 'Ready': neither uid, resourceVersion nor the long message.
    expect(i.size).toBe(3);
  });

  test('the pool is bounded: full, it starts over', () => {
    const i = new Interner(3);
    for (const s of ['a', 'b', 'c', 'd']) i.of(s);
    expect(i.size).toBe(1);
    expect(i.of('a')).toBe('a');
  });
});

describe('withoutDefaults', () => {
  test('a cached spec keeps only what differs from the defaults, and parses back to the same spec', async () => {
    const { withoutDefaults } = await import('../../src/api/cached.js');
    const { tenantDatabaseSpec } = await import('../../src/api/tenantdatabase.js');
    const defaults = tenantDatabaseSpec.parse({}) as Record<string, unknown>;
    const stored = tenantDatabaseSpec.parse({ connectionLimit: 7, pooling: { poolSize: 3 }, extensions: ['pgcrypto'] });
    const cached = withoutDefaults(JSON.parse(JSON.stringify(stored)) as Record<string, unknown>, defaults);
    expect(cached).toEqual({ connectionLimit: 7, pooling: { poolSize: 3 }, extensions: ['pgcrypto'] });
    expect(tenantDatabaseSpec.parse(cached)).toEqual(stored);
  });

  test('a default object goes whole, in the key order the API server sends (sorted)', async () => {
    const { withoutDefaults } = await import('../../src/api/cached.js');
    const { tenantDatabaseSpec } = await import('../../src/api/tenantdatabase.js');
    const defaults = tenantDatabaseSpec.parse({}) as Record<string, unknown>;
    const sorted = (x: unknown): unknown =>
      Array.isArray(x)
        ? x.map(sorted)
        : x && typeof x === 'object'
          ? Object.fromEntries(
              Object.keys(x)
                .sort()
                .map((k) => [k, sorted((x as Record<string, unknown>)[k])]),
            )
          : x;
    const stored = sorted({ ...defaults, serverRef: { name: 'main' } }) as Record<string, unknown>;
    const cached = withoutDefaults(stored, defaults);
    expect(cached).toEqual({ serverRef: { name: 'main' } });
    expect(tenantDatabaseSpec.parse(cached)).toEqual(tenantDatabaseSpec.parse(stored));
  });
});
