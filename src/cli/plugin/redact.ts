/**
 * What report does to keep credentials out of a bug report: Secrets show their keys only, and every
 * string is scrubbed of the tenant's password (as written and percent-encoded) and of anything shaped
 * like a credential (URI userinfo, password=…, SCRAM and md5 verifiers, bearer tokens, JWTs).
 */
import type * as k8s from '@kubernetes/client-node';

export const REDACTED = '[REDACTED]';

const PATTERNS: readonly [RegExp, string][] = [
  // postgresql://user:secret@host, and any other scheme's userinfo.
  [/([a-z][a-z0-9+.-]*:\/\/[^/\s:@'"]*:)[^@\s'"/]+@/gi, `$1${REDACTED}@`],
  // password=…, "password":"…", PGPASSWORD=…, pwd: …
  [/((?:^|[^a-z0-9])(?:pg)?(?:password|passwd|pwd)["']?\s*[=:]\s*["']?)[^&\s"',;}]+/gi, `$1${REDACTED}`],
  [/SCRAM-SHA-256\$[^\s'",;}]+/g, `SCRAM-SHA-256$${REDACTED}`],
  [/\bmd5[0-9a-f]{32}\b/g, REDACTED],
  [/(\bBearer\s+)[A-Za-z0-9._~+/-]+=*/g, `$1${REDACTED}`],
  [/\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, REDACTED],
];

/** The values to scrub wherever they appear: each as given and percent-encoded. */
export function secretVariants(values: readonly (string | undefined)[]): string[] {
  const out = new Set<string>();
  for (const v of values) {
    if (!v || v.length < 6) continue;
    out.add(v);
    out.add(encodeURIComponent(v));
  }
  // Longest first, so that a value containing another is replaced whole.
  return [...out].sort((a, b) => b.length - a.length);
}

export function redactText(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join(REDACTED);
  for (const [re, by] of PATTERNS) out = out.replace(re, by);
  return out;
}

/** Every string in a JSON-like value, keys included, scrubbed. */
export function redactDeep(value: unknown, secrets: readonly string[] = []): unknown {
  if (typeof value === 'string') return redactText(value, secrets);
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, secrets));
  if (value instanceof Date) return value.toISOString();
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [redactText(k, secrets), redactDeep(v, secrets)]));
  return value;
}

/** Metadata without the noise of managedFields. */
export function trimMetadata<T extends { metadata?: object | undefined }>(obj: T): T {
  if (!obj.metadata) return obj;
  const { managedFields: _drop, ...metadata } = obj.metadata as { managedFields?: unknown };
  return { ...obj, metadata };
}

/** A Secret as a report shows it: metadata and its keys with the size of each value, never a value. */
export function secretForReport(secret: k8s.V1Secret): Record<string, unknown> {
  const annotations = { ...(secret.metadata?.annotations ?? {}) };
  // kubectl apply keeps the applied manifest here, values included.
  if (annotations['kubectl.kubernetes.io/last-applied-configuration'])
    annotations['kubectl.kubernetes.io/last-applied-configuration'] = REDACTED;
  const keys = Object.fromEntries(
    Object.entries(secret.data ?? {})
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => [k, `${REDACTED} (${Buffer.from(v, 'base64').length} bytes)`]),
  );
  const { managedFields: _drop, ...metadata } = secret.metadata ?? {};
  return { apiVersion: 'v1', kind: 'Secret', metadata: { ...metadata, annotations }, type: secret.type, data: keys };
}
