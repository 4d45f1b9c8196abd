import type { Logger } from 'pino';
import { API_VERSION } from '../../api/common.js';
import { TENANT_DATABASE } from '../../api/kinds.js';
import type { PostgresServer } from '../../api/postgresserver.js';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import { customResourceApi } from '../../kube/client.js';
import { SQLSTATE, describePgError, sqlState } from '../../pg/errors.js';
import * as sql from '../../pg/tenant-sql.js';
import { removeFinalizer } from '../../runtime/status.js';
import { FINALIZER, endpointOf, loadAdminCredentials, loadCa, type OperatorContext } from '../context.js';
import { claimOfDatabase, claimOfRole } from './provision.js';
import { resolveServer } from './resolve.js';

/**
 * Runs the deletion policy, then lets the object go. Retain: login disabled, sessions ended, data
 * kept. Delete: sessions ended, databases and role dropped. Either way only what carries this
 * TenantDatabase's marker is touched. The Secret goes with its owner (garbage collection).
 */
export async function finalizeTenant(ctx: OperatorContext, td: TenantDatabase, servers: PostgresServer[], log: Logger): Promise<void> {
  const api = customResourceApi(ctx.clients, TENANT_DATABASE);
  if (!(td.metadata.finalizers ?? []).includes(FINALIZER)) return;
  const ref = { apiVersion: API_VERSION, kind: 'TenantDatabase', name: td.metadata.name, namespace: td.metadata.namespace, uid: td.metadata.uid };
  const role = td.status?.roleName;
  const database = td.status?.databaseName;
  const serverName = td.status?.serverName;
  const server = serverName ? servers.find((s) => s.metadata.name === serverName) : undefined;

  if (role && database && serverName && !server) {
    log.warn({ server: serverName }, 'PostgresServer is gone; releasing the TenantDatabase without touching the server');
    ctx.events.warning(ref, 'ServerGone', `PostgresServer ${serverName} no longer exists; database ${database} and role ${role} were not cleaned up`);
  } else if (role && database && server) {
    const creds = await loadAdminCredentials(ctx.clients, server);
    if (!creds.ok) throw new Error(`cannot clean up: ${creds.message}`);
    const ca = await loadCa(ctx.clients, server);
    if (!ca.ok) throw new Error(`cannot clean up: ${ca.message}`);
    const pool = ctx.pools.get(server.metadata.name, endpointOf(server, ca.value), creds.value);
    const roleClaim = await claimOfRole(pool, role, td.metadata.uid);
    const ours = roleClaim.state === 'ours';
    if (ours) {
      await sql.disableLogin(pool, role);
      const ended = await sql.terminateRoleSessions(pool, role);
      const msg = `Disabled login of role ${role}${ended ? ` and ended ${ended} session(s)` : ''}`;
      log.info(msg);
      ctx.events.normal(ref, 'LoginDisabled', msg);
    }
    if (td.spec.deletionPolicy === 'Delete') {
      for (const db of [database, `${database}_shadow`]) {
        const claim = await claimOfDatabase(pool, db, role, td.metadata.uid, ours);
        if (claim.state !== 'ours') continue;
        await sql.dropDatabase(pool, db);
        log.info({ database: db }, 'Dropped database');
        ctx.events.normal(ref, 'DatabaseDeleted', `Dropped database ${db}`);
      }
      if (ours) {
        try {
          await sql.dropRole(pool, role);
        } catch (err) {
          if (sqlState(err) === SQLSTATE.dependentObjectsStillExist) {
            const message = `role ${role} still owns objects or holds privileges elsewhere: ${describePgError(err)}`;
            ctx.events.warning(ref, 'DeleteBlocked', message);
            throw new Error(message);
          }
          throw err;
        }
        log.info({ role }, 'Dropped role');
        ctx.events.normal(ref, 'RoleDeleted', `Dropped role ${role}`);
      }
    } else {
      ctx.events.normal(ref, 'Retained', `Kept database ${database} and role ${role} (deletionPolicy Retain)`);
    }
  }
  await removeFinalizer(api, td.metadata, FINALIZER);
}
