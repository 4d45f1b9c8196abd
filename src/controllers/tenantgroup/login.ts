/**
 * A TenantGroup's login role (spec.groupLogin, isolation Schema): one role that works in every
 * reached member's schema of the server's shared database and in no other, with a pool of its
 * own in PgBouncer and its credentials in the registry Secret. Why membership in each member's
 * role rather than grants per schema: see pg/group-sql.ts.
 *
 * The role carries the group's marker; a role of that name without it is never taken over. It is
 * granted the member roles the server's catalog verified (pooler-view's groupReach) and nothing
 * else; every other membership it has is revoked, after what it created in that member's schema is
 * handed to the schema's owner.
 */
import type { Logger } from 'pino';
import { postgresServer, type PostgresServer } from '../../api/postgresserver.js';
import { groupAlias, holderRoleName } from '../../api/naming.js';
import type { TenantGroup } from '../../api/tenantgroup.js';
import { tryLogin, type AdminCredentials, type ServerEndpoint } from '../../pg/connections.js';
import { SQLSTATE, describePgError, sqlState } from '../../pg/errors.js';
import * as gsql from '../../pg/group-sql.js';
import { generatePassword, isAcceptablePassword } from '../../pg/scram.js';
import * as sql from '../../pg/tenant-sql.js';
import type { ConditionInput } from '../../runtime/conditions.js';
import { RetryableError } from '../../runtime/errors.js';
import { endpointOf, loadAdminCredentials, loadCa, type OperatorContext } from '../context.js';
import {
  cachedShardFiles,
  cachedVerifier,
  groupReach,
  groupRoleOf,
  groupServerName,
  poolerConfigApplied,
  poolerConfigRef,
} from '../pooler-view.js';
import { clearRoleDependencies, type InDatabase } from '../tenantdatabase/provision.js';
import { namespaceAllowed } from '../tenantdatabase/resolve.js';
import { jdbcUri, postgresUri } from '../tenantdatabase/secret-data.js';

export const GROUP_LOGIN_CONDITION = 'GroupLoginReady';

export interface GroupLoginStatus {
  roleName: string;
  serverName: string;
  reached: string[];
  notReached: { name: string; reason: string }[];
}

export interface GroupLoginOutcome {
  condition: ConditionInput;
  /** Whether only a change of spec (or of another object by someone) can make it ready. */
  terminal: boolean;
  status?: GroupLoginStatus | undefined;
  /** Keys for the registry Secret, and what tenants.json says of the group. */
  keys?: Record<string, string> | undefined;
  document?: Record<string, unknown> | undefined;
  verifier?: string | undefined;
  /** What was changed on the server, for Events. */
  changes: string[];
  /** Waiting for the pooler to load the group's pool. */
  pending?: boolean | undefined;
}

const failed = (reason: string, message: string, terminal: boolean): GroupLoginOutcome => ({
  condition: { type: GROUP_LOGIN_CONDITION, status: 'False', reason, message },
  terminal,
  changes: [],
});

interface ServerSession {
  server: PostgresServer;
  ep: ServerEndpoint;
  creds: AdminCredentials;
  inDatabase: InDatabase;
}

async function openServer(ctx: OperatorContext, serverName: string): Promise<ServerSession | GroupLoginOutcome> {
  const raw = ctx.servers.get(serverName);
  const parsed = postgresServer.safeParse(raw);
  if (!raw || !parsed.success) return failed('ServerNotFound', `PostgresServer ${serverName} does not exist or is not valid`, false);
  const server = parsed.data;
  const creds = await loadAdminCredentials(ctx.clients, server, ctx.config.namespace);
  if (!creds.ok) return failed('ServerNotConnected', creds.message, false);
  const ca = await loadCa(ctx.clients, server, ctx.config.namespace);
  if (!ca.ok) return failed('ServerNotConnected', ca.message, false);
  const ep = endpointOf(server, ca.value);
  const inDatabase: InDatabase = (database, fn) => ctx.pools.withDatabase(ep, creds.value, database, fn);
  return { server, ep, creds: creds.value, inDatabase };
}

/** Drops one of the group's roles: no new logins, its sessions ended, what it created handed on. */
async function dropGroupRole(ctx: OperatorContext, s: ServerSession, role: string): Promise<void> {
  const pool = ctx.pools.get(s.server.metadata.name, s.ep, s.creds);
  await sql.disableLogin(pool, role);
  await sql.terminateRoleSessions(pool, role);
  const shared = s.server.spec.sharedDatabase;
  if (shared && (await sql.findDatabase(pool, shared))?.allowConnections)
    await s.inDatabase(shared, (db) => gsql.handOverObjects(db, role));
  const everyones = new Set([s.creds.database, ...(shared ? [shared] : [])]);
  const left = await clearRoleDependencies(pool, s.inDatabase, role, everyones);
  if (left.length) throw new RetryableError('DropFailed', `role ${role} cannot be dropped yet: ${left.join('; ')}`);
  await sql.dropRole(pool, role);
}

/**
 * Drops every role carrying this group's marker on its server (the group is deleted, or its login
 * disabled). Resolves to what was dropped; a server that no longer exists leaves nothing to do.
 */
export async function dropGroupLogin(ctx: OperatorContext, g: TenantGroup, log: Logger): Promise<string[]> {
  const serverName = groupServerName(ctx, g);
  if (!serverName || !ctx.servers.get(serverName)) return [];
  const s = await openServer(ctx, serverName);
  if ('condition' in s) throw new RetryableError(s.condition.reason, s.condition.message);
  const pool = ctx.pools.get(serverName, s.ep, s.creds);
  const dropped: string[] = [];
  for (const role of await gsql.rolesMarkedWith(pool, g.metadata.uid)) {
    await dropGroupRole(ctx, s, role);
    log.info({ role }, 'Dropped the group login role');
    dropped.push(`Dropped group login role ${role}`);
  }
  if (dropped.length) ctx.provisioned(serverName, `group:${g.metadata.namespace ?? ''}/${g.metadata.name}`);
  return dropped;
}

/** Makes the server hold the group login as the spec asks; `current` is the registry Secret's data. */
export async function ensureGroupLogin(
  ctx: OperatorContext,
  g: TenantGroup,
  current: Readonly<Record<string, string>> | undefined,
): Promise<GroupLoginOutcome> {
  const login = g.spec.groupLogin;
  const ns = g.metadata.namespace ?? '';
  const serverName = groupServerName(ctx, g);
  if (!login?.enabled) return failed('Disabled', 'groupLogin is not enabled', true);
  if (!serverName) return failed('NoServer', 'groupLogin.serverRef is not set and no PostgresServer is marked default', true);
  const s = await openServer(ctx, serverName);
  if ('condition' in s) return s;
  const { server } = s;
  const shared = server.spec.sharedDatabase;
  if (!shared)
    return failed(
      'NoSharedDatabase',
      `PostgresServer ${serverName} has no sharedDatabase: a group login works in the schemas of schema tenants (isolation Schema)`,
      true,
    );
  const admitted = namespaceAllowed(ctx, server, ns);
  const role = groupRoleOf(g);
  const pool = ctx.pools.get(serverName, s.ep, s.creds);
  if (!admitted.ok) {
    // A namespace the server no longer admits keeps no way in: its members lose their logins
    // (the tenant controller's refusal), and so does the one login that reaches all of them.
    const row = await sql.findRole(pool, role);
    if (row && sql.markerUid(row.comment) === g.metadata.uid && row.canLogin) {
      await sql.disableLogin(pool, role);
      await sql.terminateRoleSessions(pool, role);
    }
    return failed(admitted.reason, admitted.message, true);
  }
  const changes: string[] = [];
  const owner = { namespace: ns, name: g.metadata.name, uid: g.metadata.uid, server: serverName };

  // The password stays what the registry Secret holds for this role; a new role gets a new one.
  const kept = current?.['group-username'] === role ? current['group-password'] : undefined;
  const password = kept && isAcceptablePassword(kept) ? kept : generatePassword();
  const verifier = cachedVerifier(g.metadata.uid, role, password);

  const row = await sql.findRole(pool, role);
  if (!row) {
    const client = await pool.connect();
    try {
      await sql.createRole(client, role, verifier, login.connectionLimit, gsql.groupMarker(owner), true);
    } catch (err) {
      const code = sqlState(err);
      if (code === SQLSTATE.duplicateObject || code === SQLSTATE.uniqueViolation)
        throw new RetryableError('Conflict', `role ${role} was created concurrently; looking again`);
      throw err;
    } finally {
      client.release();
    }
    changes.push(`Created group login role ${role}`);
  } else if (sql.markerUid(row.comment) !== g.metadata.uid || row.superuser) {
    const other = row.comment && /tenant(?:database|group)=(\S+);/.exec(row.comment)?.[0];
    return failed(
      'Conflict',
      `role ${role} already exists and is not this TenantGroup's (${other ? other.replace(/;$/, '') : 'not managed by tenantdb'}); set groupLogin.roleName to another name`,
      true,
    );
  } else {
    await sql.ensureAdminMembership(pool, role);
    if (!row.canLogin || row.connLimit !== login.connectionLimit) {
      await sql.setRoleLogin(pool, role, true, login.connectionLimit);
      changes.push(`Set connection limit ${login.connectionLimit} on group login role ${role}`);
    }
    if (password !== kept) {
      await sql.setRolePassword(pool, role, verifier);
      changes.push(`Set a new password on group login role ${role}`);
    }
  }
  // A role left by an earlier roleName of this group goes.
  for (const old of await gsql.rolesMarkedWith(pool, g.metadata.uid)) {
    if (old === role) continue;
    await dropGroupRole(ctx, s, old);
    changes.push(`Dropped earlier group login role ${old}`);
  }
  await sql.grantSchemaTenantPrivileges(pool, shared, role);
  if (!(await gsql.searchPathStored(pool, role, shared))) await gsql.setEmptySearchPath(pool, role, shared);

  // Which member roles it is a member of: exactly the verified ones, each checked once more here.
  const reach = groupReach(ctx, g, serverName);
  const notReached = [...reach.notReached];
  const wanted = new Map<string, string>();
  for (const m of reach.reached) {
    const r = await sql.findRole(pool, m.role);
    if (r && sql.markerUid(r.comment) === m.uid && !r.superuser) wanted.set(m.role, m.name);
    else notReached.push({ name: m.name, reason: `role ${m.role} does not carry its marker on the server` });
  }
  const has = new Set((await gsql.membershipsOf(pool, role)).map((m) => m.role));
  let left = false;
  for (const r of has) {
    if (wanted.has(r)) continue;
    // What it created in that schema is the member's: handed over before access goes.
    const moved = await s.inDatabase(shared, (db) => gsql.handOverObjects(db, role, [r, holderRoleName(r)]));
    await gsql.revokeMembership(pool, r, role);
    // What it granted itself while it acted as the member (USAGE, table rights) goes too, and its
    // sessions end: one that did SET ROLE to the member keeps the member's rights until it ends.
    await s.inDatabase(shared, (db) => gsql.revokeGrantsInSchemasOf(db, role, [r, holderRoleName(r)]));
    left = true;
    changes.push(
      `Revoked role ${r} from group login role ${role}${moved ? ` (handed ${moved} object(s) it created to the schema's owner)` : ''}`,
    );
  }
  if (left) await sql.terminateRoleSessions(pool, role);
  for (const [r, name] of wanted) {
    if (has.has(r)) continue;
    await gsql.grantMembership(pool, r, role);
    changes.push(`Granted member ${name}'s role ${r} to group login role ${role}`);
  }
  if (changes.length) ctx.provisioned(serverName, `group:${ns}/${g.metadata.name}`);

  // A login check confirms the password on the server (someone may have changed it by hand).
  const ep = s.ep;
  const loginError = await tryLogin(ep, role, password, shared);
  if (loginError) {
    if (sqlState(loginError) === SQLSTATE.invalidPassword) {
      await sql.setRolePassword(pool, role, verifier);
      changes.push(`Repaired the password of group login role ${role}`);
    } else {
      throw new RetryableError('LoginCheckFailed', `group login role ${role} cannot log in: ${describePgError(loginError)}`);
    }
  }

  const host = server.spec.publicHost ?? server.spec.host;
  const alias = groupAlias(role);
  const reached = [...wanted.values()].sort();
  const schemas = reach.reached.filter((m) => wanted.has(m.role)).map((m) => m.schema);
  const pooler = server.spec.pooler;
  const keys: Record<string, string> = {
    'group-username': role,
    'group-password': password,
    'group-host': host,
    'group-port': String(server.spec.port),
    'group-database': shared,
    'group-uri': postgresUri(role, password, host, server.spec.port, shared, server.spec.sslMode),
    'group-jdbc-uri': jdbcUri(role, password, host, server.spec.port, shared, server.spec.sslMode),
    'group-schemas': schemas.join(','),
  };
  if (pooler) {
    keys['group-pooler-host'] = pooler.host;
    keys['group-pooler-port'] = String(pooler.port);
    keys['group-pooler-database'] = alias;
    keys['group-pooled-uri'] = postgresUri(role, password, pooler.host, pooler.port, alias, server.spec.sslMode);
    keys['group-pooled-jdbc-uri'] = jdbcUri(role, password, pooler.host, pooler.port, alias, server.spec.sslMode);
  }
  const document = {
    user: role,
    database: shared,
    ...(pooler ? { poolerDatabase: alias, pooledUri: keys['group-pooled-uri'] } : {}),
    uri: keys['group-uri'],
    schemas,
    members: reached,
  };
  const status: GroupLoginStatus = { roleName: role, serverName, reached, notReached: notReached.slice(0, 100) };
  const unreached = notReached.length
    ? `; not reached: ${notReached
        .slice(0, 10)
        .map((m) => `${m.name} (${m.reason})`)
        .join(', ')}${notReached.length > 10 ? `, and ${notReached.length - 10} more` : ''}`
    : '';
  const base = `role ${role} on PostgresServer ${serverName} reaches the schema(s) of ${reached.length} member(s)${unreached}`;

  // Pooled logins work once the agent beside PgBouncer has loaded the group's pool.
  if (pooler) {
    const shard = cachedShardFiles(ctx, poolerConfigRef(server, ctx.config.namespace), alias);
    const st = poolerConfigApplied(ctx, server);
    if (!shard || !`\n${shard['databases.ini']}`.includes(`\n${alias} = `) || !st.applied) {
      return {
        condition: {
          type: GROUP_LOGIN_CONDITION,
          status: 'False',
          reason: 'Pending',
          message: `${base}; waiting for the pooler to load pool ${alias}`,
        },
        terminal: false,
        status,
        keys,
        document,
        verifier,
        changes,
        pending: true,
      };
    }
  }
  return {
    condition: {
      type: GROUP_LOGIN_CONDITION,
      status: 'True',
      reason: notReached.length ? 'MembersNotReached' : 'Ready',
      message: `${base}${pooler ? `; pooled as ${alias}` : ''}`,
    },
    terminal: true,
    status,
    keys,
    document,
    verifier,
    changes,
  };
}
