import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import type pg from 'pg';
import type { Logger } from 'pino';
import { API_VERSION } from '../../api/common.js';
import { TENANT_DATABASE } from '../../api/kinds.js';
import { parseCachedServer, type PostgresServer } from '../../api/postgresserver.js';
import { tenantDatabase, type TenantDatabase, type TenantDatabaseStatus } from '../../api/tenantdatabase.js';
import { customResourceApi, httpStatus } from '../../kube/client.js';
import { decodeSecretData, secretValue } from '../../kube/secrets.js';
import { asTenant, tryLogin, tryPooledLogin, type AdminCredentials, type ServerEndpoint } from '../../pg/connections.js';
import { generatePassword, isAcceptablePassword } from '../../pg/scram.js';
import { adoptRetained, adoptionHint, checkAdoptableRole, originOf } from './adoption.js';
import { durationSeconds } from '../../api/common.js';
import {
  GENERATION_ANNOTATION,
  NEXT_LOGIN_ANNOTATION,
  PREVIOUS_LOGIN_ANNOTATION,
  ROTATED_AT_ANNOTATION,
  activeLogin,
  credentialDueAt as credentialDueAtOf,
  credentialGeneration,
  formatNext,
  formatPrevious,
  lastRotatedAt,
  loginRolesOf,
  otherLogin,
  previousLogin,
  rotationDueAt,
  type LoginRoles,
  type PreviousLogin,
} from './credentials.js';
import { runSteps, step, type Step } from '../../runtime/steps.js';
import type { ReadOnlyMode } from '../../pg/read-only.js';
import { Recorder } from '../../pg/recording.js';
import { SQLSTATE, describePgError, sqlState } from '../../pg/errors.js';
import * as sql from '../../pg/tenant-sql.js';
import type { ConditionInput } from '../../runtime/conditions.js';
import { periodicDelay, type ReconcileInfo, type ReconcileResult } from '../../runtime/controller.js';
import { RetryableError, TerminalError, errorMessage } from '../../runtime/errors.js';
import { cutAt, messageEndingWith } from '../../runtime/events.js';
import { addFinalizer, commitStatus, transitioned } from '../../runtime/status.js';
import {
  DEFAULT_POOLER_ADMIN_USER,
  accessState,
  accessTarget,
  cachedVerifier,
  forgetTenant,
  loadPoolerAdmin,
  verifierFor,
  poolerConfigApplied,
  sharedPoolList,
} from '../pooler-view.js';
import { FINALIZER, endpointOf, loadAdminCredentials, loadCa, splitKey, tenantRef, type OperatorContext } from '../context.js';
import { finalizeTenant } from './delete.js';
import { gateOnMigration } from '../migrations/tenant.js';
import { defaultServerName } from '../watches.js';
import {
  claimOfSchema,
  databaseClaimOf,
  dropShadowIfOurs,
  ensureAccessMode,
  ensureDatabase,
  ensureExtensions,
  ensureHolderRole,
  ensureRole,
  ensureSchemaTenant,
  ensureRoleSettings,
  ensureTwinRole,
  ensureTwinSearchPath,
  roleClaimOf,
  NotThereAfterCreate,
  type Claim,
  type ExtensionOutcome,
  type InDatabase,
  type Owner,
} from './provision.js';
import { holderRoleName, legacyTwinRoleNames, shadowDatabaseName, twinRoleName } from '../../api/naming.js';
import {
  namespaceAllowed,
  namesMatchMarkers,
  ownDatabases,
  placeOnServer,
  resolveNames,
  resolveServer,
  type TenantNames,
} from './resolve.js';
import { applySecretTemplate, renderSecretData } from './secret-data.js';
import { ROTATED_ANNOTATION, ROTATE_ANNOTATION, choosePassword, ownedBy, readSecret, writeSecret, type SecretState } from './secret.js';

function parsedServers(ctx: OperatorContext, log: Logger): PostgresServer[] {
  const out: PostgresServer[] = [];
  for (const raw of ctx.servers.list()) {
    const r = parseCachedServer(raw);
    if (r.success) out.push(r.data);
    else log.debug({ server: raw.metadata?.name }, 'Skipping a PostgresServer that does not parse');
  }
  return out;
}

type Provisioned = {
  outcome: Outcome;
  names?: TenantNames;
  serverName?: string;
  soon?: boolean;
  retryMs?: number | undefined;
  /** A new tenant's Provisioned Event, held back to be one Event with its Ready (see saveStatus). */
  provisionedEvent?: string | undefined;
};

interface Outcome {
  conditions: ConditionInput[];
  status: Partial<TenantDatabaseStatus>;
  /** Whether a not-ready result needs a change by someone (Stalled) rather than time (Reconciling). */
  terminal: boolean;
}

function notReady(reason: string, message: string, terminal: boolean, extra: ConditionInput[] = []): Outcome {
  return { conditions: [...extra, { type: 'Ready', status: 'False', reason, message }], status: {}, terminal };
}

export async function reconcileTenantDatabase(
  ctx: OperatorContext,
  key: string,
  log: Logger,
  info: ReconcileInfo = { periodic: false },
): Promise<ReconcileResult> {
  const { namespace, name } = splitKey(key);
  const api = customResourceApi(ctx.clients, TENANT_DATABASE);
  const raw = ctx.tenants.get(name, namespace);
  if (!raw) return {};
  const parsed = tenantDatabase.safeParse(raw);
  if (!parsed.success) {
    const message = parsed.error.issues.map((i) => `spec.${i.path.slice(1).join('.')}: ${i.message}`).join('; ');
    const meta = { name, namespace, resourceVersion: raw.metadata?.resourceVersion ?? '', generation: raw.metadata?.generation };
    const t = await commitStatus(api, meta, raw.status, {
      observed: [{ type: 'Ready', status: 'False', reason: 'InvalidSpec', message }],
      terminal: true,
    });
    const ref = { apiVersion: API_VERSION, kind: 'TenantDatabase', name, namespace, uid: raw.metadata?.uid ?? '' };
    if (transitioned(t, 'Ready')) ctx.events.warning(ref, 'InvalidSpec', message);
    return {};
  }
  const td = parsed.data;
  const rlog = log.child({ kind: 'TenantDatabase', namespace, name, generation: td.metadata.generation });

  if (td.metadata.deletionTimestamp) {
    pooledLogins.delete(td.metadata.uid);
    verified.delete(td.metadata.uid);
    provisioned.delete(td.metadata.uid);
    forgetTenant(td.metadata.uid);
    for (const pending of admitted.values()) pending.delete(td.metadata.uid);
    try {
      await finalizeTenant(ctx, td, parsedServers(ctx, rlog), rlog);
    } catch (err) {
      // What blocks a deletion is in status, not only in the log.
      const reason = err instanceof RetryableError ? err.reason : 'DeletionFailed';
      const message = `deletion (${td.spec.deletionPolicy}) is waiting: ${errorMessage(err)}`;
      await saveStatus(ctx, td, notReady(reason, message, false), undefined, undefined).catch(() => undefined);
      // The failure report writes status too: with the same reason and message, not the bare
      // error's, or the two would overwrite each other on every retry.
      throw new RetryableError(reason, message);
    }
    return {};
  }

  // The finalizer first, so that nothing is created that a deletion could miss; then on, in the
  // same reconcile (status appears on the first one). An observed tenant creates nothing.
  if (td.spec.managementPolicy !== 'Observe') await addFinalizer(api, td.metadata, FINALIZER);

  let outcome: Outcome;
  let names: TenantNames | undefined;
  let serverName: string | undefined;
  let soon = false;
  let retryMs: number | undefined;
  let provisionedEvent: string | undefined;
  try {
    const r = await provision(ctx, td, rlog, info.periodic, info.park);
    outcome = r.outcome;
    names = r.names;
    serverName = r.serverName;
    soon = r.soon ?? false;
    retryMs = r.retryMs;
    provisionedEvent = r.provisionedEvent;
  } catch (err) {
    // Whatever this reconcile changed before it failed, the next one looks at everything again.
    provisioned.delete(td.metadata.uid);
    verified.delete(td.metadata.uid);
    if (err instanceof TerminalError) {
      outcome = notReady(err.reason, err.message, true);
    } else {
      const reason = err instanceof RetryableError ? err.reason : 'ReconcileError';
      const message = errorMessage(err);
      await saveStatus(ctx, td, notReady(reason, message, false), undefined, undefined);
      throw err;
    }
  }
  if (outcome.terminal) {
    // A refusal may have acted on what exists (login taken away where the namespace lost the
    // server's admission, a limit lowered): the shortcuts that skip the server must not answer
    // for it once the refusal is lifted.
    provisioned.delete(td.metadata.uid);
    verified.delete(td.metadata.uid);
  }
  // The migration Job (its own or its TenantGroup's) and the Ready gate: src/controllers/migrations/.
  // (An observed tenant runs none: a Job is a change.)
  try {
    if (td.spec.managementPolicy !== 'Observe') await gateOnMigration(ctx, td, outcome, names?.secret ?? td.status?.secretName, rlog);
    await saveStatus(ctx, td, outcome, names, serverName, provisionedEvent);
  } catch (err) {
    // What was created is in the trail even when the gate or the status write fails (saveStatus
    // sends its Events only after the write, and sending never throws).
    if (provisionedEvent !== undefined) ctx.events.normal(tenantRef(td), 'Provisioned', provisionedEvent);
    throw err;
  }
  const resync = periodicDelay(ctx.config.resyncMs);
  return { poll: soon, requeueAfterMs: Math.min(retryMs ?? resync, resync) };
}

/**
 * What a reconcile of `td` would do now, changing nothing (TenantDatabasePlan): the provisioning
 * steps run observed on `rec`; the outcome is where they ended (the observation step when they
 * reached the end, else a refusal). Errors that a retry may clear are thrown.
 */
export async function planProvisioning(
  ctx: OperatorContext,
  td: TenantDatabase,
  log: Logger,
): Promise<{ outcome: Outcome; names?: TenantNames | undefined; serverName?: string | undefined; rec: Recorder }> {
  const rec = new Recorder();
  try {
    const r = await provision(ctx, td, log, false, undefined, rec);
    return { outcome: r.outcome, names: r.names, serverName: r.serverName, rec };
  } catch (err) {
    if (err instanceof TerminalError) return { outcome: notReady(err.reason, err.message, true), rec };
    throw err;
  }
}

async function saveStatus(
  ctx: OperatorContext,
  td: TenantDatabase,
  o: Outcome,
  names: TenantNames | undefined,
  serverName: string | undefined,
  provisionedEvent?: string,
): Promise<void> {
  const api = customResourceApi(ctx.clients, TENANT_DATABASE);
  const t = await commitStatus(api, td.metadata, td.status, {
    fields: {
      serverName,
      ...(names ? { databaseName: names.database, schemaName: names.schema, roleName: names.role, secretName: names.secret } : {}),
      ...o.status,
    },
    observed: o.conditions,
    terminal: o.terminal,
  });
  const quota = transitioned(t, 'QuotaExceeded');
  if (quota?.status === 'True') ctx.events.warning(tenantRef(td), 'QuotaExceeded', quota.message);
  const after = transitioned(t, 'Ready');
  {
    const before = t.before.find((c) => c.type === 'Ready');
    const ref = tenantRef(td);
    // A new tenant Ready in the reconcile that created it: one Event, Provisioned, naming its
    // objects and then its readiness (a burst of new tenants costs the API server one Event each).
    if (provisionedEvent !== undefined) {
      if (after?.status === 'True') {
        ctx.events.normal(ref, 'Provisioned', messageEndingWith(provisionedEvent, `; Ready: ${after.message}`));
        return;
      }
      ctx.events.normal(ref, 'Provisioned', provisionedEvent);
    }
    if (after) {
      if (after.status === 'True') ctx.events.normal(ref, 'Ready', after.message);
      // Waiting for the pooler right after creation is not worth a warning; losing it later is.
      else if (before?.status === 'True' || after.reason !== 'PoolerNotReady') ctx.events.warning(ref, after.reason, after.message);
    }
  }
}

/**
 * Names go into status only from a reconcile that got through its steps (a Conflict or a failure
 * writes none): a tenant that lost a name to a Conflict can still be given another one. Status is
 * not what holds a tenant to its names: the claims step reads its objects' markers.
 */
async function provision(
  ctx: OperatorContext,
  td: TenantDatabase,
  log: Logger,
  periodic: boolean,
  park?: (timeoutMs: number) => Promise<boolean>,
  planning?: Recorder,
): Promise<Provisioned> {
  const ref = tenantRef(td);
  const key = `${td.metadata.namespace ?? ''}/${td.metadata.name}`;
  /**
   * managementPolicy Observe: the same steps run, on sessions that record instead of writing
   * (pg/recording), and no step writes the Secret, asks the server to render, or records an Event
   * for a change: what would be done is the report, in status.observation.
   */
  /**
   * A plan (TenantDatabasePlan) runs these steps for a spec that may not be applied yet: observed,
   * and the platform's limits, which an observed tenant's reconcile still enforces, are only
   * recorded too (a plan changes nothing).
   */
  const observing = !!planning || td.spec.managementPolicy === 'Observe';
  const rec = planning ?? (observing ? new Recorder() : undefined);
  const platformPool = (p: pg.Pool): pg.Pool => (planning ? planning.pool(p) : p);
  /** What stopped an observation before its end (a statement that depends on an object it would create). */
  let observationCut: string | undefined;
  /**
   * Logs each change and records it as an Event whose reason is the object and the verb
   * (RoleCreated), sent when the reconcile ends (see flushEvents).
   */
  const pending: { reason: string; message: string }[] = [];
  const record = (changes: string[], noun: string) => {
    const verbs: Record<string, string> = {
      Created: 'Created',
      Dropped: 'Deleted',
      Deleted: 'Deleted',
      Repaired: 'Repaired',
      Rotated: 'Rotated',
      Suspended: 'Suspended',
      Resumed: 'Resumed',
      Adopted: 'Adopted',
      Made: 'ReadOnly',
      Returned: 'ReadWrite',
    };
    if (observing) {
      for (const c of changes) log.debug({ observed: true }, c);
      return;
    }
    for (const c of changes) log.info(c);
    // One Event per object and step, naming every change in it: the trail stays complete, and a
    // new tenant costs a few Events, not one per statement.
    const first = changes[0];
    if (first) pending.push({ reason: `${noun}${verbs[first.split(' ')[0] ?? ''] ?? 'Updated'}`, message: changes.join('; ') });
  };
  /**
   * A new tenant's objects (Secret, role, database, extensions) are one Event, Provisioned, naming
   * every change: a burst of new tenants costs the API server one Event each, not four. Any other
   * mix keeps an Event per object and step (PasswordRotated, SecretRepaired, ...).
   */
  const flushEvents = (hold: boolean): string | undefined => {
    const all = pending.splice(0);
    if (all.length > 1 && all.every((e) => e.reason.endsWith('Created'))) {
      const message = all.map((e) => e.message).join('; ');
      if (hold) return message;
      ctx.events.normal(ref, 'Provisioned', message);
    } else for (const e of all) ctx.events.normal(ref, e.reason, e.message);
    return undefined;
  };
  // What the steps learn, for the steps after them (each is set before it is read).
  let names!: TenantNames;
  let server!: PostgresServer;
  let serverName!: string;
  let limits!: PostgresServer['spec']['connectionLimits'];
  let connectionLimit!: number;
  let creds!: AdminCredentials;
  let ep!: ServerEndpoint;
  let pool!: pg.Pool;
  let inDatabase!: InDatabase;
  let owner!: Owner;
  let roleClaim!: Claim;
  /** Databases the claims step found missing: created without a second look (see ensureDatabase). */
  const absentAtClaim = new Set<string>();
  let password!: string;
  let rotating = false;
  let rotateFor: string | undefined;
  let verifier!: string;
  let loginErr: unknown;
  let justProvisioned = false;
  /** Whether this reconcile created the tenant's role (with the verifier of the Secret's password). */
  let createdRole = false;
  /** Whether this reconcile created the tenant's (main) database. */
  let createdDatabase = false;
  let written: Record<string, string> | undefined;
  /** What this reconcile did to the role's password, for status. */
  const credential: { passwordChangedAt?: string; passwordRotatedFor?: string } = {};
  let ext!: ExtensionOutcome;
  /** Read-only (and how) or read-write (undefined), as decided from the spec and the last size known. */
  let accessMode: ReadOnlyMode | undefined;
  /** Read-only, schemas where PUBLIC may still create and the admin cannot take that away. */
  const openSchemas: string[] = [];
  // The tenant's login roles (its role and, with overlapping rotation, a twin acting as it), the one
  // its Secret uses, the previous one in its grace period, and a switch in progress (see credentials.ts).
  let logins!: LoginRoles;
  let active!: string;
  let prev: PreviousLogin | undefined;
  let expired: PreviousLogin | undefined;
  let switching: { role: string; password: string; verifier: string } | undefined;
  let switchErr: unknown;
  /** When credential work comes due without any event: a grace period's end, a scheduled rotation. */
  let credentialDueAt: number | undefined;
  let rotationPendingUntil: number | undefined;
  let generation = 0;
  let rotatedAt: number | undefined;
  /** The Secret's data for a login role and password (standard keys and the template's). */
  let renderData!: (user: string, pw: string) => ReturnType<typeof applySecretTemplate>;
  /**
   * A refusal that also holds for what already exists: a tenant whose namespace lost the server's
   * admission, or whose limit is above a lowered ceiling, does not keep what it had.
   */
  const refuse = async (reason: string, message: string, act: (pool: pg.Pool, role: string) => Promise<string[]>) => {
    // Each of its login roles (the second one of an overlapping rotation too).
    const mine = ctx.markers.get(serverName)?.get(td.metadata.uid)?.roles;
    const roles = [names.role, twinRoleName(names.role), ...legacyTwinRoleNames(names.role)].filter((r) => mine?.has(r));
    // (Observed too: these are the platform's limits, not the spec's; Observe does not lift them.)
    if (roles.length) {
      const admin = await loadAdminCredentials(ctx.clients, server, ctx.config.namespace);
      const ca = admin.ok ? await loadCa(ctx.clients, server, ctx.config.namespace) : undefined;
      if (admin.ok && ca?.ok)
        for (const role of roles)
          record(await act(platformPool(ctx.pools.get(serverName, endpointOf(server, ca.value), admin.value)), role), 'Role');
    }
    return { outcome: notReady(reason, message, true), serverName };
  };

  /** The password a role taken over this reconcile was given (spec.adoption). */
  let adoptedPassword: string | undefined;
  /** The password for a role being taken over: the one passwordSecretRef names, or a new one. */
  const adoptionPassword = async (): Promise<string> => {
    const ref = td.spec.adoption?.passwordSecretRef;
    if (!ref) return generatePassword();
    let secret;
    try {
      secret = await ctx.clients.core.readNamespacedSecret({ name: ref.name, namespace: owner.namespace });
    } catch (err) {
      if (httpStatus(err) === 404)
        throw new TerminalError('AdoptionPasswordMissing', `Secret ${ref.name} (spec.adoption.passwordSecretRef) does not exist`);
      throw err;
    }
    const pw = secretValue(secret, ref.key);
    if (pw === undefined) throw new TerminalError('AdoptionPasswordMissing', `Secret ${ref.name} has no key ${ref.key}`);
    if (!isAcceptablePassword(pw))
      throw new TerminalError(
        'AdoptionPasswordRefused',
        `the password in Secret ${ref.name} (key ${ref.key}) is not one tenantdb can hand out (24 to 128 letters, digits, - or _); leave out passwordSecretRef to give the role a new one`,
      );
    return pw;
  };
  /**
   * Takes over an existing role or database when spec.adoption asks for exactly its origin; else
   * returns the Conflict message, saying what to write when adoption could resolve it.
   */
  /** Whether the server lets this tenant's namespace take over that unmanaged role. */
  const consented = (role: string) => server.spec.unmanagedAdoption.some((a) => a.role === role && a.namespace === owner.namespace);
  /** Whether this reconcile took over objects (an earlier tenant's databases, its shadow among them). */
  let adoptedHere = false;
  const adopt = async (kind: 'role' | 'database', name: string, conflict: string): Promise<true | string> => {
    const comment = kind === 'role' ? (await sql.findRole(pool, name))?.comment : (await sql.findDatabase(pool, name))?.comment;
    const origin = originOf(comment, td, new Set(ctx.tenants.list().map((t) => t.metadata?.uid ?? '')));
    const asked = td.spec.adoption?.from;
    const marker = sql.ownerMarker(owner);
    if (origin.kind === 'retained' && asked === 'Retained') {
      if (kind === 'role') {
        // The old Secret went with the old object: the role gets the password the new one will hold.
        adoptedPassword = await adoptionPassword();
        await sql.setRolePassword(pool, name, verifierFor(owner.uid, name, adoptedPassword));
      }
      const taken = await adoptRetained(pool, origin.uid, marker);
      adoptedHere = true;
      record([`Adopted ${taken.join(', ')}, kept for an earlier TenantDatabase of this name (uid ${origin.uid})`], '');
      return true;
    }
    if (origin.kind === 'unmanaged' && asked === 'Unmanaged') {
      if (kind === 'role') {
        if (td.spec.roleName !== name) return `${conflict} (adoption takes only the role spec.roleName names)`;
        if (!consented(name))
          throw new TerminalError(
            'AdoptionNotAllowed',
            `PostgresServer ${serverName} does not let namespace ${owner.namespace} take over role ${name}: whoever may edit the server adds {role: ${name}, namespace: ${owner.namespace}} to its spec.unmanagedAdoption`,
          );
        const max = server.spec.maxTenants;
        if (max !== undefined && !observing && !(await admit(ctx, pool, serverName, owner.uid, max)))
          return `PostgresServer ${serverName} holds its maximum of ${max} tenants; role ${name} is not taken over`;
        const stripped = await checkAdoptableRole(pool, name, names.database);
        adoptedPassword = await adoptionPassword();
        const client = await pool.connect();
        try {
          await sql.markAdoptedRole(client, name, verifierFor(owner.uid, name, adoptedPassword), marker, stripped);
        } finally {
          client.release();
        }
        const ref = td.spec.adoption?.passwordSecretRef;
        record(
          [
            `Adopted role ${name}${stripped.length ? ` (took away ${stripped.join(', ')})` : ''}${ref ? `, keeping its password from Secret ${ref.name}` : ', with a new password'}`,
          ],
          '',
        );
        return true;
      }
      const named = td.spec.databaseName;
      if (!named || (name !== named && name !== shadowDatabaseName(named)))
        return `${conflict} (adoption takes only the database spec.databaseName names)`;
      // A database goes only with the role that owns it, taken over with the server's consent: never
      // one of the admin's (the platform's, or another tenant's being created), never a closed one.
      if (roleClaim.state !== 'ours' || !consented(names.role))
        return `${conflict} (a database is taken over only with the role that owns it, role ${names.role})`;
      const row = await sql.findDatabase(pool, name);
      if (row && (row.owner !== names.role || !row.allowConnections))
        return `database ${name} belongs to role ${row.owner}${row.allowConnections ? '' : ' and accepts no connections'}; only a database owned by role ${names.role} can be taken over with it`;
      await sql.commentOnDatabase(pool, name, marker);
      record([`Adopted database ${name}`], '');
      return true;
    }
    return adoptionHint(`${kind} ${name}`, origin, td) ?? conflict;
  };

  const steps: Step<Provisioned>[] = [
    step<Provisioned>('limits-where-it-lives', async () => {
      // Where the tenant already has roles, the server's admission and ceiling hold before anything
      // else: no edit of the spec (a name or serverRef added later) can step around them.
      const home = await enforceWhereItLives(ctx, td, parsedServers(ctx, log), record, platformPool);
      if (home) return { outcome: notReady(home.reason, home.message, true), serverName: home.serverName };
      return undefined;
    }),
    step<Provisioned>('names', async () => {
      const n = resolveNames(td);
      if (!n.ok) return { outcome: notReady(n.reason, n.message, true) };
      names = n.value;
      return undefined;
    }),
    step<Provisioned>('server', async () => {
      const valid = parsedServers(ctx, log);
      const invalid = ctx.servers.list().filter((raw) => !valid.some((v) => v.metadata.name === raw.metadata?.name));
      const s = resolveServer(td, valid, invalid);
      if (!s.ok) return { outcome: notReady(s.reason, s.message, false) };
      server = s.value;
      serverName = server.metadata.name;
      // Where it lives: status says, or (a first reconcile that failed after making objects writes
      // no server name) another server's markers do.
      const home = td.status?.serverName ?? [...ctx.markers].find(([other, m]) => other !== serverName && m.has(td.metadata.uid))?.[0];
      if (home && home !== serverName) {
        const message = `the tenant lives on PostgresServer ${home}; moving it to ${serverName} is not supported (set serverRef.name to ${home}, or create a new TenantDatabase)`;
        return { outcome: notReady('ServerChangeRefused', message, true) };
      }
      const placed = placeOnServer(names, server);
      if (!placed.ok) return { outcome: notReady(placed.reason, placed.message, true), serverName };
      names = placed.value;
      const same = namesMatchMarkers(names, ctx.markers.get(serverName)?.get(td.metadata.uid));
      if (!same.ok) return { outcome: notReady(same.reason, same.message, true), serverName };
      return undefined;
    }),
    step<Provisioned>('namespace-admission', async () => {
      const allowed = namespaceAllowed(ctx, server, td.metadata.namespace ?? '');
      if (!allowed.ok) {
        return refuse(allowed.reason, allowed.message, async (pool, role) => {
          const row = await sql.findRole(pool, role);
          if (!row?.canLogin) return [];
          await sql.disableLogin(pool, role);
          const ended = await sql.terminateRoleSessions(pool, role);
          return [
            `Disabled login of role ${role}${ended ? ` and ended ${ended} session(s)` : ''}: namespace ${td.metadata.namespace} may no longer use PostgresServer ${serverName}`,
          ];
        });
      }
      return undefined;
    }),
    step<Provisioned>('connection-limit', async () => {
      limits = server.spec.connectionLimits;
      connectionLimit = td.spec.connectionLimit === -1 ? limits.default : td.spec.connectionLimit;
      if (connectionLimit > limits.max) {
        return refuse(
          'ConnectionLimitTooHigh',
          `connectionLimit ${connectionLimit} is above PostgresServer ${serverName}'s connectionLimits.max of ${limits.max}`,
          async (pool, role) => {
            const row = await sql.findRole(pool, role);
            if (!row || (row.connLimit >= 0 && row.connLimit <= limits.max)) return [];
            await sql.setRoleLogin(pool, role, row.canLogin, limits.max);
            for (const database of ownDatabases(names).slice(0, 1))
              if ((await sql.findDatabase(pool, database))?.ownedByAdmin) await sql.setDatabaseConnLimit(pool, database, limits.max);
            return [`Lowered the connection limit of role ${role} to PostgresServer ${serverName}'s connectionLimits.max of ${limits.max}`];
          },
        );
      }
      return undefined;
    }),
    step<Provisioned>('pooler-client-limit', async () => {
      const bounds = server.spec.pooler?.clientLimits;
      const asked = td.spec.pooling.maxClientConnections;
      // The pooler config never goes past the ceiling (pooler-plan clamps it); this says why in status.
      if (bounds && td.spec.pooling.enabled && asked > bounds.max) {
        const message = `pooling.maxClientConnections ${asked} is above PostgresServer ${serverName}'s pooler.clientLimits.max of ${bounds.max}`;
        return { outcome: notReady('ClientLimitTooHigh', message, true), serverName };
      }
      return undefined;
    }),
    step<Provisioned>('extensions-allowed', async () => {
      const disallowed = td.spec.extensions.filter((e) => !server.spec.allowedExtensions.includes(e));
      if (disallowed.length > 0) {
        return {
          outcome: notReady(
            'ExtensionNotAllowed',
            `extensions not in PostgresServer ${serverName} allowedExtensions: ${disallowed.join(', ')}`,
            true,
          ),
          serverName,
        };
      }
      return undefined;
    }),
    // A periodic re-check of a tenant verified recently, with nothing changed since, is answered
    // from the server's catalog snapshot: no session, no API call.
    step<Provisioned>('unchanged', async () => {
      // Only when nothing but the clock asked: an event (a whitelist, the agent's report, a Secret)
      // may change what the outcome depends on beyond what the fingerprint holds.
      const v = periodic && !observing ? verified.get(td.metadata.uid) : undefined;
      if (!v || v.fingerprint !== verifiedFingerprint(ctx, td, server, names, connectionLimit)) return undefined;
      const cred = cachedCredentials(ctx, td, names, serverName);
      if (cred.dueAt !== undefined && cred.dueAt <= Date.now()) return undefined;
      if (Date.now() - v.at > ctx.config.resyncMs * DEEP_RECHECKS) return undefined;
      if (td.status?.conditions?.find((c) => c.type === 'Ready')?.status !== 'True') return undefined;
      const snap = ctx.catalog.get(serverName);
      if (!snap || snap.at <= v.at) return { outcome: { conditions: [], status: {}, terminal: false }, names, serverName };
      if (!intactIn(snap, names, cred.active, connectionLimit, !td.spec.suspend, !!modeInStatus(td))) {
        verified.delete(td.metadata.uid);
        provisioned.delete(td.metadata.uid);
        return undefined;
      }
      const size = names.schema !== undefined ? snap.schemas?.get(names.schema)?.sizeBytes : snap.databases.get(names.database)?.sizeBytes;
      const status = {
        ...(size !== undefined ? { sizeBytes: settledSize(td.status?.sizeBytes, size) } : {}),
        activeConnections: (snap.sessions.get(names.role) ?? 0) + (snap.sessions.get(cred.logins.twin) ?? 0),
      };
      const quota = quotaCondition(td, status.sizeBytes ?? td.status?.sizeBytes);
      // A size that crossed a quota with action ReadOnly (either way) is work: a full reconcile.
      if (accessModeOf(td, status.sizeBytes ?? td.status?.sizeBytes) !== modeInStatus(td)) return undefined;
      return { outcome: { conditions: quota ? [quota] : [], status, terminal: false }, names, serverName, retryMs: untilDue(cred.dueAt) };
    }),
    // Everything was provisioned moments ago for exactly this spec and Secret, and only what comes
    // from outside (the pooler, the allow-lists) is awaited: that is all this reconcile looks at.
    step<Provisioned>('just-provisioned', async () => {
      const p = periodic || observing ? undefined : provisioned.get(td.metadata.uid);
      if (!p || Date.now() - p.at > JUST_PROVISIONED_MS) return undefined;
      if (p.fingerprint !== verifiedFingerprint(ctx, td, server, names, connectionLimit)) return undefined;
      const cred = cachedCredentials(ctx, td, names, serverName);
      if (cred.dueAt !== undefined && cred.dueAt <= Date.now()) return undefined;
      const snap = ctx.catalog.get(serverName);
      if (snap && snap.at > p.at && !intactIn(snap, names, cred.active, connectionLimit, !td.spec.suspend, !!modeInStatus(td))) {
        provisioned.delete(td.metadata.uid);
        return undefined;
      }
      const cached = secretValue(ctx.secrets.get(names.secret, td.metadata.namespace), 'password');
      if (!cached) return undefined;
      justProvisioned = true;
      password = cached;
      logins = cred.logins;
      active = cred.active;
      credentialDueAt = cred.dueAt;
      ext = { created: [], failed: [] };
      return undefined;
    }),
    step<Provisioned>('pooler-admin-name', async () => {
      if (server.spec.pooler && td.spec.pooling.enabled) {
        const poolerAdmin = await loadPoolerAdmin(ctx, server);
        const reserved = (r: string) => r === DEFAULT_POOLER_ADMIN_USER || (poolerAdmin.ok && poolerAdmin.value.user === r);
        const twin = loginRolesOf(names.role, ctx.markers.get(serverName)?.get(td.metadata.uid)?.roles).twin;
        if (reserved(names.role) || (td.spec.passwordRotation.strategy === 'Overlap' && reserved(twin))) {
          const message = `role ${names.role}${reserved(names.role) ? '' : ` (its second login role ${twin})`} is the admin user of PostgresServer ${serverName}'s pooler; set another roleName`;
          return {
            outcome: notReady('Conflict', message, true, [{ type: 'RoleReady', status: 'False', reason: 'Conflict', message }]),
            serverName,
          };
        }
      }
      return undefined;
    }),
    step<Provisioned>('connect', async () => {
      const admin = await loadAdminCredentials(ctx.clients, server, ctx.config.namespace);
      if (!admin.ok) throw new RetryableError('ServerNotReady', `PostgresServer ${serverName}: ${admin.message}`);
      creds = admin.value;
      const ca = await loadCa(ctx.clients, server, ctx.config.namespace);
      if (!ca.ok) throw new RetryableError('ServerNotReady', `PostgresServer ${serverName}: ${ca.message}`);
      ep = endpointOf(server, ca.value);
      pool = ctx.pools.get(serverName, ep, creds);
      inDatabase = (database, fn) => ctx.pools.withDatabase(ep, creds, database, fn);
      if (rec) {
        pool = rec.pool(pool);
        inDatabase = (database, fn) => ctx.pools.withDatabase(ep, creds, database, (c) => fn(rec.queryable(c)));
      }
      owner = { namespace: td.metadata.namespace ?? '', name: td.metadata.name, uid: td.metadata.uid, server: serverName };

      return undefined;
    }),
    // Change nothing that belongs to someone else.
    step<Provisioned>('claims', async () => {
      if (justProvisioned) return undefined;
      // The role and the databases in one read.
      let found: Awaited<ReturnType<typeof sql.findRoleAndDatabases>>;
      try {
        found = await sql.findRoleAndDatabases(pool, names.role, ownDatabases(names));
        roleClaim = roleClaimOf(found.role, names.role, owner.uid);
      } catch (err) {
        throw new RetryableError('ServerUnreachable', `cannot reach PostgresServer ${serverName}: ${describePgError(err)}`);
      }
      // A Secret this tenant wrote before it lost a race for the name holds credentials that cannot work.
      const dropOwnSecret = async () => {
        if (observing) return;
        const own = await readSecret(ctx.clients, owner.namespace, names.secret, owner.uid);
        if (own.kind !== 'owned') return;
        await ctx.clients.core.deleteNamespacedSecret({ name: names.secret, namespace: owner.namespace });
        record([`Deleted Secret ${names.secret}: the name it was written for belongs to someone else`], 'Secret');
      };
      if (roleClaim.state === 'foreign') {
        const took = await adopt('role', names.role, roleClaim.message);
        if (took !== true) {
          await dropOwnSecret();
          return {
            outcome: notReady('Conflict', took, true, [{ type: 'RoleReady', status: 'False', reason: 'Conflict', message: took }]),
            serverName,
          };
        }
        roleClaim = { state: 'ours' };
        // Taking over a retained role re-marks its databases too: read as they are now.
        found = await sql.findRoleAndDatabases(pool, names.role, ownDatabases(names));
      }
      const claims = ownDatabases(names).map((db) => async () => {
        const claim = databaseClaimOf(found.databases.get(db), db, names.role, owner.uid, roleClaim.state === 'ours');
        if (claim.state === 'absent') absentAtClaim.add(db);
        if (claim.state !== 'foreign') return claim;
        const took = await adopt('database', db, claim.message);
        return took === true ? ({ state: 'ours' } as const) : { state: 'foreign' as const, message: took };
      });
      if (names.schema !== undefined) {
        const schema = names.schema;
        claims.push(() => claimOfSchema(pool, inDatabase, names.database, schema, names.role, roleClaim.state === 'ours', owner.uid));
      }
      for (const claimOf of claims) {
        const claim = await claimOf();
        if (claim.state === 'foreign') {
          await dropOwnSecret();
          return {
            outcome: notReady('Conflict', claim.message, true, [
              { type: 'DatabaseReady', status: 'False', reason: 'Conflict', message: claim.message },
            ]),
            serverName,
          };
        }
      }
      // The server step compared the names with the markers of the server's last catalog read,
      // which may predate this tenant's objects (the server reads it again moments after they are
      // made; a reconcile that failed after making them does not ask it to) or be missing (after a
      // start), and an adoption here re-marked objects under this uid just now. A name the spec
      // gained meanwhile (the API server lets a name be added to a spec that had none) would be
      // taken for a new tenant's, and a second role or database made under this uid. So a tenant
      // an earlier reconcile got to (its finalizer) or one that adopted here is held to the names
      // its objects carry in the catalog. A new tenant's first reconcile (a burst's) reads nothing.
      if ((td.metadata.finalizers?.includes(FINALIZER) || adoptedHere) && !observing) {
        let marked: sql.ManagedObject[];
        try {
          marked = await sql.managedObjects(pool, owner.uid);
        } catch (err) {
          throw new RetryableError('ServerUnreachable', `cannot reach PostgresServer ${serverName}: ${describePgError(err)}`);
        }
        const same = namesMatchMarkers(names, sql.markersByUid(marked).get(owner.uid));
        if (!same.ok) return { outcome: notReady(same.reason, same.message, true), serverName };
      }
      return undefined;
    }),
    step<Provisioned>('capacity', async () => {
      // (An observed tenant takes no place on the server: admission holds one.)
      if (justProvisioned || observing) return undefined;
      const max = server.spec.maxTenants;
      if (max !== undefined && roleClaim.state === 'absent' && !(await admit(ctx, pool, serverName, owner.uid, max))) {
        return {
          outcome: notReady(
            'CapacityExceeded',
            `PostgresServer ${serverName} holds its maximum of ${max} tenants (retained databases count)`,
            true,
          ),
          serverName,
        };
      }

      return undefined;
    }),
    step<Provisioned>('connection-budget', async () => {
      // (An observed tenant holds no share of the budget.)
      if (justProvisioned || observing) return undefined;
      if (limits.enforceBudget) {
        const current = roleClaim.state === 'ours' ? (await sql.findRole(pool, names.role))?.connLimit : undefined;
        if (current !== connectionLimit) {
          const verdict = await fitBudget(
            serverName,
            names.role,
            connectionLimit,
            async () => ({
              slots: (await sql.serverFacts(pool)).slots,
              limits: await sql.tenantConnectionLimits(pool),
            }),
            ctx.pools.maxSessionsPerServer,
          );
          if (!verdict.fits) {
            const { sum, open } = verdict;
            return {
              outcome: notReady(
                'ConnectionBudgetExceeded',
                `connectionLimit ${connectionLimit} does not fit: the other tenants of PostgresServer ${serverName} hold ${sum} of the ${open} connections left beside the operator's own (connectionLimits.enforceBudget)`,
                true,
              ),
              serverName,
            };
          }
        }
      }

      return undefined;
    }),
    // The Secret first: the password must be stored before any role carries it.
    step<Provisioned>('secret', async () => {
      if (justProvisioned) return undefined;
      const ns = owner.namespace;
      // A brand-new tenant (no role yet, nothing in status, no Secret of that name in the cache of
      // tenantdb's Secrets) skips the read that would only say 404: the create below finds out if
      // one exists after all (a Secret of someone else's is not in the cache), and then reads it.
      const optimistic = roleClaim.state === 'absent' && !td.status?.secretName && !observing && !ctx.secrets.get(names.secret, ns);
      const current: SecretState = optimistic ? { kind: 'missing' } : await readSecret(ctx.clients, ns, names.secret, owner.uid);
      if (current.kind === 'foreign') {
        const message = `Secret ${ns}/${names.secret} exists and is not owned by this TenantDatabase; delete it or set spec.secretName`;
        return {
          outcome: notReady('Conflict', message, true, [{ type: 'SecretReady', status: 'False', reason: 'Conflict', message }]),
          serverName,
        };
      }
      let previous: string | undefined;
      // Where the connection details were before a secretName change: the name status gives, and,
      // when the Secret is missing, any other Secret this tenant controls (status may not show the
      // last move yet when it moves straight back).
      const oldSecretNames = [
        ...new Set([
          ...(td.status?.secretName ? [td.status.secretName] : []),
          ...(current.kind === 'missing'
            ? ctx.secrets
                .list()
                .filter((x) => x.metadata?.namespace === ns && ownedBy(x, owner.uid))
                .map((x) => x.metadata?.name ?? '')
            : []),
        ]),
      ].filter((n) => n && n !== names.secret);
      for (const oldName of current.kind === 'missing' ? oldSecretNames : []) {
        const old = await readSecret(ctx.clients, ns, oldName, owner.uid);
        if (old.kind === 'owned' && !previous) previous = old.data.password;
      }
      // A rotation request the Secret has not answered yet gets a new password; the answer is recorded on
      // the Secret together with the password, so a crash cannot rotate twice or lose the new one.
      const ann = current.kind === 'owned' ? (current.secret.metadata?.annotations ?? {}) : {};
      logins = loginRolesOf(names.role, await twinNameRoles(ctx, pool, serverName, names.role, td, adoptedHere));
      active = current.kind === 'owned' ? activeLogin(current.data, logins) : logins.group;
      const now = Date.now();
      prev = previousLogin(ann, logins, active);
      if (prev) {
        // The annotation is the tenant's to write: only a login role of this tenant counts, and never
        // past the deadline PostgreSQL holds for it (set at the switch; the tenant cannot move it).
        const row = await sql.findRole(pool, prev.role);
        if (!row || sql.markerUid(row.comment) !== owner.uid) prev = undefined;
        else if (row.validUntil < prev.until) prev = { ...prev, until: row.validUntil };
        else if (row.validUntil === Infinity) prev = { ...prev, until: Math.min(prev.until, now + graceMs(td)) };
      }
      if (prev && prev.until <= now) {
        expired = prev;
        prev = undefined;
      }
      generation = credentialGeneration(ann);
      rotatedAt = lastRotatedAt(ann, td.status?.passwordChangedAt, td.metadata.creationTimestamp);
      const rotation = td.spec.passwordRotation;
      const scheduledAt = rotationDueAt(rotation.interval, rotatedAt);
      rotateFor = td.metadata.annotations?.[ROTATE_ANNOTATION];
      const answered = current.kind === 'owned' ? current.secret.metadata?.annotations?.[ROTATED_ANNOTATION] : undefined;
      const ours = roleClaim.state === 'ours';
      const requested = !!rotateFor && rotateFor !== answered && ours && !observing;
      const scheduled = ours && current.kind === 'owned' && scheduledAt !== undefined && scheduledAt <= now && !observing;
      if ((requested || scheduled) && rotation.strategy === 'Overlap' && current.kind === 'owned') {
        if (prev) {
          // The previous login's grace period still runs: its clients keep it until then.
          rotationPendingUntil = prev.until;
        } else {
          const role = otherLogin(logins, active);
          const kept = pendingSwitches.get(td.metadata.uid);
          const pw = kept?.role === role ? kept.password : generatePassword();
          pendingSwitches.set(td.metadata.uid, { role, password: pw });
          switching = { role, password: pw, verifier: verifierFor(td.metadata.uid, role, pw) };
        }
      } else {
        rotating = requested || scheduled;
      }
      credentialDueAt = credentialDueAtOf(prev?.until, scheduledAt);
      // A role taken over with passwordSecretRef keeps that password until its Secret is first
      // written, even when the reconcile that took it over stopped before writing it.
      const keptForAdoption =
        adoptedPassword ??
        (current.kind === 'missing' && td.spec.adoption?.passwordSecretRef ? await adoptionPassword().catch(() => undefined) : undefined);
      const chosen = rotating
        ? choosePassword()
        : choosePassword(keptForAdoption, current.kind === 'owned' ? current.data.password : undefined, previous);
      password = chosen.password;
      const generated = chosen.generated;
      if (planning && generated) planning.newPassword = true;
      const poolingOn = td.spec.pooling.enabled && !!server.spec.pooler;
      renderData = (user, pw) =>
        applySecretTemplate(
          renderSecretData({
            host: server.spec.publicHost ?? server.spec.host,
            port: server.spec.port,
            sslMode: server.spec.sslMode,
            database: names.database,
            user,
            password: pw,
            pooler: poolingOn && server.spec.pooler ? { host: server.spec.pooler.host, port: server.spec.pooler.port } : undefined,
            poolerPreparedStatements: (server.status?.pooler?.maxPreparedStatements ?? 0) > 0,
            ca: server.spec.sslMode.startsWith('verify') ? ep.ca : undefined,
            shadowDatabase: names.shadow,
            schema: names.schema !== undefined ? { name: names.schema, alias: names.alias } : undefined,
          }),
          td.spec.secretTemplate,
        );
      const templated = renderData(active, password);
      if (!templated.ok) return { outcome: notReady('SecretTemplateInvalid', templated.message, true), serverName };
      const data = templated.data;
      written = data;
      // A request is answered by the write that carries its password: not before a switch is done,
      // nor while it waits for a grace period to end.
      const answering = !switching && rotationPendingUntil === undefined;
      const annotations: Record<string, string> = rotateFor && answering ? { [ROTATED_ANNOTATION]: rotateFor } : {};
      if (rotating) {
        rotatedAt = now;
        generation += 1;
        annotations[ROTATED_AT_ANNOTATION] = new Date(now).toISOString();
        annotations[GENERATION_ANNOTATION] = String(generation);
      }
      // The login being switched to is shown to the pooler before any client is told about it.
      if (switching) annotations[NEXT_LOGIN_ANNOTATION] = formatNext({ role: switching.role, verifier: switching.verifier });
      const remove = [
        ...(expired ? [PREVIOUS_LOGIN_ANNOTATION] : []),
        ...(!switching && ann[NEXT_LOGIN_ANNOTATION] !== undefined ? [NEXT_LOGIN_ANNOTATION] : []),
      ];
      if (rec) {
        // Observed: what the write would change, by key name (never a value).
        if (current.kind === 'missing')
          rec.notes.push(`create Secret ${names.secret} (keys ${Object.keys(data).sort().join(', ')}) with a new password`);
        else {
          const changed = Object.keys({ ...current.data, ...data })
            .filter((k) => current.data[k] !== data[k])
            .sort();
          if (changed.length) rec.notes.push(`rewrite keys ${changed.join(', ')} of Secret ${names.secret}`);
        }
        for (const oldName of oldSecretNames) rec.notes.push(`delete Secret ${oldName}, replaced by ${names.secret}`);
        return undefined;
      }
      let wrote: Awaited<ReturnType<typeof writeSecret>>;
      try {
        wrote = await writeSecret(ctx.clients, td, names.secret, current, data, annotations, remove);
      } catch (err) {
        if (!optimistic || httpStatus(err) !== 409) throw err;
        // It exists: someone else's is a Conflict, as the read would have said; our own (a cache
        // behind) is looked at again by the next reconcile, with its password.
        if ((await readSecret(ctx.clients, ns, names.secret, owner.uid)).kind === 'foreign') {
          const message = `Secret ${ns}/${names.secret} exists and is not owned by this TenantDatabase; delete it or set spec.secretName`;
          return {
            outcome: notReady('Conflict', message, true, [{ type: 'SecretReady', status: 'False', reason: 'Conflict', message }]),
            serverName,
          };
        }
        throw new RetryableError('SecretChanged', `Secret ${names.secret} appeared meanwhile; looking again`);
      }
      if (wrote === 'created')
        record(
          [
            generated && roleClaim.state === 'ours'
              ? `Created Secret ${names.secret} with a new password`
              : `Created Secret ${names.secret}`,
          ],
          'Secret',
        );
      if (wrote === 'updated' && !rotating && !switching && !expired) record([`Repaired Secret ${names.secret}`], 'Secret');
      for (const oldName of oldSecretNames) {
        const old = await readSecret(ctx.clients, ns, oldName, owner.uid);
        if (old.kind === 'owned') {
          await ctx.clients.core.deleteNamespacedSecret({ name: oldName, namespace: ns });
          record([`Deleted Secret ${oldName}, replaced by ${names.secret}`], 'Secret');
        }
      }

      return undefined;
    }),
    step<Provisioned>('role-and-databases', async () => {
      if (justProvisioned) return undefined;
      // The verifier is a function of role identity and password: every reconcile computes the same one.
      // (A plan's password may be one never used: not kept.)
      verifier = planning ? verifierFor(td.metadata.uid, active, password) : cachedVerifier(td.metadata.uid, active, password);
      const suspended = td.spec.suspend;
      let changed = false;
      // A login role may log in while it is the one in use, in its grace period, or being switched to.
      const loginOn = (role: string) => !suspended && (role === active || prev?.role === role || switching?.role === role);
      const spec = (role: string) => ({
        role,
        verifier:
          role === active
            ? verifier
            : switching?.role === role
              ? switching.verifier
              : verifierFor(td.metadata.uid, role, generatePassword()),
        connectionLimit,
        login: loginOn(role),
        validUntil: prev?.role === role ? prev.until : Infinity,
      });
      const roleChanges = await ensureRole(pool, owner, spec(logins.group), roleClaim.state === 'absent');
      createdRole = roleChanges.some((c) => c.startsWith('Created role'));
      if (createdRole) {
        credential.passwordChangedAt = new Date().toISOString();
        // Re-created after someone dropped it: what still runs under the old role (the pooler's
        // server connections) is ended, or the pooler would keep handing it out.
        if (td.status?.roleName)
          for (const db of names.schema !== undefined ? [names.database] : ownDatabases(names)) {
            const ended = await sql.terminateOrphanedSessionsIn(pool, db);
            if (ended) roleChanges.push(`Ended ${ended} session(s) in ${db} left by the dropped role`);
          }
      }
      record(roleChanges, 'Role');
      changed ||= roleChanges.length > 0;
      const twin = logins.twin;
      // With Overlap the twin exists from the start (login off until a rotation switches to it): a
      // name clash shows at once, and the allow-list rules name it before any client is sent to it.
      const twinUsed =
        td.spec.passwordRotation.strategy === 'Overlap' ||
        [active, prev?.role, switching?.role].includes(twin) ||
        !!ctx.markers.get(serverName)?.get(owner.uid)?.roles.has(twin);
      if (twinUsed) {
        const twinChanges = await ensureTwinRole(pool, owner, { ...spec(twin), group: logins.group });
        record(twinChanges, 'Role');
        changed ||= twinChanges.length > 0;
      }
      if (suspended && td.spec.endSessionsOnSuspend) {
        for (const role of twinUsed ? [logins.group, twin] : [logins.group]) {
          const ended = await sql.terminateRoleSessions(pool, role);
          if (ended) record([`Suspended role ${role}: ended ${ended} open session(s)`], 'Role');
        }
      }
      if (rotating) {
        // Open sessions, direct and pooled, keep running; new logins need the new password.
        await sql.setRolePassword(pool, active, verifier);
        credential.passwordChangedAt = new Date().toISOString();
        if (rotateFor) credential.passwordRotatedFor = rotateFor;
        record(
          [`Rotated password of role ${active} (request ${rotateFor ?? 'on schedule'}); Secret ${names.secret} holds the new one`],
          'Password',
        );
      }
      if (switching) {
        // Nobody logs in as this role yet (the Secret names the other one): its password is set freely.
        await sql.setRolePassword(pool, switching.role, switching.verifier);
        changed = true;
      }
      if (expired) {
        // The grace period is over: PostgreSQL refuses the old password since its VALID UNTIL, the
        // role's login is off (above), and what it still has open is ended.
        const ended = await sql.terminateRoleSessions(pool, expired.role);
        record(
          [
            `Retired the previous login role ${expired.role}: its grace period ended at ${new Date(expired.until).toISOString()}${ended ? `; ended ${ended} session(s)` : ''}`,
          ],
          'Password',
        );
        changed = true;
      }
      const note = (changes: string[], noun: string) => {
        record(changes, noun);
        changed ||= changes.length > 0;
      };
      accessMode = accessModeOf(td, lastSizeOf(ctx, td, serverName, names));
      for (const db of ownDatabases(names)) {
        const spec = { database: db, role: names.role, connectionLimit, readOnly: !!accessMode };
        const opts = {
          absent: absentAtClaim.has(db),
          recording: !!rec,
          publicOwnedByDatabaseOwner: sql.majorOf(server.status?.version) >= 15,
        };
        const changes = await ensureDatabase(pool, inDatabase, owner, spec, opts);
        if (db === names.database && changes.includes(`Created database ${db}`)) createdDatabase = true;
        note(changes, 'Database');
      }
      if (names.schema !== undefined) {
        const spec = { database: names.database, schema: names.schema, role: names.role, server: serverName };
        note(await ensureSchemaTenant(pool, inDatabase, spec), 'Schema');
        if (twinUsed) note(await ensureTwinSearchPath(inDatabase, twin, names.database, names.schema), 'Role');
      }
      // Read-only: the tenant's objects are held by its holder role and it keeps read grants (see
      // pg/read-only). Looked at only where it is or was read-only: other tenants pay nothing.
      const holderKnown =
        !!ctx.markers.get(serverName)?.get(owner.uid)?.roles.has(holderRoleName(names.role)) ||
        !!td.status?.conditions?.some((c) => c.type === 'ReadOnly' && c.status === 'True');
      if (accessMode && names.role.length > 58)
        throw new TerminalError(
          'ReadOnlyUnavailable',
          `read-only needs a role name of at most 58 bytes (its objects are held by <roleName>_hold meanwhile); role ${names.role} has ${names.role.length}`,
        );
      // The holder gives back only what it holds for this tenant (its marker says so).
      const holderOurs = async () => sql.markerUid((await sql.findRole(pool, holderRoleName(names.role)))?.comment) === owner.uid;
      if (accessMode || (holderKnown && (await holderOurs()))) {
        if (accessMode) note(await ensureHolderRole(pool, owner, names.role), 'Role');
        for (const db of names.schema !== undefined ? [names.database] : ownDatabases(names)) {
          const { changes, open } = await ensureAccessMode(inDatabase, db, names.role, logins.twin, accessMode);
          for (const schema of open) openSchemas.push(`${schema} of ${db}`);
          for (const c of changes) note([c], c.startsWith('Made') || c.startsWith('Returned') ? '' : 'Access');
        }
      }
      // spec.settings on each login role in its database (a role just created has none to look at).
      const wantedSettings: Partial<Record<sql.TenantSetting, string | undefined>> = td.spec.settings;
      const fresh = createdRole && Object.keys(wantedSettings).length === 0;
      if (!fresh)
        for (const role of twinUsed ? [logins.group, twin] : [logins.group])
          note(await ensureRoleSettings(pool, role, names.database, wantedSettings), 'Settings');
      // A tenant provisioned for the first time, whose role did not exist and that took over nothing,
      // has no shadow database of its own: nothing to look for. (After a failed attempt, its status
      // has conditions: the look is made then.)
      const firstProvisioning = createdRole && !td.status?.roleName && !td.status?.conditions?.length && !adoptedHere;
      if (names.isolation === 'Database' && !td.spec.shadowDatabase && !firstProvisioning) {
        note(await dropShadowIfOurs(pool, shadowDatabaseName(names.database), names.role, owner), 'Database');
      }
      // The server renders its configs from its catalog, which just moved: it looks again now
      // rather than at its next re-check.
      if ((changed || rotating) && !observing) ctx.provisioned(serverName, key);

      return undefined;
    }),
    // A real login with the Secret's credentials (a changed password is put back), and in that
    // same session, as the tenant, the extensions it asks for.
    step<Provisioned>('login-and-extensions', async () => {
      if (justProvisioned) return undefined;
      if (td.spec.suspend) {
        // A suspended role cannot log in: nothing to prove, and extensions wait for the resume.
        ext = { created: [], failed: [] };
        return undefined;
      }
      // A role this reconcile just created, with the verifier of the Secret's password, is proven by
      // the pooled login Ready waits for: PgBouncer passes SCRAM through, so that login reaches the
      // server as this role with this password. A direct login as well would cost the server a
      // second backend start per new tenant for nothing more. Extensions need a session of the
      // tenant's own, and a tenant without the pooler is proven directly; every later full
      // reconcile logs in directly (and repairs a password that drifted).
      if (planning) {
        // A plan logs in as nobody (a login is an attempt a server may count, and a repair it would
        // record is no plan): the extensions the tenant's session would create are read from an
        // admin session in its database.
        ext =
          accessMode || !td.spec.extensions.length
            ? { created: [], failed: [] }
            : await inDatabase(names.database, (s) => ensureExtensions(s, td.spec.extensions));
        return undefined;
      }
      if (createdRole && !observing && !accessMode && !td.spec.extensions.length && td.spec.pooling.enabled && server.spec.pooler) {
        ext = { created: [], failed: [] };
        provisioned.set(td.metadata.uid, {
          fingerprint: verifiedFingerprint(ctx, td, server, names, connectionLimit, written),
          at: Date.now(),
        });
        return undefined;
      }
      // A read-only tenant cannot create extensions (it may not create anything): they wait for writes.
      const extensions = (s: sql.Queryable) =>
        accessMode ? Promise.resolve({ created: [], failed: [] }) : ensureExtensions(s, td.spec.extensions);
      const withExtensions = (s: sql.Queryable) => extensions(rec ? rec.queryable(s) : s);
      let session = await asTenant(ep, active, password, names.database, withExtensions);
      if (!session.ok && sqlState(session.error) === SQLSTATE.invalidPassword) {
        await sql.setRolePassword(pool, active, verifier);
        credential.passwordChangedAt = new Date().toISOString();
        record([`Repaired password of role ${active} from Secret ${names.secret}`], 'Password');
        session = await asTenant(ep, active, password, names.database, withExtensions);
      }
      loginErr = session.ok ? undefined : session.error;
      ext = session.ok ? session.value : { created: [], failed: [] };
      if (session.ok && !ext.failed.length && !observing) {
        const fingerprint = verifiedFingerprint(ctx, td, server, names, connectionLimit, written);
        provisioned.set(td.metadata.uid, { fingerprint, at: Date.now() });
      } else if (!planning) {
        provisioned.delete(td.metadata.uid);
      }
      if (ext.created.length) record([`Created extensions ${ext.created.join(', ')} in ${names.database}`], 'Extensions');
      return undefined;
    }),
    // Overlapping rotation: the Secret switches to the other login role only once that role logs in
    // with its new password directly and through the pooler; the one it replaces keeps working until
    // its grace period ends (VALID UNTIL, which PostgreSQL enforces without the operator).
    step<Provisioned>('switch-login', async () => {
      if (justProvisioned || !switching || td.spec.suspend || loginErr || observing) return undefined;
      const to = switching;
      switchErr = await tryLogin(ep, to.role, to.password, names.database);
      const p = td.spec.pooling.enabled ? server.spec.pooler : undefined;
      if (!switchErr) {
        // The server's configs must know the new login role (its catalog read shows it) and the
        // allow-list rules naming it must be in force, before any client is sent to it.
        ctx.provisioned(serverName, key);
        const deadline = Date.now() + POOLER_WAIT_MS;
        for (;;) {
          switchErr = !ctx.markers.get(serverName)?.get(owner.uid)?.roles.has(to.role)
            ? new Error(`the server's configs do not name role ${to.role} yet`)
            : accessRulesCondition(ctx, server, td, names).reason === 'Pending'
              ? new Error(`the allow-list rules naming role ${to.role} are not in force yet`)
              : p
                ? await tryLogin({ host: p.host, port: p.port, sslMode: server.spec.sslMode }, to.role, to.password, names.alias)
                : undefined;
          if (!switchErr || Date.now() >= deadline) break;
          const wait = Math.min(SWITCH_POLL_MS, deadline - Date.now());
          if (park) await park(wait);
          else await new Promise((r) => setTimeout(r, wait));
        }
      }
      if (switchErr) return undefined;
      const templated = renderData(to.role, to.password);
      if (!templated.ok) return { outcome: notReady('SecretTemplateInvalid', templated.message, true), serverName };
      const now = Date.now();
      const until = now + graceMs(td);
      const old: PreviousLogin = { role: active, until, verifier: verifierFor(td.metadata.uid, active, password) };
      generation += 1;
      const annotations: Record<string, string> = {
        ...(rotateFor ? { [ROTATED_ANNOTATION]: rotateFor } : {}),
        [ROTATED_AT_ANNOTATION]: new Date(now).toISOString(),
        [GENERATION_ANNOTATION]: String(generation),
        [PREVIOUS_LOGIN_ANNOTATION]: formatPrevious(old),
      };
      // The Secret as this reconcile read it (its own earlier write changed only annotations).
      const current = await readSecret(ctx.clients, owner.namespace, names.secret, owner.uid);
      if (current.kind !== 'owned')
        throw new RetryableError('SecretChanged', `Secret ${names.secret} changed during a rotation; looking again`);
      // The deadline first: a crash before the Secret switches leaves the old login in use with a
      // deadline the next reconcile lifts; the other order could leave it without one.
      await sql.setRoleValidUntil(pool, old.role, until);
      await writeSecret(ctx.clients, td, names.secret, current, templated.data, annotations, [NEXT_LOGIN_ANNOTATION]);
      pendingSwitches.delete(td.metadata.uid);
      record(
        [
          `Rotated credentials${rotateFor && rotateFor !== current.secret.metadata?.annotations?.[ROTATED_ANNOTATION] ? ` (request ${rotateFor})` : ' (scheduled)'}: Secret ${names.secret} now logs in as ${to.role} with a new password; ${old.role} keeps working until ${new Date(until).toISOString()}`,
        ],
        'Password',
      );
      credential.passwordChangedAt = new Date(now).toISOString();
      if (rotateFor) credential.passwordRotatedFor = rotateFor;
      rotatedAt = now;
      prev = old;
      active = to.role;
      password = to.password;
      verifier = to.verifier;
      written = templated.data;
      switching = undefined;
      credentialDueAt = until;
      ctx.provisioned(serverName, key);
      return undefined;
    }),
    // Observed only: the plan is the report.
    step<Provisioned>('observation', async () => {
      if (!rec) return undefined;
      return observationOutcome(rec, observationCut, names, serverName);
    }),
    // What is there now, seen from outside: size, sessions, the pooler, the allow-lists.
    step<Provisioned>('observe', async () => {
      let usage: sql.UsageRow;
      // A new tenant whose role and database this reconcile made: the database is a copy of
      // template0, whose size the server's re-check read (a walk of every file of the new database
      // would cost the server more than the rest of this reconcile's reads; the relation cache file
      // its first session wrote is within the size's settling margin), and no password for the role
      // existed before this reconcile wrote its Secret: no sessions.
      const templateSize =
        createdRole && createdDatabase && !td.status?.roleName ? ctx.catalog.get(serverName)?.templateSizeBytes : undefined;
      if (names.schema !== undefined) {
        // The shared database's size is everyone's: the tenant's is that of its schema, as the
        // server's re-check measured it (one session for all schema tenants, not one per reconcile);
        // until then the last one known.
        const size = ctx.catalog.get(serverName)?.schemas?.get(names.schema)?.sizeBytes;
        usage = { sizeBytes: size ?? td.status?.sizeBytes ?? 0, activeConnections: await sql.roleSessions(pool, names.role) };
      } else if (templateSize !== undefined) usage = { sizeBytes: templateSize, activeConnections: 0 };
      else usage = await sql.usage(pool, names.database, names.role);
      if (ctx.markers.get(serverName)?.get(owner.uid)?.roles.has(logins.twin))
        usage = { ...usage, activeConnections: usage.activeConnections + (await sql.roleSessions(pool, logins.twin)) };
      // A suspended tenant's pooled login is proven again once it resumes.
      if (td.spec.suspend) pooledLogins.delete(td.metadata.uid);
      const pooler = () => poolerCondition(ctx, server, td, names.alias, active, password);
      let poolerReady: ConditionInput = td.spec.suspend
        ? { type: 'PoolerReady', status: 'True', reason: 'Suspended', message: 'the tenant is suspended: PgBouncer refuses its new logins' }
        : await pooler();
      // What was just provisioned waits here for the pooler to serve it (the agent's report wakes
      // this reconcile; no worker is held meanwhile): one reconcile and one status write take a new
      // tenant to Ready, instead of a second reconcile queued behind every other tenant's first.
      if (park && !periodic && poolerReady.reason === 'NotConfirmed') {
        ctx.provisioned(serverName, key);
        const deadline = Date.now() + POOLER_WAIT_MS;
        while (poolerReady.reason === 'NotConfirmed' && Date.now() < deadline) {
          await park(deadline - Date.now());
          poolerReady = await pooler();
        }
      }
      // A refused pooled login may be drift the shortcut above cannot see: the next look is a full one.
      if (poolerReady.reason === 'PoolerLoginFailed') provisioned.delete(td.metadata.uid);
      const access = accessRulesCondition(ctx, server, td, names);
      // What the steps above put in place (a reconcile answered by the shortcut decided nothing:
      // the same spec and sizes decide the same).
      const mode = justProvisioned ? accessModeOf(td, lastSizeOf(ctx, td, serverName, names)) : accessMode;
      const freshSize = settledSize(td.status?.sizeBytes, usage.sizeBytes);
      // A size that crossed the quota since: the next reconcile (soon) switches.
      const modeMoved = accessModeOf(td, freshSize) !== mode;
      const conditions: ConditionInput[] = [
        td.spec.suspend
          ? { type: 'RoleReady', status: 'True', reason: 'Suspended', message: `role ${names.role} exists with login off (suspended)` }
          : {
              type: 'RoleReady',
              status: 'True',
              reason: 'Provisioned',
              message: `role ${active} can log in${active !== names.role ? ` (acting as ${names.role})` : ''}`,
            },
        { type: 'SecretReady', status: 'True', reason: 'Provisioned', message: `Secret ${names.secret} holds the connection details` },
        ext.failed.length
          ? {
              type: 'DatabaseReady',
              status: 'False',
              reason: 'ExtensionFailed',
              message: ext.failed.map((f) => `extension ${f.name}: ${f.message}`).join('; '),
            }
          : {
              type: 'DatabaseReady',
              status: 'True',
              reason: 'Provisioned',
              message:
                names.schema !== undefined
                  ? `schema ${names.schema} in database ${names.database} ready`
                  : `database ${names.database}${names.shadow ? ` and ${names.shadow}` : ''} ready`,
            },
        poolerReady,
        access,
        ...[quotaCondition(td, freshSize), readOnlyCondition(td, mode, names.role, openSchemas)].filter((q): q is ConditionInput => !!q),
      ];
      if (td.spec.suspend) {
        // What was asked is in place: a suspended tenant is done, not failing (GitOps tools see it healthy).
        conditions.push({
          type: 'Ready',
          status: 'True',
          reason: 'Suspended',
          message: `suspended: role ${names.role} may not log in, directly or through the pooler; its data is kept (set spec.suspend to false to resume)`,
        });
        verified.set(td.metadata.uid, {
          fingerprint: verifiedFingerprint(ctx, td, server, names, connectionLimit, written),
          at: Date.now(),
        });
      } else if (ext.failed.length) {
        conditions.push({ type: 'Ready', status: 'False', reason: 'ExtensionFailed', message: conditions[2]?.message ?? '' });
      } else if (loginErr) {
        conditions.push({
          type: 'Ready',
          status: 'False',
          reason: 'LoginFailed',
          message: `a login with the Secret's credentials failed: ${describePgError(loginErr)}`,
        });
      } else if (poolerReady.status === 'False') {
        conditions.push({ type: 'Ready', status: 'False', reason: 'PoolerNotReady', message: poolerReady.message });
      } else if (mode && openSchemas.length) {
        conditions.push({
          type: 'Ready',
          status: 'False',
          reason: 'ReadOnlyIncomplete',
          message: readOnlyCondition(td, mode, names.role, openSchemas)?.message ?? '',
        });
      } else if (access.reason === 'AgentRejected') {
        // The allow-list the tenant asked for is not in force: what runs is an older one, or none.
        conditions.push({ type: 'Ready', status: 'False', reason: 'AccessRulesRejected', message: access.message });
      } else {
        const what = names.schema !== undefined ? `schema ${names.schema} in database ${names.database}` : `database ${names.database}`;
        conditions.push(
          mode
            ? {
                type: 'Ready',
                status: 'True',
                reason: 'ReadOnly',
                message: `${what} is ready for reads only (${mode === 'Read' ? 'spec.readOnly' : `past its quota of ${td.spec.quota?.size ?? '?'}; TRUNCATE allowed on tables without triggers`}); connection details in Secret ${names.secret}`,
              }
            : {
                type: 'Ready',
                status: 'True',
                reason: 'Provisioned',
                message: `${what} is ready; connection details in Secret ${names.secret}`,
              },
        );
        verified.set(td.metadata.uid, {
          fingerprint: verifiedFingerprint(ctx, td, server, names, connectionLimit, written),
          at: Date.now(),
        });
      }
      return {
        outcome: {
          conditions,
          status: {
            sizeBytes: freshSize,
            activeConnections: usage.activeConnections,
            ...credential,
            credentials: {
              loginRole: active,
              generation,
              ...(rotatedAt !== undefined ? { rotatedAt: new Date(rotatedAt).toISOString() } : {}),
              ...(prev ? { previousLoginRole: prev.role, previousValidUntil: new Date(prev.until).toISOString() } : {}),
              ...(rotationDueAt(td.spec.passwordRotation.interval, rotatedAt) !== undefined
                ? { nextRotationAt: new Date(rotationDueAt(td.spec.passwordRotation.interval, rotatedAt) ?? 0).toISOString() }
                : {}),
              ...(rotationPendingUntil !== undefined ? { rotationWaitsUntil: new Date(rotationPendingUntil).toISOString() } : {}),
              ...(switchErr ? { switchError: describePgError(switchErr) } : {}),
            },
          },
          terminal: false,
        },
        names,
        serverName,
        // Pooler and allow-list changes take effect within seconds: look again soon until they have
        // (an unreachable pooler is not polled every second).
        soon:
          poolerReady.reason === 'NotConfirmed' ||
          poolerReady.reason === 'PoolerLoginFailed' ||
          access.reason === 'Pending' ||
          !!switchErr ||
          modeMoved,
        ...(poolerReady.reason === 'PoolerUnreachable'
          ? { retryMs: Math.min(15_000, untilDue(credentialDueAt) ?? Infinity) }
          : untilDue(credentialDueAt) !== undefined
            ? { retryMs: untilDue(credentialDueAt) }
            : {}),
      };
    }),
  ];
  // Observed, a step that fails on something its own recorded statements would have created (a
  // database not made, so not there to look into) ends the plan there, and says so.
  const WRITING_STEPS = new Set(['role-and-databases', 'login-and-extensions']);
  const guarded = observing
    ? steps.map((st) =>
        WRITING_STEPS.has(st.name)
          ? step<Provisioned>(st.name, async () => {
              if (observationCut) return undefined;
              try {
                return await st.run();
              } catch (err) {
                if (err instanceof TerminalError) throw err;
                // (Recorded, a CREATE DATABASE leaves no database to look into: said as such.)
                const why =
                  err instanceof NotThereAfterCreate ? `${err.what} does not exist until the statements above run` : errorMessage(err);
                observationCut = `the plan stops here: ${why} (what follows depends on what the statements above would create)`;
                if (planning) planning.cut = observationCut;
                return undefined;
              }
            })
          : st,
      )
    : steps;
  // The last step always returns; undefined would mean a step list without it.
  let out: Provisioned | undefined;
  try {
    out = await runSteps(guarded, log);
    if (!out) throw new Error('provisioning ended without a result');
  } catch (err) {
    flushEvents(false);
    throw err;
  }
  // Held only for the reconcile's own status write, which sends it (a plan sends none).
  const held = flushEvents(!planning);
  return held === undefined ? out : { ...out, provisionedEvent: held };
}
/**
 * Tenants a full reconcile found Ready, with what it was found for: the spec, the server's spec, the
 * Secret's data and the names. A periodic re-check while all of it is the same and the server's
 * catalog shows the objects as they were is answered without a session; every DEEP_RECHECKS-th
 * period (an hour at the default 5 minutes) a full one runs anyway: the tenant's own login, its
 * schema and its privileges are looked at in its database, which the catalog snapshot does not show.
 */
const verified = new Map<string, { fingerprint: string; at: number }>();
/** Tenants whose objects a reconcile of the last JUST_PROVISIONED_MS ensured, with what for. */
const provisioned = new Map<string, { fingerprint: string; at: number }>();
const JUST_PROVISIONED_MS = 120_000;
/**
 * Rotations switching to the other login role, by tenant uid: the new password, kept so that a
 * switch that waits for the pooler across reconciles does not set another one each time.
 */
const pendingSwitches = new Map<string, { role: string; password: string }>();
/** How often a switch in progress tries the new login through the pooler. */
const SWITCH_POLL_MS = 250;

/** The grace period of the previous login after an overlapping rotation, in ms. */
const graceMs = (td: TenantDatabase): number => (durationSeconds(td.spec.passwordRotation.gracePeriod) ?? 3600) * 1000;

/** Milliseconds until a due time (at least a second), for the requeue; undefined without one. */
function untilDue(at: number | undefined): number | undefined {
  return at === undefined ? undefined : Math.max(1000, at - Date.now() + 100);
}

/**
 * The login role in use and when credential work comes due, from the cached Secret: the shortcuts
 * for unchanged tenants must not skip a grace period's end or a scheduled rotation.
 */
function cachedCredentials(
  ctx: OperatorContext,
  td: TenantDatabase,
  names: TenantNames,
  serverName: string,
): { logins: LoginRoles; active: string; dueAt: number | undefined } {
  const logins = loginRolesOf(names.role, ctx.markers.get(serverName)?.get(td.metadata.uid)?.roles);
  const secret = ctx.secrets.get(names.secret, td.metadata.namespace);
  const ann = secret?.metadata?.annotations;
  const active = activeLogin(decodeSecretData(secret?.data), logins);
  const prev = previousLogin(ann, logins, active);
  const scheduled = rotationDueAt(
    td.spec.passwordRotation.interval,
    lastRotatedAt(ann, td.status?.passwordChangedAt, td.metadata.creationTimestamp),
  );
  return { logins, active, dueAt: credentialDueAtOf(prev?.until, scheduled) };
}
/**
 * The tenant's marked roles as far as its twin's name depends on them (credentials.ts loginRolesOf):
 * the server's catalog snapshot, or, where that may not show the tenant's own twin as an earlier
 * release named it (legacyTwinRoleNames), as with no snapshot yet after a start, a take-over this
 * reconcile re-marked it, or an Overlap tenant the snapshot shows with no twin at all: a look at the catalog. A tenant
 * without Overlap and with its snapshot in place, the common case, costs nothing.
 */
async function twinNameRoles(
  ctx: OperatorContext,
  pool: pg.Pool,
  serverName: string,
  role: string,
  td: TenantDatabase,
  adoptedHere: boolean,
): Promise<ReadonlySet<string> | undefined> {
  const snap = ctx.markers.get(serverName);
  const mine = snap?.get(td.metadata.uid)?.roles;
  const legacy = legacyTwinRoleNames(role);
  const twinless = td.spec.passwordRotation.strategy === 'Overlap' && !legacy.some((r) => mine?.has(r)) && !mine?.has(twinRoleName(role));
  if (snap && !adoptedHere && !twinless) return mine;
  const found = new Set(mine ?? []);
  for (const r of legacy) if (sql.markerUid((await sql.findRole(pool, r))?.comment) === td.metadata.uid) found.add(r);
  return found.size === (mine?.size ?? 0) ? mine : found;
}

/** How long a reconcile waits inside for the pooler to serve what it provisioned; then it polls. */
const POOLER_WAIT_MS = 15_000;
const DEEP_RECHECKS = 12;

/** Whether the server's catalog snapshot shows the tenant's role and databases as provisioning leaves them. */
function intactIn(
  snap: sql.CatalogSnapshot,
  names: TenantNames,
  loginRole: string,
  connectionLimit: number,
  login = true,
  readOnly = false,
): boolean {
  const role = snap.roles.get(loginRole);
  const dbs = ownDatabases(names).map((d) => snap.databases.get(d));
  return (
    !!role &&
    role.canLogin === login &&
    role.connLimit === connectionLimit &&
    dbs.every((d) => !!d?.ownedByAdmin && d.allowConn && d.connLimit === connectionLimit) &&
    // A schema tenant's schema shows in the snapshot of the shared database, owned by its role.
    // (read-only: by its holder).
    (names.schema === undefined || snap.schemas?.get(names.schema)?.owner === (readOnly ? holderRoleName(names.role) : names.role))
  );
}

function verifiedFingerprint(
  ctx: OperatorContext,
  td: TenantDatabase,
  server: PostgresServer,
  names: TenantNames,
  connectionLimit: number,
  data?: Record<string, string>,
): string {
  const secret = data ?? decodeSecretData(ctx.secrets.get(names.secret, td.metadata.namespace)?.data);
  const h = createHash('sha256');
  h.update(
    JSON.stringify([
      td.metadata.generation,
      td.metadata.annotations ?? {},
      server.metadata.generation,
      names,
      connectionLimit,
      Object.entries(secret).sort(([a], [b]) => (a < b ? -1 : 1)),
      // Read-only or not (a quota crossed changes it without any spec change).
      accessModeOf(td, lastSizeOf(ctx, td, server.metadata.name, names)) ?? '',
    ]),
  );
  return h.digest('base64');
}

const UNITS: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };

/** Bytes in a quota size such as 500Mi or 10Gi. */
export function quotaBytes(size: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(size);
  return m ? Number(m[1]) * (m[2] ? (UNITS[m[2]] ?? 1) : 1) : Infinity;
}

/**
 * QuotaExceeded from the last measured size: only for a tenant with a quota, or one that had the
 * condition (a quota removed says so once), so that tenants without one carry no extra condition.
 */
export function quotaCondition(td: TenantDatabase, sizeBytes: number | undefined): ConditionInput | undefined {
  const q = td.spec.quota;
  if (!q) {
    const had = td.status?.conditions?.some((c) => c.type === 'QuotaExceeded' && c.reason !== 'NoQuota');
    return had ? { type: 'QuotaExceeded', status: 'False', reason: 'NoQuota', message: 'no quota is set' } : undefined;
  }
  if (sizeBytes === undefined) return undefined;
  const limit = quotaBytes(q.size);
  const mib = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return sizeBytes > limit
    ? { type: 'QuotaExceeded', status: 'True', reason: 'OverQuota', message: `holds ${mib(sizeBytes)}, past its quota of ${q.size}` }
    : { type: 'QuotaExceeded', status: 'False', reason: 'WithinQuota', message: `holds ${mib(sizeBytes)} of its quota of ${q.size}` };
}

/**
 * Read-only or not, and how: spec.readOnly asks for reads only; a quota with action ReadOnly, once
 * passed, leaves reads and what frees space (TRUNCATE; see pg/read-only), until the size is back under it.
 */
export function accessModeOf(td: TenantDatabase, sizeBytes: number | undefined): ReadOnlyMode | undefined {
  if (td.spec.readOnly) return 'Read';
  const q = td.spec.quota;
  if (q?.action === 'ReadOnly' && sizeBytes !== undefined && sizeBytes > quotaBytes(q.size)) return 'ReadAndTruncate';
  return undefined;
}

const PLAN_LINES = 100;

/** Status for an observed tenant: in sync or not, and the plan. */
function observationOutcome(rec: Recorder, cut: string | undefined, names: TenantNames, serverName: string): Provisioned {
  const lines = [...rec.statements, ...rec.notes, ...(cut ? [cut] : [])].map((l) => (l.length > 1024 ? `${cutAt(l, 1020)} ...` : l));
  const plan = lines.length > PLAN_LINES ? [...lines.slice(0, PLAN_LINES), `... and ${lines.length - PLAN_LINES} more`] : lines;
  const inSync = lines.length === 0;
  const what = names.schema !== undefined ? `schema ${names.schema} in database ${names.database}` : `database ${names.database}`;
  return {
    outcome: {
      conditions: [
        inSync
          ? { type: 'Ready', status: 'True', reason: 'InSync', message: `observed only: ${what}, its role and Secret are as the spec asks` }
          : {
              type: 'Ready',
              status: 'False',
              reason: 'Drifted',
              message: `observed only: a managed reconcile would make ${lines.length} change(s); see status.observation.plan (set managementPolicy to Manage to let it)`,
            },
      ],
      status: { observation: { observedAt: new Date().toISOString(), inSync, plan } },
      // Nothing will change until someone does: not retried in a loop (the periodic re-check looks again).
      terminal: !inSync,
    },
    names,
    serverName,
  };
}

/** The access mode the last status reports. */
function modeInStatus(td: TenantDatabase): ReadOnlyMode | undefined {
  const c = td.status?.conditions?.find((x) => x.type === 'ReadOnly');
  if (c?.status !== 'True') return undefined;
  return c.reason === 'Requested' ? 'Read' : 'ReadAndTruncate';
}

/** The last size known of the tenant: the server's re-check, or status. */
function lastSizeOf(ctx: OperatorContext, td: TenantDatabase, serverName: string, names: TenantNames): number | undefined {
  const snap = ctx.catalog.get(serverName);
  if (names.schema === undefined && td.status?.sizeBytes !== undefined) return td.status.sizeBytes; // measured by the last full look
  return (
    (names.schema !== undefined ? snap?.schemas?.get(names.schema)?.sizeBytes : snap?.databases.get(names.database)?.sizeBytes) ??
    td.status?.sizeBytes
  );
}

/**
 * The ReadOnly condition: for a tenant that asks for it or has a quota that may switch to it, and
 * for one that had it (said once more when it goes).
 */
export function readOnlyCondition(
  td: TenantDatabase,
  mode: ReadOnlyMode | undefined,
  role: string,
  open: readonly string[] = [],
): ConditionInput | undefined {
  if (mode && open.length)
    return {
      type: 'ReadOnly',
      status: 'False',
      reason: 'PublicCanCreate',
      message: `role ${role} can still create tables in schema ${open.join(', ')}, where every role may (CREATE for PUBLIC) and the operator's admin cannot change it; as a superuser, run REVOKE CREATE ON SCHEMA <schema> FROM PUBLIC in that database`,
    };
  if (mode === 'Read')
    return { type: 'ReadOnly', status: 'True', reason: 'Requested', message: `role ${role} may read and not write (spec.readOnly)` };
  if (mode === 'ReadAndTruncate')
    return {
      type: 'ReadOnly',
      status: 'True',
      reason: 'QuotaExceeded',
      message: `past its quota of ${td.spec.quota?.size ?? '?'}: role ${role} may read and TRUNCATE its tables without triggers, and writes again once the size is back under the quota`,
    };
  const had = td.status?.conditions?.some((c) => c.type === 'ReadOnly');
  if (!had && td.spec.quota?.action !== 'ReadOnly') return undefined;
  return { type: 'ReadOnly', status: 'False', reason: 'ReadWrite', message: `role ${role} may read and write` };
}

/**
 * A database's size moves a little all the time (checkpoints, vacuum): status keeps the size it has
 * until it moved by a megabyte or 5 %, so an idle tenant's status is not rewritten on every check.
 */
export function settledSize(previous: number | undefined, now: number): number {
  if (previous === undefined) return now;
  return Math.abs(now - previous) < Math.max(1 << 20, previous * 0.05) ? previous : now;
}

/**
 * maxTenants, exactly, whatever runs in parallel: admission is one at a time per server, counts the
 * tenants whose roles the catalog shows for this server (retained ones included: their markers name
 * the server) plus those admitted in this process whose role is not created yet.
 */
const admissionLocks = new Map<string, ReturnType<typeof pLimit>>();
const admitted = new Map<string, Map<string, number>>();
const ADMISSION_HOLD_MS = 120_000;

async function admit(ctx: OperatorContext, pool: pg.Pool, serverName: string, uid: string, max: number): Promise<boolean> {
  let lock = admissionLocks.get(serverName);
  if (!lock) admissionLocks.set(serverName, (lock = pLimit(1)));
  return lock(async () => {
    const now = Date.now();
    const pending = admitted.get(serverName) ?? new Map<string, number>();
    admitted.set(serverName, pending);
    for (const [u, at] of pending) if (now - at > ADMISSION_HOLD_MS) pending.delete(u);
    const tenantServer = new Map(ctx.tenants.list().map((t) => [t.metadata?.uid ?? '', t.spec?.serverRef?.name]));
    const defaultName = defaultServerName(ctx);
    const used = new Set<string>();
    for (const o of await sql.managedObjects(pool)) {
      if (o.kind !== 'role' || o.uid === uid || o.comment.endsWith(sql.TOMBSTONE)) continue;
      const server = sql.markerServer(o.comment) ?? (tenantServer.has(o.uid) ? (tenantServer.get(o.uid) ?? defaultName) : undefined);
      if (server === serverName) used.add(o.uid);
    }
    for (const u of pending.keys()) if (u !== uid) used.add(u);
    if (used.size >= max) return false;
    pending.set(uid, now);
    return true;
  });
}

/**
 * connectionLimits.enforceBudget, exactly, whatever runs in parallel: like admission, one check at
 * a time per server, counting the limits the catalog shows plus those granted in this process and
 * not yet written (a role's granted limit replaces its catalog one).
 */
const budgetGranted = new Map<string, Map<string, { limit: number; at: number }>>();

async function fitBudget(
  serverName: string,
  role: string,
  limit: number,
  read: () => Promise<{ slots: sql.ConnectionSlots; limits: Map<string, number> }>,
  operatorSessions: number,
): Promise<{ fits: boolean; sum: number; open: number }> {
  let lock = admissionLocks.get(serverName);
  if (!lock) admissionLocks.set(serverName, (lock = pLimit(1)));
  return lock(async () => {
    const now = Date.now();
    const granted = budgetGranted.get(serverName) ?? new Map<string, { limit: number; at: number }>();
    budgetGranted.set(serverName, granted);
    for (const [r, g] of granted) if (now - g.at > ADMISSION_HOLD_MS) granted.delete(r);
    const { slots, limits } = await read();
    for (const [r, g] of granted) limits.set(r, g.limit);
    // Its own limit replaces the role's; a second login role that may log in (a grace period) counts.
    limits.delete(role);
    const sum = [...limits.values()].reduce((a, l) => a + (l < 0 ? slots.maxConnections : l), 0);
    const open = slots.maxConnections - slots.superuserReserved - slots.reserved - operatorSessions;
    if (sum + limit > open) return { fits: false, sum, open };
    granted.set(role, { limit, at: now });
    return { fits: true, sum, open };
  });
}

/**
 * The servers whose catalogs show roles of this tenant (from the last server re-checks): on each,
 * a namespace that lost admission loses login, and a connection limit above a lowered ceiling is
 * brought down to it. Returns the refusal, if any, for status.
 */
async function enforceWhereItLives(
  ctx: OperatorContext,
  td: TenantDatabase,
  servers: PostgresServer[],
  record: (changes: string[], noun: string) => void,
  wrap: (pool: pg.Pool) => pg.Pool,
): Promise<{ reason: string; message: string; serverName: string } | undefined> {
  let refusal: { reason: string; message: string; serverName: string } | undefined;
  for (const [serverName, marks] of ctx.markers) {
    const roles = [...(marks.get(td.metadata.uid)?.roles ?? [])];
    const server = servers.find((x) => x.metadata.name === serverName);
    if (roles.length === 0 || !server) continue;
    const allowed = namespaceAllowed(ctx, server, td.metadata.namespace ?? '');
    const limits = server.spec.connectionLimits;
    const wanted = td.spec.connectionLimit === -1 ? limits.default : td.spec.connectionLimit;
    if (allowed.ok && wanted <= limits.max) continue;
    const creds = await loadAdminCredentials(ctx.clients, server, ctx.config.namespace);
    const ca = creds.ok ? await loadCa(ctx.clients, server, ctx.config.namespace) : undefined;
    if (!creds.ok || !ca?.ok)
      throw new RetryableError('ServerNotReady', `PostgresServer ${serverName} must be reached to apply its limits to this tenant`);
    const pool = wrap(ctx.pools.get(serverName, endpointOf(server, ca.value), creds.value));
    for (const role of roles) {
      const row = await sql.findRole(pool, role);
      if (!row) continue;
      if (!allowed.ok && row.canLogin) {
        await sql.disableLogin(pool, role);
        const ended = await sql.terminateRoleSessions(pool, role);
        record(
          [
            `Disabled login of role ${role}${ended ? ` and ended ${ended} session(s)` : ''}: namespace ${td.metadata.namespace} may no longer use PostgresServer ${serverName}`,
          ],
          'Role',
        );
      } else if (allowed.ok && (row.connLimit < 0 || row.connLimit > limits.max)) {
        await sql.setRoleLogin(pool, role, row.canLogin, limits.max);
        record(
          [`Lowered the connection limit of role ${role} to PostgresServer ${serverName}'s connectionLimits.max of ${limits.max}`],
          'Role',
        );
      }
    }
    for (const database of marks.get(td.metadata.uid)?.databases ?? []) {
      const row = await sql.findDatabase(pool, database);
      if (allowed.ok && row?.ownedByAdmin && (row.connLimit < 0 || row.connLimit > limits.max))
        await sql.setDatabaseConnLimit(pool, database, limits.max);
    }
    refusal ??= allowed.ok
      ? {
          reason: 'ConnectionLimitTooHigh',
          message: `connectionLimit ${wanted} is above PostgresServer ${serverName}'s connectionLimits.max of ${limits.max}`,
          serverName,
        }
      : { reason: allowed.reason, message: allowed.message, serverName };
  }
  return refusal;
}

/** Per tenant uid, what its last successful login through the pooler proved. */
const pooledLogins = new Map<string, string>();

/**
 * PoolerReady: confirmed from outside, not assumed from what was written. The agent must have
 * loaded the config (a refused one names this tenant's pool as not ready), the admin console must
 * show the pool as asked, and the tenant's own credentials must log in through the pooler.
 */
async function poolerCondition(
  ctx: OperatorContext,
  server: PostgresServer,
  td: TenantDatabase,
  alias: string,
  role: string,
  password: string,
): Promise<ConditionInput> {
  const p = server.spec.pooler;
  if (!p)
    return {
      type: 'PoolerReady',
      status: 'True',
      reason: 'NoPooler',
      message: `PostgresServer ${server.metadata.name} has no pooler; pooled URLs are the direct ones`,
    };
  if (!td.spec.pooling.enabled)
    return {
      type: 'PoolerReady',
      status: 'True',
      reason: 'PoolingDisabled',
      message: 'pooling is disabled for this tenant; pooled URLs are the direct ones',
    };
  const agent = poolerConfigApplied(ctx, server);
  const admin = await loadPoolerAdmin(ctx, server);
  if (!admin.ok)
    return {
      type: 'PoolerReady',
      status: 'Unknown',
      reason: admin.reason,
      message: `pooled URLs point at ${p.host}:${p.port}, but ${admin.message}`,
    };
  let entry;
  try {
    entry = (await sharedPoolList(ctx, server, admin.value)).get(alias);
  } catch (err) {
    return {
      type: 'PoolerReady',
      status: 'False',
      reason: 'PoolerUnreachable',
      message: `cannot reach the pooler admin console at ${p.host}:${p.port}: ${describePgError(err)}`,
    };
  }
  const want = td.spec.pooling;
  const confirmed = entry && entry.poolMode === want.poolMode && entry.poolSize === want.poolSize;
  if (!confirmed && agent.error) {
    return {
      type: 'PoolerReady',
      status: 'False',
      reason: 'AgentRejected',
      message: `the pooler agent refused the config that holds this tenant's pool: ${agent.error}`,
    };
  }
  if (!entry)
    return {
      type: 'PoolerReady',
      status: 'False',
      reason: 'NotConfirmed',
      message: `PgBouncer at ${p.host}:${p.port} does not serve ${alias} yet`,
    };
  if (!confirmed) {
    return {
      type: 'PoolerReady',
      status: 'False',
      reason: 'NotConfirmed',
      message: `PgBouncer serves ${alias} with ${entry.poolMode}/${entry.poolSize}, waiting for ${want.poolMode}/${want.poolSize}`,
    };
  }
  // One pooled login per change of what it proves (credentials, pool): not on every re-check, which
  // would keep clients on PgBouncer for nothing (and PgBouncer 1.18 crashes when a database is
  // removed while a client logs in to it).
  const proof = createHash('sha256')
    .update(JSON.stringify([p.host, p.port, alias, role, password, entry.poolMode, entry.poolSize]))
    .digest('base64');
  const loginErr =
    pooledLogins.get(td.metadata.uid) === proof
      ? undefined
      : await tryPooledLogin({ host: p.host, port: p.port, sslMode: server.spec.sslMode }, role, password, alias, entry.poolMode);
  if (loginErr) pooledLogins.delete(td.metadata.uid);
  else pooledLogins.set(td.metadata.uid, proof);
  if (loginErr) {
    // A new password reaches the userlist a moment after the role: a refused login waits for the agent.
    const reason = agent.applied ? 'PoolerLoginFailed' : 'NotConfirmed';
    return {
      type: 'PoolerReady',
      status: 'False',
      reason,
      message: `a login through PgBouncer at ${p.host}:${p.port} with the Secret's credentials failed: ${describePgError(loginErr)}`,
    };
  }
  return {
    type: 'PoolerReady',
    status: 'True',
    reason: 'Confirmed',
    message: `PgBouncer at ${p.host}:${p.port} serves ${alias} (${entry.poolMode}, pool_size ${entry.poolSize}) and the Secret's credentials log in through it`,
  };
}

function accessRulesCondition(ctx: OperatorContext, server: PostgresServer, td: TenantDatabase, names: TenantNames): ConditionInput {
  const st = accessState(ctx, server, td.metadata.namespace ?? '', td.metadata.name, accessTarget(names), td.spec.pooling.enabled);
  switch (st.kind) {
    case 'open':
      return {
        type: 'AccessRulesApplied',
        status: 'True',
        reason: 'NoWhitelist',
        message: 'no IpWhitelist names this tenant; SCRAM logins are accepted from wherever the network allows',
      };
    case 'unenforced':
      return {
        type: 'AccessRulesApplied',
        status: 'False',
        reason: 'NotEnforced',
        message: `IpWhitelists name this tenant, but nothing enforces them: ${st.message}`,
      };
    case 'pending':
      return { type: 'AccessRulesApplied', status: 'False', reason: 'Pending', message: st.message };
    case 'rejected':
      return { type: 'AccessRulesApplied', status: 'False', reason: 'AgentRejected', message: st.message };
    case 'enforced':
      return { type: 'AccessRulesApplied', status: 'True', reason: 'Enforced', message: st.message };
  }
}
