/**
 * The shapes of objects as the informers cache them: what the API server accepted, before the
 * operator's own validation (zod) has run. Every field may be missing, so code that reads the cache
 * handles absence instead of casting. Reconcilers parse with zod before they act.
 */
import type * as k8s from '@kubernetes/client-node';
import type { z } from 'zod';
import { jsonEqual } from '../runtime/conditions.js';
import type { ipWhitelistSpec, ipWhitelistStatus } from './ipwhitelist.js';
import type { postgresServerSpec, postgresServerStatus } from './postgresserver.js';
import type { tenantDatabaseSpec, tenantDatabaseStatus } from './tenantdatabase.js';
import type { tenantDatabasePlanSpec, tenantDatabasePlanStatus } from './tenantdatabaseplan.js';
import type { tenantGroupSpec, tenantGroupStatus } from './tenantgroup.js';

export type DeepPartial<T> = T extends readonly (infer U)[]
  ? readonly DeepPartial<U>[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> | undefined }
    : T;

export interface Cached<Spec, Status> extends k8s.KubernetesObject {
  spec?: DeepPartial<Spec>;
  status?: DeepPartial<Status>;
}

export type CachedTenantDatabase = Cached<z.input<typeof tenantDatabaseSpec>, z.infer<typeof tenantDatabaseStatus>>;
export type CachedPostgresServer = Cached<z.input<typeof postgresServerSpec>, z.infer<typeof postgresServerStatus>>;
export type CachedIpWhitelist = Cached<z.input<typeof ipWhitelistSpec>, z.infer<typeof ipWhitelistStatus>>;
export type CachedTenantGroup = Cached<z.input<typeof tenantGroupSpec>, z.infer<typeof tenantGroupStatus>>;
export type CachedTenantDatabasePlan = Cached<z.input<typeof tenantDatabasePlanSpec>, z.infer<typeof tenantDatabasePlanStatus>>;

/**
 * A copy of `o` without the values that equal those of `defaults` (nested objects too; key order
 * does not matter: the API server sorts keys, zod does not). A copy rather than `delete` in place:
 * V8 turns an object that loses properties into a hash table of its own, several hundred bytes
 * each, and ten thousand cached specs (with their nested pooling and secretTemplate) held about
 * 14 MiB that way.
 */
export function withoutDefaults(o: Record<string, unknown>, defaults: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (!Object.hasOwn(defaults, k)) {
      out[k] = v;
      continue;
    }
    const d = defaults[k];
    if (jsonEqual(v, d)) continue;
    out[k] = isRecord(v) && isRecord(d) ? withoutDefaults(v, d) : v;
  }
  return out;
}

const isRecord = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);
