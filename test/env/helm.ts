/** The helm CLI (built from its Go module and cached by scripts/build-helm.sh) and the chart it renders. */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ROOT } from './cluster.js';

export const CHART = join(ROOT, 'charts/tenantdb');
/** The control plane's version: the chart declares kubeVersion >=1.31. */
export const KUBE_VERSION = '1.34.4';

let helmPath: string | undefined;

/** $TENANTDB_HELM, or the cached build (built first if the cache lacks it, as npm test's set-up does). */
export function helmBinary(): string {
  helmPath ??=
    process.env.TENANTDB_HELM ??
    execFileSync('bash', [join(ROOT, 'scripts/build-helm.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .pop() ??
    '';
  return helmPath;
}

/** helm against one cluster, with its cache, config and data in `home`; throws when helm fails. */
export function helmRunner(bin: string, kubeconfig: string, home: string): (...args: string[]) => string {
  mkdirSync(home, { recursive: true });
  return (...args) =>
    execFileSync(bin, ['--kubeconfig', kubeconfig, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: ROOT,
      maxBuffer: 64 << 20,
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(home, 'cache'),
        HELM_CONFIG_HOME: join(home, 'config'),
        HELM_DATA_HOME: join(home, 'data'),
      },
    });
}

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with its cache, config and data in `home` (a folder of the test), never the user's. */
export function helm(args: string[], home: string): HelmResult {
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(home, '.helm/cache'),
    HELM_CONFIG_HOME: join(home, '.helm/config'),
    HELM_DATA_HOME: join(home, '.helm/data'),
  };
  const r = spawnSync(helmBinary(), args, { encoding: 'utf8', maxBuffer: 64 << 20, env });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
} & Record<string, unknown>;

/** Values given as a file, as a user would write them. */
function valuesArgs(dir: string, values: Record<string, unknown>): string[] {
  const file = join(dir, `values-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(values));
  return ['--values', file];
}

/** `helm template` of the chart; throws with helm's message when it refuses. */
export function renderChart(
  dir: string,
  opts: { release?: string; namespace: string; values?: Record<string, unknown>; skipTests?: boolean },
): Manifest[] {
  const r = helm(
    [
      'template',
      opts.release ?? 'tenantdb',
      CHART,
      '--namespace',
      opts.namespace,
      '--kube-version',
      KUBE_VERSION,
      ...(opts.skipTests ? ['--skip-tests'] : []),
      ...valuesArgs(dir, opts.values ?? {}),
    ],
    dir,
  );
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Manifest | null)
    .filter((d): d is Manifest => !!d);
}

/** `helm template` expected to fail: returns helm's message. */
export function renderChartError(dir: string, opts: { namespace: string; values?: Record<string, unknown>; kubeVersion?: string }): string {
  const r = helm(
    [
      'template',
      'tenantdb',
      CHART,
      '--namespace',
      opts.namespace,
      '--kube-version',
      opts.kubeVersion ?? KUBE_VERSION,
      ...valuesArgs(dir, opts.values ?? {}),
    ],
    dir,
  );
  if (r.status === 0) throw new Error('helm template succeeded where it should have failed');
  return r.stderr;
}
