/**
 * TenantGroup: one Secret listing the members (TenantDatabases of the group's namespace whose labels
 * match its selector) with their connection information, rewritten whenever a member comes, goes,
 * changes readiness or gets new credentials. The member data comes from each member's own Secret,
 * and only from one this TenantDatabase controls; the registry Secret is owned by the group, so it
 * goes with it.
 */
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_VERSION, matchesSelector } from '../../api/common.js';
import { TENANT_GROUP } from '../../api/kinds.js';
import { tenantGroup, type TenantGroup } from '../../api/tenantgroup.js';
import { customResourceApi, httpStatus } from '../../kube/client.js';
import { DATA_HASH_ANNOTATION, dataHash, decodeSecretData, encodeSecretData } from '../../kube/secrets.js';
import type { ConditionInput } from '../../runtime/conditions.js';
import { periodicDelay, type ReconcileResult } from '../../runtime/controller.js';
import { addFinalizer, commitStatus, removeFinalizer } from '../../runtime/status.js';
import { FINALIZER, MANAGED_BY, MANAGED_BY_LABEL, controllerRef, splitKey, type OperatorContext } from '../context.js';
import { GROUP_VERIFIER_ANNOTATION } from '../pooler-view.js';
import { ownedBy } from '../tenantdatabase/secret.js';
import { BY_NAMESPACE } from '../watches.js';
import { GROUP_LOGIN_CONDITION, dropGroupLogin, ensureGroupLogin, type GroupLoginOutcome } from './login.js';
import { rollOutMigration, type RolloutResult } from '../migrations/group.js';
import { REGISTRY_WARN, renderRegistry, type Member } from './registry.js';

export const GROUP_LABEL = 'tenantdb.dev/tenantgroup';

/** The members as the caches show them, each with its own Secret's data when that Secret is its own. */
export function membersOf(ctx: OperatorContext, g: TenantGroup): Member[] {
  const ns = g.metadata.namespace ?? '';
  const out: Member[] = [];
  for (const t of ctx.tenants.byIndex(BY_NAMESPACE, ns)) {
    if (t.metadata?.deletionTimestamp || !matchesSelector(g.spec.selector, t.metadata?.labels)) continue;
    const name = t.metadata?.name ?? '';
    const s = ctx.secrets.get(t.spec?.secretName ?? `${name}-db`, ns);
    const own = s && ownedBy(s, t.metadata?.uid ?? '') && s.data ? decodeSecretData(s.data) : undefined;
    // A suspended member is done as asked, but no backend can log in with it.
    const ready = t.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True' && c.reason !== 'Suspended') ?? false;
    out.push({ name, ready, secret: own });
  }
  return out;
}

function registrySecret(g: TenantGroup, name: string, data: Record<string, string>, verifier: string | undefined): k8s.V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name,
      namespace: g.metadata.namespace ?? '',
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY, ...(g.metadata.name.length <= 63 ? { [GROUP_LABEL]: g.metadata.name } : {}) },
      // The group login's verifier rides along for the pooler's userlist (the cache keeps no group Secret data).
      annotations: { [DATA_HASH_ANNOTATION]: dataHash(data), ...(verifier ? { [GROUP_VERIFIER_ANNOTATION]: verifier } : {}) },
      ownerReferences: [controllerRef('TenantGroup', g.metadata.name, g.metadata.uid)],
    },
    data: encodeSecretData(data),
  };
}

/** Writes the registry where it differs; 'foreign' when a Secret of that name is not this group's. */
async function writeRegistry(
  ctx: OperatorContext,
  g: TenantGroup,
  name: string,
  data: Record<string, string>,
  verifier: string | undefined,
  read?: k8s.V1Secret | null,
): Promise<'unchanged' | 'written' | 'foreign'> {
  const ns = g.metadata.namespace ?? '';
  const hash = dataHash(data);
  const cached = ctx.secrets.get(name, ns);
  const sameVerifier = (s: k8s.V1Secret) => s.metadata?.annotations?.[GROUP_VERIFIER_ANNOTATION] === verifier;
  // The cache keeps the data hash of the operator's own Secrets (not a group Secret's data).
  if (cached && ownedBy(cached, g.metadata.uid) && cached.metadata?.annotations?.[DATA_HASH_ANNOTATION] === hash && sameVerifier(cached))
    return 'unchanged';
  const body = registrySecret(g, name, data, verifier);
  const current = read === undefined ? await readRegistry(ctx, ns, name) : (read ?? undefined);
  if (!current) {
    await ctx.clients.core.createNamespacedSecret({ namespace: ns, body });
    return 'written';
  }
  if (!ownedBy(current, g.metadata.uid)) return 'foreign';
  if (
    current.metadata?.annotations?.[DATA_HASH_ANNOTATION] === hash &&
    dataHash(decodeSecretData(current.data)) === hash &&
    sameVerifier(current)
  )
    return 'unchanged';
  await ctx.clients.core.replaceNamespacedSecret({
    name,
    namespace: ns,
    body: { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion ?? '' } },
  });
  return 'written';
}

async function readRegistry(ctx: OperatorContext, namespace: string, name: string): Promise<k8s.V1Secret | undefined> {
  try {
    return await ctx.clients.core.readNamespacedSecret({ name, namespace });
  } catch (err) {
    if (httpStatus(err) !== 404) throw err;
    return undefined;
  }
}

export async function reconcileTenantGroup(ctx: OperatorContext, key: string, log: Logger): Promise<ReconcileResult> {
  const { namespace, name } = splitKey(key);
  const raw = ctx.groups.get(name, namespace);
  if (!raw) return {};
  const api = customResourceApi(ctx.clients, TENANT_GROUP);
  const meta = { name, namespace, resourceVersion: raw.metadata?.resourceVersion ?? '', generation: raw.metadata?.generation };
  const ref = { apiVersion: API_VERSION, kind: 'TenantGroup', name, namespace, uid: raw.metadata?.uid ?? '' };
  // The migration rollout (src/controllers/migrations/) adds its summary and condition to the one status write.
  let migration: RolloutResult = {};
  const finishAll = async (observed: ConditionInput[], fields: Record<string, unknown>, terminal: boolean) => {
    const t = await commitStatus(api, meta, raw.status, {
      fields: { ...fields, ...(migration.rollout !== undefined ? { rollout: migration.rollout } : {}) },
      observed: [...observed, ...(migration.condition ? [migration.condition] : [])],
      terminal,
    });
    for (const c of observed) {
      const before = t.before.find((b) => b.type === c.type);
      if (!t.changed || (before?.reason === c.reason && before.status === c.status)) continue;
      if (c.status === 'False' && c.reason !== 'Pending') ctx.events.warning(ref, c.reason, c.message);
      else if (c.type === GROUP_LOGIN_CONDITION && c.reason === 'MembersNotReached') ctx.events.warning(ref, c.reason, c.message);
    }
    return {};
  };
  const finish = (ready: ConditionInput, fields: Record<string, unknown>, terminal: boolean) => finishAll([ready], fields, terminal);
  const parsed = tenantGroup.safeParse(raw);
  if (!parsed.success) {
    const message = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    return finish({ type: 'Ready', status: 'False', reason: 'InvalidSpec', message }, {}, true);
  }
  const g = parsed.data;
  migration = await rollOutMigration(ctx, g, ref, log);
  const secretName = g.spec.secretName ?? `${name}-tenants`;
  const metaF = { ...meta, finalizers: g.metadata.finalizers };
  const hasFinalizer = (g.metadata.finalizers ?? []).includes(FINALIZER);
  // Deletion, or a login switched off: the group's role goes (its sessions ended) before the finalizer.
  if (g.metadata.deletionTimestamp || !g.spec.groupLogin?.enabled) {
    if (hasFinalizer) {
      for (const change of await dropGroupLogin(ctx, g, log)) ctx.events.normal(ref, 'GroupLoginDropped', change);
      await removeFinalizer(api, metaF, FINALIZER);
      if (g.metadata.deletionTimestamp) return {};
      // The finalizer change moved resourceVersion; the status write below does not need it.
    }
    if (g.metadata.deletionTimestamp) return {};
  } else if (!hasFinalizer) {
    await addFinalizer(api, metaF, FINALIZER);
  }
  let login: GroupLoginOutcome | undefined;
  let read: k8s.V1Secret | null | undefined;
  if (g.spec.groupLogin?.enabled) {
    read = (await readRegistry(ctx, namespace ?? '', secretName)) ?? null;
    if (read && !ownedBy(read, g.metadata.uid)) {
      const message = `Secret ${namespace}/${secretName} exists and is not this TenantGroup's; set spec.secretName to another name`;
      return finish({ type: 'Ready', status: 'False', reason: 'Conflict', message }, { secretName }, true);
    }
    login = await ensureGroupLogin(ctx, g, read ? decodeSecretData(read.data) : undefined);
    for (const change of login.changes) ctx.events.normal(ref, 'GroupLogin', change);
  }
  // null clears what an earlier login left in status (a merge patch removes the field).
  const extra = { groupLogin: login?.status ?? (raw.status?.groupLogin ? null : undefined) };
  const members = membersOf(ctx, g);
  const group = login?.keys && login.document ? { keys: login.keys, document: login.document } : undefined;
  const reg = renderRegistry(members, g.spec.env, group);
  const conds = (ready: ConditionInput): ConditionInput[] => (login ? [login.condition, ready] : [ready]);
  if (!reg.ok) {
    return finishAll(
      conds({
        type: 'Ready',
        status: 'False',
        reason: reg.bytes ? 'RegistryTooLarge' : 'KeyCollision',
        message: `${reg.message}; the Secret keeps its last content`,
      }),
      { secretName, ...extra, ...(reg.bytes ? { bytes: reg.bytes } : {}) },
      true,
    );
  }
  const wrote = await writeRegistry(ctx, g, secretName, reg.data, group ? login?.verifier : undefined, read);
  if (wrote === 'foreign') {
    const message = `Secret ${namespace}/${secretName} exists and is not this TenantGroup's; set spec.secretName to another name`;
    return finish({ type: 'Ready', status: 'False', reason: 'Conflict', message }, { secretName }, true);
  }
  if (wrote === 'written') ctx.events.normal(ref, 'Synced', `Wrote ${members.length} member(s) into Secret ${secretName}`);
  const waiting = members.length - reg.members;
  const near = reg.bytes > REGISTRY_WARN ? `; it holds ${reg.bytes} bytes, near the limit of a Secret: split the group soon` : '';
  const message = `Secret ${secretName} lists ${reg.members} member(s), ${reg.ready} Ready${waiting ? `; ${waiting} more wait for their Secret` : ''}${near}`;
  const fields = { secretName, members: reg.members, ready: reg.ready, bytes: reg.bytes, ...extra };
  // A group login that cannot work makes the group not Ready: its backend relies on it.
  if (login && login.condition.status !== 'True') {
    const c = login.condition;
    const result = await finishAll(
      conds({ type: 'Ready', status: 'False', reason: c.reason, message: `group login: ${c.message}` }),
      fields,
      login.terminal,
    );
    return login.pending ? { poll: true } : login.terminal ? result : { requeueAfterMs: 15_000 };
  }
  await finishAll(conds({ type: 'Ready', status: 'True', reason: near ? 'NearLimit' : 'Synced', message }), fields, true);
  return login ? { requeueAfterMs: periodicDelay(ctx.config.resyncMs) } : {};
}
