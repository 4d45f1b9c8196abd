/** The login state of an overlapping rotation, as a tenant's Secret (which its namespace may write) records it. */
import {
  NEXT_LOGIN_ANNOTATION,
  PREVIOUS_LOGIN_ANNOTATION,
  activeLogin,
  credentialDueAt,
  extraLogins,
  formatNext,
  formatPrevious,
  lastRotatedAt,
  loginRolesOf,
  previousLogin,
  rotationDueAt,
} from '../../src/controllers/tenantdatabase/credentials.js';
import { createHash } from 'node:crypto';
import { legacyTwinRoleNames, twinRoleName } from '../../src/api/naming.js';
import { adoptionHint, originOf } from '../../src/controllers/tenantdatabase/adoption.js';
import { renderPoolerConfig, renderServerHba } from '../../src/pooler/render.js';
import { validatePoolerFiles, validateServerHba } from '../../src/pooler/validate.js';
import { nameProblem } from '../../src/pooler/names.js';
import { verifierFor } from '../../src/controllers/postgresserver/pooler-plan.js';

const l = loginRolesOf('ns_app');
const v = (role: string) => verifierFor('uid-1', role, 'a-password-of-enough-length-1234');

test('the twin is <role>-2, and a hashed prefix when that passes 63 bytes; no name a tenant may choose is one', () => {
  expect(twinRoleName('ns_app')).toBe('ns_app-2');
  const long = 'a'.repeat(63);
  const twin = twinRoleName(long);
  expect(twin.length).toBeLessThanOrEqual(63);
  expect(twin).toMatch(/^a{36}-[0-9a-f]{24}-2$/);
  // Hashed, it is no other role's twin: not the plain twin of its own prefix, nor of any name.
  for (const r of ['a'.repeat(61), 'a'.repeat(62), 'a'.repeat(63), `${'x'.repeat(40)}_${'y'.repeat(21)}`]) {
    const t = twinRoleName(r);
    expect(t.length).toBeLessThanOrEqual(63);
    expect(nameProblem('role', t)).toBeUndefined();
    if (t === `${r}-2`) continue;
    // The earlier shape's attack: a role named like the hashed twin's head takes that twin.
    const head = t.slice(0, -2);
    expect(/^[a-z_][a-z0-9_]*$/.test(head)).toBe(false);
    expect(twinRoleName(head.replace('-', '_'))).not.toBe(t);
  }
  expect(twinRoleName('b'.repeat(63))).not.toBe(twin);
  // roleName and derived names match [a-z_][a-z0-9_]*: none of them is a twin's name.
  for (const name of ['ns_app', 'ns_app_2', 'a'.repeat(63), 'ns_app-2_']) expect(/^[a-z_][a-z0-9_]*$/.test(twinRoleName(name))).toBe(false);
  expect(legacyTwinRoleNames('ns_app')).toEqual(['ns_app_2']);
  const [underscored, short] = legacyTwinRoleNames(long);
  expect(underscored).toMatch(/^a+_[0-9a-f]{8}_2$/);
  expect(short).toMatch(/^a{52}-[0-9a-f]{8}-2$/);
});

test('two long role names with the same head get different twins: the hash is too long to search out a second name', () => {
  // A tenant that knows another's 62- or 63-byte roleName keeps its head and varies the rest; with
  // 8 hex digits, 2^32 tries found a name whose twin is the other's. Now the twin's hash has 96 bits.
  const victim = `${'v'.repeat(51)}_victim_role`;
  const twin = twinRoleName(victim);
  expect(twin).toBe(`${victim.slice(0, 36)}-${createHash('sha256').update(victim).digest('hex').slice(0, 24)}-2`);
  expect(twin.length).toBe(63);
  // Names that differ only past the head the twin keeps still get twins of their own.
  expect(twinRoleName(`${victim.slice(0, 61)}_x`)).not.toBe(twin);
  expect(twinRoleName(victim.slice(0, 62))).not.toBe(twin);
});

test("a twin made by an earlier release (<role>_2, marked as the tenant's) keeps its name; anyone else's <role>_2 is not a login", () => {
  expect(loginRolesOf('ns_app').twin).toBe('ns_app-2');
  expect(loginRolesOf('ns_app', new Set(['ns_app', 'ns_app_2'])).twin).toBe('ns_app_2');
  expect(loginRolesOf('ns_app', new Set(['ns_app'])).twin).toBe('ns_app-2');
  // A 62- or 63-byte role's twin of the release before (an 8-digit hash), marked as the tenant's, stays too.
  const long = 'w'.repeat(62);
  const earlier = legacyTwinRoleNames(long)[1] ?? '';
  expect(loginRolesOf(long, new Set([long])).twin).toBe(twinRoleName(long));
  expect(loginRolesOf(long, new Set([long, earlier])).twin).toBe(earlier);
  expect(nameProblem('role', earlier)).toBeUndefined();
  // Another tenant's role named ns_app_2 is not in this tenant's marked roles: its Secret naming it changes nothing.
  expect(activeLogin({ username: 'ns_app_2' }, loginRolesOf('ns_app', new Set(['ns_app'])))).toBe('ns_app');
});

test('the login in use is one of the two only: any other username in the Secret means the tenant role', () => {
  expect(activeLogin({ username: 'ns_app-2' }, l)).toBe('ns_app-2');
  expect(activeLogin({ username: 'ns_app' }, l)).toBe('ns_app');
  for (const u of ['other_tenant', 'postgres', '', 'ns_app_3', 'ns_app_2']) expect(activeLogin({ username: u }, l)).toBe('ns_app');
  expect(activeLogin(undefined, l)).toBe('ns_app');
});

test('previous and next logins: only the other login role, a real verifier and a date are taken', () => {
  const until = Date.parse('2030-01-01T00:00:00Z');
  const good = { [PREVIOUS_LOGIN_ANNOTATION]: formatPrevious({ role: 'ns_app', until, verifier: v('ns_app') }) };
  expect(previousLogin(good, l, 'ns_app-2')).toEqual({ role: 'ns_app', until, verifier: v('ns_app') });
  // The role in use is not its own previous login; a foreign role, a bad verifier or date are ignored.
  expect(previousLogin(good, l, 'ns_app')).toBeUndefined();
  const bad = [
    JSON.stringify({ role: 'victim', until: '2030-01-01T00:00:00Z', verifier: v('victim') }),
    JSON.stringify({ role: 'ns_app', until: '2030-01-01T00:00:00Z', verifier: 'md5abc' }),
    JSON.stringify({ role: 'ns_app', until: 'soon', verifier: v('ns_app') }),
    JSON.stringify({ role: 'ns_app', until: '2030-01-01T00:00:00Z', verifier: `${v('ns_app')}"\n"victim" "x` }),
    '{not json',
    JSON.stringify(['ns_app']),
  ];
  for (const text of bad) expect(previousLogin({ [PREVIOUS_LOGIN_ANNOTATION]: text }, l, 'ns_app-2')).toBeUndefined();
});

test("the pooler holds the previous login until its deadline and the next one, when the server shows them as the tenant's", () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  const ann = {
    [PREVIOUS_LOGIN_ANNOTATION]: formatPrevious({ role: 'ns_app', until: now + 1000, verifier: v('ns_app') }),
  };
  const owned = (r: string) => r === 'ns_app' || r === 'ns_app-2';
  expect(extraLogins(ann, l, 'ns_app-2', owned, now)).toEqual([{ role: 'ns_app', verifier: v('ns_app') }]);
  expect(extraLogins(ann, l, 'ns_app-2', owned, now + 1000)).toEqual([]);
  const next = { [NEXT_LOGIN_ANNOTATION]: formatNext({ role: 'ns_app-2', verifier: v('ns_app-2') }) };
  expect(extraLogins(next, l, 'ns_app', owned, now)).toEqual([{ role: 'ns_app-2', verifier: v('ns_app-2') }]);
  // A twin name that another tenant holds on the server (no marker of this tenant) gets nothing.
  expect(extraLogins(next, l, 'ns_app', (r) => r === 'ns_app', now)).toEqual([]);
});

test('schedules: due at the last rotation plus the interval', () => {
  expect(rotationDueAt('1h', 1000)).toBe(1000 + 3600_000);
  expect(rotationDueAt(undefined, 1000)).toBeUndefined();
  expect(rotationDueAt('1h', undefined)).toBeUndefined();
  expect(lastRotatedAt({ 'tenantdb.dev/rotated-at': '2030-01-01T00:00:00Z' }, '2029-01-01T00:00:00Z', undefined)).toBe(
    Date.parse('2030-01-01T00:00:00Z'),
  );
  expect(lastRotatedAt({}, undefined, '2029-01-01T00:00:00Z')).toBe(Date.parse('2029-01-01T00:00:00Z'));
});

test('both login roles are in the userlist and the HBA rules, and the agent accepts the files', () => {
  const files = renderPoolerConfig({
    serverHost: '127.0.0.1',
    serverPort: 5432,
    alwaysAllowedCidrs: ['10.0.0.0/8'],
    tenants: [
      {
        alias: 'app',
        database: 'app',
        role: 'ns_app-2',
        verifier: v('ns_app-2'),
        extraLogins: [{ role: 'ns_app', verifier: v('ns_app') }],
        poolMode: 'transaction',
        poolSize: 5,
        maxDbConnections: 0,
        maxClientConnections: 100,
        allowedCidrs: ['192.168.0.0/16'],
      },
    ],
  });
  expect(files['userlist.txt']).toBe(`"ns_app-2" "${v('ns_app-2')}"\n"ns_app" "${v('ns_app')}"\n`);
  expect(files['hba.conf']).toContain('host app ns_app 192.168.0.0/16 scram-sha-256');
  expect(files['hba.conf']).toContain('host app ns_app-2 192.168.0.0/16 scram-sha-256');
  expect(validatePoolerFiles(files)).toEqual([]);
  const server = renderServerHba(
    [{ databases: ['shared'], role: 'ns_app', otherRoles: ['ns_app-2'], shared: true, allowedCidrs: ['192.168.0.0/16'] }],
    ['10.0.0.0/8'],
  );
  expect(server).toContain('host shared ns_app,ns_app-2 192.168.0.0/16 scram-sha-256');
  expect(server).toContain('host shared ns_app,ns_app-2 0.0.0.0/0 reject');
  expect(validateServerHba(server)).toEqual([]);
  expect(validateServerHba('host shared ns_app,all 0.0.0.0/0 reject\n')).not.toEqual([]);
  // A twin's shape is a role's only, and only an identifier followed by -2.
  for (const user of ['ns-app', 'ns_app-3', '-2', 'ns_app-2-2', 'Ns_app-2', 'ns_app-zzzzzzzz-2', `${'a'.repeat(62)}-2`]) {
    expect([user, validatePoolerFiles({ ...files, 'userlist.txt': `"${user}" "${v('x')}"\n` })]).not.toEqual([user, []]);
    expect([user, validateServerHba(`host shared ns_app,${user} 0.0.0.0/0 reject\n`)]).not.toEqual([user, []]);
    expect([user, nameProblem('role', user)]).not.toEqual([user, undefined]);
  }
  expect(validatePoolerFiles({ ...files, 'userlist.txt': `"ns app-2" "${v('x')}"\n` })).not.toEqual([]);
  for (const user of ['ns_app-2', twinRoleName('q'.repeat(63))]) expect([user, nameProblem('role', user)]).toEqual([user, undefined]);
  expect(validatePoolerFiles({ ...files, 'databases.ini': files['databases.ini'].replace('app =', 'app-2 =') })).not.toEqual([]);
  expect(validatePoolerFiles({ ...files, 'hba.conf': 'host app-2 ns_app 10.0.0.0/8 scram-sha-256\n' })).not.toEqual([]);
});

test('while a grace period runs nothing comes due before its end; times outside 2000-2200 are not taken', () => {
  expect(credentialDueAt(5000, 1000)).toBe(5000);
  expect(credentialDueAt(undefined, 1000)).toBe(1000);
  expect(credentialDueAt(undefined, undefined)).toBeUndefined();
  const far = { [PREVIOUS_LOGIN_ANNOTATION]: JSON.stringify({ role: 'ns_app', until: '+275760-09-13T00:00:00Z', verifier: v('ns_app') }) };
  expect(previousLogin(far, l, 'ns_app-2')).toBeUndefined();
  expect(lastRotatedAt({ 'tenantdb.dev/rotated-at': '1970-01-01T00:00:00Z' }, undefined, '2029-01-01T00:00:00Z')).toBe(
    Date.parse('2029-01-01T00:00:00Z'),
  );
});

describe('adoption: what an existing object says about who may take it over', () => {
  const td = { metadata: { name: 'ledger', namespace: 'shop', uid: 'beef-0002' } } as Parameters<typeof originOf>[1];
  const marker = (ns: string, uid: string, extra = '') => `managed by tenantdb; tenantdatabase=${ns}; uid=${uid}; server=main${extra}`;
  test.each([
    [null, 'unmanaged'],
    ['created by hand for the billing team', 'unmanaged'],
    [marker('shop/ledger', '0dd-0001'), 'retained'],
    // The same name with a uid a live object has, another name or namespace, or a tombstone: never.
    [marker('shop/ledger', 'abcd-0003'), 'other'],
    [marker('shop/ledger', 'beef-0002'), 'other'],
    [marker('other/ledger', '0dd-0001'), 'other'],
    [marker('shop/ledger2', '0dd-0001'), 'other'],
    [marker('shop/ledger', '0dd-0001', '; deleted'), 'other'],
  ])('%s -> %s', (comment, kind) => {
    expect(originOf(comment, td, new Set(['abcd-0003'])).kind).toBe(kind);
  });
  test('the Conflict says what to write', () => {
    const spec = { spec: { isolation: 'Schema' } } as unknown as Parameters<typeof adoptionHint>[2];
    expect(adoptionHint('role x', { kind: 'retained', uid: 'u' }, spec)).toMatch(/adoption\.from: Retained/);
    expect(adoptionHint('role x', { kind: 'unmanaged' }, spec)).toMatch(/from: Unmanaged with roleName and schemaName/);
    expect(adoptionHint('role x', { kind: 'other' }, spec)).toBeUndefined();
  });
});
