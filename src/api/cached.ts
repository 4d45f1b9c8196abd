/**
 * The shapes of objects as the informers cache them: what the API server accepted, before the
 * operator's own validation (zod) has run. Every field may be missing, so code that reads the cache
 * handles absence instead of casting. Reconcilers parse with zod before they act.
 */
import type * as k8s from '@kubernetes/client-node';
import type { z } from 'zod';
import type { ipWhitelistSpec, ipWhitelistStatus } from './ipwhitelist.js';
import type { postgresServerSpec, postgresServerStatus } from './postgresserver.js';
import type { tenantDatabaseSpec, tenantDatabaseStatus } from './tenantdatabase.js';
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

/** Removes, in place, the values of `o` that equal those of `defaults` (nested objects too). */
export function dropDefaults(o: Record<string, unknown>, defaults: Record<string, unknown>): void {
  for (const k of Object.keys(o)) {
    if (!(k in defaults)) continue;
    const v = o[k];
    const d = defaults[k];
    if (JSON.stringify(v) === JSON.stringify(d)) delete o[k];
    else if (v && d && typeof v === 'object' && typeof d === 'object' && !Array.isArray(v) && !Array.isArray(d))
      dropDefaults(v as Record<string, unknown>, d as Record<string, unknown>);
  }
}
