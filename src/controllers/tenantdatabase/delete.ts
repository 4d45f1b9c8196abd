import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { TENANT_DATABASE } from '../../api/kinds.js';
import { MAX_SCHEMA, deriveIdentifier, shadowDatabaseName } from '../../api/naming.js';
import type { PostgresServer } from '../../api/postgresserver.js';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import { customResourceApi } from '../../kube/client.js';
import { SQLSTATE, describePgError, sqlState } from '../../pg/errors.js';
import * as sql from '../../pg/tenant-sql.js';
import { RetryableError } from '../../runtime/errors.js';
import { removeFinalizer } from '../../runtime/status.js';
import { FINALIZER, endpointOf, loadAdminCredentials, loadCa, tenantRef, type OperatorContext } from '../context.js';
import { claimOfDatabase, clearRoleDependencies, markIfUnmarked, type InDatabase } from './provision.js';
import { resolveServer } from './resolve.js';

/**
 * Runs the deletion policy, then lets the object go. Retain: login disabled, sessions ended, data
 * kept. Delete: sessions ended, databases and role dropped. Either way only what carries this
 * TenantDatabase's marker is touched, and it is found by that marker, not by what status says: a
 * role created before its name reached status is found all the same. The Secret goes with its
 * owner (garbage collection).
 */
export async function finalizeTenant(ctx: OperatorContext, tdIn: TenantDatabase, servers: PostgresServer[], log: Logger): Promise<void> {
  let td = tdIn;
  const api = customResourceApi(ctx.clients, TENANT_DATABASE);
  if (!(td.metadata.finalizers ?? []).includes(FINALIZER)) return;
  const ref = tenantRef(td);
  if (td.spec.managementPolicy === 'Observe') {
    // Observed: the data is not the operator's to drop (deletionPolicy Delete does not run), but
    // what it made for this object earlier (the finalizer says it was managed once) must not stay
    // a login no object governs: Retain's floor runs, login off and sessions ended, data kept.
    td = { ...td, spec: { ...td.spec, deletionPolicy: 'Retain' } };
    ctx.events.normal(
      ref,
      'Released',
      'managementPolicy Observe: data kept whatever the deletionPolicy; the login roles made earlier lose their login',
    );
  }

  // Where this tenant may have created something: the server status names and the one its spec resolves to.
  const names = new Set<string>();
  if (td.status?.serverName) names.add(td.status.serverName);
  // Only when status names none (the object may never have had its first status written): an
  // unrelated default server being down must not hold up deletions.
  const resolved = td.status?.serverName ? undefined : resolveServer(td, servers);
  if (resolved?.ok) names.add(resolved.value.metadata.name);
  for (const serverName of [...names].sort()) {
    const server = servers.find((s) => s.metadata.name === serverName);
    if (!server && ctx.servers.get(serverName)) {
      // It exists but its spec is not valid now: it is not gone, and its roles must not keep their
      // login because someone broke its spec. The finalizer stays until it can act.
      throw new RetryableError(
        'ServerInvalid',
        `PostgresServer ${serverName} has an invalid spec; the deletion policy runs once it is fixed`,
      );
    }
    if (!server) {
      if (serverName === td.status?.serverName && td.status?.roleName) {
        log.warn({ server: serverName }, 'PostgresServer is gone; releasing the TenantDatabase without touching the server');
        ctx.events.warning(
          ref,
          'ServerGone',
          `PostgresServer ${serverName} no longer exists; database ${td.status.databaseName ?? '?'} and role ${td.status.roleName} were not cleaned up`,
        );
      }
      continue;
    }
    await finalizeOn(ctx, td, server, ref, log);
  }
  await removeFinalizer(api, td.metadata, FINALIZER);
}

async function finalizeOn(
  ctx: OperatorContext,
  td: TenantDatabase,
  server: PostgresServer,
  ref: Parameters<OperatorContext['events']['normal']>[0],
  log: Logger,
): Promise<void> {
  const serverName = server.metadata.name;
  const creds = await loadAdminCredentials(ctx.clients, server, ctx.config.namespace);
  if (!creds.ok)
    throw new RetryableError('ServerNotReady', `cannot run the deletion policy on PostgresServer ${serverName}: ${creds.message}`);
  const ca = await loadCa(ctx.clients, server, ctx.config.namespace);
  if (!ca.ok) throw new RetryableError('ServerNotReady', `cannot run the deletion policy on PostgresServer ${serverName}: ${ca.message}`);
  const ep = endpointOf(server, ca.value);
  const pool = ctx.pools.get(serverName, ep, creds.value);
  const uid = td.metadata.uid;
  let marked: sql.ManagedObject[];
  try {
    marked = (await sql.managedObjects(pool)).filter((o) => o.uid === uid);
  } catch (err) {
    throw new RetryableError(
      'ServerUnreachable',
      `cannot reach PostgresServer ${serverName} to run the deletion policy: ${describePgError(err)}`,
    );
  }
  const roles = marked.filter((o) => o.kind === 'role').map((o) => o.name);
  const databases = new Set(marked.filter((o) => o.kind === 'database').map((o) => o.name));
  const schemaTenant = td.spec.isolation === 'Schema';
  const shared = schemaTenant ? server.spec.sharedDatabase : undefined;
  const schema = schemaTenant
    ? (td.spec.schemaName ?? deriveIdentifier(td.metadata.namespace ?? '', td.metadata.name, MAX_SCHEMA))
    : undefined;
  // A database created just before a crash has no marker yet, but belongs to our marked role: marked
  // now (unless someone is creating it right now), whatever the policy, or nothing would ever
  // recognise it again (not the next tenant of that name, not maxTenants, not a cleanup).
  const owner = { namespace: td.metadata.namespace ?? '', name: td.metadata.name, uid, server: serverName };
  for (const role of schemaTenant ? [] : roles) {
    for (const base of [td.spec.databaseName, deriveIdentifier(td.metadata.namespace ?? '', td.metadata.name)]) {
      for (const db of base ? [base, shadowDatabaseName(base)] : []) {
        if (!sql.fitsIdentifier(db) || databases.has(db)) continue;
        const claim = await claimOfDatabase(pool, db, role, uid, true);
        if (claim.state === 'ours' && (!claim.unmarked || (await markIfUnmarked(pool, db, role, owner)))) databases.add(db);
      }
    }
  }

  for (const role of roles) {
    await sql.disableLogin(pool, role);
    const ended = await sql.terminateRoleSessions(pool, role);
    const msg = `Disabled login of role ${role}${ended ? ` and ended ${ended} session(s)` : ''}`;
    log.info(msg);
    ctx.events.normal(ref, 'LoginDisabled', msg);
  }
  if (td.spec.deletionPolicy !== 'Delete') {
    const what = [
      ...[...databases].sort().map((d) => `database ${d}`),
      ...(schema && shared && roles.length ? [`schema ${schema} in ${shared}`] : []),
      ...roles.map((r) => `role ${r}`),
    ].join(', ');
    if (what) ctx.events.normal(ref, 'Retained', `Kept ${what} (deletionPolicy Retain)`);
    return;
  }
  for (const db of [...databases].sort()) {
    await sql.dropDatabase(pool, db);
    log.info({ database: db }, 'Dropped database');
    ctx.events.normal(ref, 'DatabaseDeleted', `Dropped database ${db}`);
  }
  const inDatabase: InDatabase = (database, fn) => ctx.pools.withDatabase(ep, creds.value, database, fn);
  if (schema && shared && roles.length && (await sql.findDatabase(pool, shared))?.allowConnections) {
    // Only a schema our role owns: its owner alone could have handed it to anyone else.
    const dropped = await inDatabase(shared, async (db) => {
      const row = await sql.findSchema(db, schema);
      if (!row || !roles.includes(row.owner)) return false;
      const drop = async () => {
        try {
          await sql.dropSchema(db, schema);
        } catch (err) {
          // Too many objects for one transaction's locks: in pieces.
          if (sqlState(err) !== SQLSTATE.outOfMemory) throw err;
          await sql.dropSchemaInBatches(db, schema);
        }
      };
      try {
        await drop();
      } catch (err) {
        if (sqlState(err) !== SQLSTATE.lockNotAvailable) throw err;
        // Another tenant may hold locks on this schema's relations without any privilege on them
        // (pg_partition_tree takes one) in a transaction it leaves open: its sessions that do are
        // ended, never anyone else's, and the drop runs once more.
        const ended = await sql.terminateSchemaLockHolders(db, schema);
        log.warn({ schema, ended }, 'Ended the sessions of tenant roles holding locks on the schema');
        await drop();
      }
      return true;
    });
    if (dropped) {
      log.info({ schema, database: shared }, 'Dropped schema');
      ctx.events.normal(ref, 'SchemaDeleted', `Dropped schema ${schema} of database ${shared}`);
    }
  }
  const everyones = new Set([creds.value.database, ...(server.spec.sharedDatabase ? [server.spec.sharedDatabase] : [])]);
  for (const role of roles) {
    // Another tenant may grant the role something again between DROP OWNED and DROP ROLE (they run
    // in different databases): a few rounds, then what is left is reported.
    for (let round = 1; ; round++) {
      const problems = await clearRoleDependencies(pool, inDatabase, role, everyones);
      if (problems.length) log.warn({ role, problems }, 'Some dependencies on the role could not be cleared');
      try {
        await sql.dropRole(pool, role);
        break;
      } catch (err) {
        if (sqlState(err) !== SQLSTATE.dependentObjectsStillExist) throw err;
        if (round < 3) continue;
        // Something keeps a dependency alive (another tenant granting the role something again and
        // again): the role leaves under another name, login off, and is dropped by a later re-check
        // of the server once nothing depends on it. Nobody can pin a deletion.
        const detail = (err as { detail?: string }).detail?.replace(/\s+/g, ' ');
        const tomb = tombstoneName(role);
        const comment =
          marked.find((o) => o.kind === 'role' && o.name === role)?.comment ??
          sql.ownerMarker({ namespace: td.metadata.namespace ?? '', name: td.metadata.name, uid });
        await sql.tombstoneRole(pool, role, tomb, comment);
        const message = `role ${role} could not be dropped (${detail ?? describePgError(err)}${problems.length ? `; ${problems.join('; ')}` : ''}); renamed to ${tomb} with login off, to be dropped once nothing depends on it`;
        log.warn({ role, tomb }, message);
        ctx.events.warning(ref, 'RoleTombstoned', message);
        break;
      }
    }
    log.info({ role }, 'Dropped role');
    ctx.events.normal(ref, 'RoleDeleted', `Dropped role ${role}`);
  }
}

/** A name for a role that leaves: its prefix and a hash, at most 63 bytes. */
export function tombstoneName(role: string): string {
  return `${role.slice(0, 40)}_gone_${createHash('sha256').update(`${role}/${Date.now()}`).digest('hex').slice(0, 12)}`;
}
