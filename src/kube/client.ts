import * as k8s from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/common.js';
import type { KindInfo } from '../api/kinds.js';

export interface KubeClients {
  kc: k8s.KubeConfig;
  custom: k8s.CustomObjectsApi;
  core: k8s.CoreV1Api;
  coordination: k8s.CoordinationV1Api;
}

export function loadKubeConfig(path?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

export function makeClients(kc: k8s.KubeConfig): KubeClients {
  return {
    kc,
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    core: kc.makeApiClient(k8s.CoreV1Api),
    coordination: kc.makeApiClient(k8s.CoordinationV1Api),
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
