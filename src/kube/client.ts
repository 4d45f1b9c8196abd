import * as k8s from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/common.js';
import type { KindInfo } from '../api/kinds.js';

export interface KubeClients {
  kc: k8s.KubeConfig;
  custom: k8s.CustomObjectsApi;
  core: k8s.CoreV1Api;
  coordination: k8s.CoordinationV1Api;
  /**
   * A read of a Secret a PostgresServer names (admin, CA, pooler admin), shared by every caller of
   * the next SHARED_READ_MS: each tenant's reconcile needs them and they rarely change, so a burst of
   * tenants costs a few reads instead of several each. A failed read is not kept.
   */
  sharedSecret(namespace: string, name: string): Promise<k8s.V1Secret>;
}

const SHARED_READ_MS = 2000;

export function loadKubeConfig(path?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

export function makeClients(kc: k8s.KubeConfig): KubeClients {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const reads = new Map<string, { at: number; secret: Promise<k8s.V1Secret> }>();
  const sharedSecret = (namespace: string, name: string): Promise<k8s.V1Secret> => {
    const key = `${namespace}/${name}`;
    const now = Date.now();
    const hit = reads.get(key);
    if (hit && now - hit.at < SHARED_READ_MS) return hit.secret;
    for (const [k, v] of reads) if (now - v.at >= SHARED_READ_MS) reads.delete(k);
    const secret = core.readNamespacedSecret({ name, namespace });
    reads.set(key, { at: now, secret });
    secret.catch(() => reads.delete(key));
    return secret;
  };
  return {
    kc,
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    core,
    coordination: kc.makeApiClient(k8s.CoordinationV1Api),
    sharedSecret,
  };
}

export const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

export function httpStatus(err: unknown): number | undefined {
  if (err instanceof k8s.ApiException) return err.code;
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'number') {
    return (err as { code: number }).code;
  }
  return undefined;
}

/** Narrow access to one custom resource kind. */
export interface CustomResourceApi {
  get(name: string, namespace?: string): Promise<unknown>;
  list(namespace?: string): Promise<{ items: unknown[]; metadata?: { resourceVersion?: string } }>;
  patchMeta(name: string, namespace: string | undefined, patch: object): Promise<unknown>;
  patchStatus(name: string, namespace: string | undefined, status: object): Promise<unknown>;
}

export function customResourceApi(c: KubeClients, kind: KindInfo): CustomResourceApi {
  const base = { group: GROUP, version: VERSION, plural: kind.plural };
  return {
    get: (name, namespace) =>
      kind.namespaced
        ? c.custom.getNamespacedCustomObject({ ...base, namespace: namespace ?? '', name })
        : c.custom.getClusterCustomObject({ ...base, name }),
    list: async (namespace) =>
      (kind.namespaced && namespace
        ? await c.custom.listNamespacedCustomObject({ ...base, namespace })
        : await c.custom.listClusterCustomObject(base)) as { items: unknown[] },
    patchMeta: (name, namespace, patch) =>
      kind.namespaced
        ? c.custom.patchNamespacedCustomObject({ ...base, namespace: namespace ?? '', name, body: patch }, mergePatch)
        : c.custom.patchClusterCustomObject({ ...base, name, body: patch }, mergePatch),
    patchStatus: (name, namespace, status) =>
      kind.namespaced
        ? c.custom.patchNamespacedCustomObjectStatus({ ...base, namespace: namespace ?? '', name, body: { status } }, mergePatch)
        : c.custom.patchClusterCustomObjectStatus({ ...base, name, body: { status } }, mergePatch),
  };
}
