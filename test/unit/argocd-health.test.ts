/** The Argo CD health check shipped in the chart, run by a real Lua 5.4 on objects in each state. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Condition } from '../../src/api/common.js';
import { observedConditions } from '../../src/runtime/kstatus.js';
import type { ConditionInput } from '../../src/runtime/conditions.js';

const script = readFileSync(join(process.cwd(), 'charts/tenantdb/files/argocd-health.lua'), 'utf8');

/** A JSON value as a Lua table constructor (what Argo CD hands the script as `obj`). */
function lua(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `{${v.map(lua).join(', ')}}`;
  return `{${Object.entries(v as Record<string, unknown>)
    .map(([k, x]) => `[${JSON.stringify(k)}] = ${lua(x)}`)
    .join(', ')}}`;
}

function health(obj: unknown): { status: string; message: string } {
  const program = `local obj = ${lua(obj)}\nlocal hs = (function()\n${script}\nend)()\nio.write(hs.status, "\\n", hs.message)`;
  const out = execFileSync('lua5.4', ['-'], { input: program, encoding: 'utf8' });
  const [status = '', message = ''] = out.split('\n');
  return { status, message };
}

const object = (generation: number, observedGeneration: number | undefined, conditions: Condition[] | undefined) => ({
  apiVersion: 'tenantdb.dev/v1alpha1',
  kind: 'TenantDatabase',
  metadata: { name: 'orders', namespace: 'team-a', generation },
  status: { observedGeneration, conditions },
});
const ready = (status: ConditionInput['status'], reason: string, message: string): ConditionInput => ({
  type: 'Ready',
  status,
  reason,
  message,
});

test('no status yet: Progressing', () => {
  expect(health(object(1, undefined, undefined)).status).toBe('Progressing');
});

test('Ready: Healthy', () => {
  const h = health(object(2, 2, observedConditions([], [ready('True', 'Provisioned', 'database ready')], false, 2)));
  expect(h).toEqual({ status: 'Healthy', message: 'database ready' });
});

test('a terminal refusal: Degraded, with the reason', () => {
  const h = health(object(1, 1, observedConditions([], [ready('False', 'Conflict', 'role taken')], true, 1)));
  expect(h).toEqual({ status: 'Degraded', message: 'Conflict: role taken' });
});

test('waiting for something that will come: Progressing, with the reason', () => {
  const h = health(object(1, 1, observedConditions([], [ready('False', 'PoolerNotReady', 'not loaded yet')], false, 1)));
  expect(h).toEqual({ status: 'Progressing', message: 'PoolerNotReady: not loaded yet' });
});

test('a status older than the spec is Progressing even if it said Ready', () => {
  const h = health(object(3, 2, observedConditions([], [ready('True', 'Provisioned', 'database ready')], false, 2)));
  expect(h.status).toBe('Progressing');
});
