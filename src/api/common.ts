import { isIP } from 'node:net';
import { z } from 'zod';

export const GROUP = 'tenantdb.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** A CEL rule carried into the CRD, so `kubectl apply` refuses what the controller would refuse. */
export interface CelRule {
  rule: string;
  message: string;
}
export const cel = (...rules: CelRule[]) => ({ 'x-kubernetes-validations': rules });

/** PostgreSQL identifiers the operator creates: lower case, unquoted-safe, at most 63 bytes (NAMEDATALEN-1). */
export const PG_IDENTIFIER = /^[a-z_][a-z0-9_]*$/;
export const pgIdentifier = (what: string) =>
  z
    .string()
    .min(1)
    .max(63, `${what} must be at most 63 bytes`)
    .regex(PG_IDENTIFIER, `${what} must match [a-z_][a-z0-9_]* (lower case letters, digits, underscores)`);

/** Extension names may contain hyphens (uuid-ossp); they are always quoted in SQL. */
export const extensionName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z_][a-z0-9_-]*$/, 'extension names must match [a-z_][a-z0-9_-]*');

/** A Kubernetes object name (DNS-1123 subdomain). */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const k8sName = (what: string) => z.string().min(1).max(253).regex(DNS_SUBDOMAIN, `${what} must be a lower case DNS-1123 name`);

/** A host name or IP address, as libpq and PgBouncer accept it. */
export const hostName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/, 'must be a host name or an IP address');

export const port = z.number().int().min(1).max(65535);

/**
 * A CIDR as the CRD's CEL `isCIDR` takes it (Go's netip.ParsePrefix, as Kubernetes uses it), so zod
 * and the API server agree: no IPv6 zone, no leading zeros in the prefix length or in an IPv4 part,
 * and no IPv4-mapped IPv6 address.
 */
export function isCidr(value: string): boolean {
  const slash = value.indexOf('/');
  if (slash < 0) return false;
  const addr = value.slice(0, slash);
  const bits = value.slice(slash + 1);
  if (!/^(0|[1-9]\d{0,2})$/.test(bits)) return false;
  const family = isIP(addr);
  if (family === 0 || addr.includes('%')) return false;
  if (family === 6 && addr.includes('.')) {
    if (!/^(?:(?:0|[1-9]\d{0,2})\.){3}(?:0|[1-9]\d{0,2})$/.test(addr.slice(addr.lastIndexOf(':') + 1))) return false;
  }
  if (family === 6 && /^\[::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}\]$/.test(new URL(`http://[${addr}]/`).hostname)) return false;
  const n = Number(bits);
  return family === 4 ? n <= 32 : n <= 128;
}

const DURATION = /^([1-9][0-9]{0,6})(s|m|h)$/;

/** Seconds in a duration of the form 90s, 15m or 720h (a subset of Go's, which CEL's duration() reads). */
export function durationSeconds(value: string): number | undefined {
  const m = DURATION.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
}

const spell = (seconds: number) => (seconds % 3600 === 0 ? `${seconds / 3600}h` : seconds % 60 === 0 ? `${seconds / 60}m` : `${seconds}s`);

/** A duration such as 90s, 15m or 720h, from `min` to `max` seconds; the CRD checks the same with CEL. */
export const duration = (what: string, min: number, max: number) => {
  const message = `${what} must be a duration such as 90s, 15m or 720h, from ${spell(min)} to ${spell(max)}`;
  return z
    .string()
    .max(8)
    .regex(DURATION, message)
    .refine((v) => {
      const s = durationSeconds(v);
      return s !== undefined && s >= min && s <= max;
    }, message)
    .meta(cel({ rule: `duration(self) >= duration('${spell(min)}') && duration(self) <= duration('${spell(max)}')`, message }));
};

/** A PostgreSQL time setting: a number with an optional unit (30s, 1500, 5min). */
export const pgTime = (what: string) =>
  z
    .string()
    .max(16)
    .regex(/^(0|[1-9][0-9]{0,8})(us|ms|s|min|h|d)?$/, `${what} must be a number with an optional unit (us, ms, s, min, h, d), such as 30s`);

/** A PostgreSQL memory setting: a number with an optional unit (64MB, 1GB, 4096). */
export const pgMemory = (what: string) =>
  z
    .string()
    .max(16)
    .regex(/^[1-9][0-9]{0,9}(kB|MB|GB|TB)?$/, `${what} must be a number with an optional unit (kB, MB, GB, TB), such as 64MB`);

export const cidr = z
  .string()
  .max(64)
  .refine(isCidr, { message: 'must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32' })
  .meta(cel({ rule: 'isCIDR(self)', message: 'must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32' }));

export const secretRef = z
  .object({
    namespace: k8sName('namespace').max(63).describe('Namespace of the Secret.'),
    name: k8sName('name').describe('Name of the Secret.'),
  })
  .describe('A reference to a Secret.');

export const condition = z
  .object({
    type: z.string().max(316).describe('Type of the condition, e.g. Ready.'),
    status: z.enum(['True', 'False', 'Unknown']).describe('True, False or Unknown.'),
    reason: z.string().max(1024).describe('A CamelCase word saying why the condition is what it is.'),
    message: z.string().max(32768).describe('A sentence for a person: what is wrong and what to do about it.'),
    lastTransitionTime: z.string().describe('When the status last changed (RFC 3339).'),
    observedGeneration: z.number().int().optional().describe('The generation the condition was computed for.'),
  })
  .describe('A status condition in the Kubernetes convention.');
export type Condition = z.infer<typeof condition>;

export const conditions = z
  .array(condition)
  .max(32)
  .optional()
  .describe("The latest observations of the object's state.")
  .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] });

export const objectMeta = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  uid: z.string(),
  generation: z.number().int().optional(),
  resourceVersion: z.string(),
  deletionTimestamp: z.string().optional(),
  finalizers: z.array(z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  creationTimestamp: z.string().optional(),
});
export type ObjectMeta = z.infer<typeof objectMeta>;

/** A Kubernetes label selector (matchLabels and matchExpressions, ANDed). */
export const labelSelector = z
  .object({
    matchLabels: z
      .record(z.string().max(317), z.string().max(63))
      .optional()
      .describe('Labels the object must carry with exactly these values.'),
    matchExpressions: z
      .array(
        z
          .object({
            key: z.string().min(1).max(317).describe('The label key.'),
            operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']).describe('In, NotIn, Exists or DoesNotExist.'),
            values: z.array(z.string().max(63)).max(64).optional().describe('Values for In and NotIn.'),
          })
          .describe('One requirement on a label.'),
      )
      .max(16)
      .optional()
      .describe('Requirements on labels, all of which must hold.'),
  })
  .describe('A label selector; an empty selector matches everything.');
export type LabelSelector = z.infer<typeof labelSelector>;

/**
 * Whether labels satisfy a selector, with the API server's semantics. client-node has no matcher
 * and the semantics fit in a few lines, so it is written here.
 */
export function matchesSelector(sel: LabelSelector, labels: Readonly<Record<string, string>> | undefined): boolean {
  const l = labels ?? {};
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(l, e.key);
    const val = l[e.key];
    const values = e.values ?? [];
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
    if (e.operator === 'In' && (!has || !values.includes(val ?? ''))) return false;
    if (e.operator === 'NotIn' && has && values.includes(val ?? '')) return false;
  }
  return true;
}
