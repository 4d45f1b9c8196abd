import type { CustomResourceApi } from '../kube/client.js';
import { jsonEqual } from './conditions.js';

interface Meta {
  name: string;
  namespace?: string | undefined;
  resourceVersion: string;
  finalizers?: string[] | undefined;
}

/**
 * Writes status only when it differs from what the object carries. A JSON merge patch of the
 * whole status: fields present before and absent now are sent as null so that they go.
 */
export async function writeStatusIfChanged(
  api: CustomResourceApi,
  meta: Meta,
  current: Record<string, unknown> | undefined,
  next: Record<string, unknown>,
): Promise<boolean> {
  const clean = Object.fromEntries(Object.entries(next).filter(([, v]) => v !== undefined));
  if (jsonEqual(current ?? {}, clean)) return false;
  const patch: Record<string, unknown> = { ...clean };
  for (const k of Object.keys(current ?? {})) if (!(k in clean)) patch[k] = null;
  await api.patchStatus(meta.name, meta.namespace, patch);
  return true;
}

/**
 * Finalizer changes carry the resourceVersion they were computed from: a merge patch replaces the
 * whole list, so a stale list would drop another controller's finalizer. A conflict is retried.
 */
export async function addFinalizer(api: CustomResourceApi, meta: Meta, finalizer: string): Promise<boolean> {
  const list = meta.finalizers ?? [];
  if (list.includes(finalizer)) return false;
  await api.patchMeta(meta.name, meta.namespace, { metadata: { resourceVersion: meta.resourceVersion, finalizers: [...list, finalizer] } });
  return true;
}

export async function removeFinalizer(api: CustomResourceApi, meta: Meta, finalizer: string): Promise<boolean> {
  const list = meta.finalizers ?? [];
  if (!list.includes(finalizer)) return false;
  await api.patchMeta(meta.name, meta.namespace, {
    metadata: { resourceVersion: meta.resourceVersion, finalizers: list.filter((f) => f !== finalizer) },
  });
  return true;
}
