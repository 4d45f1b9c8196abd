/**
 * Which login roles of a tenant may log in, and with what, as its Secret records it. With the
 * Overlap rotation strategy a tenant has two login roles, its own role and a twin (`<role>-2`) that
 * acts as it; the Secret's `username` names the one in use, and two annotations carry what the
 * pooler needs beside it: the login a rotation is switching to (before the Secret switches) and the
 * previous one with its deadline (after). Pure functions of the Secret and the clock: the tenant's
 * reconcile and its server's pooler render read the same state.
 *
 * The Secret is the tenant's own (its namespace may write it), so every value read here is checked:
 * a role outside the tenant's two login roles is ignored, and a verifier must be one.
 */
import { durationSeconds } from '../../api/common.js';
import { legacyTwinRoleNames, twinRoleName } from '../../api/naming.js';
import { VERIFIER } from '../../pooler/validate.js';

/** On the Secret: the login that was in use before the last rotation, until its grace period ends. */
export const PREVIOUS_LOGIN_ANNOTATION = 'tenantdb.dev/previous-login';
/** On the Secret: the login a rotation is switching to, shown to the pooler before the Secret switches. */
export const NEXT_LOGIN_ANNOTATION = 'tenantdb.dev/next-login';
/** On the Secret: when its password was last rotated (on demand or on schedule), RFC 3339. */
export const ROTATED_AT_ANNOTATION = 'tenantdb.dev/rotated-at';
/** On the Secret: how many times its password was rotated. */
export const GENERATION_ANNOTATION = 'tenantdb.dev/credential-generation';

export interface LoginRoles {
  /** The tenant's role: it owns the tenant's objects and is one of the two logins. */
  group: string;
  /** The second login role, a member of the group role that acts as it. */
  twin: string;
}

/**
 * A tenant's two login roles. `owned` holds the roles that carry the tenant's marker: one named as
 * earlier releases named the twin (`<role>_2`, legacyTwinRoleNames) stays its twin; otherwise the
 * twin is `<role>-2`. A role of such a name that is anyone else's is never one of this tenant's logins.
 */
export function loginRolesOf(role: string, owned?: ReadonlySet<string>): LoginRoles {
  const legacy = owned && legacyTwinRoleNames(role).find((r) => owned.has(r));
  return { group: role, twin: legacy ?? twinRoleName(role) };
}

export const isLoginOf = (l: LoginRoles, role: unknown): role is string => role === l.group || role === l.twin;
export const otherLogin = (l: LoginRoles, role: string): string => (role === l.group ? l.twin : l.group);

/** The login in use: the Secret's `username` when it is one of the tenant's two, else the tenant role. */
export function activeLogin(data: Readonly<Record<string, string>> | undefined, l: LoginRoles): string {
  const user = data?.username;
  return isLoginOf(l, user) ? user : l.group;
}

export interface PreviousLogin {
  role: string;
  /** Epoch ms: the end of its grace period (the role's VALID UNTIL). */
  until: number;
  verifier: string;
}

export interface NextLogin {
  role: string;
  verifier: string;
}

/** Times from the Secret (its namespace may write them) within years 2000 to 2200, else none. */
const saneTime = (t: number): number | undefined => (Number.isFinite(t) && t >= 946_684_800_000 && t <= 7_258_118_400_000 ? t : undefined);

function json(text: string | undefined): Record<string, unknown> | undefined {
  if (!text || text.length > 1024) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The previous login the Secret's annotation names, when it is the tenant's other login role. */
export function previousLogin(
  annotations: Readonly<Record<string, string>> | undefined,
  l: LoginRoles,
  active: string,
): PreviousLogin | undefined {
  const v = json(annotations?.[PREVIOUS_LOGIN_ANNOTATION]);
  if (!v || !isLoginOf(l, v.role) || v.role === active) return undefined;
  const until = typeof v.until === 'string' ? saneTime(Date.parse(v.until)) : undefined;
  if (until === undefined || typeof v.verifier !== 'string' || !VERIFIER.test(v.verifier)) return undefined;
  return { role: v.role, until, verifier: v.verifier };
}

/** The login a rotation is switching to, when it is the tenant's other login role. */
export function nextLogin(annotations: Readonly<Record<string, string>> | undefined, l: LoginRoles, active: string): NextLogin | undefined {
  const v = json(annotations?.[NEXT_LOGIN_ANNOTATION]);
  if (!v || !isLoginOf(l, v.role) || v.role === active || typeof v.verifier !== 'string' || !VERIFIER.test(v.verifier)) return undefined;
  return { role: v.role, verifier: v.verifier };
}

export const formatPrevious = (p: PreviousLogin): string =>
  JSON.stringify({ role: p.role, until: new Date(p.until).toISOString(), verifier: p.verifier });
export const formatNext = (n: NextLogin): string => JSON.stringify({ role: n.role, verifier: n.verifier });

/** The time (epoch ms) a scheduled rotation is due, or undefined without a schedule or a known last rotation. */
export function rotationDueAt(interval: string | undefined, lastRotated: number | undefined): number | undefined {
  const s = interval === undefined ? undefined : durationSeconds(interval);
  if (s === undefined || lastRotated === undefined || !Number.isFinite(lastRotated)) return undefined;
  return lastRotated + s * 1000;
}

/** When the password was last set by rotation or creation: the Secret's record, else status, else creation. */
export function lastRotatedAt(
  annotations: Readonly<Record<string, string>> | undefined,
  passwordChangedAt: string | undefined,
  created: string | Date | undefined,
): number | undefined {
  for (const c of [annotations?.[ROTATED_AT_ANNOTATION], passwordChangedAt, created instanceof Date ? created.toISOString() : created]) {
    const t = c ? saneTime(Date.parse(c)) : undefined;
    if (t !== undefined) return t;
  }
  return undefined;
}

/** The credential generation the Secret records (0 before the first rotation). */
export function credentialGeneration(annotations: Readonly<Record<string, string>> | undefined): number {
  const n = Number(annotations?.[GENERATION_ANNOTATION] ?? '0');
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/**
 * The logins the pooler holds for a tenant beside the one in use: the previous one until its
 * deadline, and the next one while a rotation switches to it. Roles must be the tenant's own on the
 * server (`owned`: the catalog shows its marker on them).
 */
export function extraLogins(
  annotations: Readonly<Record<string, string>> | undefined,
  l: LoginRoles,
  active: string,
  owned: (role: string) => boolean,
  now: number,
): { role: string; verifier: string }[] {
  const out: { role: string; verifier: string }[] = [];
  const prev = previousLogin(annotations, l, active);
  if (prev && prev.until > now && owned(prev.role)) out.push({ role: prev.role, verifier: prev.verifier });
  const next = nextLogin(annotations, l, active);
  if (next && owned(next.role) && !out.some((o) => o.role === next.role)) out.push(next);
  return out;
}

/**
 * When credential work next comes due: the end of the previous login's grace period while one runs
 * (nothing else can happen before it: a rotation waits for it), else the scheduled rotation.
 */
export function credentialDueAt(prevUntil: number | undefined, scheduledAt: number | undefined): number | undefined {
  return prevUntil ?? scheduledAt;
}
