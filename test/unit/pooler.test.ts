import { HBA_CATCH_ALL, renderPoolerConfig, renderServerHba, type PoolerInput, type PoolerTenant } from '../../src/pooler/render.js';
import { validateDatabases, validateHba, validatePoolerFiles, validateServerHba, validateUserlist } from '../../src/pooler/validate.js';
import { scramVerifier } from '../../src/pg/scram.js';
import { fitDatabases, withAdmin } from '../../src/agent/pooler-agent.js';
import { agentReport, appliedAnnotations } from '../../src/pooler/contract.js';

const v = scramVerifier('pw', Buffer.alloc(16, 1));
const t = (alias: string, extra: Partial<PoolerTenant> = {}): PoolerTenant => ({
  alias,
  database: alias,
  role: alias,
  verifier: v,
  poolMode: 'transaction',
  poolSize: 10,
  maxDbConnections: 0,
  maxClientConnections: 100,
  ...extra,
});
const input = (tenants: PoolerTenant[], always: string[] = []): PoolerInput => ({
  serverHost: 'db.internal',
  serverPort: 5432,
  tenants,
  alwaysAllowedCidrs: always,
});

describe('renderPoolerConfig', () => {
  test('one entry per tenant, with its pool settings, sorted', () => {
    const f = renderPoolerConfig(input([t('b_db', { poolMode: 'session', poolSize: 3, maxDbConnections: 7 }), t('a_db')]));
    expect(f['databases.ini']).toBe(
      '[databases]\n' +
        'a_db = host=db.internal port=5432 dbname=a_db pool_mode=transaction pool_size=10 max_db_connections=0 max_db_client_connections=100\n' +
        'b_db = host=db.internal port=5432 dbname=b_db pool_mode=session pool_size=3 max_db_connections=7 max_db_client_connections=100\n',
    );
    expect(f['userlist.txt']).toBe(`"a_db" "${v}"\n"b_db" "${v}"\n`);
  });

  test('a suspended tenant keeps its alias but has no userlist line and only rejects', () => {
    const f = renderPoolerConfig(input([t('a_db', { suspended: true, allowedCidrs: ['10.0.0.0/8'] }), t('b_db')], ['192.168.0.0/16']));
    expect(f['databases.ini']).toContain('a_db = host=db.internal');
    expect(f['userlist.txt']).toBe(`"b_db" "${v}"\n`);
    const aRules = f['hba.conf'].split('\n').filter((l) => l.startsWith('host a_db '));
    expect(aRules).toEqual(['host a_db all 0.0.0.0/0 reject', 'host a_db all ::/0 reject']);
    expect(validatePoolerFiles(f)).toEqual([]);
  });

  test('is deterministic: the same tenants in any order give the same bytes', () => {
    const a = renderPoolerConfig(input([t('x', { allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'] }), t('y')], ['192.168.0.0/16']));
    const b = renderPoolerConfig(input([t('y'), t('x', { allowedCidrs: ['2001:db8::/32', '10.0.0.0/8'] })], ['192.168.0.0/16']));
    expect(a).toEqual(b);
  });

  test('a tenant without lists accepts SCRAM from anywhere; with lists only its CIDRs plus the always-allowed, then rejects', () => {
    const f = renderPoolerConfig(input([t('open'), t('shut', { allowedCidrs: ['203.0.113.0/24'] })], ['10.244.0.0/16']));
    expect(f['hba.conf'].split('\n')).toEqual([
      'host open open 0.0.0.0/0 scram-sha-256',
      'host open open ::/0 scram-sha-256',
      'host shut shut 10.244.0.0/16 scram-sha-256',
      'host shut shut 203.0.113.0/24 scram-sha-256',
      'host shut all 0.0.0.0/0 reject',
      'host shut all ::/0 reject',
      'host all all 0.0.0.0/0 reject',
      'host all all ::/0 reject',
      '',
    ]);
  });

  test('an empty list of CIDRs shuts the tenant to all but the always-allowed', () => {
    const f = renderPoolerConfig(input([t('shut', { allowedCidrs: [] })]));
    expect(f['hba.conf']).toContain('host shut all 0.0.0.0/0 reject');
    expect(f['hba.conf']).not.toContain('scram-sha-256');
  });

  test("what it renders passes the agent checks; the agent's own admin lines are not the operator's to write", () => {
    const f = renderPoolerConfig(input([t('a', { allowedCidrs: ['::1/128'] }), t('b')], ['10.0.0.0/8']));
    expect(validatePoolerFiles(f, { reservedUsers: ['tenantdb_pooler'] })).toEqual([]);
    expect(validatePoolerFiles(renderPoolerConfig(input([])))).toEqual([]);
    const withAdminLines = validatePoolerFiles(withAdmin(f, 'tenantdb_pooler', v), { reservedUsers: ['tenantdb_pooler'] }).map(
      (e) => e.message,
    );
    expect(withAdminLines.join(' ')).toMatch(/reserved for the agent/);
    expect(withAdminLines.join(' ')).toMatch(/admin console/);
  });
});

describe('validation refuses what PgBouncer would half-load', () => {
  test.each([
    ['[databases]\na = host=h port=5432 dbname=a reserve_pool_size=3\n', /unknown or malformed setting/],
    ['[databases]\na = host=h port=5432 dbname=a\na = host=h port=5432 dbname=a\n', /duplicate alias/],
    ['[databases]\n"a" = host=h port=5432 dbname=a\n', /not an "alias/],
    ['[databases]\na = host=h port=99999 dbname=a\n', /bad value/],
    ['[databases]\na = host=h dbname=a\n', /missing port/],
    ['a = host=h port=1 dbname=a\n', /must start with \[databases\]/],
    ['[databases]\na = host=h;rm port=1 dbname=a\n', /bad value/],
  ])('databases.ini %j', (text, msg) => {
    expect(
      validateDatabases(text)
        .map((e) => e.message)
        .join(' '),
    ).toMatch(msg);
  });

  test.each([
    ['host all all 999.1.2.3/8 scram-sha-256\n', /bad CIDR/],
    ['host all all 10.0.0.0/8 trust\n', /not allowed/],
    ['local all all scram-sha-256\n', /not a "host/],
    ['host DB all 10.0.0.0/8 reject\n', /bad database/],
    ['host all all 10.0.0.0/8 reject', /not a "host/],
  ])('hba.conf %j', (text, msg) => {
    expect(
      validateHba(text)
        .map((e) => e.message)
        .join(' '),
    ).toMatch(msg);
  });

  test.each([
    ['"a" "md5abc"\n', /not a SCRAM-SHA-256 verifier/],
    ['a pw\n', /not a "user" "verifier"/],
  ])('userlist.txt %j', (text, msg) => {
    expect(
      validateUserlist(text)
        .map((e) => e.message)
        .join(' '),
    ).toMatch(msg);
  });

  test('a missing file is refused', () => {
    expect(validatePoolerFiles({ 'databases.ini': '[databases]\n', 'userlist.txt': '' })).toEqual([
      { file: 'hba.conf', line: 0, message: 'missing' },
    ]);
  });
});

describe('fitDatabases: one rendered config for every PgBouncer version', () => {
  const text =
    '[databases]\n' +
    'a_db = host=db port=5432 dbname=a_db pool_mode=transaction pool_size=10 max_db_connections=0 max_db_client_connections=100\n' +
    'b_db = host=db port=5432 dbname=b_db pool_mode=session pool_size=3 max_db_connections=7 max_db_client_connections=5\n';

  test('PgBouncer 1.24 and newer get the client caps as rendered', () => {
    expect(fitDatabases(text, [1, 24, 1])).toEqual({ text });
    expect(fitDatabases(text, [2, 0, 0])).toEqual({ text });
  });

  test('an older PgBouncer gets a file it can load, and the report says the caps are not enforced', () => {
    const fitted = fitDatabases(text, [1, 18, 0]);
    expect(fitted.text).not.toContain('max_db_client_connections');
    expect(fitted.text).toContain('a_db = host=db port=5432 dbname=a_db pool_mode=transaction pool_size=10 max_db_connections=0\n');
    expect(validatePoolerFiles({ 'databases.ini': fitted.text, 'userlist.txt': '', 'hba.conf': HBA_CATCH_ALL })).toEqual([]);
    expect(fitted.warning).toMatch(/PgBouncer 1\.18\.0 .*not enforced/);
  });

  test('the agent report carries the warning of the loaded config only', () => {
    const ann = appliedAnnotations('h1', 'PgBouncer 1.18.0 has no max_db_client_connections');
    const clean = Object.fromEntries(Object.entries(ann).filter((e): e is [string, string] => e[1] !== null));
    expect(agentReport(clean, 'h1').warning).toBe('PgBouncer 1.18.0 has no max_db_client_connections');
    expect(agentReport(clean, 'h2').warning).toBeUndefined();
    expect(appliedAnnotations('h1')['tenantdb.dev/agent-warning']).toBeNull();
  });
});

describe('renderServerHba for a shared database', () => {
  test("a schema tenant's rules name its role, never all: the other tenants of the shared database stay untouched", () => {
    const text = renderServerHba([{ databases: ['tenants'], role: 'shop', shared: true, allowedCidrs: ['10.1.0.0/16'] }], ['10.9.0.0/16']);
    expect(text.trim().split('\n')).toEqual([
      'host tenants shop 10.9.0.0/16 scram-sha-256',
      'host tenants shop 10.1.0.0/16 scram-sha-256',
      'host tenants shop 0.0.0.0/0 reject',
      'host tenants shop ::/0 reject',
    ]);
    expect(validateServerHba(text)).toEqual([]);
  });
});
