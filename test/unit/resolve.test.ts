import { postgresServer, type PostgresServer } from '../../src/api/postgresserver.js';
import { tenantDatabase, type TenantDatabase } from '../../src/api/tenantdatabase.js';
import {
  namesMatchMarkers,
  ownDatabases,
  placeOnServer,
  resolveNames,
  resolveServer,
} from '../../src/controllers/tenantdatabase/resolve.js';
import { connectionFailure } from '../../src/controllers/postgresserver/reconcile.js';

const meta = (name: string, namespace?: string) => ({
  name,
  ...(namespace ? { namespace } : {}),
  uid: `uid-${name}`,
  resourceVersion: '1',
  generation: 1,
});
const server = (name: string, isDefault = false): PostgresServer =>
  postgresServer.parse({
    apiVersion: 'tenantdb.dev/v1alpha1',
    kind: 'PostgresServer',
    metadata: meta(name),
    spec: { host: 'h', adminSecretRef: { namespace: 'n', name: 's' }, default: isDefault },
  });
const tenant = (spec: Record<string, unknown> = {}, status?: Record<string, unknown>): TenantDatabase =>
  tenantDatabase.parse({
    apiVersion: 'tenantdb.dev/v1alpha1',
    kind: 'TenantDatabase',
    metadata: meta('app', 'team'),
    spec,
    ...(status ? { status } : {}),
  });

describe('resolveServer', () => {
  test.each([
    ['explicit ref', { serverRef: { name: 'b' } }, [server('a', true), server('b')], 'b'],
    ['the default', {}, [server('a'), server('b', true)], 'b'],
    ['missing ref', { serverRef: { name: 'c' } }, [server('a', true)], 'ServerNotFound'],
    ['no default', {}, [server('a')], 'NoDefaultServer'],
    ['two defaults', {}, [server('a', true), server('b', true)], 'AmbiguousDefaultServer'],
  ])('%s', (_, spec, servers, want) => {
    const r = resolveServer(tenant(spec), servers);
    expect(r.ok ? r.value.metadata.name : r.reason).toBe(want);
  });

  // A server whose spec does not parse exists: it is broken, not missing.
  const broken = (name: string, isDefault = false) => ({ metadata: { name }, spec: { host: 'h', port: 70000, default: isDefault } });
  test.each([
    ['a ref to it', { serverRef: { name: 'c' } }, [server('a', true)], [broken('c')], 'ServerInvalid'],
    ['a ref to another', { serverRef: { name: 'd' } }, [server('a', true)], [broken('c')], 'ServerNotFound'],
    ['the only default', {}, [server('a')], [broken('c', true)], 'ServerInvalid'],
    ['a valid default besides it', {}, [server('a', true)], [broken('c', true)], 'a'],
    ['not a default', {}, [server('a')], [broken('c')], 'NoDefaultServer'],
  ])('an invalid server: %s', (_, spec, servers, invalid, want) => {
    const r = resolveServer(tenant(spec), servers, invalid);
    expect(r.ok ? r.value.metadata.name : r.reason).toBe(want);
    if (!r.ok && want === 'ServerInvalid') expect(r.message).toMatch(/^PostgresServer c has an invalid spec/);
  });
});

describe('resolveNames', () => {
  test('derived names and default Secret', () => {
    const r = resolveNames(tenant());
    expect(r).toEqual({
      ok: true,
      value: {
        isolation: 'Database',
        database: 'team_app',
        schema: undefined,
        role: 'team_app',
        shadow: undefined,
        secret: 'app-db',
        alias: 'team_app',
      },
    });
  });
  test('a schema tenant: its schema and alias, the database from its server', () => {
    const r = resolveNames(tenant({ isolation: 'Schema' }));
    expect(r.ok && r.value).toMatchObject({ isolation: 'Schema', schema: 'team_app', role: 'team_app', alias: 'schema.team_app' });
    const s = server('a', true);
    const none = r.ok ? placeOnServer(r.value, s) : undefined;
    expect(none?.ok ? 'ok' : none?.reason).toBe('NoSharedDatabase');
    const placed = r.ok ? placeOnServer(r.value, { ...s, spec: { ...s.spec, sharedDatabase: 'tenants' } }) : undefined;
    expect(placed?.ok && placed.value.database).toBe('tenants');
    expect(placed?.ok && ownDatabases(placed.value)).toEqual([]);
    // No database-mode tenant may take the shared database's name.
    const db = resolveNames(tenant({ databaseName: 'tenants' }));
    const taken = db.ok ? placeOnServer(db.value, { ...s, spec: { ...s.spec, sharedDatabase: 'tenants' } }) : undefined;
    expect(taken?.ok ? 'ok' : taken?.reason).toBe('InvalidName');
  });
  test.each([
    [{ isolation: 'Schema', databaseName: 'mine' }, 'InvalidSpec'],
    [{ isolation: 'Schema', shadowDatabase: true }, 'InvalidSpec'],
    [{ isolation: 'Schema', extensions: ['citext'] }, 'InvalidSpec'],
    [{ isolation: 'Schema', schemaName: 'public' }, 'InvalidName'],
    [{ isolation: 'Schema', schemaName: 'pg_toast' }, 'InvalidName'],
    [{ isolation: 'Schema', schemaName: 'x'.repeat(57) }, 'InvalidName'],
  ])('schema tenant %j refused', (spec, reason) => {
    const base = tenant({ isolation: 'Schema' });
    const r = resolveNames({ ...base, spec: { ...base.spec, ...spec } as TenantDatabase['spec'] });
    expect(r.ok ? 'ok' : r.reason).toBe(reason);
  });
  test.each([{ schemaName: 'public' }, { schemaName: 'pg_x' }, { schemaName: 'information_schema' }, { schemaName: 'a'.repeat(57) }])(
    'the schema refuses %j',
    (spec) => {
      expect(() => tenant({ isolation: 'Schema', ...spec })).toThrow(/schemaName/);
    },
  );
  test('names come from the spec, never from status', () => {
    const r = resolveNames(tenant({}, { databaseName: 'forged', roleName: 'forged' }));
    expect(r.ok && r.value.database).toBe('team_app');
    expect(r.ok && r.value.role).toBe('team_app');
  });
  test.each([
    [{ roles: ['team_app'], databases: ['team_app', 'team_app_shadow'] }, true],
    [{ roles: [], databases: [] }, true],
    [{ roles: ['older_role'], databases: ['team_app'] }, false],
    [{ roles: ['team_app'], databases: ['older'] }, false],
    // The twin, the holder and the shadow go with the names, the last three only beside the main one.
    [{ roles: ['team_app', 'team_app-2', 'team_app_2', 'team_app_hold'], databases: ['team_app'] }, true],
    [{ roles: ['team_app-2'], databases: [] }, true],
    // A tenant named team/app-2 (its role team_app_2) adding roleName team_app; one named
    // team/app-shadow adding databaseName team_app; a holder without its role.
    [{ roles: ['team_app_2'], databases: ['team_app'] }, false],
    [{ roles: ['team_app'], databases: ['team_app_shadow'] }, false],
    [{ roles: ['team_app_hold'], databases: [] }, false],
  ])('names checked against the markers %j', (m, ok) => {
    const names = {
      isolation: 'Database' as const,
      database: 'team_app',
      schema: undefined,
      role: 'team_app',
      shadow: undefined,
      secret: 'app-db',
      alias: 'team_app',
    };
    expect(namesMatchMarkers(names, { roles: new Set(m.roles), databases: new Set(m.databases) }).ok).toBe(ok);
  });
  test.each([
    [{ databaseName: 'template1' }, undefined, 'InvalidName'],
    [{ roleName: 'pg_read_all_data' }, undefined, 'InvalidName'],
    [{ roleName: 'public' }, undefined, 'InvalidName'],
    [{ databaseName: 'sameuser' }, undefined, 'InvalidName'],
    [{ databaseName: 'pgbouncer' }, undefined, 'InvalidName'],
    [{ roleName: 'all' }, undefined, 'InvalidName'],
  ])('%j refused', (spec, status, reason) => {
    // The schema refuses reserved names too; resolveNames holds even for an object that got past it.
    const base = tenant({}, status);
    const r = resolveNames({ ...base, spec: { ...base.spec, ...spec } });
    expect(r.ok ? 'ok' : r.reason).toBe(reason);
  });
  test.each([{ databaseName: 'all' }, { databaseName: 'template0' }, { roleName: 'samerole' }, { roleName: 'pg_monitor' }])(
    'the schema refuses %j',
    (spec) => {
      expect(() => tenant(spec)).toThrow(/must not be one of/);
    },
  );
  test('shadow name', () => {
    const r = resolveNames(tenant({ shadowDatabase: true }));
    expect(r.ok && r.value.shadow).toBe('team_app_shadow');
  });
});

describe('connectionFailure', () => {
  const err = (code: string, message = 'x') => Object.assign(new Error(message), { code });
  test.each([
    [err('28P01', 'password authentication failed'), 'AuthenticationFailed'],
    [err('28000', 'no pg_hba.conf entry'), 'ConnectionRejected'],
    [err('ECONNREFUSED', 'connect ECONNREFUSED'), 'Unreachable'],
    [err('ENOTFOUND', 'getaddrinfo ENOTFOUND'), 'Unreachable'],
    [new Error('Connection terminated due to connection timeout'), 'Unreachable'],
    [err('3D000', 'database "postgres" does not exist'), 'DatabaseNotFound'],
  ])('%s', (e, reason) => expect(connectionFailure(e, 'h:5432').reason).toBe(reason));
});
