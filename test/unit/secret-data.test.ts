import { CACHED_TENANT_SECRET_BYTES, encodeSecretData, decodeSecretData, slimSecret } from '../../src/kube/secrets.js';
import { pagedList } from '../../src/runtime/informer.js';
import type * as k8s from '@kubernetes/client-node';
import { TEMPLATED_SECRET_BYTES, applySecretTemplate, renderSecretData } from '../../src/controllers/tenantdatabase/secret-data.js';

const base = { host: 'db.example.com', port: 5432, sslMode: 'require', database: 'shop_orders', user: 'shop_orders', password: 'abc' };

describe('renderSecretData', () => {
  test('direct only when there is no pooler', () => {
    const d = renderSecretData(base);
    expect(d.uri).toBe('postgresql://shop_orders:abc@db.example.com:5432/shop_orders?sslmode=require');
    expect(d.DATABASE_URL).toBe(d.uri);
    expect(d.DIRECT_URL).toBe(d.uri);
    expect(d['pooled-uri']).toBe(d.uri);
    expect(d['pooler-host']).toBe('db.example.com');
    expect(d.PGSSLMODE).toBe('require');
    expect(d.SHADOW_DATABASE_URL).toBeUndefined();
  });

  test('DATABASE_URL goes through the pooler when there is one; DIRECT_URL never does', () => {
    const d = renderSecretData({ ...base, pooler: { host: 'pgbouncer', port: 6432 }, shadowDatabase: 'shop_orders_shadow' });
    expect(d.DATABASE_URL).toBe('postgresql://shop_orders:abc@pgbouncer:6432/shop_orders?sslmode=require');
    expect(d['pooled-uri']).toBe(d.DATABASE_URL);
    expect(d.DIRECT_URL).toBe(d.uri);
    expect(d['pooler-port']).toBe('6432');
    expect(d.SHADOW_DATABASE_URL).toBe('postgresql://shop_orders:abc@db.example.com:5432/shop_orders_shadow?sslmode=require');
  });

  test('a schema tenant: pooled URLs name its alias, direct ones the shared database, only Prisma keys carry schema=', () => {
    const schema = { name: 'shop_orders', alias: 'schema.shop_orders' };
    const d = renderSecretData({
      ...base,
      database: 'tenants',
      schema,
      pooler: { host: 'pgbouncer', port: 6432 },
      poolerPreparedStatements: true,
    });
    expect(d.DATABASE_URL).toBe('postgresql://shop_orders:abc@pgbouncer:6432/schema.shop_orders?sslmode=require');
    expect(d.DIRECT_URL).toBe('postgresql://shop_orders:abc@db.example.com:5432/tenants?sslmode=require');
    expect(d['jdbc-url']).toBe('jdbc:postgresql://pgbouncer:6432/schema.shop_orders?sslmode=require');
    expect(d.PRISMA_DATABASE_URL).toBe(`${d.DATABASE_URL}&schema=shop_orders`);
    expect(d.PRISMA_DIRECT_URL).toBe(`${d.DIRECT_URL}&schema=shop_orders`);
    expect(d.schema).toBe('shop_orders');
    expect(d.database).toBe('tenants');
    expect(d['pooler-database']).toBe('schema.shop_orders');
    // libpq refuses parameters it does not know: no key meant for every client holds schema=.
    for (const k of ['uri', 'pooled-uri', 'DATABASE_URL', 'DIRECT_URL', 'jdbc-url', 'jdbc-uri', 'pooled-jdbc-uri'])
      expect(d[k]).not.toContain('schema=');
    // Without a pooler, every URL names the shared database.
    const direct = renderSecretData({ ...base, database: 'tenants', schema });
    expect(direct.DATABASE_URL).toBe(direct.DIRECT_URL);
    expect(direct['pooler-database']).toBe('tenants');
  });

  test('credentials are percent-encoded in every URI; parts stay raw', () => {
    const d = renderSecretData({ ...base, user: 'u@x', password: "p:/?#[]@!$&'()*+,;= %" });
    const enc = encodeURIComponent("p:/?#[]@!$&'()*+,;= %");
    expect(d.uri).toContain(`u%40x:${enc}@`);
    expect(d['jdbc-uri']).toContain(`user=u%40x&password=${enc}`);
    expect(new URL(d.uri ?? '').password).toBe(enc);
    expect(decodeURIComponent(new URL(d.uri ?? '').password)).toBe("p:/?#[]@!$&'()*+,;= %");
    expect(d.password).toBe("p:/?#[]@!$&'()*+,;= %");
    expect(d.PGPASSWORD).toBe(d.password);
  });

  test('IPv6 hosts are bracketed in URIs', () => {
    const d = renderSecretData({ ...base, host: '::1' });
    expect(d.uri).toBe('postgresql://shop_orders:abc@[::1]:5432/shop_orders?sslmode=require');
    expect(d.PGHOST).toBe('::1');
  });

  test('base64 round trip', () => {
    const d = renderSecretData(base);
    expect(decodeSecretData(encodeSecretData(d))).toEqual(d);
  });
});

describe('slimSecret: what the Secret cache keeps', () => {
  const kept = {
    labels: new Set(['app.kubernetes.io/managed-by', 'tenantdb.dev/postgresserver']),
    annotations: new Set(['tenantdb.dev/data-hash']),
  };
  const owner = { apiVersion: 'tenantdb.dev/v1alpha1', kind: 'TenantDatabase', name: 'app', uid: 'u1', controller: true };
  const secret = (ns: string, data: Record<string, string>, ownerReferences?: k8s.V1OwnerReference[]): k8s.V1Secret => ({
    metadata: {
      name: 's',
      namespace: ns,
      labels: { 'app.kubernetes.io/managed-by': 'tenantdb', 'tenantdb.dev/postgresserver': 'x', junk: 'y'.repeat(60) },
      annotations: { 'tenantdb.dev/data-hash': 'abc', 'tenantdb.dev/big': 'z'.repeat(9000), 'other/note': 'w'.repeat(200_000) },
      managedFields: [{ manager: 'm' }],
      ...(ownerReferences ? { ownerReferences } : {}),
    },
    data: encodeSecretData(data),
  });

  test("a tenant's own Secret keeps its data and our metadata only", () => {
    const s = secret('team', { password: 'pw', DATABASE_URL: 'postgresql://a' }, [owner]);
    slimSecret(s, 'tenantdb-system', kept);
    expect(decodeSecretData(s.data)).toEqual({ password: 'pw', DATABASE_URL: 'postgresql://a' });
    expect(s.metadata?.labels).toEqual({ 'app.kubernetes.io/managed-by': 'tenantdb', 'tenantdb.dev/postgresserver': 'x' });
    expect(s.metadata?.annotations).toEqual({ 'tenantdb.dev/data-hash': 'abc' });
    expect(s.metadata?.managedFields).toBeUndefined();
    expect(s.metadata).toMatchObject({ name: 's', namespace: 'team', ownerReferences: [owner] });
  });

  test('a labelled Secret no TenantDatabase controls keeps no data', () => {
    const s = secret('team', { password: 'pw' });
    slimSecret(s, 'tenantdb-system', kept);
    expect(s.data).toBeUndefined();
    const notController = secret('team', { password: 'pw' }, [{ ...owner, controller: false }]);
    slimSecret(notController, 'tenantdb-system', kept);
    expect(notController.data).toBeUndefined();
    const otherKind = secret('team', { password: 'pw' }, [{ ...owner, kind: 'Deployment', apiVersion: 'apps/v1' }]);
    slimSecret(otherKind, 'tenantdb-system', kept);
    expect(otherKind.data).toBeUndefined();
  });

  test('a tenant Secret past the size bound keeps no data, however it claims to be ours', () => {
    const s = secret('team', { password: 'x'.repeat(CACHED_TENANT_SECRET_BYTES) }, [owner]);
    slimSecret(s, 'tenantdb-system', kept);
    expect(s.data).toBeUndefined();
  });

  test('metadata piled up under our prefixes, and owner references, are dropped too', () => {
    const s = secret('team', { password: 'pw' }, [
      owner,
      ...Array.from({ length: 500 }, (_, i) => ({ ...owner, uid: `u${i}`, controller: false })),
    ]);
    for (let i = 0; i < 1000; i += 1) {
      (s.metadata!.labels as Record<string, string>)[`tenantdb.dev/l${i}`] = 'x';
      (s.metadata!.annotations as Record<string, string>)[`tenantdb.dev/a${i}`] = 'y'.repeat(8000);
    }
    (s.metadata as Record<string, unknown>).finalizers = Array.from({ length: 1000 }, (_, i) => `example.com/f${i}`);
    slimSecret(s, 'tenantdb-system', kept);
    expect(JSON.stringify(s.metadata).length).toBeLessThan(1024);
    expect(s.metadata?.ownerReferences).toEqual([owner]);
  });

  test("the operator's namespace keeps its config Secrets whole, whatever their size", () => {
    const s = secret('tenantdb-system', { 'databases.ini': 'd'.repeat(400_000) });
    slimSecret(s, 'tenantdb-system', kept);
    expect(decodeSecretData(s.data)['databases.ini']).toHaveLength(400_000);
  });
});

describe('pagedList', () => {
  test('reads every page, slims each before the next, and keeps the snapshot version', async () => {
    const all = Array.from({ length: 45 }, (_, i) => ({ metadata: { name: `s${i}` }, data: { k: 'v' } }));
    const asked: { limit: number; _continue?: string }[] = [];
    let slimmedBeforeNext = true;
    const list = pagedList<k8s.V1Secret>(
      async (page) => {
        asked.push(page);
        const start = Number(page._continue ?? 0);
        if (all.slice(0, start).some((s) => s.data)) slimmedBeforeNext = false;
        const next = start + page.limit;
        return {
          metadata: { resourceVersion: '7', ...(next < all.length ? { _continue: String(next) } : {}) },
          items: all.slice(start, next),
        };
      },
      20,
      (s) => delete s.data,
    );
    const got = await list();
    expect(got.items.map((s) => s.metadata?.name)).toEqual(all.map((s) => s.metadata?.name));
    expect(got.metadata).toEqual({ resourceVersion: '7' });
    expect(asked).toEqual([{ limit: 20 }, { limit: 20, _continue: '20' }, { limit: 20, _continue: '40' }]);
    expect(slimmedBeforeNext).toBe(true);
  });
});

describe('keys for each client family, and only the workarounds the pooler needs', () => {
  const pooled = { ...base, pooler: { host: 'pgbouncer', port: 6432 } };

  test('Service Binding: type, provider, username, and a jdbc-url without credentials', () => {
    const d = renderSecretData({ ...pooled, poolerPreparedStatements: true });
    expect(d).toMatchObject({ type: 'postgresql', provider: 'tenantdb', username: 'shop_orders', password: 'abc' });
    expect(d['jdbc-url']).toBe('jdbc:postgresql://pgbouncer:6432/shop_orders?sslmode=require');
    expect(d['pooled-jdbc-uri']).toBe('jdbc:postgresql://pgbouncer:6432/shop_orders?user=shop_orders&password=abc&sslmode=require');
    expect(d['jdbc-uri']).toBe('jdbc:postgresql://db.example.com:5432/shop_orders?user=shop_orders&password=abc&sslmode=require');
  });

  test('a pooler with prepared statements needs no workaround: Prisma gets the plain pooled URL', () => {
    const d = renderSecretData({ ...pooled, poolerPreparedStatements: true });
    expect(d.PRISMA_DATABASE_URL).toBe(d.DATABASE_URL);
    expect(Object.values(d).join(' ')).not.toMatch(/pgbouncer=true|prepareThreshold/);
  });

  test('a pooler without them: pgbouncer=true for Prisma, prepareThreshold=0 for pgjdbc, nothing in the libpq URLs', () => {
    const d = renderSecretData({ ...pooled, poolerPreparedStatements: false });
    expect(d.PRISMA_DATABASE_URL).toBe(`${d.DATABASE_URL}&pgbouncer=true`);
    expect(d['jdbc-url']).toBe('jdbc:postgresql://pgbouncer:6432/shop_orders?sslmode=require&prepareThreshold=0');
    for (const k of ['uri', 'pooled-uri', 'DATABASE_URL', 'DIRECT_URL']) expect(d[k]).not.toMatch(/pgbouncer=true|prepareThreshold/);
  });

  test('without a pooler nothing needs a workaround', () => {
    const d = renderSecretData(base);
    expect(d.PRISMA_DATABASE_URL).toBe(d.DIRECT_URL);
    expect(d['jdbc-url']).toBe('jdbc:postgresql://db.example.com:5432/shop_orders?sslmode=require');
  });
});

describe('secretTemplate: presets and keys of your own', () => {
  const std = renderSecretData({ ...base, pooler: { host: 'pgbouncer', port: 6432 }, poolerPreparedStatements: false });

  test('the Vercel and Spring presets in the shapes those platforms read', () => {
    const r = applySecretTemplate(std, { presets: ['Vercel', 'Spring'], keys: {} });
    if (!r.ok) throw new Error(r.message);
    expect(r.data).toMatchObject({
      POSTGRES_URL: std.DATABASE_URL,
      POSTGRES_PRISMA_URL: `${std.DATABASE_URL}&pgbouncer=true`,
      POSTGRES_URL_NON_POOLING: std.DIRECT_URL,
      POSTGRES_HOST: 'pgbouncer',
      POSTGRES_USER: 'shop_orders',
      POSTGRES_PASSWORD: 'abc',
      POSTGRES_DATABASE: 'shop_orders',
      SPRING_DATASOURCE_URL: 'jdbc:postgresql://pgbouncer:6432/shop_orders?sslmode=require&prepareThreshold=0',
      SPRING_DATASOURCE_USERNAME: 'shop_orders',
      SPRING_DATASOURCE_PASSWORD: 'abc',
    });
  });

  test('a key of your own substitutes standard keys, and only those', () => {
    const r = applySecretTemplate(std, {
      presets: [],
      keys: { BILLING_URL: '$(pooled-uri)&application_name=billing', 'conn.user': '$(user)', PRICE: '$$(5) $(database)' },
    });
    if (!r.ok) throw new Error(r.message);
    expect(r.data.BILLING_URL).toBe(`${std['pooled-uri']}&application_name=billing`);
    expect(r.data['conn.user']).toBe('shop_orders');
    expect(r.data.PRICE).toBe('$(5) shop_orders');
    const unknown = applySecretTemplate(std, { presets: [], keys: { X: '$(POSTGRES_URL)' } });
    expect(unknown).toMatchObject({ ok: false, message: expect.stringContaining('$(POSTGRES_URL) is not a key of the Secret') });
  });

  test('no key of your own replaces a standard or preset key', () => {
    expect(applySecretTemplate(std, { presets: [], keys: { password: 'hunter2' } })).toMatchObject({ ok: false });
    expect(applySecretTemplate(std, { presets: ['Spring'], keys: { SPRING_DATASOURCE_URL: 'x' } })).toMatchObject({ ok: false });
  });
});

test('a template cannot take the Secret past what the cache keeps of it', () => {
  const std = renderSecretData(base);
  const keys = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`K${i}`, '$(uri)'.repeat(20)]));
  expect(applySecretTemplate(std, { presets: [], keys })).toMatchObject({ ok: false, message: expect.stringContaining('more than the') });
  const cached = encodeSecretData({ ...std, K: 'x'.repeat(TEMPLATED_SECRET_BYTES - 4096) });
  const size = Object.entries(cached).reduce((n, [k, v]) => n + k.length + v.length, 0);
  expect(size).toBeLessThan(CACHED_TENANT_SECRET_BYTES);
});

test('a verified server: the CA as ca.crt and sslrootcert, for libpq once mounted and for Service Binding readers', () => {
  const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const d = renderSecretData({ ...base, sslMode: 'verify-full', ca: pem });
  expect(d['ca.crt']).toBe(pem);
  expect(d.sslrootcert).toBe(pem);
  expect(d.DATABASE_URL).not.toContain('sslrootcert');
  expect(renderSecretData(base)['ca.crt']).toBeUndefined();
});
