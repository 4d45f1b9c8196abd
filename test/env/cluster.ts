/** Helpers that act on the test cluster as its admin: apply manifests, install CRDs, mint the operator's identity. */
import * as k8s from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { kubeconfigYaml, type ControlPlane } from './controlplane.js';
import { waitFor } from './ports.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const OPERATOR_NAMESPACE = 'tenantdb-system';
export const OPERATOR_SA = 'tenantdb-operator';

export function adminKubeConfig(cp: { adminKubeconfig: string }): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cp.adminKubeconfig);
  return kc;
}

export function readManifests(...files: string[]): k8s.KubernetesObject[] {
  return files.flatMap((f) =>
    parseAllDocuments(readFileSync(resolve(ROOT, f), 'utf8'))
      .map((d) => d.toJS() as k8s.KubernetesObject | null)
      .filter((d): d is k8s.KubernetesObject => !!d),
  );
}

/** Server-side apply of each object, as `kubectl apply --server-side` does. */
export async function apply(kc: k8s.KubeConfig, objs: k8s.KubernetesObject[], fieldManager = 'tenantdb-tests'): Promise<void> {
  const api = k8s.KubernetesObjectApi.makeApiClient(kc);
  for (const o of objs) {
    await api.patch(o, undefined, undefined, fieldManager, true, k8s.PatchStrategy.ServerSideApply);
  }
}

/**
 * CRDs go through kubectl, as a user installs them: client-node's typed serializer would drop the
 * schema keys it models under other names (`default`, `x-kubernetes-validations`).
 *
 * `looseSpecs` names kinds whose spec the API server should store unchecked (no schema, no CEL, no
 * defaults), as under a CRD older than the operator or edited by hand: a test can then store a spec
 * the operator's own validation refuses.
 */
export async function installCrds(
  kc: k8s.KubeConfig,
  kubectl: string,
  kubeconfigPath: string,
  opts: { looseSpecs?: string[] } = {},
): Promise<void> {
  const crds = readManifests(
    'crds/postgresservers.yaml',
    'crds/tenantdatabases.yaml',
    'crds/ipwhitelists.yaml',
    'crds/tenantgroups.yaml',
    'crds/tenantdatabaseplans.yaml',
  );
  const args = ['--kubeconfig', kubeconfigPath, 'apply', '--server-side', '--field-manager=tenantdb-tests', '-f'];
  const loose = new Set(opts.looseSpecs ?? []);
  if (loose.size === 0) {
    execFileSync(kubectl, [...args, join(ROOT, 'crds')], { stdio: 'pipe' });
  } else {
    const unknown = [...loose].filter((kind) => !crds.some((crd) => (crd as Crd).spec.names.kind === kind));
    if (unknown.length) throw new Error(`no CRD of kind ${unknown.join(', ')} to loosen`);
    const docs = crds.map((crd) => stringify(loose.has((crd as Crd).spec.names.kind) ? withLooseSpec(crd as Crd) : crd));
    execFileSync(kubectl, [...args, '-'], { input: docs.join('---\n'), stdio: 'pipe' });
  }
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  for (const c of crds) {
    await waitFor(`CRD ${c.metadata?.name} established`, async () => {
      const crd = await ext.readCustomResourceDefinition({ name: c.metadata?.name ?? '' });
      return crd.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True');
    });
  }
}

type Crd = k8s.KubernetesObject & {
  spec: { names: { kind: string }; versions: { schema: { openAPIV3Schema: { properties: Record<string, unknown> } } }[] };
};

/** The CRD with its spec schema replaced by "any object". */
function withLooseSpec(crd: Crd): Crd {
  const spec = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true, description: 'Not validated (a loosened CRD).' };
  return {
    ...crd,
    spec: {
      ...crd.spec,
      versions: crd.spec.versions.map((v) => ({
        ...v,
        schema: { openAPIV3Schema: { ...v.schema.openAPIV3Schema, properties: { ...v.schema.openAPIV3Schema.properties, spec } } },
      })),
    },
  };
}

/**
 * Applies deploy/'s namespace and RBAC and returns a kubeconfig that authenticates as the operator's
 * ServiceAccount through a real token (TokenRequest), so missing RBAC fails the tests.
 */
export async function operatorKubeconfig(cp: ControlPlane, path: string): Promise<string> {
  const kc = adminKubeConfig(cp);
  await apply(kc, readManifests('deploy/namespace.yaml', 'deploy/rbac.yaml'));
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({
    name: OPERATOR_SA,
    namespace: OPERATOR_NAMESPACE,
    body: { spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 24 * 3600 } },
  });
  const token = tr.status?.token;
  if (!token) throw new Error('TokenRequest returned no token');
  writeFileSync(path, kubeconfigYaml(cp.server, cp.caFile, { token }, 'tenantdb-operator'), { mode: 0o600 });
  return path;
}

/** The pooler agent's identity: deploy/agent-rbac.yaml, narrowed to the given Secret, and a token. */
export async function agentKubeconfig(
  cp: { server: string; caFile: string; adminKubeconfig: string },
  path: string,
  secretName: string,
): Promise<string> {
  const kc = adminKubeConfig(cp);
  const objs = readManifests('deploy/agent-rbac.yaml')
    .map((o) => {
      if (o.kind !== 'Role') return o;
      const role = o as k8s.V1Role;
      return {
        ...role,
        metadata: { ...role.metadata, name: `tenantdb-pooler-agent-${secretName}` },
        rules: (role.rules ?? []).map((r) => (r.resourceNames ? { ...r, resourceNames: [secretName] } : r)),
      } as k8s.KubernetesObject;
    })
    .map((o) => {
      if (o.kind !== 'RoleBinding') return o;
      const rb = o as k8s.V1RoleBinding;
      return {
        ...rb,
        metadata: { ...rb.metadata, name: `tenantdb-pooler-agent-${secretName}` },
        roleRef: { ...rb.roleRef, name: `tenantdb-pooler-agent-${secretName}` },
      } as k8s.KubernetesObject;
    });
  await apply(kc, objs);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({
    name: 'tenantdb-pooler-agent',
    namespace: OPERATOR_NAMESPACE,
    body: { spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 24 * 3600 } },
  });
  writeFileSync(path, kubeconfigYaml(cp.server, cp.caFile, { token: tr.status?.token ?? '' }, 'tenantdb-pooler-agent'), { mode: 0o600 });
  return path;
}

export const manifestPath = (...p: string[]) => join(ROOT, ...p);
