/**
 * kubectl tenantdb, run as a real process with the kubeconfig of a restricted user: a
 * ServiceAccount of one namespace with a Role that allows what the plugin needs there and nothing
 * elsewhere, authenticated through a TokenRequest token. The URLs it prints must log in; a
 * rotation must leave the old password refused; the report must hold no password.
 */
import type * as k8s from '@kubernetes/client-node';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { apply, ROOT } from '../env/cluster.js';
import type { Proc } from '../env/process.js';
import {
  applyTenant,
  cluster,
  ensureDefaultServer,
  getTenant,
  namespace,
  operator,
  queryWith,
  readSecretData,
  sqlError,
  tenantReady,
} from './harness.js';

const c = cluster();
let op: Proc;
let kubeconfig: string;
const NS = 'plug-a';
const OTHER = 'plug-b';
const ENTRY = join(ROOT, 'src/cli/kubectl-tenantdb.ts');
const COMPLETE_ENTRY = join(ROOT, 'src/cli/kubectl_complete-tenantdb.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The plugin as a user runs it, without jest's NODE_OPTIONS. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, entry = ENTRY): Promise<Run> {
  return new Promise((resolve) => {
    const { NODE_OPTIONS: _n, KUBECONFIG: _k, ...base } = process.env;
    execFile(
      process.execPath,
      ['--import', 'tsx', entry, ...args],
      { cwd: ROOT, env: { ...base, KUBECONFIG: kubeconfig, ...env }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** A refusal as the plugin must give it: a non-zero exit and one line on stderr, no stack. */
function expectOneLineError(r: Run, text: string | RegExp): void {
  expect(r.code).not.toBe(0);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(text);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

const ipwl = async (name: string) =>
  (await c.custom
    .getNamespacedCustomObject({ group: 'tenantdb.dev', version: 'v1alpha1', namespace: NS, plural: 'ipwhitelists', name })
    .catch(() => undefined)) as { spec: { entries: { cidr: string; description?: string }[] } } | undefined;

beforeAll(async () => {
  op = operator(c, 'plugin');
  await ensureDefaultServer(c);
  await namespace(c, NS);
  await namespace(c, OTHER);
  await apply(c.kc, [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'cli', namespace: NS } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'tenantdb-cli', namespace: NS },
      rules: [
        // create and update: plan's server-side dry run needs the rights applying would.
        { apiGroups: ['tenantdb.dev'], resources: ['tenantdatabases'], verbs: ['get', 'list', 'watch', 'patch', 'create', 'update'] },
        { apiGroups: ['tenantdb.dev'], resources: ['ipwhitelists'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] },
        // plan's exact SQL: the operator answers a TenantDatabasePlan.
        { apiGroups: ['tenantdb.dev'], resources: ['tenantdatabaseplans'], verbs: ['get', 'create', 'delete'] },
        { apiGroups: [''], resources: ['secrets'], verbs: ['get'] },
        { apiGroups: [''], resources: ['events'], verbs: ['get', 'list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'tenantdb-cli', namespace: NS },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'tenantdb-cli' },
      subjects: [{ kind: 'ServiceAccount', name: 'cli', namespace: NS }],
    },
  ] as k8s.KubernetesObject[]);
  const tr = await c.core.createNamespacedServiceAccountToken({
    name: 'cli',
    namespace: NS,
    body: { spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3600 } },
  });
  const dir = mkdtempSync(join(c.env.dir, 'plugin-'));
  kubeconfig = join(dir, 'kubeconfig');
  const ca = readFileSync(c.env.caFile).toString('base64');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'current-context: cli',
      'clusters:',
      '- name: test',
      `  cluster: {server: '${c.env.server}', certificate-authority-data: ${ca}}`,
      'users:',
      `- name: cli`,
      `  user: {token: ${tr.status?.token ?? ''}}`,
      'contexts:',
      `- name: cli`,
      `  context: {cluster: test, user: cli, namespace: ${NS}}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  await applyTenant(c, NS, 'orders', { deletionPolicy: 'Delete' });
  await applyTenant(c, NS, 'billing', { deletionPolicy: 'Delete' });
  await applyTenant(c, OTHER, 'secret-stuff', { deletionPolicy: 'Delete' });
  await tenantReady(c, NS, 'orders');
  await tenantReady(c, NS, 'billing');
}, 180_000);

afterAll(async () => {
  await op?.stop();
});

test("list and status show the context namespace's tenants with their conditions and password age", async () => {
  const table = await cli(['list']);
  expect(table.code).toBe(0);
  const lines = table.stdout.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^NAME\s+SERVER\s+DATABASE\s+READY\s+POOLER\s+ALLOW-LISTS\s+SIZE\s+CONNECTIONS\s+PASSWORD AGE\s+AGE$/);
  expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['billing', 'orders']);
  expect(lines[2]).toMatch(/^orders\s+default\s+plug_a_orders\s+True\s/);

  const json = await cli(['list', '-o', 'json']);
  const items = (
    JSON.parse(json.stdout) as {
      items: {
        name: string;
        database: string;
        ready: { status: string };
        allowLists: unknown[];
        credentials: { since?: string; source?: string };
      }[];
    }
  ).items;
  const orders = items.find((i) => i.name === 'orders');
  expect(orders).toMatchObject({
    database: 'plug_a_orders',
    ready: { status: 'True' },
    allowLists: [],
    // The operator records when it set the password; the Secret's metadata is only the fallback.
    credentials: { source: 'status' },
  });
  expect(Date.now() - Date.parse(orders?.credentials.since ?? '')).toBeLessThan(10 * 60_000);

  const status = await cli(['status', 'orders']);
  expect(status.code).toBe(0);
  expect(status.stdout).toMatch(/^Database:\s+plug_a_orders$/m);
  expect(status.stdout).toMatch(/^Allow-lists:\s+none/m);
  expect(status.stdout).toMatch(/^Password:\s+written .* ago .*from the TenantDatabase's status/m);
  expect(status.stdout).toMatch(/^\s+Ready\s+True\s/m);
  // The restricted user may not read PostgresServers: said in place, not fatal.
  expect(status.stdout).toMatch(/^Server:\s+default \(.*forbidden/m);
  const yaml = parse((await cli(['status', 'orders', '-o', 'yaml'])).stdout) as {
    conditions: { type: string; status: string }[];
    events: { reason: string }[];
  };
  expect(yaml.conditions.find((x) => x.type === 'Ready')?.status).toBe('True');
  expect(yaml.events.map((e) => e.reason)).toContain('Provisioned');
}, 120_000);

test('url prints URLs that log in, in each format and path', async () => {
  const uri = await cli(['url', 'orders']);
  expect(uri.code).toBe(0);
  expect((await queryWith(uri.stdout.trim()))[0]?.u).toBe('plug_a_orders');
  const direct = await cli(['url', 'orders', '--direct', '-n', NS]);
  expect((await queryWith(direct.stdout.trim()))[0]?.u).toBe('plug_a_orders');
  const secret = (await readSecretData(c, NS, 'orders-db'))!;
  const jdbc = await cli(['url', 'orders', '--format', 'jdbc']);
  expect(jdbc.stdout.trim()).toBe(secret['jdbc-uri']);
  // libpq's variables, evaluated by a real shell and used by a real psql.
  const env = await cli(['url', 'billing', '--format', 'env']);
  const who = await new Promise<string>((resolve) =>
    execFile('bash', ['-c', `${env.stdout}\npsql -Atc 'select current_user'`], { env: { PATH: process.env.PATH } }, (err, out, errOut) =>
      resolve(err ? `failed: ${errOut}` : out.trim()),
    ),
  );
  expect(who).toBe('plug_a_billing');
  const json = JSON.parse((await cli(['url', 'orders', '-o', 'json'])).stdout) as { path: string; env: Record<string, string> };
  expect(json).toMatchObject({ path: 'direct', env: { PGUSER: 'plug_a_orders', PGDATABASE: 'plug_a_orders' } });
  // The test server has no pooler: asking for the pooled path is a clear refusal.
  expectOneLineError(await cli(['url', 'orders', '--pooled']), /has no pooler/);
  expectOneLineError(await cli(['url', 'orders', '--format', 'xml']), /--format must be one of uri, jdbc, env/);
}, 120_000);

test('psql runs as the tenant; the password is never on a command line and its file is removed', async () => {
  const tmp = mkdtempSync(join(c.env.dir, 'plugin-tmp-'));
  const r = await cli(['psql', 'orders', '--', '-Atc', 'select current_user'], { TMPDIR: tmp });
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toBe('plug_a_orders');
  const ours = () => readdirSync(tmp).filter((f) => f.startsWith('kubectl-tenantdb-'));
  expect(ours()).toEqual([]);

  const password = (await readSecretData(c, NS, 'orders-db'))?.password ?? '';
  expect(password.length).toBeGreaterThan(20);
  const { NODE_OPTIONS: _n, ...base } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, 'psql', 'orders', '--', '-Atc', 'select pg_sleep(3)'], {
    cwd: ROOT,
    env: { ...base, KUBECONFIG: kubeconfig, TMPDIR: tmp },
    stdio: 'ignore',
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let sawPsql = false;
  const passfileModes = new Set<number>();
  for (let i = 0; i < 40 && child.exitCode === null; i++) {
    const ps = await new Promise<string>((resolve) => execFile('ps', ['-eo', 'args'], (_e, out) => resolve(out)));
    expect(ps).not.toContain(password);
    if (/psql -Atc select pg_sleep/.test(ps)) sawPsql = true;
    for (const d of ours()) {
      try {
        passfileModes.add(statSync(join(tmp, d, 'pgpass')).mode & 0o777);
      } catch {
        // not written yet, or already removed
      }
    }
    await new Promise((res) => setTimeout(res, 200));
  }
  expect(await exited).toBe(0);
  expect(sawPsql).toBe(true);
  expect([...passfileModes]).toEqual([0o600]);
  expect(ours()).toEqual([]);
  // psql's own failure is the plugin's exit code.
  expect((await cli(['psql', 'orders', '--', '-Atc', 'select * from no_such_table'])).code).toBe(1);
}, 120_000);

test('rotate --wait gives a new password that logs in while the old one is refused', async () => {
  const before = (await cli(['url', 'orders', '--direct'])).stdout.trim();
  const r = await cli(['rotate', 'orders', '--wait', '--timeout', '90s']);
  expect(r.stderr).toContain('Requested a new password');
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/Rotated the password of TenantDatabase plug-a\/orders/);
  const after = (await cli(['url', 'orders', '--direct'])).stdout.trim();
  expect(after).not.toBe(before);
  expect((await queryWith(after))[0]?.u).toBe('plug_a_orders');
  expect(await queryWith(before).then(() => 'logged in', sqlError)).toBe('28P01');
  const status = parse((await cli(['status', 'orders', '-o', 'yaml'])).stdout) as { credentials: { rotationRequest?: string } };
  expect(status.credentials.rotationRequest).toMatch(/^\d{4}-\d\d-\d\dT/);
  // The same request twice is refused before anything is changed.
  const again = await cli(['rotate', 'orders', '--request', status.credentials.rotationRequest ?? '']);
  expectOneLineError(again, /already made/);
}, 150_000);

test("suspend --wait refuses the tenant's logins; resume --wait lets them in again", async () => {
  const url = (await cli(['url', 'orders', '--direct'])).stdout.trim();
  const r = await cli(['suspend', 'orders', '--wait', '--timeout', '90s']);
  expect([r.code, r.stdout.trim()]).toEqual([0, 'Suspended TenantDatabase plug-a/orders']);
  expect(await queryWith(url).then(() => 'logged in', sqlError)).toBe('28000');
  const back = await cli(['resume', 'orders', '--wait', '--timeout', '90s']);
  expect([back.code, back.stdout.trim()]).toEqual([0, 'Resumed TenantDatabase plug-a/orders']);
  expect((await queryWith(url))[0]?.u).toBe('plug_a_orders');
  expectOneLineError(await cli(['suspend', 'nosuch']), /nosuch/);
}, 200_000);

test("plan says what a manifest would do, applies nothing, and gives the API server's refusal", async () => {
  const file = join(mkdtempSync(join(c.env.dir, 'plan-')), 'tenants.yaml');
  const doc = (name: string, spec: string) =>
    `apiVersion: tenantdb.dev/v1alpha1\nkind: TenantDatabase\nmetadata: {name: ${name}}\nspec: ${spec}`;
  writeFileSync(
    file,
    [doc('orders', '{deletionPolicy: Delete, connectionLimit: 12, pooling: {poolSize: 4}}'), doc('fresh', '{}')].join('\n---\n'),
  );
  const r = await cli(['plan', '-f', file]);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/TenantDatabase plug-a\/orders: update/);
  expect(r.stdout).toMatch(/\[server\] connection limit of role plug_a_orders and database plug_a_orders: the server's default -> 12/);
  expect(r.stdout).toMatch(/\[pooler\] pool plug_a_orders: pool_size 10 -> 4/);
  expect(r.stdout).toMatch(/TenantDatabase plug-a\/fresh: create/);
  expect(r.stdout).toMatch(/\[server\] create database plug_a_fresh/);
  // The operator's exact plan, from the live server, under each.
  expect(r.stdout).toMatch(/SQL, in order \(on the live server now\):\n\s+ALTER ROLE "?plug_a_orders"? LOGIN CONNECTION LIMIT 12\n/);
  expect(r.stdout).toMatch(/\n\s+CREATE ROLE "?plug_a_fresh"? LOGIN .*PASSWORD <redacted>\n/);
  expect(r.stdout).toMatch(/\n\s+CREATE DATABASE "?plug_a_fresh"?/);
  expect(r.stdout).not.toMatch(/SCRAM-SHA-256\$/);
  // The plans it asked for are gone.
  const left = (await c.custom.listNamespacedCustomObject({
    group: 'tenantdb.dev',
    version: 'v1alpha1',
    namespace: NS,
    plural: 'tenantdatabaseplans',
  })) as { items: unknown[] };
  expect(left.items).toEqual([]);
  const words = await cli(['plan', '-f', file, '--no-sql', '-o', 'json']);
  expect(words.code).toBe(0);
  expect((JSON.parse(words.stdout) as { plans: { exact?: unknown }[] }).plans.map((p) => p.exact)).toEqual([undefined, undefined]);
  const json = JSON.parse((await cli(['plan', '-f', file, '-o', 'json'])).stdout) as { plans: { exact?: { sql: string[] } }[] };
  expect(json.plans[0]?.exact?.sql).toEqual([
    expect.stringMatching(/^ALTER ROLE "?plug_a_orders"? LOGIN CONNECTION LIMIT 12$/),
    expect.stringMatching(/^ALTER DATABASE/),
  ]);
  // A dry run: nothing was created or changed.
  expect(await getTenant(c, NS, 'fresh')).toBeUndefined();
  expect((await getTenant(c, NS, 'orders'))?.spec.connectionLimit).toBe(-1);
  // An immutable field: the API server's own message; a name added to a spec that had none: the
  // operator's refusal (the API server lets it through). Exit code 2, as JSON too.
  writeFileSync(
    file,
    [doc('orders', '{deletionPolicy: Delete, isolation: Schema}'), doc('billing', '{databaseName: elsewhere}')].join('\n---\n'),
  );
  const refused = await cli(['plan', '-f', file, '-o', 'json']);
  expect(refused.code).toBe(2);
  const out = JSON.parse(refused.stdout) as { plans: { action: string; refusal?: string }[] };
  expect(out.plans.map((p) => p.action)).toEqual(['refused', 'refused']);
  expect(out.plans[0]?.refusal).toMatch(/isolation cannot be changed/);
  expect(out.plans[1]?.refusal).toMatch(/ImmutableName.*the database is plug_a_billing; databaseName cannot change to elsewhere/);
  expectOneLineError(await cli(['plan', '-f', join(c.env.dir, 'no-such-file.yaml')]), /cannot read/);
}, 120_000);

test('whitelist add and rm create, change and delete IpWhitelists', async () => {
  const add = await cli(['whitelist', 'add', 'orders', '127.0.0.1/32', '--description', 'this machine']);
  expect(add.code).toBe(0);
  expect(add.stdout).toContain('Created IpWhitelist plug-a/orders-kubectl');
  expect((await ipwl('orders-kubectl'))?.spec.entries).toEqual([{ cidr: '127.0.0.1/32', description: 'this machine' }]);
  expect((await cli(['whitelist', 'add', 'orders', '10.0.0.0/8', '2001:db8::/48'])).code).toBe(0);
  expect((await ipwl('orders-kubectl'))?.spec.entries.map((e) => e.cidr)).toEqual(['127.0.0.1/32', '10.0.0.0/8', '2001:db8::/48']);
  const list = JSON.parse((await cli(['whitelist', 'list', 'orders', '-o', 'json'])).stdout) as {
    items: { name: string; cidrs: string[] }[];
  };
  expect(list.items).toEqual([expect.objectContaining({ name: 'orders-kubectl', cidrs: ['127.0.0.1/32', '10.0.0.0/8', '2001:db8::/48'] })]);
  const status = await cli(['status', 'orders']);
  expect(status.stdout).toMatch(/^ {2}orders-kubectl: 127\.0\.0\.1\/32, 10\.0\.0\.0\/8, 2001:db8::\/48/m);

  expectOneLineError(await cli(['whitelist', 'add', 'orders', '10.0.0.1']), /not a CIDR/);
  expectOneLineError(await cli(['whitelist', 'rm', 'orders', '192.0.2.0/24']), /not in any IpWhitelist of TenantDatabase "orders"/);
  expect((await cli(['whitelist', 'rm', 'orders', '10.0.0.0/8', '2001:db8::/48'])).code).toBe(0);
  expect((await ipwl('orders-kubectl'))?.spec.entries.map((e) => e.cidr)).toEqual(['127.0.0.1/32']);
  const last = await cli(['whitelist', 'rm', 'orders', '127.0.0.1/32']);
  expect(last.code).toBe(0);
  expect(last.stdout).toContain('Deleted IpWhitelist plug-a/orders-kubectl');
  expect(await ipwl('orders-kubectl')).toBeUndefined();
}, 120_000);

test('report holds the objects, Events and Secret keys, and no password', async () => {
  const data = (await readSecretData(c, NS, 'orders-db'))!;
  const r = await cli(['report', 'orders']);
  expect(r.code).toBe(0);
  expect(r.stdout).not.toContain(data.password);
  expect(r.stdout).not.toContain(encodeURIComponent(data.password ?? ''));
  const doc = parse(r.stdout) as {
    tenantDatabase: { metadata: { name: string } };
    secret: { data: Record<string, string> };
    events: { reason: string }[];
    unavailable: Record<string, string>;
  };
  expect(doc.tenantDatabase.metadata.name).toBe('orders');
  expect(Object.keys(doc.secret.data)).toEqual(expect.arrayContaining(['password', 'uri', 'DATABASE_URL', 'PGPASSWORD']));
  expect(doc.secret.data.password).toMatch(/^\[REDACTED\] \(\d+ bytes\)$/);
  expect(doc.events.map((e) => e.reason)).toContain('PasswordRotated');
  // What the restricted user may not read is listed, with the API server's reason.
  expect(doc.unavailable.postgresServer).toMatch(/forbidden/);
  expect(doc.unavailable.operatorLogs).toMatch(/forbidden/);
}, 120_000);

test('wrong names, forbidden namespaces, bad flags and an unreachable server give one-line errors', async () => {
  expectOneLineError(await cli(['status', 'nosuch']), /TenantDatabase "nosuch" not found in namespace "plug-a"/);
  expectOneLineError(await cli(['url', 'nosuch']), /not found/);
  expectOneLineError(await cli(['rotate', 'nosuch']), /not found/);
  expectOneLineError(await cli(['status', 'secret-stuff', '-n', OTHER]), /forbidden.*plug-b/);
  expectOneLineError(await cli(['list', '-n', OTHER]), /forbidden/);
  expectOneLineError(await cli(['list', '-A']), /forbidden/);
  expectOneLineError(await cli(['list', '--bogus']), /unknown option '--bogus'.*kubectl tenantdb list --help/);
  expectOneLineError(await cli(['list', '-o', 'xml']), /argument 'xml' is invalid/);
  expectOneLineError(await cli(['rotate']), /missing required argument 'name'/);
  expectOneLineError(await cli(['rotate', 'orders', '--timeout', 'soon']), /must be a duration/);
  expectOneLineError(await cli(['nope']), /unknown command 'nope'/);
  expectOneLineError(await cli(['status', 'Orders!']), /not a valid TenantDatabase name/);
  expectOneLineError(await cli(['list', '-n', 'Bad_NS']), /not a valid namespace name/);
  expectOneLineError(await cli(['list', '--context', 'elsewhere']), /context "elsewhere" is not in the kubeconfig/);
  expectOneLineError(await cli(['list'], { KUBECONFIG: join(c.env.dir, 'missing.kubeconfig') }), /cannot load kubeconfig/);
  // An API server that is not there.
  const dead = join(c.env.dir, 'dead.kubeconfig');
  writeFileSync(dead, readFileSync(kubeconfig, 'utf8').replace(/server: '[^']+'/, "server: 'https://127.0.0.1:1'"), { mode: 0o600 });
  expectOneLineError(await cli(['list'], { KUBECONFIG: dead }), /cannot reach the API server at https:\/\/127\.0\.0\.1:1/);
  // A token the API server does not accept.
  const bad = join(c.env.dir, 'badtoken.kubeconfig');
  writeFileSync(bad, readFileSync(kubeconfig, 'utf8').replace(/token: \S+\}/, 'token: not-a-token}'), { mode: 0o600 });
  expectOneLineError(await cli(['list'], { KUBECONFIG: bad }), /unauthorized/);
}, 180_000);

test('help shows examples; completion completes commands and tenant names', async () => {
  for (const cmd of [
    [],
    ['list'],
    ['status'],
    ['url'],
    ['psql'],
    ['rotate'],
    ['whitelist', 'add'],
    ['whitelist', 'rm'],
    ['report'],
    ['completion'],
  ]) {
    const r = await cli([...cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Examples:');
  }
  expect((await cli(['completion', 'bash'])).stdout).toContain('complete -o default -F _kubectl_tenantdb kubectl-tenantdb');
  expect((await cli(['completion', 'zsh'])).stdout).toContain('compdef _kubectl_tenantdb kubectl-tenantdb');
  expect((await cli(['__complete', 'wh'])).stdout.split('\n')).toContain('whitelist');
  expect((await cli(['__complete', 'status', 'o'])).stdout.trim().split('\n')).toEqual(['orders']);
  expect((await cli(['__complete', 'whitelist', 'add', ''])).stdout.trim().split('\n')).toEqual(['billing', 'orders']);
  const kubectlStyle = await cli(['rotate', 'b'], {}, COMPLETE_ENTRY);
  expect(kubectlStyle.stdout).toBe('billing\n:4\n');
}, 180_000);
