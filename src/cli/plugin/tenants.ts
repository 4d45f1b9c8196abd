/** list and status: what a tenant is, where it lives, whether it works, and how old its password is. */
import type { Command } from 'commander';
import type * as k8s from '@kubernetes/client-node';
import pLimit from 'p-limit';
import type { Condition } from '../../api/common.js';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import { PROGRAM, examples, note, print, sessionOf } from './command.js';
import { ageOf, humanBytes, renderData, renderTable } from './format.js';
import { attempt, getServer, getTenant, getTenantSecret, listTenants, listWhitelists, type Session } from './session.js';
import { conditionCell, credentialsFromStatus, credentialsOf, summarize, type Credentials, type TenantSummary } from './summary.js';

async function credentialsFor(s: Session, td: TenantDatabase): Promise<Credentials> {
  // The operator's own record, when it wrote one, needs no read of the Secret.
  const own = credentialsFromStatus(td);
  if (own) return own;
  const r = await attempt(s, () => getTenantSecret(s, td));
  return r.ok ? credentialsOf(r.value) : { unknown: r.reason };
}

function allowListCell(t: TenantSummary): string {
  if (!t.allowLists) return '?';
  if (!t.allowLists.length) return 'none';
  const cidrs = t.allowLists.reduce((n, l) => n + l.cidrs.length, 0);
  return `${t.allowLists.length} (${cidrs} CIDR${cidrs === 1 ? '' : 's'})`;
}

function connectionsCell(t: TenantSummary): string {
  if (t.activeConnections === undefined) return '-';
  return t.connectionLimit > 0 ? `${t.activeConnections}/${t.connectionLimit}` : String(t.activeConnections);
}

export function listTable(items: readonly TenantSummary[], withNamespace: boolean, now = Date.now()): string {
  const headers = ['name', 'server', 'database', 'ready', 'pooler', 'allow-lists', 'size', 'connections', 'password age', 'age'];
  const rows = items.map((t) => [
    t.name,
    t.server ?? '-',
    t.database ?? '-',
    conditionCell(t.ready),
    conditionCell(t.pooler),
    allowListCell(t),
    t.sizeBytes === undefined ? '-' : humanBytes(t.sizeBytes),
    connectionsCell(t),
    t.credentials.since ? ageOf(t.credentials.since, now) : '?',
    ageOf(t.created, now),
  ]);
  return withNamespace
    ? renderTable(
        ['namespace', ...headers],
        rows.map((r, i) => [items[i]?.namespace ?? '', ...r]),
      )
    : renderTable(headers, rows);
}

async function list(cmd: Command, opts: { allNamespaces?: boolean }): Promise<void> {
  const s = sessionOf(cmd);
  const all = !!opts.allNamespaces;
  const tenants = await listTenants(s, all);
  if (!tenants.length) {
    if (s.output === 'table') note(all ? 'No TenantDatabases found.' : `No TenantDatabases found in namespace ${s.namespace}.`);
    else print(renderData(s.output, { items: [] }));
    return;
  }
  const lists = await attempt(s, () => listWhitelists(s, all ? undefined : s.namespace));
  const limit = pLimit(8);
  const creds = await Promise.all(tenants.map((td) => limit(() => credentialsFor(s, td))));
  const items = tenants
    .map((td, i) => summarize(td, lists.ok ? lists.value : undefined, creds[i] ?? {}))
    .sort((a, b) => (a.namespace === b.namespace ? (a.name < b.name ? -1 : 1) : a.namespace < b.namespace ? -1 : 1));
  if (s.output !== 'table') {
    print(renderData(s.output, { items }));
    return;
  }
  print(listTable(items, all));
  if (!lists.ok) note(`note: allow-lists unknown (?): ${lists.reason}`);
  const unknown = items.find((t) => t.credentials.unknown);
  if (unknown) note(`note: password age unknown (?) for some tenants: ${unknown.credentials.unknown}`);
}

interface StatusView extends TenantSummary {
  conditions: Condition[];
  observedGeneration?: number;
  generation?: number;
  serverInfo?: { host?: string; port?: number; version?: string; ready?: string; unavailable?: string };
  poolerEndpoint?: { host: string; port: number };
  events?: { type: string; reason: string; message: string; count: number; last?: string | undefined }[];
  eventsUnavailable?: string;
  /** managementPolicy Observe: what the operator would do (status.observation). */
  observation?: { observedAt?: string | undefined; inSync?: boolean | undefined; plan?: string[] | undefined };
}

export function eventTime(e: k8s.CoreV1Event): string | undefined {
  const t = e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata.creationTimestamp;
  return t instanceof Date ? t.toISOString() : t ? String(t) : undefined;
}

/** Events about one object, newest last. */
export async function eventsAbout(s: Session, namespace: string, uid: string): Promise<k8s.CoreV1Event[]> {
  const list = await s.call(() => s.core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.uid=${uid}` }));
  return list.items.sort((a, b) => ((eventTime(a) ?? '') < (eventTime(b) ?? '') ? -1 : 1));
}

export function statusText(v: StatusView, now = Date.now()): string {
  const out: string[] = [];
  const row = (k: string, val: string) => out.push(`${`${k}:`.padEnd(14)}${val}`);
  row('Name', v.name);
  row('Namespace', v.namespace);
  const si = v.serverInfo;
  const serverDetail = si?.unavailable
    ? ` (${si.unavailable})`
    : si
      ? ` (${[si.host && `${si.host}:${si.port ?? ''}`, si.version && `PostgreSQL ${si.version}`, si.ready && `Ready=${si.ready}`].filter(Boolean).join(', ')})`
      : '';
  row('Server', v.server ? `${v.server}${serverDetail}` : '<not resolved yet>');
  row('Database', v.database ?? '<not provisioned yet>');
  row('Role', v.role ?? '<not provisioned yet>');
  row('Secret', v.secretName);
  const pooler = v.pooler ? `PoolerReady=${v.pooler.status} (${v.pooler.reason}): ${v.pooler.message}` : 'no PoolerReady condition';
  row('Pooler', v.poolerEndpoint ? `${v.poolerEndpoint.host}:${v.poolerEndpoint.port}, ${pooler}` : pooler);
  if (!v.allowLists) row('Allow-lists', '? (could not be read)');
  else if (!v.allowLists.length) row('Allow-lists', 'none: logins are accepted from anywhere the network allows');
  else {
    row('Allow-lists', '');
    for (const l of v.allowLists)
      out.push(
        `  ${l.name}: ${l.cidrs.join(', ')}${l.ruleCount !== undefined ? `; ${l.ruleCount} rules live` : ''}${l.applied ? `; Applied=${l.applied.status} (${l.applied.reason})` : ''}`,
      );
  }
  row('Size', v.sizeBytes === undefined ? '<not measured yet>' : humanBytes(v.sizeBytes));
  row(
    'Connections',
    v.activeConnections === undefined
      ? '<not measured yet>'
      : `${v.activeConnections} active${v.connectionLimit > 0 ? `, limit ${v.connectionLimit}` : " (limit: the server's default)"}`,
  );
  const c = v.credentials;
  row(
    'Password',
    c.unknown
      ? `age unknown: ${c.unknown}`
      : `${c.since ? `written ${ageOf(c.since, now)} ago (${c.since}, ${c.source === 'status' ? "from the TenantDatabase's status" : `from the Secret's ${c.source}`})` : 'age unknown'}${c.rotationRequest ? `; last rotation request "${c.rotationRequest}"` : ''}`,
  );
  if (c.loginRole)
    row(
      'Login',
      `${c.loginRole}${c.generation !== undefined ? `, rotated ${c.generation} time(s)` : ''}${c.previous ? `; previous login ${c.previous.role} works until ${c.previous.until}` : ''}${c.nextRotationAt ? `; next scheduled rotation ${c.nextRotationAt}` : ''}`,
    );
  row('Age', ageOf(v.created, now));
  if (v.observation) {
    const o = v.observation;
    const plan = o.plan ?? [];
    row(
      'Observed',
      `managementPolicy Observe: nothing is changed${o.observedAt ? `; read ${ageOf(o.observedAt, now)} ago` : ''}; ${plan.length ? `a managed reconcile would run:` : 'in sync with the spec'}`,
    );
    for (const line of plan) out.push(`  ${line}`);
  }
  if (v.generation !== undefined && v.observedGeneration !== undefined && v.observedGeneration < v.generation)
    out.push(`Note:         the operator has not yet looked at generation ${v.generation} (status is for ${v.observedGeneration})`);
  out.push('Conditions:');
  if (!v.conditions.length) out.push('  none yet: the operator has not reconciled this TenantDatabase (is it running?)');
  else
    out.push(
      renderTable(
        ['type', 'status', 'reason', 'age', 'message'],
        v.conditions.map((x) => [x.type, x.status, x.reason, ageOf(x.lastTransitionTime, now), x.message]),
      )
        .trimEnd()
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    );
  if (v.events) {
    out.push('Events:');
    if (!v.events.length) out.push('  none');
    else
      out.push(
        renderTable(
          ['last seen', 'type', 'reason', 'message'],
          v.events.map((e) => [
            e.last ? ageOf(e.last, now) : '?',
            e.type,
            e.reason,
            e.count > 1 ? `${e.message} (x${e.count})` : e.message,
          ]),
        )
          .trimEnd()
          .split('\n')
          .map((l) => `  ${l}`)
          .join('\n'),
      );
  } else if (v.eventsUnavailable) out.push(`Events:       unavailable: ${v.eventsUnavailable}`);
  return out.join('\n') + '\n';
}

async function status(name: string, cmd: Command): Promise<void> {
  const s = sessionOf(cmd);
  const td = await getTenant(s, name);
  const ns = td.metadata.namespace ?? s.namespace;
  const [secret, lists, events] = await Promise.all([
    attempt(s, () => getTenantSecret(s, td)),
    attempt(s, () => listWhitelists(s, ns)),
    attempt(s, () => eventsAbout(s, ns, td.metadata.uid)),
  ]);
  const summary = summarize(
    td,
    lists.ok ? lists.value : undefined,
    credentialsFromStatus(td) ?? (secret.ok ? credentialsOf(secret.value) : { unknown: secret.reason }),
  );
  const serverName = summary.server;
  const server = serverName ? await attempt(s, () => getServer(s, serverName)) : undefined;
  const data = secret.ok ? (secret.value.data ?? {}) : {};
  const decoded = (k: string) => (data[k] ? Buffer.from(data[k], 'base64').toString('utf8') : undefined);
  const pHost = decoded('pooler-host');
  const pPort = Number(decoded('pooler-port'));
  const pooled = pHost && pPort && (pHost !== decoded('host') || String(pPort) !== decoded('port'));
  const view: StatusView = {
    ...summary,
    conditions: td.status?.conditions ?? [],
    ...(td.status?.observedGeneration !== undefined ? { observedGeneration: td.status.observedGeneration } : {}),
    ...(td.metadata.generation !== undefined ? { generation: td.metadata.generation } : {}),
    ...(server
      ? {
          serverInfo: server.ok
            ? {
                host: server.value.spec.publicHost ?? server.value.spec.host,
                port: server.value.spec.port,
                ...(server.value.status?.version ? { version: server.value.status.version } : {}),
                ready: server.value.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown',
              }
            : { unavailable: server.reason },
        }
      : {}),
    ...(pooled ? { poolerEndpoint: { host: pHost, port: pPort } } : {}),
    ...(td.spec.managementPolicy === 'Observe' ? { observation: td.status?.observation ?? {} } : {}),
    ...(events.ok
      ? {
          events: events.value.slice(-10).map((e) => ({
            type: e.type ?? '',
            reason: e.reason ?? '',
            message: e.message ?? '',
            count: e.count ?? 1,
            ...(eventTime(e) ? { last: eventTime(e) } : {}),
          })),
        }
      : { eventsUnavailable: events.reason }),
  };
  print(s.output === 'table' ? statusText(view) : renderData(s.output, view));
}

export function registerTenantCommands(program: Command): void {
  examples(
    program
      .command('list')
      .alias('ls')
      .description("List TenantDatabases: server, database, Ready, pooler, allow-lists, size, connections and the password's age.")
      .option('-A, --all-namespaces', 'list the TenantDatabases of every namespace')
      .action((opts: { allNamespaces?: boolean }, cmd: Command) => list(cmd, opts)),
    [
      ["the tenants of the context's namespace", `${PROGRAM} list`],
      ['of every namespace your account may list', `${PROGRAM} list -A`],
      ['as JSON, for a script', `${PROGRAM} list -n team-a -o json`],
    ],
  );
  examples(
    program
      .command('status')
      .description(
        'Show one TenantDatabase: its conditions, server, pooler, allow-lists, size, connections, password age and recent Events.',
      )
      .argument('<name>', 'the TenantDatabase')
      .action((name: string, _opts: unknown, cmd: Command) => status(name, cmd)),
    [
      ['why is orders not Ready?', `${PROGRAM} status orders -n team-a`],
      ['the same as YAML', `${PROGRAM} status orders -n team-a -o yaml`],
    ],
  );
}
