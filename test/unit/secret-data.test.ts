import { encodeSecretData, decodeSecretData } from '../../src/kube/secrets.js';
import { renderSecretData } from '../../src/controllers/tenantdatabase/secret-data.js';

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
