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
const OURS = /^(tenantdb\.dev|app\.kubernetes\.io)\//;

/**
 * What the operator's Secret cache keeps of a Secret, cut down in place. The cache watches Secrets
 * by the managed-by label, which anyone who may write Secrets in a namespace can set: without this
 * a tenant could label many large Secrets of its own and fill the operator's memory. Kept: the
 * metadata the controllers read (our labels and annotations, owner references), and data only of
 * Secrets in the operator's own namespace (the pooler config, which tenants cannot write) or
 * controlled by a TenantDatabase, up to CACHED_TENANT_SECRET_BYTES. A Secret whose data was dropped
 * reads as empty, which the controllers treat as not theirs or not written yet; they read it with
 * a GET when they must.
 */
export function slimSecret(s: k8s.V1Secret, operatorNamespace: string): void {
  const md = s.metadata;
  if (md) {
    delete md.managedFields;
    if (md.labels) keep(md.labels, (k) => OURS.test(k));
    if (md.annotations) keep(md.annotations, (k, v) => OURS.test(k) && v.length <= CACHED_ANNOTATION_BYTES);
  }
  if (md?.namespace === operatorNamespace || !s.data) return;
  const tenantControlled = md?.ownerReferences?.some(
    (r) => r.controller && r.kind === 'TenantDatabase' && r.apiVersion.startsWith('tenantdb.dev/'),
  );
  let bytes = 0;
  for (const [k, v] of Object.entries(s.data)) bytes += k.length + v.length;
  if (!tenantControlled || bytes > CACHED_TENANT_SECRET_BYTES) delete s.data;
  delete s.stringData;
}

function keep(m: Record<string, string>, ok: (k: string, v: string) => boolean): void {
  for (const [k, v] of Object.entries(m)) if (!ok(k, v)) delete m[k];
}
