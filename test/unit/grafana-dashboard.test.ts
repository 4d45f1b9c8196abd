/**
 * The chart's Grafana dashboard asks only for series the operator registers (at --tenant-metrics=full,
 * plus its own), with labels those series have, and shows every per-tenant series.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMetrics, registerTenantMetrics, tenantSeriesNames } from '../../src/runtime/metrics.js';

const FILE = join(dirname(fileURLToPath(import.meta.url)), '../../charts/tenantdb/files/grafana-dashboard.json');

interface Target {
  expr?: string;
  legendFormat?: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: string | { query: string } }[] };
}

const dashboard = JSON.parse(readFileSync(FILE, 'utf8')) as Dashboard;
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const targets = panels.flatMap((p) => p.targets ?? []);
const queries = [
  ...targets.map((t) => t.expr ?? ''),
  ...dashboard.templating.list.filter((v) => v.type === 'query').map((v) => (typeof v.query === 'string' ? v.query : v.query.query)),
];
const metricNames = (expr: string) => [...expr.matchAll(/\b(tenantdb_[a-z_]+)\b/g)].map((m) => m[1] as string);

/** Every series name the operator registers at full (histograms with their suffixes), with its labels. */
async function registered(): Promise<Map<string, string[]>> {
  const m = createMetrics();
  registerTenantMetrics(m.registry, 'full', { snapshot: () => Promise.resolve({ at: 0, tenants: [], poolers: [] }) });
  const out = new Map<string, string[]>();
  for (const j of await m.registry.getMetricsAsJSON()) {
    const metric = m.registry.getSingleMetric(j.name) as unknown as { labelNames?: string[] };
    const labels = metric.labelNames ?? [];
    out.set(j.name, labels);
    if (j.type.toString() === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.set(j.name + s, [...labels, 'le']);
  }
  return out;
}

describe('the Grafana dashboard', () => {
  test('is a dashboard with a uid, a title, a data source variable, and panels with unique ids on it', () => {
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dashboard.title).toContain('tenantdb');
    expect(dashboard.templating.list.find((v) => v.type === 'datasource')?.name).toBe('datasource');
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels.filter((x) => x.type !== 'row')) {
      expect(`${p.title}: ${p.datasource?.uid}`).toBe(`${p.title}: \${datasource}`);
      expect(p.targets?.length).toBeGreaterThan(0);
    }
    expect(targets.length).toBeGreaterThan(10);
  });

  test('every metric its queries name is registered by the operator', async () => {
    const names = await registered();
    const used = new Set(queries.flatMap(metricNames));
    expect(used.size).toBeGreaterThan(5);
    for (const n of used) expect(`${n} ${names.has(n) ? 'registered' : 'not registered'}`).toBe(`${n} registered`);
  });

  test('every per-tenant series is on it', () => {
    const used = new Set(queries.flatMap(metricNames));
    for (const n of tenantSeriesNames('full')) expect(`${n} ${used.has(n) ? 'shown' : 'missing'}`).toBe(`${n} shown`);
  });

  test('label matchers and legends name labels the series have', async () => {
    const names = await registered();
    for (const q of queries) {
      for (const m of q.matchAll(/\b(tenantdb_[a-z_]+)\{([^}]*)\}/g)) {
        const have = names.get(m[1] as string) ?? [];
        for (const l of (m[2] ?? '').matchAll(/([a-z_]+)\s*[=!]~?/g))
          expect(`${m[1]} ${l[1]} ${have.includes(l[1] as string)}`).toBe(`${m[1]} ${l[1]} true`);
      }
    }
    for (const t of targets) {
      const have = new Set(metricNames(t.expr ?? '').flatMap((n) => names.get(n) ?? []));
      for (const l of (t.legendFormat ?? '').matchAll(/\{\{\s*([a-z_]+)\s*\}\}/g))
        expect(`${t.expr} ${l[1]} ${have.has(l[1] as string)}`).toBe(`${t.expr} ${l[1]} true`);
    }
  });
});
