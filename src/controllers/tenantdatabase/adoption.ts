/**
 * Taking over what exists instead of refusing it as a Conflict: objects this operator kept for an
 * earlier TenantDatabase of the same namespace and name (a GitOps re-create of a Retain tenant), or
 * objects no tenantdb object created. Nothing is taken unless the spec names the kind of adoption
 * (spec.adoption.from) and, for unmanaged objects, names the objects themselves; a Conflict that
 * adoption could resolve says exactly what to write.
 */
import type pg from 'pg';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import * as sql from '../../pg/tenant-sql.js';
import { TerminalError } from '../../runtime/errors.js';

/** What an existing object's comment says about who may take it over. */
export type Origin =
  | { kind: 'retained'; uid: string }
  | { kind: 'unmanaged' }
  /** Another live tenant's, a tombstone, or a marker that does not name this namespace/name. */
  | { kind: 'other' };

/**
 * An object's origin, from its comment: `retained` when its marker names this tenant's namespace
 * and name with another uid that no live TenantDatabase has; `unmanaged` without a tenantdb marker.
 */
export function originOf(comment: string | null | undefined, td: Pick<TenantDatabase, 'metadata'>, liveUids: ReadonlySet<string>): Origin {
  if (!comment || !comment.startsWith('managed by tenantdb;')) return { kind: 'unmanaged' };
  if (comment.endsWith(sql.TOMBSTONE)) return { kind: 'other' };
  const owner = /; tenantdatabase=([^;\s]+);/.exec(comment)?.[1];
  const uid = sql.markerUid(comment);
  if (!uid || uid === td.metadata.uid || owner !== `${td.metadata.namespace ?? ''}/${td.metadata.name}` || liveUids.has(uid))
    return { kind: 'other' };
  return { kind: 'retained', uid };
}

/** The Conflict message for an object adoption could take over: what it is, and what to write. */
export function adoptionHint(what: string, origin: Origin, td: Pick<TenantDatabase, 'spec'>): string | undefined {
  if (origin.kind === 'retained')
    return `${what} was kept (deletionPolicy Retain) for an earlier TenantDatabase of this name (uid ${origin.uid}); to take it over with its data, set spec.adoption.from: Retained`;
  if (origin.kind === 'unmanaged') {
    const names = td.spec.isolation === 'Schema' ? 'roleName and schemaName' : 'roleName and databaseName';
    return `${what} already exists and is not managed by tenantdb; to take it over, set spec.adoption.from: Unmanaged with ${names} naming it (and spec.adoption.passwordSecretRef to keep the role's password)`;
  }
  return undefined;
}

/**
 * Refuses an unmanaged role that a tenant must not hold: a superuser, a member of other roles
 * (their privileges would come with it), a role others are members of (they would reach the
 * tenant's data), one that owns other databases or objects or privileges in them (the tenant could
 * drop or use them), or one with stored session defaults (a superuser may have set what a tenant
 * could not). Attributes past a tenant's are taken away on adoption; returns them.
 */
export async function checkAdoptableRole(db: sql.Queryable, role: string, database: string): Promise<string[]> {
  const risks = await sql.roleRisks(db, role, database);
  const refuse = (why: string): never => {
    throw new TerminalError('AdoptionRefused', `role ${role} ${why}; tenantdb will not take it over until that is changed`);
  };
  if (risks.superuser) refuse('is a superuser');
  if (risks.memberOf.length) refuse(`is a member of ${risks.memberOf.join(', ')} (REVOKE ${risks.memberOf.join(', ')} FROM ${role})`);
  if (risks.members.length) refuse(`has members: ${risks.members.join(', ')} (REVOKE ${role} FROM ${risks.members.join(', ')})`);
  if (risks.otherDatabases.length) refuse(`owns other databases: ${risks.otherDatabases.join(', ')}`);
  if (risks.dependsIn.length) refuse(`owns objects or holds privileges in other databases: ${risks.dependsIn.join(', ')}`);
  if (risks.settings) refuse(`has stored session defaults (ALTER ROLE ${role} RESET ALL, and IN DATABASE ... RESET ALL)`);
  const superOnly = risks.attributes.filter((a) => a === 'REPLICATION' || a === 'BYPASSRLS');
  if (superOnly.length)
    refuse(
      `has ${superOnly.join(' and ')}, which only a superuser can take away (ALTER ROLE ${role} ${superOnly.map((a) => `NO${a}`).join(' ')})`,
    );
  return risks.attributes;
}

/** Rewrites the markers of every object kept for the earlier tenant (uid) to name this one. */
export async function adoptRetained(pool: pg.Pool, oldUid: string, marker: string): Promise<string[]> {
  const taken: string[] = [];
  for (const o of await sql.managedObjects(pool)) {
    if (o.uid !== oldUid || o.comment.endsWith(sql.TOMBSTONE)) continue;
    if (o.kind === 'role') await sql.commentOnRole(pool, o.name, marker);
    else await sql.commentOnDatabase(pool, o.name, marker);
    taken.push(`${o.kind} ${o.name}`);
  }
  return taken;
}
