import type * as k8s from '@kubernetes/client-node';
import { groupMigration, migrationTemplate, tenantMigration } from '../../src/api/migration.js';
import { tenantGroup, type TenantGroup } from '../../src/api/tenantgroup.js';
import { jobOutcome, migrationJob, migrationJobName, templateHash } from '../../src/controllers/migrations/job.js';
import { planRollout, type RolloutMember } from '../../src/controllers/migrations/rollout.js';
import { appliedMigration } from '../../src/controllers/migrations/source.js';

const DNS_LABELISH = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const template = migrationTemplate.parse({ image: 'localhost/migrate:1', command: ['migrate', 'up'] });

describe('migration Job names', () => {
  test('are <tenant>-migrate-<hash> when that fits', () => {
    expect(migrationJobName('orders', 'abcdef0123')).toBe('orders-migrate-abcdef0123');
  });

  test('stay within 63 characters, valid, and distinct for long names that share a beginning', () => {
    const a = `${'x'.repeat(50)}-a`;
    const b = `${'x'.repeat(50)}-b`;
    const na = migrationJobName(a, 'abcdef0123');
    const nb = migrationJobName(b, 'abcdef0123');
    for (const n of [na, nb]) {
      expect(n.length).toBeLessThanOrEqual(63);
      expect(n).toMatch(DNS_LABELISH);
      expect(n.endsWith('-migrate-abcdef0123')).toBe(true);
    }
    expect(na).not.toBe(nb);
  });

  test('never end a cut name on a dash or a dot', () => {
    const name = `${'a'.repeat(36)}.-.${'b'.repeat(40)}`;
    const n = migrationJobName(name, '0123456789');
    expect(n.length).toBeLessThanOrEqual(63);
    expect(n).toMatch(DNS_LABELISH);
    expect(n).not.toMatch(/[-.]{2}/);
  });
});

describe('template hash', () => {
  test('is stable and ignores key order', () => {
    const a = migrationTemplate.parse({
      image: 'i:1',
      env: [{ name: 'A', value: '1' }],
      resources: { limits: { cpu: '1', memory: '1Gi' } },
    });
    const b = migrationTemplate.parse({
      resources: { limits: { memory: '1Gi', cpu: '1' } },
      env: [{ value: '1', name: 'A' }],
      image: 'i:1',
    });
    expect(templateHash(a)).toBe(templateHash(b));
    expect(templateHash(a)).toMatch(/^[0-9a-f]{10}$/);
  });

  test('changes with anything that makes the Job, and with a retry', () => {
    const base = templateHash(template);
    expect(templateHash({ ...template, image: 'localhost/migrate:2' })).not.toBe(base);
    expect(templateHash({ ...template, args: ['--verbose'] })).not.toBe(base);
    expect(templateHash({ ...template, env: [{ name: 'X', value: '1' }] })).not.toBe(base);
    expect(templateHash(template, '2024-01-01')).not.toBe(base);
    expect(templateHash(template, '2024-01-01')).toBe(templateHash(template, '2024-01-01'));
  });

  test('does not change with the gate or the rollout settings', () => {
    const g1 = groupMigration.parse({ image: 'localhost/migrate:1', command: ['migrate', 'up'], maxParallel: 1 });
    const g2 = groupMigration.parse({
      image: 'localhost/migrate:1',
      command: ['migrate', 'up'],
      maxParallel: 5,
      stopOnFailure: false,
      gateReady: false,
    });
    expect(templateHash(g1)).toBe(templateHash(g2));
    expect(templateHash(g1)).toBe(templateHash(template));
  });
});

describe('the template refuses what would make the operator a confused deputy', () => {
  test.each([
    ['a ServiceAccount', { serviceAccountName: 'deployer' }],
    ['volumes', { volumes: [{ name: 'v', hostPath: { path: '/' } }] }],
    ['env from another Secret', { env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'other', key: 'k' } } }] }],
    ['a privileged security context', { securityContext: { privileged: true } }],
    ['running as root', { runAsUser: 0 }],
    ['overriding the tenant keys', { env: [{ name: 'DIRECT_URL', value: 'postgres://elsewhere' }] }],
    ['a resource that is not cpu, memory or ephemeral-storage', { resources: { limits: { 'nvidia.com/gpu': '1' } } }],
  ])('%s', (_what, extra) => {
    expect(tenantMigration.safeParse({ image: 'i:1', ...extra }).success).toBe(false);
  });
});

describe('the migration Job', () => {
  const job = migrationJob({
    tenant: { name: 'orders', namespace: 'shop', uid: 'uid-1' },
    secretName: 'orders-db',
    template: { ...template, env: [{ name: 'LOG', value: 'debug' }] },
    hash: templateHash(template),
    group: 'merchants',
  });
  const pod = job.spec?.template.spec;
  const c = pod?.containers[0];

  test('lives in the tenant namespace, owned by the TenantDatabase, and goes by TTL', () => {
    expect(job.metadata?.namespace).toBe('shop');
    expect(job.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'TenantDatabase', name: 'orders', uid: 'uid-1', controller: true }),
    ]);
    expect(job.spec?.ttlSecondsAfterFinished).toBeGreaterThan(0);
    expect(job.spec?.backoffLimit).toBe(0);
    expect(job.spec?.activeDeadlineSeconds).toBe(1800);
    expect(job.metadata?.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'tenantdb',
      'app.kubernetes.io/component': 'migration',
      'tenantdb.dev/tenantgroup': 'merchants',
    });
  });

  test('runs under the restricted profile with no ServiceAccount token', () => {
    expect(pod?.automountServiceAccountToken).toBe(false);
    expect(pod?.serviceAccountName).toBeUndefined();
    expect(pod?.volumes).toBeUndefined();
    expect(pod?.restartPolicy).toBe('Never');
    expect(pod?.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(c?.securityContext).toEqual({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
  });

  test("gets the tenant's keys from its own Secret by reference, never a credential in the spec", () => {
    const env = c?.env ?? [];
    const fromSecret = env.filter((e) => e.valueFrom);
    expect(fromSecret.map((e) => e.name)).toEqual(expect.arrayContaining(['DIRECT_URL', 'DATABASE_URL', 'PGPASSWORD', 'PGHOST']));
    for (const e of fromSecret) expect(e.valueFrom?.secretKeyRef?.name).toBe('orders-db');
    expect(env.filter((e) => !e.valueFrom)).toEqual([{ name: 'LOG', value: 'debug' }]);
    expect(c?.command).toEqual(['migrate', 'up']);
  });
});

describe('what a Job status says', () => {
  const job = (status: k8s.V1JobStatus): k8s.V1Job => ({ metadata: { name: 'j' }, status });
  test.each([
    [{}, 'Running'],
    [{ active: 1, startTime: new Date() }, 'Running'],
    [{ conditions: [{ type: 'FailureTarget', status: 'True' }] }, 'Running'],
    [
      {
        conditions: [
          { type: 'SuccessCriteriaMet', status: 'True' },
          { type: 'Complete', status: 'True' },
        ],
      },
      'Succeeded',
    ],
    [{ conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' }] }, 'Failed'],
    [{ conditions: [{ type: 'Failed', status: 'False' }] }, 'Running'],
  ] as [k8s.V1JobStatus, string][])('%j → %s', (status, phase) => {
    expect(jobOutcome(job(status)).phase).toBe(phase);
  });

  test('a failure names the Job and why', () => {
    const o = jobOutcome(
      job({
        conditions: [
          { type: 'Failed', status: 'True', reason: 'DeadlineExceeded', message: 'Job was active longer than specified deadline' },
        ],
      }),
    );
    expect(o.message).toBe('Job j failed (DeadlineExceeded: Job was active longer than specified deadline)');
  });
});

describe('the rollout rule', () => {
  const m = (name: string, extra: Partial<RolloutMember> = {}): RolloutMember => ({
    name,
    eligible: true,
    jobName: `${name}-job`,
    ...extra,
  });
  const opts = { maxParallel: 2, stopOnFailure: true };

  test('starts members in the order of their names, at most maxParallel', () => {
    const p = planRollout([m('c'), m('a'), m('d'), m('b')], opts);
    expect(p.start).toEqual(['a', 'b']);
    expect(p).toMatchObject({ running: 2, pending: 2, succeeded: 0, failed: 0, halted: false });
  });

  test('counts what runs against maxParallel, and fills freed places', () => {
    expect(planRollout([m('a', { phase: 'Running' }), m('b'), m('c')], opts).start).toEqual(['b']);
    expect(planRollout([m('a', { phase: 'Running' }), m('b', { phase: 'Running' }), m('c')], opts).start).toEqual([]);
    expect(planRollout([m('a', { phase: 'Succeeded' }), m('b', { phase: 'Running' }), m('c'), m('d')], opts).start).toEqual(['c']);
  });

  test('stops at the first failure: nothing starts, the first failed member is named', () => {
    const p = planRollout([m('a', { phase: 'Succeeded' }), m('c', { phase: 'Failed' }), m('b', { phase: 'Failed' }), m('d'), m('e')], opts);
    expect(p.start).toEqual([]);
    expect(p).toMatchObject({ halted: true, failed: 2, succeeded: 1, pending: 2, firstFailed: { name: 'b', jobName: 'b-job' } });
  });

  test('goes on past failures when stopOnFailure is false', () => {
    const p = planRollout([m('a', { phase: 'Failed' }), m('b'), m('c')], { maxParallel: 1, stopOnFailure: false });
    expect(p.start).toEqual(['b']);
    expect(p.halted).toBe(false);
  });

  test('skips members not provisioned yet, and waits for a Job of an earlier template to end', () => {
    const p = planRollout([m('a', { eligible: false }), m('b', { earlierRunning: true }), m('c')], { maxParallel: 3, stopOnFailure: true });
    expect(p.start).toEqual(['c']);
    // The earlier Job counts as running: two migrations never overlap on one database.
    expect(p.running).toBe(2);
    expect(p.pending).toBe(1);
  });

  test('a finished rollout starts nothing', () => {
    const p = planRollout([m('a', { phase: 'Succeeded' }), m('b', { phase: 'Succeeded' })], opts);
    expect(p).toMatchObject({ start: [], succeeded: 2, pending: 0, running: 0 });
  });
});

describe('which migration applies to a tenant', () => {
  const group = (name: string, labels: Record<string, string>, migration?: object): TenantGroup =>
    tenantGroup.parse({
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'TenantGroup',
      metadata: { name, namespace: 'shop', uid: `g-${name}`, resourceVersion: '1' },
      spec: { selector: { matchLabels: labels }, ...(migration ? { migration } : {}) },
    });
  const tenant = { name: 'orders', labels: { tier: 'gold' } };

  test("the tenant's own migration wins over its group's", () => {
    const own = tenantMigration.parse({ image: 'own:1' });
    const a = appliedMigration(tenant, own, [group('g', { tier: 'gold' }, { image: 'group:1' })]);
    expect(a).toMatchObject({ kind: 'own', source: 'TenantDatabase', gateReady: true });
  });

  test("a selecting group's migration applies; a group that does not select it, or has none, does not", () => {
    const a = appliedMigration(tenant, undefined, [group('g', { tier: 'gold' }, { image: 'group:1' }), group('h', { tier: 'gold' })]);
    expect(a).toMatchObject({ kind: 'group', group: 'g', source: 'TenantGroup/g' });
    expect(appliedMigration(tenant, undefined, [group('g', { tier: 'silver' }, { image: 'group:1' })])).toEqual({ kind: 'none' });
  });

  test('two selecting groups with migrations are a conflict', () => {
    const a = appliedMigration(tenant, undefined, [group('g', {}, { image: 'a:1' }), group('h', { tier: 'gold' }, { image: 'b:1' })]);
    expect(a.kind).toBe('conflict');
  });

  test('the retry annotation makes a new run', () => {
    const g = [group('g', {}, { image: 'a:1' })];
    const first = appliedMigration(tenant, undefined, g);
    const again = appliedMigration({ ...tenant, annotations: { 'tenantdb.dev/retry-migration': '1' } }, undefined, g);
    expect(first.kind === 'group' && again.kind === 'group' && first.jobName !== again.jobName).toBe(true);
  });
});
