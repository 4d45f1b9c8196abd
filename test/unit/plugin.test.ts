/** The pure parts of kubectl tenantdb: errors, formats, URLs, credential age, rotation, allow-lists, redaction, completion. */
import type * as k8s from '@kubernetes/client-node';
import { renderSecretData } from '../../src/controllers/tenantdatabase/secret-data.js';
import { complete, type Lookups } from '../../src/cli/plugin/completion.js';
import { connectionParams, connectionUrl, defaultPath, passfileLine } from '../../src/cli/plugin/connection.js';
import { CliError, describeError, notFoundKind } from '../../src/cli/plugin/errors.js';
import { humanAge, humanBytes, renderTable, shellQuote } from '../../src/cli/plugin/format.js';
import { buildProgram } from '../../src/cli/plugin/program.js';
import { REDACTED, redactDeep, redactText, secretForReport, secretVariants } from '../../src/cli/plugin/redact.js';
import { psqlPod } from '../../src/cli/plugin/pod-psql.js';
import { statusText } from '../../src/cli/plugin/tenants.js';
import { linesAbout } from '../../src/cli/plugin/report.js';
import { rotationProgress } from '../../src/cli/plugin/rotate.js';
import { suspendProgress } from '../../src/cli/plugin/suspend.js';
import { allowListsOf, credentialsFromStatus, credentialsOf } from '../../src/cli/plugin/summary.js';
import { addEntries, parseCidrs, removeEntries } from '../../src/cli/plugin/whitelist.js';
import type { IpWhitelist } from '../../src/api/ipwhitelist.js';
import type { TenantDatabase } from '../../src/api/tenantdatabase.js';

const PASSWORD = 'Xy7-pQ_r2s~Zt9Lm0nBv4cWd';
const base = { host: 'db.internal', port: 5432, sslMode: 'require', database: 'team_a_orders', user: 'team_a_orders', password: PASSWORD };
const pooledData = renderSecretData({ ...base, pooler: { host: 'pgbouncer', port: 6432 }, poolerPreparedStatements: true });
const directData = renderSecretData(base);

describe('errors', () => {
  const apiError = (code: number, body: unknown) => Object.assign(new Error('HTTP-Code: x'), { code, body });
  test.each([
    [
      apiError(403, JSON.stringify({ kind: 'Status', message: 'secrets "x" is forbidden: User "u" cannot get\nresource' })),
      /^secrets "x" is forbidden: User "u" cannot get resource$/,
    ],
    [apiError(401, '{}'), /^unauthorized: the API server at https:\/\/k refused/],
    [apiError(404, '404 page not found'), /does not serve tenantdb\.dev\/v1alpha1: are the tenantdb CRDs installed\?/],
    [
      Object.assign(new Error('request to https://k/api failed, reason: connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
      /^cannot reach the API server at https:\/\/k: connect ECONNREFUSED 127\.0\.0\.1:1$/,
    ],
    [
      Object.assign(new Error('fetch failed'), { cause: { code: 'ENOTFOUND' } }),
      /^cannot reach the API server at https:\/\/k: fetch failed$/,
    ],
    [new CliError('one\n  line'), /^one line$/],
  ])('%# is one line', (err, want) => {
    const text = describeError(err, 'https://k');
    expect(text).toMatch(want);
    expect(text).not.toContain('\n');
  });

  test('a 404 names the object or the API', () => {
    const obj = {
      code: 404,
      body: JSON.stringify({ kind: 'Status', reason: 'NotFound', details: { name: 'x', kind: 'tenantdatabases' } }),
    };
    expect(notFoundKind(obj)).toBe('object');
    expect(notFoundKind({ code: 404, body: '404 page not found' })).toBe('api');
    expect(notFoundKind({ code: 403, body: '' })).toBeUndefined();
  });
});

describe('formats', () => {
  test.each([
    [5_000, '5s'],
    [119_000, '119s'],
    [185_000, '3m5s'],
    [25 * 60_000, '25m'],
    [(5 * 60 + 3) * 60_000, '5h3m'],
    [17 * 3_600_000, '17h'],
    [(3 * 24 + 4) * 3_600_000, '3d4h'],
    [12 * 86_400_000, '12d'],
    [-5, '0s'],
  ])('age of %d ms is %s', (ms, want) => expect(humanAge(ms)).toBe(want));

  test('sizes in binary units', () => {
    expect(humanBytes(512)).toBe('512 B');
    expect(humanBytes(7.5 * 1024 * 1024)).toBe('7.5 MiB');
    expect(humanBytes(undefined)).toBe('<unknown>');
  });

  test('tables align their columns', () => {
    expect(
      renderTable(
        ['name', 'ready'],
        [
          ['orders', 'True'],
          ['a', 'False (Conflict)'],
        ],
      ),
    ).toBe('NAME     READY\norders   True\na        False (Conflict)\n');
  });

  test('shell quoting survives quotes', () => {
    expect(shellQuote('plain-value_1')).toBe('plain-value_1');
    expect(shellQuote("it's $HOME")).toBe(`'it'\\''s $HOME'`);
  });
});

describe('connection details from the Secret', () => {
  test('the default path is the pooler when the Secret names one', () => {
    expect(defaultPath(pooledData)).toBe('pooled');
    expect(defaultPath(directData)).toBe('direct');
  });

  test('URLs are the Secret keys the operator wrote', () => {
    expect(connectionUrl(pooledData, 'pooled', 'uri', 's')).toBe(pooledData['pooled-uri']);
    expect(connectionUrl(pooledData, 'direct', 'uri', 's')).toBe(pooledData.uri);
    expect(connectionUrl(pooledData, 'direct', 'jdbc', 's')).toBe(pooledData['jdbc-uri']);
    expect(connectionUrl(pooledData, 'pooled', 'jdbc', 's')).toBe(pooledData['pooled-jdbc-uri']);
  });

  test('a Secret without the URL keys gets the same URLs from its parts', () => {
    const parts = Object.fromEntries(Object.entries(pooledData).filter(([k]) => !/uri|url/i.test(k)));
    expect(connectionUrl(parts, 'direct', 'uri', 's')).toBe(pooledData.uri);
    expect(connectionUrl(parts, 'pooled', 'uri', 's')).toBe(pooledData['pooled-uri']);
    expect(connectionUrl(parts, 'direct', 'jdbc', 's')).toBe(pooledData['jdbc-uri']);
  });

  test('env lines carry the chosen path', () => {
    const env = connectionUrl(pooledData, 'pooled', 'env', 's');
    expect(env).toContain('export PGHOST=pgbouncer\nexport PGPORT=6432\n');
    expect(env).toContain(`export PGPASSWORD=${shellQuote(PASSWORD)}`);
    expect(env).toContain(`export DATABASE_URL=${shellQuote(pooledData['pooled-uri'] ?? '')}`);
  });

  test('a Secret that is not written yet is a clear refusal', () => {
    expect(() => connectionParams({ host: 'h', port: '5432' }, 'direct', 'orders-db')).toThrow(
      'Secret "orders-db" has no key "database" yet',
    );
  });

  test('the password file escapes : and \\', () => {
    expect(passfileLine({ host: '::1', port: 5432, database: 'd', user: 'u', password: 'a:b\\c', sslMode: 'require' })).toBe(
      '\\:\\:1:5432:d:u:a\\:b\\\\c\n',
    );
  });
});

describe('credential age', () => {
  const secret = (managedFields: k8s.V1ManagedFieldsEntry[], annotations?: Record<string, string>): k8s.V1Secret => ({
    metadata: { creationTimestamp: new Date('2024-01-01T00:00:00Z'), managedFields, ...(annotations ? { annotations } : {}) },
  });

  test('from the managedFields entry that owns data.password', () => {
    const c = credentialsOf(
      secret(
        [
          { manager: 'kubectl', time: new Date('2024-03-01T00:00:00Z'), fieldsV1: { 'f:metadata': { 'f:labels': {} } } },
          { manager: 'tenantdb', time: new Date('2024-02-01T00:00:00Z'), fieldsV1: { 'f:data': { 'f:password': {}, 'f:uri': {} } } },
        ],
        { 'tenantdb.dev/rotated-for': 'r1' },
      ),
    );
    expect(c).toEqual({ since: '2024-02-01T00:00:00.000Z', source: 'managedFields', rotationRequest: 'r1' });
  });

  test('from the creation time when no entry owns the password', () => {
    expect(credentialsOf(secret([]))).toEqual({ since: '2024-01-01T00:00:00.000Z', source: 'creationTimestamp' });
  });
});

describe('rotation progress', () => {
  const ready = { status: 'True', reason: 'Provisioned', message: 'ok' };
  test.each([
    [{ request: 'r2', answered: 'r1', ready }, 'waiting', /has not answered request "r2".*"r1"/],
    [{ request: 'r2', answered: 'r2', eventSeen: false, ready }, 'waiting', /no PasswordRotated Event/],
    [
      { request: 'r2', answered: 'r2', eventSeen: true, ready: { status: 'False', reason: 'LoginFailed', message: 'no' } },
      'waiting',
      /Ready=False \(LoginFailed\): no/,
    ],
    [
      { request: 'r2', answered: 'r1', stalled: { status: 'True', reason: 'Conflict', message: 'role taken' } },
      'blocked',
      /Stalled=True \(Conflict\): role taken/,
    ],
  ])('%# %s', (o, state, message) => {
    const p = rotationProgress(o);
    expect(p.state).toBe(state);
    expect('message' in p ? p.message : '').toMatch(message);
  });

  test('done once the Secret answers, the Event is seen (or cannot be read) and Ready is True', () => {
    expect(rotationProgress({ request: 'r2', answered: 'r2', eventSeen: true, ready }).state).toBe('done');
    expect(rotationProgress({ request: 'r2', answered: 'r2', ready }).state).toBe('done');
  });
});

describe('allow-lists', () => {
  test('CIDRs are checked as the API server checks them', () => {
    expect(parseCidrs(['10.0.0.0/8', ' 2001:db8::/48', '10.0.0.0/8'])).toEqual(['10.0.0.0/8', '2001:db8::/48']);
    expect(() => parseCidrs(['10.0.0.1'])).toThrow('needs /32 or /128');
    expect(() => parseCidrs(['10.0.0.0/33'])).toThrow('is not a CIDR');
    expect(() => parseCidrs([])).toThrow('at least one CIDR');
  });

  test('add keeps what is there; rm reports what it found', () => {
    expect(addEntries([{ cidr: '10.0.0.0/8', description: 'vpn' }], ['10.0.0.0/8', '192.0.2.0/24'], 'office')).toEqual({
      entries: [
        { cidr: '10.0.0.0/8', description: 'vpn' },
        { cidr: '192.0.2.0/24', description: 'office' },
      ],
      added: ['192.0.2.0/24'],
    });
    expect(removeEntries([{ cidr: '10.0.0.0/8' }, { cidr: '192.0.2.0/24' }], ['10.0.0.0/8', '198.51.100.0/24'])).toEqual({
      entries: [{ cidr: '192.0.2.0/24' }],
      removed: ['10.0.0.0/8'],
    });
  });

  test("a tenant's lists are those of its namespace that name it", () => {
    const list = (name: string, ns: string, tenant: string): IpWhitelist => ({
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'IpWhitelist',
      metadata: { name, namespace: ns, uid: name, resourceVersion: '1' },
      spec: { tenantDatabaseRef: { name: tenant }, entries: [{ cidr: '10.0.0.0/8' }] },
      status: { ruleCount: 1 },
    });
    const td = { metadata: { name: 'orders', namespace: 'a' } } as TenantDatabase;
    expect(
      allowListsOf(td, [list('z', 'a', 'orders'), list('x', 'b', 'orders'), list('y', 'a', 'billing'), list('b', 'a', 'orders')]).map(
        (l) => l.name,
      ),
    ).toEqual(['b', 'z']);
  });
});

describe('redaction', () => {
  test.each([
    [`connecting to postgresql://u:${PASSWORD}@h:5432/d`, `connecting to postgresql://u:${REDACTED}@h:5432/d`],
    [
      'jdbc:postgresql://h/d?user=u&password=s3cr3t-Value&sslmode=require',
      `jdbc:postgresql://h/d?user=u&password=${REDACTED}&sslmode=require`,
    ],
    ['{"level":"info","password":"hunter22"}', `{"level":"info","password":"${REDACTED}"}`],
    ['PGPASSWORD=abc123def', `PGPASSWORD=${REDACTED}`],
    ['verifier SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy set', `verifier SCRAM-SHA-256$${REDACTED} set`],
    ['Authorization: Bearer abc.def.ghi', `Authorization: Bearer ${REDACTED}`],
    ['Rotated password of role team_a_orders', 'Rotated password of role team_a_orders'],
  ])('%s', (text, want) => expect(redactText(text)).toBe(want));

  test('the known password goes wherever it appears, encoded too', () => {
    const secrets = secretVariants(['p@ss word:1']);
    expect(redactText('x p@ss word:1 y p%40ss%20word%3A1 z', secrets)).toBe(`x ${REDACTED} y ${REDACTED} z`);
    expect(redactDeep({ a: [{ b: 'p@ss word:1' }], c: 3 }, secrets)).toEqual({ a: [{ b: REDACTED }], c: 3 });
  });

  test('a Secret shows its keys and sizes, never a value', () => {
    const s = secretForReport({
      metadata: {
        name: 'x',
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"stringData":{"password":"p"}}' },
        managedFields: [],
      },
      type: 'Opaque',
      data: { password: Buffer.from(PASSWORD).toString('base64'), host: Buffer.from('h').toString('base64') },
    });
    expect(s.data).toEqual({ host: `${REDACTED} (1 bytes)`, password: `${REDACTED} (${PASSWORD.length} bytes)` });
    expect(JSON.stringify(s)).not.toContain(Buffer.from(PASSWORD).toString('base64'));
    expect(JSON.stringify(s)).not.toContain('stringData');
    expect(s.metadata).not.toHaveProperty('managedFields');
  });

  test("the operator's lines about one tenant", () => {
    const log = [
      '{"namespace":"a","name":"orders","msg":"Created role"}',
      '{"namespace":"a","name":"billing"}',
      '{"key":"a/orders"}',
      'uid-1 seen',
    ].join('\n');
    expect(linesAbout(log, 'a', 'orders', 'uid-1')).toEqual([
      '{"namespace":"a","name":"orders","msg":"Created role"}',
      '{"key":"a/orders"}',
      'uid-1 seen',
    ]);
  });
});

describe('completion', () => {
  const program = buildProgram('0.0.0');
  const asked: Record<string, string>[] = [];
  const lookups: Lookups = {
    tenants: async (f) => (asked.push(f), f.namespace === 'b' ? ['beta'] : ['billing', 'orders']),
    namespaces: async () => ['team-a', 'team-b'],
    contexts: async () => ['dev', 'prod'],
  };
  test.each([
    [[''], ['list', 'status', 'url', 'psql', 'rotate', 'suspend', 'resume', 'plan', 'whitelist', 'report', 'completion']],
    [['wh'], ['whitelist']],
    [
      ['whitelist', ''],
      ['add', 'rm', 'list'],
    ],
    [['status', 'o'], ['orders']],
    [['status', '-n', 'b', ''], ['beta']],
    [['-n', 'b', 'rotate', ''], ['beta']],
    [['status', 'orders', ''], []],
    [
      ['list', '-o', ''],
      ['table', 'json', 'yaml'],
    ],
    [
      ['list', '-n', 'team-'],
      ['team-a', 'team-b'],
    ],
    [
      ['url', 'orders', '--format', ''],
      ['uri', 'jdbc', 'env'],
    ],
    [
      ['--context', ''],
      ['dev', 'prod'],
    ],
    [['rotate', '--t'], ['--timeout']],
    [
      ['completion', ''],
      ['bash', 'zsh'],
    ],
    [['psql', 'orders', '--', ''], []],
  ])('%j', async (words, want) => {
    expect(await complete(program, words, lookups)).toEqual(want);
  });
});

describe('suspendProgress', () => {
  const c = (status: string, reason: string) => ({ status, reason, message: 'm' });
  test.each([
    [true, 2, 2, c('True', 'Suspended'), undefined, 'done'],
    [true, 2, 1, c('True', 'Suspended'), undefined, 'waiting'],
    [true, 2, 2, c('True', 'Provisioned'), undefined, 'waiting'],
    [false, 3, 3, c('True', 'Provisioned'), undefined, 'done'],
    [false, 3, 3, c('True', 'Suspended'), undefined, 'waiting'],
    [false, 3, 3, c('False', 'PoolerNotReady'), undefined, 'waiting'],
    [true, 2, 2, c('False', 'Conflict'), c('True', 'Conflict'), 'blocked'],
  ] as const)('suspend=%s generation %s observed %s', (suspend, gen, obs, ready, stalled, want) => {
    expect(suspendProgress(suspend, gen, obs, ready, stalled).state).toBe(want);
  });
});

describe('credentialsFromStatus', () => {
  const td = (status: Record<string, unknown> | undefined) =>
    ({ metadata: { name: 'x', namespace: 'n' }, status }) as unknown as TenantDatabase;
  test("the operator's record when it wrote one, nothing otherwise", () => {
    expect(credentialsFromStatus(td({ passwordChangedAt: '2026-12-03T10:00:00.000Z', passwordRotatedFor: 'r1' }))).toEqual({
      since: '2026-12-03T10:00:00.000Z',
      source: 'status',
      rotationRequest: 'r1',
    });
    expect(credentialsFromStatus(td({}))).toBeUndefined();
    expect(credentialsFromStatus(td(undefined))).toBeUndefined();
    expect(credentialsFromStatus(td({ passwordChangedAt: 'not a time' }))).toBeUndefined();
  });
});

describe('psql --pod: the pod it creates', () => {
  const data = {
    host: 'db.internal',
    port: '5432',
    'pooler-host': 'pgbouncer.tenantdb-system',
    'pooler-port': '6432',
    database: 'shop_orders',
    username: 'shop_orders',
    password: 'a-secret-password-of-24-chars',
    sslmode: 'verify-full',
    'ca.crt': '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n',
  };
  const pod = psqlPod(
    'psql-orders-abc',
    'shop',
    'orders',
    'orders-db',
    data,
    'pooled',
    ['-XAt'],
    { image: 'psql:17', startTimeout: 60 },
    false,
  );

  test('takes the password from the Secret, never in its spec, and the rest of libpq from it', () => {
    expect(JSON.stringify(pod)).not.toContain(data.password);
    const env = Object.fromEntries((pod.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
    expect(env).toMatchObject({
      PGHOST: 'pgbouncer.tenantdb-system',
      PGPORT: '6432',
      PGDATABASE: 'shop_orders',
      PGUSER: 'shop_orders',
      PGSSLMODE: 'verify-full',
      PGPASSWORD: { secretKeyRef: { name: 'orders-db', key: 'password' } },
      PGSSLROOTCERT: '/etc/tenantdb/ca.crt',
    });
    expect(pod.spec?.volumes?.[0]?.secret).toEqual({ secretName: 'orders-db', items: [{ key: 'ca.crt', path: 'ca.crt' }] });
  });

  test('runs as the restricted Pod Security profile asks, without a ServiceAccount token', () => {
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
    expect(pod.spec?.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.spec?.containers[0]?.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(pod.spec?.containers[0]).toMatchObject({ command: ['psql'], args: ['-XAt'], stdin: true, stdinOnce: true, tty: false });
    expect(pod.spec?.restartPolicy).toBe('Never');
  });
});

describe('status of an observed tenant', () => {
  test('says nothing is changed and lists what a managed reconcile would run', () => {
    const view = {
      name: 'orders',
      namespace: 'shop',
      secretName: 'orders-db',
      connectionLimit: -1,
      credentials: {},
      created: '2026-01-01T00:00:00Z',
      conditions: [],
      observation: { observedAt: '2026-01-01T00:00:00Z', inSync: false, plan: ['ALTER ROLE "shop_orders" LOGIN CONNECTION LIMIT 7'] },
    } as unknown as Parameters<typeof statusText>[0];
    const text = statusText(view, Date.parse('2026-01-01T00:01:00Z'));
    expect(text).toMatch(/Observed: +managementPolicy Observe: nothing is changed; read 60s ago; a managed reconcile would run:/);
    expect(text).toContain('  ALTER ROLE "shop_orders" LOGIN CONNECTION LIMIT 7');
  });
});
