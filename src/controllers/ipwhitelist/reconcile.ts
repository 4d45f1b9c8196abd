import type { Logger } from 'pino';
import { IP_WHITELIST } from '../../api/kinds.js';
import { ipWhitelist, type IpWhitelist } from '../../api/ipwhitelist.js';
import { postgresServer } from '../../api/postgresserver.js';
import { schemaAlias, shadowDatabaseName } from '../../api/naming.js';
import { tenantDatabaseSpec } from '../../api/tenantdatabase.js';
import { customResourceApi } from '../../kube/client.js';
import type { ConditionInput } from '../../runtime/conditions.js';
import { periodicDelay, type ReconcileResult } from '../../runtime/controller.js';
import { commitStatus } from '../../runtime/status.js';
import { splitKey, type OperatorContext } from '../context.js';
import { MAX_CIDRS_PER_TENANT, accessState, accessTarget, tenantWhitelists } from '../pooler-view.js';

type Decision = { applied: ConditionInput; ruleCount: number; soon: boolean };

function decide(ctx: OperatorContext, wl: IpWhitelist): Decision {
  const ns = wl.metadata.namespace ?? '';
  const tdName = wl.spec.tenantDatabaseRef.name;
  const no = (reason: string, message: string, soon = false): Decision => ({
    applied: { type: 'Applied', status: 'False', reason, message },
    ruleCount: 0,
    soon,
  });
  const td = ctx.tenants.get(tdName, ns) as
    { spec?: unknown; status?: { serverName?: string; databaseName?: string; schemaName?: string; roleName?: string } } | undefined;
  if (!td) return no('TenantNotFound', `TenantDatabase ${ns}/${tdName} does not exist`);
  const { admitted, refused } = tenantWhitelists(ctx, ns, tdName);
  if (refused.some((w) => w.metadata?.uid === wl.metadata.uid)) {
    const used = admitted.reduce((n, w) => n + (w.spec?.entries?.length ?? 0), 0);
    return no(
      'OverBudget',
      `TenantDatabase ${ns}/${tdName} already has ${used} CIDR(s) in older IpWhitelists; this list's ${wl.spec.entries.length} more would pass the limit of ${MAX_CIDRS_PER_TENANT} per tenant, so it is not applied (the others are)`,
    );
  }
  const st = td.status;
  if (!st?.serverName || !st.databaseName || !st.roleName)
    return no('TenantNotReady', `TenantDatabase ${ns}/${tdName} is not provisioned yet`, true);
  const raw = ctx.servers.get(st.serverName);
  const server = postgresServer.safeParse(raw);
  if (!server.success)
    return raw
      ? no('ServerInvalid', `PostgresServer ${st.serverName} has an invalid spec; the rules are applied once it is fixed`)
      : no('ServerNotFound', `PostgresServer ${st.serverName} does not exist`);
  const spec = tenantDatabaseSpec.safeParse(td.spec);
  const pooling = spec.success ? spec.data.pooling.enabled : true;
  const schema = st.schemaName;
  const target = accessTarget({
    isolation: schema !== undefined ? 'Schema' : 'Database',
    database: st.databaseName,
    shadow: spec.success && spec.data.shadowDatabase ? shadowDatabaseName(st.databaseName) : undefined,
    role: st.roleName,
    alias: schema !== undefined ? schemaAlias(schema) : st.databaseName,
  });
  const a = accessState(ctx, server.data, ns, tdName, target, pooling);
  switch (a.kind) {
    case 'open':
      return no('Pending', 'waiting for the operator to see this list', true);
    case 'unenforced':
      return no('NotEnforced', a.message);
    case 'pending':
      return no('Pending', a.message, true);
    case 'rejected':
      return no('AgentRejected', a.message);
    case 'enforced':
      return {
        applied: { type: 'Applied', status: 'True', reason: 'Enforced', message: a.message },
        ruleCount: wl.spec.entries.length,
        soon: false,
      };
  }
}

export async function reconcileIpWhitelist(ctx: OperatorContext, key: string, _log: Logger): Promise<ReconcileResult> {
  const { namespace, name } = splitKey(key);
  const raw = ctx.whitelists.get(name, namespace);
  if (!raw) return {};
  const api = customResourceApi(ctx.clients, IP_WHITELIST);
  const parsed = ipWhitelist.safeParse(raw);
  const meta = { name, namespace, resourceVersion: raw.metadata?.resourceVersion ?? '', generation: raw.metadata?.generation };
  let d: Decision;
  if (!parsed.success) {
    d = {
      applied: {
        type: 'Applied',
        status: 'False',
        reason: 'InvalidSpec',
        message: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
      },
      ruleCount: 0,
      soon: false,
    };
  } else {
    d = decide(ctx, parsed.data);
  }
  // Applied is what Ready means for a list; a list that cannot be applied without a change is Stalled.
  const terminal = ['InvalidSpec', 'OverBudget', 'AgentRejected', 'NotEnforced'].includes(d.applied.reason);
  await commitStatus(api, meta, raw.status, {
    fields: { ruleCount: d.ruleCount },
    observed: [d.applied, { ...d.applied, type: 'Ready' }],
    terminal,
  });
  return { poll: d.soon, requeueAfterMs: periodicDelay(ctx.config.resyncMs) };
}
