/** Tenant names must never become syntax in the pooler's or the server's files. */
import { renderPoolerConfig, renderServerHba, type PoolerTenant } from '../../src/pooler/render.js';
import { validateDatabases, validateHba, validatePoolerFiles, validateServerHba, validateUserlist } from '../../src/pooler/validate.js';
import { scramVerifier } from '../../src/pg/scram.js';
import { usablePoolerTenants } from '../../src/controllers/postgresserver/pooler-shards.js';

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
const render = (tenants: PoolerTenant[]) => renderPoolerConfig({ serverHost: 'db', serverPort: 5432, tenants, alwaysAllowedCidrs: [] });
const KEYWORDS = ['all', 'sameuser', 'samerole', 'samegroup', 'replication'];

describe('the renderer refuses names that are syntax', () => {
  test.each([...KEYWORDS, 'pgbouncer'])('alias %s', (name) => {
    expect(() => render([t('ok'), t(name, { role: 'r' })])).toThrow(/refusing to render/);
  });
  test.each(KEYWORDS)('role %s', (name) => {
    expect(() => render([t('ok', { role: name })])).toThrow(/HBA keyword/);
  });
  test.each(['A', 'a b', 'a"b', '+g', '@f', 'a\nb', ''])('alias %j', (name) => {
    expect(() => render([t(name, { role: 'r' })])).toThrow(/not a lower case identifier/);
  });
  test('a CIDR that is not one', () => {
    expect(() => render([t('a', { allowedCidrs: ['10.0.0.0/8 trust'] })])).toThrow(/not a CIDR/);
  });
  test.each(KEYWORDS)('server HBA database or role %s', (name) => {
    expect(() => renderServerHba([{ databases: [name], role: 'r', allowedCidrs: [] }], [])).toThrow(/HBA keyword/);
    expect(() => renderServerHba([{ databases: ['d'], role: name, allowedCidrs: [] }], [])).toThrow(/HBA keyword/);
  });
  test('the operator leaves such tenants out, so that they cannot stop the others', () => {
    const { usable, leftOut } = usablePoolerTenants([
      t('good'),
      t('pgbouncer', { role: 'x' }),
      t('dup'),
      t('dup', { role: 'other' }),
      t('b', { role: 'all' }),
    ]);
    expect(usable.map((u) => u.alias)).toEqual(['good']);
    expect(leftOut.map((l) => l.alias)).toEqual(['pgbouncer', 'dup', 'dup', 'b']);
  });
});

describe('the agent refuses names that are syntax in tenant lines', () => {
  const db = (alias: string) => `[databases]\n${alias} = host=h port=5432 dbname=x\n`;
  test.each([...KEYWORDS, 'pgbouncer'])('[databases] alias %s', (alias) => {
    expect(validateDatabases(db(alias)).length).toBeGreaterThan(0);
  });
  test.each(KEYWORDS)('dbname=%s', (name) => {
    expect(
      validateDatabases(`[databases]\na = host=h port=5432 dbname=${name}\n`)
        .map((e) => e.message)
        .join(),
    ).toMatch(/bad value/);
  });
  test.each(KEYWORDS)('userlist user %s', (user) => {
    expect(
      validateUserlist(`"${user}" "${v}"\n`)
        .map((e) => e.message)
        .join(),
    ).toMatch(/HBA keyword/);
  });
  test("a second line for a user, or a line for the agent's admin, would replace a password", () => {
    expect(validateUserlist(`"a" "${v}"\n"a" "${v}"\n`).map((e) => e.message)).toEqual(['duplicate user a']);
    expect(validateUserlist(`"tenantdb_pooler" "${v}"\n`, { reservedUsers: ['tenantdb_pooler'] }).map((e) => e.message)).toEqual([
      'user tenantdb_pooler is reserved for the agent',
    ]);
  });
  test.each([
    ['host all alice 10.0.0.0/8 scram-sha-256', /database all is allowed only/],
    ['host all alice 10.0.0.0/8 reject', /database all is allowed only/],
    ['host all all 10.0.0.0/8 scram-sha-256', /database all is allowed only.*user all is allowed only/],
    ['host a all 10.0.0.0/8 scram-sha-256', /user all is allowed only with method reject/],
    ['host pgbouncer a 10.0.0.0/8 scram-sha-256', /admin console/],
    ['host pgbouncer all 0.0.0.0/0 reject', /admin console/],
    ...KEYWORDS.filter((k) => k !== 'all').flatMap(
      (k) =>
        [
          [`host ${k} a 10.0.0.0/8 scram-sha-256`, /HBA keyword/],
          [`host a ${k} 10.0.0.0/8 scram-sha-256`, /HBA keyword/],
          [`host ${k} all 0.0.0.0/0 reject`, /HBA keyword/],
        ] as [string, RegExp][],
    ),
    ['host a tenantdb_pooler 10.0.0.0/8 scram-sha-256', /reserved for the agent/],
  ])('hba.conf %j', (line, msg) => {
    expect(
      validateHba(`${line}\n`, { reservedUsers: ['tenantdb_pooler'] })
        .map((e) => e.message)
        .join(' '),
    ).toMatch(msg);
  });
  test.each([
    'host all all 0.0.0.0/0 reject',
    'host all all ::/0 reject',
    'host a all 0.0.0.0/0 reject',
    'host a all 10.1.0.0/16 reject',
    'host a b 10.0.0.0/8 scram-sha-256',
  ])('hba.conf %j is fine', (line) => {
    expect(validateHba(`${line}\n`)).toEqual([]);
  });
  test.each([
    ['host all a 10.0.0.0/8 scram-sha-256', /HBA keyword/],
    ['host a,all b 10.0.0.0/8 scram-sha-256', /HBA keyword/],
    ['host a,replication all 0.0.0.0/0 reject', /HBA keyword/],
    ['host sameuser a 10.0.0.0/8 scram-sha-256', /HBA keyword/],
    ['host a samerole 10.0.0.0/8 scram-sha-256', /HBA keyword/],
    ['host a samegroup 10.0.0.0/8 scram-sha-256', /HBA keyword/],
    ['host a +grp 10.0.0.0/8 scram-sha-256', /bad user/],
    ['host @file a 10.0.0.0/8 scram-sha-256', /bad database/],
  ])('server pg_hba.conf %j', (line, msg) => {
    expect(validateServerHba(`${line}\n`).join(' ')).toMatch(msg);
  });
  test('the server HBA lines the renderer writes pass', () => {
    const text = renderServerHba(
      [{ databases: ['a', 'a_shadow'], role: 'a', allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'] }],
      ['10.244.0.0/16'],
    );
    expect(validateServerHba(text)).toEqual([]);
  });
  test('a whole file is refused for one bad tenant line', () => {
    const f = render([t('a'), t('b')]);
    expect(validatePoolerFiles({ ...f, 'hba.conf': `host all b 0.0.0.0/0 scram-sha-256\n${f['hba.conf']}` }).length).toBe(1);
  });
});
