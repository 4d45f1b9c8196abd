import { tenantGroupSpec } from '../../src/api/tenantgroup.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { renderChartCrdTemplates, renderCrdFiles } from '../../src/api/crd-files.js';
import { ipWhitelistSpec } from '../../src/api/ipwhitelist.js';
import { tenantDatabaseSpec } from '../../src/api/tenantdatabase.js';

describe('CRDs', () => {
  test('the committed crds/ match the zod schemas (run npm run generate when this fails)', () => {
    for (const [file, content] of Object.entries(renderCrdFiles())) {
      expect(readFileSync(join(process.cwd(), 'crds', file), 'utf8')).toBe(content);
    }
  });

  test("the chart's CRD templates match the zod schemas (run npm run generate when this fails)", () => {
    for (const [file, content] of Object.entries(renderChartCrdTemplates())) {
      expect(readFileSync(join(process.cwd(), 'charts/tenantdb/templates/crds', file), 'utf8')).toBe(content);
    }
  });

  test('every field has a description, for kubectl explain', () => {
    const missing: string[] = [];
    const walk = (node: Record<string, unknown>, path: string) => {
      const props = node.properties as Record<string, Record<string, unknown>> | undefined;
      for (const [k, v] of Object.entries(props ?? {})) {
        if (path === '' && ['apiVersion', 'kind', 'metadata'].includes(k)) continue;
        if (!v.description) missing.push(`${path}.${k}`);
        walk(v, `${path}.${k}`);
        if (v.items) walk(v.items as Record<string, unknown>, `${path}.${k}[]`);
      }
    };
    for (const content of Object.values(renderCrdFiles())) {
      const crd = parse(content) as { spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] } };
      walk(crd.spec.versions[0]?.schema.openAPIV3Schema ?? {}, '');
    }
    expect(missing).toEqual([]);
  });
});

describe('schemas', () => {
  test('defaults', () => {
    const s = tenantDatabaseSpec.parse({});
    expect(s).toMatchObject({
      isolation: 'Database',
      deletionPolicy: 'Retain',
      connectionLimit: -1,
      shadowDatabase: false,
      extensions: [],
    });
    expect(s.pooling).toEqual({ enabled: true, poolMode: 'transaction', poolSize: 10, maxDbConnections: 0, maxClientConnections: -1 });
  });
  test.each([
    [{ databaseName: 'Upper' }],
    [{ databaseName: 'has space' }],
    [{ databaseName: `a${'b'.repeat(63)}` }],
    [{ roleName: '1abc' }],
    [{ extensions: ['bad;ext'] }],
    [{ secretName: 'Not_A_DNS_Name' }],
    [{ connectionLimit: -2 }],
  ])('rejects %j', (spec) => expect(tenantDatabaseSpec.safeParse(spec).success).toBe(false));
  test.each(['10.0.0.0/8', '192.168.1.7/32', '2001:db8::/32', '::1/128'])('accepts CIDR %s', (cidr) => {
    expect(ipWhitelistSpec.safeParse({ tenantDatabaseRef: { name: 'a' }, entries: [{ cidr }] }).success).toBe(true);
  });
  test.each(['10.0.0.0', '10.0.0.0/33', '300.0.0.0/8', '2001:db8::/129', 'abc/3'])('rejects CIDR %s', (cidr) => {
    expect(ipWhitelistSpec.safeParse({ tenantDatabaseRef: { name: 'a' }, entries: [{ cidr }] }).success).toBe(false);
  });
});

describe('TenantGroup groupLogin.roleName', () => {
  test.each(['shop_orders_hold', 'pg_x', 'postgres'])('refuses %s, the name of a tenant role or a reserved one', (roleName) => {
    const r = tenantGroupSpec.safeParse({ selector: {}, groupLogin: { enabled: true, roleName } });
    expect(r.success).toBe(false);
  });
  test('takes a plain name, one ending in _2 too (no twin is named so any more)', () => {
    expect(tenantGroupSpec.safeParse({ selector: {}, groupLogin: { enabled: true, roleName: 'shop_backend' } }).success).toBe(true);
    expect(tenantGroupSpec.safeParse({ selector: {}, groupLogin: { enabled: true, roleName: 'shop_backend_2' } }).success).toBe(true);
  });
});
