import { REGISTRY_LIMIT, envKeyFor, renderRegistry, type Member } from '../../src/controllers/tenantgroup/registry.js';

const secret = (db: string) => ({
  database: db,
  user: db,
  password: `pw-${db}`,
  host: 'db',
  port: '5432',
  'pooler-host': 'pgbouncer',
  'pooler-port': '6432',
  sslmode: 'require',
  DIRECT_URL: `postgresql://${db}:pw@db:5432/${db}`,
  DATABASE_URL: `postgresql://${db}:pw@pgbouncer:6432/${db}`,
  'jdbc-url': `jdbc:postgresql://pgbouncer:6432/${db}`,
});
const m = (name: string, ready = true): Member => ({ name, ready, secret: secret(`shop_${name.replace(/-/g, '_')}`) });

describe('renderRegistry', () => {
  test('tenants.json lists every member with a Secret, sorted, with its URLs and readiness', () => {
    const r = renderRegistry([m('zeta', false), m('acme'), { name: 'new', ready: false, secret: undefined }], []);
    if (!r.ok) throw new Error(r.message);
    const doc = JSON.parse(r.data['tenants.json'] ?? '') as { tenants: Record<string, unknown>[] };
    expect(doc.tenants.map((t) => t.name)).toEqual(['acme', 'zeta']);
    expect(doc.tenants[0]).toMatchObject({
      name: 'acme',
      ready: true,
      database: 'shop_acme',
      port: 5432,
      poolerPort: 6432,
      uri: 'postgresql://shop_acme:pw@db:5432/shop_acme',
      pooledUri: 'postgresql://shop_acme:pw@pgbouncer:6432/shop_acme',
      jdbcUrl: 'jdbc:postgresql://pgbouncer:6432/shop_acme',
    });
    expect(doc.tenants[1]?.ready).toBe(false);
    expect(r).toMatchObject({ members: 2, ready: 1 });
  });

  test('one env key per member and entry, named by the template', () => {
    const r = renderRegistry([m('acme'), m('big-shop')], [{ key: 'MERCHANT_$(NAME)_DATABASE_URL', from: 'DATABASE_URL' }]);
    if (!r.ok) throw new Error(r.message);
    expect(r.data.MERCHANT_ACME_DATABASE_URL).toBe('postgresql://shop_acme:pw@pgbouncer:6432/shop_acme');
    expect(r.data.MERCHANT_BIG_SHOP_DATABASE_URL).toBe('postgresql://shop_big_shop:pw@pgbouncer:6432/shop_big_shop');
    expect(envKeyFor('db.$(name).url', 'big-shop')).toBe('db.big-shop.url');
  });

  test('two members that would give the same key are refused, not one silently kept', () => {
    const r = renderRegistry([m('big-shop'), m('big.shop')], [{ key: 'M_$(NAME)', from: 'DATABASE_URL' }]);
    expect(r).toMatchObject({ ok: false, message: expect.stringContaining('both give the key M_BIG_SHOP') });
  });

  test('a registry past what a Secret holds is refused with its size', () => {
    const many = Array.from({ length: 2500 }, (_, i) => m(`tenant-${i}`));
    const r = renderRegistry(many, [{ key: 'T_$(NAME)_URL', from: 'DATABASE_URL' }]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.bytes).toBeGreaterThan(REGISTRY_LIMIT);
  });
});
