/**
 * Generated objects of each kind, inside the zod schemas and past them (10,000 per kind, seeded:
 * TENANTDB_FUZZ_SEED, TENANTDB_FUZZ_RUNS). Each either fails zod with issues that make a readable
 * status message, or parses, and then the pure decisions made from it give names and files that
 * pass the validators, or a refusal with a reason; nothing throws.
 */
import fc from 'fast-check';
import type { z } from 'zod';
import { DNS_SUBDOMAIN, PG_IDENTIFIER } from '../../src/api/common.js';
import { ipWhitelist, ipWhitelistSpec } from '../../src/api/ipwhitelist.js';
import { MAX_DERIVED, RESERVED_DATABASES, RESERVED_ROLES, deriveIdentifier } from '../../src/api/naming.js';
import { postgresServer } from '../../src/api/postgresserver.js';
import { tenantDatabase } from '../../src/api/tenantdatabase.js';
import { placeOnServer, resolveNames, resolveServer } from '../../src/controllers/tenantdatabase/resolve.js';
import { clientLimitOf } from '../../src/controllers/postgresserver/pooler-plan.js';
import { scramVerifier } from '../../src/pg/scram.js';
import { fitsIdentifier } from '../../src/pg/tenant-sql.js';
import { nameProblem } from '../../src/pooler/names.js';
import { renderPoolerConfig, renderServerHba, renderTenantHba } from '../../src/pooler/render.js';
import { validatePoolerFiles, validateServerHba } from '../../src/pooler/validate.js';
import { safeInFiles } from '../fuzz/names.js';
import { fuzzParams, fuzzRuns } from '../fuzz/params.js';
import { dnsName, ipWhitelistSpecArb, postgresServerSpecArb, tenantDatabaseSpecArb } from '../fuzz/specs.js';

const verifier = scramVerifier('pw', Buffer.alloc(16, 7));
const sharedServer = postgresServer.parse({
  apiVersion: 'tenantdb.dev/v1alpha1',
  kind: 'PostgresServer',
  metadata: { name: 's', uid: 'u', resourceVersion: '1', generation: 1 },
  spec: { host: 'db', adminSecretRef: { namespace: 'n', name: 'a' }, sharedDatabase: 'tenants' },
});

/** The API server admits only DNS-1123 names (and labels for namespaces): the metadata is always one. */
const k8sName = dnsName.filter((n) => DNS_SUBDOMAIN.test(n) && n.length <= 253);
const namespaceName = fc.oneof(
  k8sName.filter((n) => n.length <= 63 && !n.includes('.')),
  fc.constantFrom('pg', 'pg-x', '1', 'default', 'a'.repeat(63)),
);
const metaArb = (namespaced: boolean) =>
  fc.record({
    name: k8sName,
    ...(namespaced ? { namespace: namespaceName } : {}),
    uid: fc.uuid(),
    resourceVersion: fc.constant('1'),
    generation: fc.integer({ min: 1, max: 1000 }),
  });

const objectArb = (kind: string, namespaced: boolean, spec: fc.Arbitrary<Record<string, unknown>>) =>
  fc.record({ apiVersion: fc.constant('tenantdb.dev/v1alpha1'), kind: fc.constant(kind), metadata: metaArb(namespaced), spec });

/** The message the controllers put in status for a spec zod refuses (as reconcile.ts builds it). */
function statusMessage(error: z.ZodError): string {
  return error.issues.map((i) => `spec.${i.path.slice(1).join('.')}: ${i.message}`).join('; ');
}

function expectReadableRefusal(error: z.ZodError): void {
  expect(error.issues.length).toBeGreaterThan(0);
  for (const i of error.issues) {
    expect(i.message).toMatch(/\S/);
    expect(i.message).not.toMatch(/\[object Object\]/);
    expect(i.path.every((p) => typeof p === 'string' || typeof p === 'number')).toBe(true);
    expect(i.path[0]).toBe('spec');
  }
  const message = statusMessage(error);
  expect(message).toMatch(/^spec\.?[A-Za-z0-9.]*: \S/);
}

/** Names the operator will write into SQL and files: each must pass every check downstream. */
function expectUsableDatabase(name: string): void {
  expect(fitsIdentifier(name)).toBe(true);
  expect(PG_IDENTIFIER.test(name)).toBe(true);
  expect(RESERVED_DATABASES.has(name)).toBe(false);
  // The database name is also the tenant's pooler alias.
  expect(safeInFiles('alias', name)).toBe(true);
  expect(nameProblem('alias', name)).toBeUndefined();
  expect(nameProblem('database', name)).toBeUndefined();
}

describe('TenantDatabase', () => {
  test('zod refuses readably, or the names it resolves pass every downstream check', () => {
    let parsed = 0;
    fc.assert(
      fc.property(objectArb('TenantDatabase', true, tenantDatabaseSpecArb), (raw) => {
        const r = tenantDatabase.safeParse(raw);
        if (!r.success) return expectReadableRefusal(r.error);
        parsed++;
        const td = r.data;
        const names = resolveNames(td);
        if (!names.ok) {
          expect(names.reason).toMatch(/^[A-Z][A-Za-z]+$/);
          expect(names.message).toMatch(/\S/);
          return;
        }
        // A schema tenant's database is its server's sharedDatabase.
        const placed = placeOnServer(names.value, sharedServer);
        if (!placed.ok) throw new Error(placed.message);
        const { database, role, shadow, secret, alias, schema, isolation } = placed.value;
        expectUsableDatabase(database);
        expect(nameProblem('alias', alias)).toBeUndefined();
        if (isolation === 'Schema') {
          expect(schema !== undefined && fitsIdentifier(schema) && PG_IDENTIFIER.test(schema)).toBe(true);
          expect(alias).toBe(`schema.${schema}`);
          expect(Buffer.byteLength(alias)).toBeLessThanOrEqual(63);
        } else expect(alias).toBe(database);
        if (shadow !== undefined) {
          expect(td.spec.shadowDatabase).toBe(true);
          expectUsableDatabase(shadow);
        }
        expect(fitsIdentifier(role)).toBe(true);
        expect(PG_IDENTIFIER.test(role)).toBe(true);
        expect(RESERVED_ROLES.has(role) || role.startsWith('pg_')).toBe(false);
        expect(safeInFiles('role', role)).toBe(true);
        expect(nameProblem('role', role)).toBeUndefined();
        expect(DNS_SUBDOMAIN.test(secret) && secret.length <= 253).toBe(true);
        // What the operator renders for it passes the agent.
        const files = renderPoolerConfig({
          serverHost: 'db',
          serverPort: 5432,
          tenants: [
            {
              alias,
              database,
              role,
              verifier,
              poolMode: td.spec.pooling.poolMode,
              poolSize: td.spec.pooling.poolSize,
              maxDbConnections: td.spec.pooling.maxDbConnections,
              maxClientConnections: clientLimitOf(td.spec.pooling.maxClientConnections, { default: 200, max: 2000 }),
            },
          ],
          alwaysAllowedCidrs: [],
        });
        expect(validatePoolerFiles(files)).toEqual([]);
        expect(
          validateServerHba(
            renderServerHba(
              [{ databases: shadow ? [database, shadow] : [database], role, shared: isolation === 'Schema', allowedCidrs: ['10.0.0.0/8'] }],
              ['10.1.0.0/16'],
            ),
          ),
        ).toEqual([]);
        // The server it resolves to is a decision, never a throw.
        const s = resolveServer(td, []);
        expect(s.ok).toBe(false);
      }),
      fuzzParams(),
    );
    // The generator must reach past the schema and inside it.
    expect(parsed).toBeGreaterThan(fuzzRuns() / 5);
  });

  test('names derived from any namespace and name are identifiers that fit, whatever their length', () => {
    fc.assert(
      fc.property(namespaceName, k8sName, (n, m) => {
        const id = deriveIdentifier(n, m);
        expect(PG_IDENTIFIER.test(id)).toBe(true);
        expect(Buffer.byteLength(id)).toBeLessThanOrEqual(MAX_DERIVED);
        expect(id.startsWith('pg_')).toBe(false);
        expect(RESERVED_DATABASES.has(id) || RESERVED_ROLES.has(id)).toBe(false);
        expect(safeInFiles('alias', id)).toBe(true);
      }),
      fuzzParams(),
    );
  });
});

describe('PostgresServer', () => {
  test('zod refuses readably, or the pooler and server HBA files render from it and pass the agent', () => {
    let parsed = 0;
    fc.assert(
      fc.property(objectArb('PostgresServer', false, postgresServerSpecArb), (raw) => {
        const r = postgresServer.safeParse(raw);
        if (!r.success) return expectReadableRefusal(r.error);
        parsed++;
        const spec = r.data.spec;
        const always = spec.alwaysAllowedCidrs ?? [];
        const tenant = {
          alias: 'team_app',
          database: 'team_app',
          role: 'team_app',
          verifier,
          poolMode: 'transaction' as const,
          poolSize: 10,
          maxDbConnections: 0,
          maxClientConnections: 100,
          allowedCidrs: ['10.1.0.0/16'],
        };
        const files = renderPoolerConfig({ serverHost: spec.host, serverPort: spec.port, tenants: [tenant], alwaysAllowedCidrs: always });
        expect(validatePoolerFiles(files)).toEqual([]);
        const hba = renderServerHba([{ databases: ['team_app'], role: 'team_app', allowedCidrs: ['10.1.0.0/16'] }], always);
        expect(validateServerHba(hba)).toEqual([]);
        if (spec.sharedDatabase !== undefined) expect(fitsIdentifier(spec.sharedDatabase)).toBe(true);
        expect(spec.connectionLimits.default).toBeGreaterThanOrEqual(1);
      }),
      fuzzParams(),
    );
    expect(parsed).toBeGreaterThan(fuzzRuns() / 5);
  });
});

describe('IpWhitelist', () => {
  test('zod refuses readably, or every entry renders into rules the agent accepts', () => {
    let parsed = 0;
    fc.assert(
      fc.property(objectArb('IpWhitelist', true, ipWhitelistSpecArb), (raw) => {
        const r = ipWhitelist.safeParse(raw);
        if (!r.success) return expectReadableRefusal(r.error);
        parsed++;
        const cidrs = r.data.spec.entries.map((e) => e.cidr);
        const hba = renderTenantHba({ alias: 'team_app', role: 'team_app', allowedCidrs: cidrs }, []);
        expect(validatePoolerFiles({ 'databases.ini': '[databases]\n', 'userlist.txt': '', 'hba.conf': hba })).toEqual([]);
        expect(validateServerHba(renderServerHba([{ databases: ['team_app'], role: 'team_app', allowedCidrs: cidrs }], []))).toEqual([]);
      }),
      fuzzParams(),
    );
    expect(parsed).toBeGreaterThan(fuzzRuns() / 5);
  });
});

describe('counter-examples the API server found', () => {
  // CIDRs zod accepted and the CRD's isCIDR (Go's netip) refuses: an IPv6 zone, a prefix length with
  // a leading zero, an IPv4 part with one, and IPv4-mapped IPv6 addresses.
  test.each(['fe80::1%eth0/64', '10.0.0.0/08', '::1:010.0.0.1/128', '::ffff:10.0.0.1/128', '::ffff:a00:1/128'])('%s is refused', (cidr) => {
    expect(ipWhitelistSpec.safeParse({ tenantDatabaseRef: { name: 'app' }, entries: [{ cidr }] }).success).toBe(false);
  });
  test.each(['10.0.0.0/8', '0.0.0.0/0', '::/0', '2001:db8::/32', '::1.2.3.4/128', '::ffff:0:a00:1/96'])('%s is accepted', (cidr) => {
    expect(ipWhitelistSpec.safeParse({ tenantDatabaseRef: { name: 'app' }, entries: [{ cidr }] }).success).toBe(true);
  });
});
