/**
 * What list and status show of a tenant, computed from objects already read: pure, so the choices
 * (which condition blocks, where the credential age comes from) are tested without a cluster.
 */
import type * as k8s from '@kubernetes/client-node';
import type { Condition } from '../../api/common.js';
import type { IpWhitelist } from '../../api/ipwhitelist.js';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import { ROTATED_ANNOTATION } from '../../controllers/tenantdatabase/secret.js';
import { secretNameOf } from './session.js';

export interface ConditionBrief {
  status: string;
  reason: string;
  message: string;
}

export interface Credentials {
  /** When the password was last written, as far as the API shows it. */
  since?: string;
  /**
   * Where `since` comes from: `status` is the operator's own record (status.passwordChangedAt);
   * `managedFields` is the last time the operator changed the Secret's
   * data (every rotation does; so may a repair), `creationTimestamp` when no such entry exists.
   */
  source?: 'status' | 'managedFields' | 'creationTimestamp';
  /** The last rotation request the Secret answers (its tenantdb.dev/rotated-for annotation). */
  rotationRequest?: string;
  /** Why the credentials could not be looked at. */
  unknown?: string;
  /** The login role the Secret holds (overlapping rotation alternates two). */
  loginRole?: string;
  /** How many rotations the credentials went through. */
  generation?: number;
  /** With overlapping rotation: the previous login role and until when it still logs in. */
  previous?: { role: string; until: string };
  /** When a scheduled rotation comes due. */
  nextRotationAt?: string;
}

export interface AllowList {
  name: string;
  cidrs: string[];
  ruleCount?: number;
  applied?: ConditionBrief;
}

export interface TenantSummary {
  namespace: string;
  name: string;
  server?: string;
  database?: string;
  role?: string;
  secretName: string;
  ready?: ConditionBrief;
  pooler?: ConditionBrief;
  /** The tenant's IpWhitelists; undefined when they could not be read. */
  allowLists?: AllowList[];
  sizeBytes?: number;
  activeConnections?: number;
  connectionLimit: number;
  credentials: Credentials;
  created?: string;
}

export function brief(conds: readonly Condition[] | undefined, type: string): ConditionBrief | undefined {
  const c = conds?.find((x) => x.type === type);
  return c ? { status: c.status, reason: c.reason, message: c.message } : undefined;
}

/** Whether a managedFields entry owns data.password (fieldsV1 is `{"f:data": {"f:password": {}}}`). */
function ownsPassword(entry: k8s.V1ManagedFieldsEntry): boolean {
  const f = entry.fieldsV1 as Record<string, unknown> | undefined;
  const data = f?.['f:data'];
  return !!data && typeof data === 'object' && 'f:password' in data;
}

/** The credential age the API makes observable, and which field it comes from. */
/**
 * From the TenantDatabase's status: when the operator last set the role's password
 * (status.passwordChangedAt) and the rotation request the role carries; undefined from operators
 * that do not write it.
 */
export function credentialsFromStatus(td: TenantDatabase): Credentials | undefined {
  const st = td.status as
    | {
        passwordChangedAt?: string;
        passwordRotatedFor?: string;
        credentials?: {
          loginRole?: string;
          generation?: number;
          previousLoginRole?: string;
          previousValidUntil?: string;
          nextRotationAt?: string;
        };
      }
    | undefined;
  if (!st?.passwordChangedAt || Number.isNaN(Date.parse(st.passwordChangedAt))) return undefined;
  const c = st.credentials;
  return {
    since: st.passwordChangedAt,
    source: 'status',
    ...(st.passwordRotatedFor ? { rotationRequest: st.passwordRotatedFor } : {}),
    ...(c?.loginRole ? { loginRole: c.loginRole } : {}),
    ...(typeof c?.generation === 'number' ? { generation: c.generation } : {}),
    ...(c?.previousLoginRole && c.previousValidUntil ? { previous: { role: c.previousLoginRole, until: c.previousValidUntil } } : {}),
    ...(c?.nextRotationAt ? { nextRotationAt: c.nextRotationAt } : {}),
  };
}

export function credentialsOf(secret: k8s.V1Secret): Credentials {
  const meta = secret.metadata;
  const rotationRequest = meta?.annotations?.[ROTATED_ANNOTATION];
  const times = (meta?.managedFields ?? [])
    .filter(ownsPassword)
    .map((e) => (e.time instanceof Date ? e.time.toISOString() : e.time ? String(e.time) : undefined))
    .filter((t): t is string => !!t && !Number.isNaN(Date.parse(t)))
    .sort();
  const latest = times.at(-1);
  const created = meta?.creationTimestamp;
  const createdText = created instanceof Date ? created.toISOString() : created ? String(created) : undefined;
  return {
    ...(latest
      ? { since: latest, source: 'managedFields' as const }
      : createdText
        ? { since: createdText, source: 'creationTimestamp' as const }
        : {}),
    ...(rotationRequest ? { rotationRequest } : {}),
  };
}

export function allowListOf(l: IpWhitelist): AllowList {
  const applied = brief(l.status?.conditions, 'Applied');
  return {
    name: l.metadata.name,
    cidrs: l.spec.entries.map((e) => e.cidr),
    ...(l.status?.ruleCount !== undefined ? { ruleCount: l.status.ruleCount } : {}),
    ...(applied ? { applied } : {}),
  };
}

export function allowListsOf(td: TenantDatabase, lists: readonly IpWhitelist[]): AllowList[] {
  return lists
    .filter((l) => l.metadata.namespace === td.metadata.namespace && l.spec.tenantDatabaseRef.name === td.metadata.name)
    .map(allowListOf)
    .sort((a, b) => (a.name < b.name ? -1 : 1));
}

export function summarize(td: TenantDatabase, lists: readonly IpWhitelist[] | undefined, credentials: Credentials): TenantSummary {
  const st = td.status;
  const ready = brief(st?.conditions, 'Ready');
  const pooler = brief(st?.conditions, 'PoolerReady');
  return {
    namespace: td.metadata.namespace ?? '',
    name: td.metadata.name,
    ...(st?.serverName ? { server: st.serverName } : td.spec.serverRef ? { server: td.spec.serverRef.name } : {}),
    ...(st?.databaseName ? { database: st.databaseName } : {}),
    ...(st?.roleName ? { role: st.roleName } : {}),
    secretName: secretNameOf(td),
    ...(ready ? { ready } : {}),
    ...(pooler ? { pooler } : {}),
    ...(lists ? { allowLists: allowListsOf(td, lists) } : {}),
    ...(st?.sizeBytes !== undefined ? { sizeBytes: st.sizeBytes } : {}),
    ...(st?.activeConnections !== undefined ? { activeConnections: st.activeConnections } : {}),
    connectionLimit: td.spec.connectionLimit,
    credentials,
    ...(td.metadata.creationTimestamp ? { created: td.metadata.creationTimestamp } : {}),
  };
}

/** A condition in a table cell: True, or False (Reason). */
export function conditionCell(c: ConditionBrief | undefined): string {
  if (!c) return '-';
  return c.status === 'True' ? 'True' : `${c.status} (${c.reason})`;
}
