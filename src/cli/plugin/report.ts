/**
 * report: everything a bug report about one tenant needs, in one YAML (or JSON) document: the
 * TenantDatabase, its Secret (keys only), IpWhitelists, PostgresServer, Events and the operator's
 * log lines about it. What the user's rights do not reach is listed, not fatal. Every string is
 * scrubbed of credentials (see redact.ts) before anything is printed.
 */
import * as k8s from '@kubernetes/client-node';
import { InvalidArgumentError, type Command } from 'commander';
import { decodeSecretData } from '../../kube/secrets.js';
import { PROGRAM, examples, print, sessionOf } from './command.js';
import { renderData } from './format.js';
import { REDACTED, redactDeep, secretForReport, secretVariants, trimMetadata } from './redact.js';
import { attempt, checkNamespace, getServer, getTenantAsStored, listWhitelists, secretNameOf, type Session } from './session.js';
import { ownedBy } from '../../controllers/tenantdatabase/secret.js';
import { eventTime } from './tenants.js';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

export const OPERATOR_SELECTOR = 'app.kubernetes.io/name=tenantdb,app.kubernetes.io/component=operator';

/** The lines of a log that concern one tenant: those naming its namespace and name, or its uid. */
export function linesAbout(log: string, namespace: string, name: string, uid: string): string[] {
  return log
    .split('\n')
    .filter((l) => l.includes(uid) || l.includes(`${namespace}/${name}`) || (l.includes(`"${namespace}"`) && l.includes(`"${name}"`)));
}

function eventView(e: k8s.CoreV1Event) {
  const t = (x: Date | string | undefined) => (x instanceof Date ? x.toISOString() : x);
  return {
    object: `${e.involvedObject.kind ?? ''}/${e.involvedObject.name ?? ''}`,
    type: e.type,
    reason: e.reason,
    message: e.message,
    count: e.count,
    firstTimestamp: t(e.firstTimestamp),
    lastTimestamp: t(e.lastTimestamp ?? e.eventTime),
    source: e.source?.component ?? e.reportingComponent,
  };
}

async function operatorLogs(s: Session, namespace: string, td: { namespace: string; name: string; uid: string }, tail: number) {
  const pods = await s.call(() => s.core.listNamespacedPod({ namespace, labelSelector: OPERATOR_SELECTOR }));
  if (!pods.items.length) return { note: `no operator pods (${OPERATOR_SELECTOR}) in namespace ${namespace}` };
  const out: { pod: string; container: string; lines?: string[]; unavailable?: string }[] = [];
  for (const pod of pods.items) {
    const podName = pod.metadata?.name ?? '';
    for (const c of pod.spec?.containers ?? []) {
      const r = await attempt(s, () =>
        s.call(() => s.core.readNamespacedPodLog({ name: podName, namespace, container: c.name, tailLines: tail })),
      );
      out.push(
        r.ok
          ? { pod: podName, container: c.name, lines: linesAbout(r.value, td.namespace, td.name, td.uid) }
          : { pod: podName, container: c.name, unavailable: r.reason },
      );
    }
  }
  return { pods: out };
}

async function report(name: string, opts: { operatorNamespace: string; logLines: number }, cmd: Command): Promise<void> {
  const s = sessionOf(cmd);
  checkNamespace(opts.operatorNamespace);
  const { td, raw } = await getTenantAsStored(s, name);
  const ns = td.metadata.namespace ?? s.namespace;
  const unavailable: Record<string, string> = {};
  const section = async <T>(key: string, read: () => Promise<T>): Promise<T | undefined> => {
    const r = await attempt(s, read);
    if (r.ok) return r.value;
    unavailable[key] = r.reason;
    return undefined;
  };
  const version = await section('kubernetesVersion', () => s.call(() => s.kc.makeApiClient(k8s.VersionApi).getCode()));
  const secret = await section('secret', () => s.call(() => s.core.readNamespacedSecret({ name: secretNameOf(td), namespace: ns })));
  const lists = (await section('ipWhitelists', () => listWhitelists(s, ns)))?.filter((l) => l.spec.tenantDatabaseRef.name === name);
  const serverName = td.status?.serverName ?? td.spec.serverRef?.name;
  const server = serverName ? await section('postgresServer', () => getServer(s, serverName)) : undefined;
  const uids = new Set(
    [td.metadata.uid, secret?.metadata?.uid, ...(lists ?? []).map((l) => l.metadata.uid)].filter((u): u is string => !!u),
  );
  const events = await section('events', async () =>
    (await s.call(() => s.core.listNamespacedEvent({ namespace: ns }))).items.filter((e) => uids.has(e.involvedObject.uid ?? '')),
  );
  const serverEvents =
    serverName &&
    (await section(
      'postgresServerEvents',
      async () =>
        (
          await s.call(() =>
            s.core.listNamespacedEvent({
              namespace: 'default',
              fieldSelector: `involvedObject.kind=PostgresServer,involvedObject.name=${serverName}`,
            }),
          )
        ).items,
    ));
  const logs = await section('operatorLogs', () =>
    operatorLogs(s, opts.operatorNamespace, { namespace: ns, name, uid: td.metadata.uid }, opts.logLines),
  );
  const byTime = (a: k8s.CoreV1Event, b: k8s.CoreV1Event) => ((eventTime(a) ?? '') < (eventTime(b) ?? '') ? -1 : 1);
  const ctx = s.kc.getContextObject(s.kc.getCurrentContext());
  // The password is scrubbed wherever it appears, only if this Secret is the tenant's own.
  const data = secret && ownedBy(secret, td.metadata.uid) ? decodeSecretData(secret.data) : {};
  const secrets = secretVariants([data.password, data.PGPASSWORD]);
  const doc = {
    generatedAt: new Date().toISOString(),
    tool: `${PROGRAM} report`,
    note: `Secret values and anything shaped like a credential are replaced by ${REDACTED}.`,
    context: { name: s.kc.getCurrentContext(), cluster: ctx?.cluster, server: s.server, user: ctx?.user, namespace: ns },
    ...(version ? { kubernetesVersion: version.gitVersion } : {}),
    tenantDatabase: trimMetadata(raw as { metadata?: object }),
    ...(secret ? { secret: secretForReport(secret) } : {}),
    ...(lists ? { ipWhitelists: lists.map((l) => trimMetadata(l)) } : {}),
    ...(server ? { postgresServer: trimMetadata(server) } : {}),
    ...(events ? { events: events.sort(byTime).map(eventView) } : {}),
    ...(serverEvents ? { postgresServerEvents: serverEvents.sort(byTime).map(eventView) } : {}),
    ...(logs ? { operatorLogs: logs } : {}),
    ...(Object.keys(unavailable).length ? { unavailable } : {}),
  };
  print(renderData(s.output === 'json' ? 'json' : 'yaml', redactDeep(doc, secrets)));
}

export function registerReportCommand(program: Command): void {
  examples(
    program
      .command('report')
      .description(
        'Collect, for a bug report, a TenantDatabase with its Secret (keys only), IpWhitelists, PostgresServer, Events and the operator log lines about it, credentials redacted. YAML unless -o json.',
      )
      .argument('<name>', 'the TenantDatabase')
      .option('--operator-namespace <namespace>', "the operator's namespace, for its logs", 'tenantdb-system')
      .option('--log-lines <n>', 'how many recent lines of each operator container to search', positiveInt, 5000)
      .action((name: string, opts: { operatorNamespace: string; logLines: number }, cmd: Command) => report(name, opts, cmd)),
    [
      ['a report to attach to an issue', `${PROGRAM} report orders -n team-a > orders-report.yaml`],
      ['as JSON', `${PROGRAM} report orders -n team-a -o json`],
    ],
  );
}
