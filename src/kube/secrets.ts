/** A Secret's data is base64 on the wire and in the informer's cache; these are the only decoders. */
import type * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';

/** One key of a Secret, decoded as UTF-8; undefined when the key is absent or empty. */
export function secretValue(secret: k8s.V1Secret | undefined, key: string): string | undefined {
  const v = secret?.data?.[key];
  return v ? Buffer.from(v, 'base64').toString('utf8') : undefined;
}

/** Every key of a Secret's data, decoded as UTF-8. */
export function decodeSecretData(data: Readonly<Record<string, string>> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

export function encodeSecretData(data: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]));
}

/**
 * On a Secret the operator writes: a fingerprint of the data it wrote. A watch event whose data still
 * matches is the echo of that write, not a change someone made, and wakes nobody.
 */
export const DATA_HASH_ANNOTATION = 'tenantdb.dev/data-hash';

export function dataHash(data: Readonly<Record<string, string>>): string {
  const h = createHash('sha256');
  for (const k of Object.keys(data).sort()) h.update(`${k}\u0000${data[k]}\u0000`);
  return h.digest('hex').slice(0, 16);
}

/** Whether a Secret's data is what the operator last wrote there (its fingerprint matches). */
export function isOwnWrite(s: {
  data?: Record<string, string> | undefined;
  metadata?: { annotations?: Record<string, string> | undefined } | undefined;
}): boolean {
  const want = s.metadata?.annotations?.[DATA_HASH_ANNOTATION];
  return !!want && want === dataHash(decodeSecretData(s.data));
}

/** Most bytes of Secret data the cache keeps for one tenant Secret (its keys are a few short URLs). */
export const CACHED_TENANT_SECRET_BYTES = 64 * 1024;
/** Longest annotation value the cache keeps (hashes, agent reports); longer ones are dropped. */
const CACHED_ANNOTATION_BYTES = 8 * 1024;

/** The label and annotation keys the controllers read on Secrets; the cache keeps no others. */
export interface KeptSecretMetadata {
  labels: ReadonlySet<string>;
  annotations: ReadonlySet<string>;
}

/**
 * What the operator's Secret cache keeps of a Secret, cut down in place. The cache watches Secrets
 * by the managed-by label, which anyone who may write Secrets in a namespace can set: without this
 * a tenant could label many large Secrets of its own and fill the operator's memory. Outside the
 * operator's own namespace (where tenants cannot write) a Secret keeps only the labels and
 * annotations the controllers read, by exact key (annotation values up to 8 KiB), its controller
 * owner reference alone, and data only when a TenantDatabase is that controller and the data is
 * under CACHED_TENANT_SECRET_BYTES. So a cached Secret costs a few KiB at most, whatever it holds.
 * A Secret whose data was dropped reads as empty, which the controllers treat as not theirs or not
 * written yet; they read it with a GET when they must.
 */
export function slimSecret(s: k8s.V1Secret, operatorNamespace: string, kept: KeptSecretMetadata): void {
  const md = s.metadata;
  if (!md) return;
  if (md.namespace === operatorNamespace) {
    if (md.managedFields) {
      const { managedFields: _, ...rest } = md;
      s.metadata = rest;
    }
    return;
  }
  if (s.stringData) delete s.stringData; // never in what the API server sends
  // New objects rather than `delete` of what goes: V8 turns an object that loses properties into a
  // hash table of its own, several hundred bytes for each of thousands of cached Secrets.
  const controller = md.ownerReferences?.find((r) => r.controller);
  const meta: k8s.V1ObjectMeta = {};
  for (const k of KEPT_METADATA) if (md[k] !== undefined) Object.assign(meta, { [k]: md[k] });
  if (md.labels) meta.labels = only(md.labels, (k) => kept.labels.has(k));
  if (md.annotations) meta.annotations = only(md.annotations, (k, v) => kept.annotations.has(k) && v.length <= CACHED_ANNOTATION_BYTES);
  if (controller) meta.ownerReferences = [controller];
  s.metadata = meta;
  if (!s.data) return;
  const tenantControlled = controller?.kind === 'TenantDatabase' && controller.apiVersion.startsWith('tenantdb.dev/');
  let bytes = 0;
  for (const [k, v] of Object.entries(s.data)) bytes += k.length + v.length;
  if (!tenantControlled || bytes > CACHED_TENANT_SECRET_BYTES) delete s.data;
}

/** The plain metadata fields a cached Secret keeps (labels, annotations and owners are cut down apart). */
const KEPT_METADATA = ['name', 'namespace', 'uid', 'resourceVersion', 'deletionTimestamp', 'creationTimestamp', 'generation'] as const;

function only(m: Record<string, string>, ok: (k: string, v: string) => boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) if (ok(k, v)) out[k] = v;
  return out;
}
