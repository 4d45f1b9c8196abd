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
