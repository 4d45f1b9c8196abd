/** A Secret's data is base64 on the wire and in the informer's cache; these are the only decoders. */
import type * as k8s from '@kubernetes/client-node';

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
