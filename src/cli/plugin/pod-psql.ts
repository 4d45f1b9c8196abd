/**
 * psql --pod: psql in a short-lived pod of the tenant's namespace, so the session comes from where
 * the tenant's workloads run (their network policies, their pod addresses, the allow-list rules
 * that name them) instead of from the user's machine. The pod takes the connection from the
 * tenant's Secret itself (the password through a secretKeyRef: it never leaves the cluster, and is
 * in no pod spec), runs without a ServiceAccount token under the restricted Pod Security profile,
 * and is deleted when psql ends, whichever way it ends. The user's own rights decide: creating pods
 * and attaching to them in that namespace.
 */
import * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { CliError, describeError, statusCode } from './errors.js';
import { connectionParams, type ConnectionPath } from './connection.js';
import type { Session } from './session.js';

export interface PodOptions {
  image: string;
  /** Seconds to wait for the pod to start. */
  startTimeout: number;
}

/** The pod: psql, with libpq's variables from the Secret and nothing else of the user's. */
export function psqlPod(
  name: string,
  namespace: string,
  tenant: string,
  secretName: string,
  data: Readonly<Record<string, string>>,
  path: ConnectionPath,
  args: readonly string[],
  opts: PodOptions,
  tty: boolean,
): k8s.V1Pod {
  const p = connectionParams(data, path, secretName);
  const ca = !!data['ca.crt'];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace,
      labels: { 'app.kubernetes.io/name': 'tenantdb-psql', 'app.kubernetes.io/managed-by': 'kubectl-tenantdb' },
      annotations: { 'tenantdb.dev/tenant': tenant },
    },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      // Deleted by the plugin when psql ends; a pod left by a killed plugin stops on its own.
      activeDeadlineSeconds: 12 * 3600,
      securityContext: { runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'psql',
          image: opts.image,
          command: ['psql'],
          args: [...args],
          stdin: true,
          stdinOnce: true,
          tty,
          env: [
            { name: 'PGHOST', value: p.host },
            { name: 'PGPORT', value: String(p.port) },
            { name: 'PGDATABASE', value: p.database },
            { name: 'PGUSER', value: p.user },
            { name: 'PGSSLMODE', value: p.sslMode },
            { name: 'PGAPPNAME', value: 'kubectl-tenantdb' },
            { name: 'PGPASSWORD', valueFrom: { secretKeyRef: { name: secretName, key: 'password' } } },
            { name: 'PSQL_HISTORY', value: '/dev/null' },
            { name: 'HOME', value: '/tmp' },
            ...(ca ? [{ name: 'PGSSLROOTCERT', value: '/etc/tenantdb/ca.crt' }] : []),
          ],
          ...(ca ? { volumeMounts: [{ name: 'ca', mountPath: '/etc/tenantdb', readOnly: true }] } : {}),
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '128Mi' } },
        },
      ],
      ...(ca ? { volumes: [{ name: 'ca', secret: { secretName, items: [{ key: 'ca.crt', path: 'ca.crt' }] } }] } : {}),
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the pod runs (or ended already); says why when it cannot start. */
async function started(s: Session, name: string, timeoutMs: number): Promise<k8s.V1Pod> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pod = await s.call(() => s.core.readNamespacedPod({ name, namespace: s.namespace }));
    const phase = pod.status?.phase;
    if (phase === 'Running' || phase === 'Succeeded' || phase === 'Failed') return pod;
    const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
    if (waiting?.reason && /ImagePull|ErrImage|InvalidImageName|CreateContainerConfigError/.test(waiting.reason))
      throw new CliError(`pod ${name} cannot start: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`);
    const unschedulable = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
    if (Date.now() > deadline)
      throw new CliError(
        `pod ${name} did not start within ${Math.round(timeoutMs / 1000)} s${unschedulable?.message ? `: ${unschedulable.message}` : waiting?.reason ? `: ${waiting.reason}` : ''}`,
      );
    await sleep(500);
  }
}

/** psql's exit code, from the finished pod. */
async function exitCode(s: Session, name: string): Promise<number> {
  for (let i = 0; i < 60; i++) {
    const pod = await s.call(() => s.core.readNamespacedPod({ name, namespace: s.namespace }));
    const done = pod.status?.containerStatuses?.[0]?.state?.terminated;
    if (done) return done.exitCode;
    await sleep(500);
  }
  return 1;
}

export async function psqlInPod(
  s: Session,
  tenant: string,
  secretName: string,
  data: Readonly<Record<string, string>>,
  path: ConnectionPath,
  args: readonly string[],
  opts: PodOptions,
): Promise<number> {
  const tty = !!process.stdin.isTTY && !!process.stdout.isTTY;
  const name = `psql-${tenant
    .slice(0, 40)
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/-+$/, '')}-${randomBytes(3).toString('hex')}`;
  const pod = psqlPod(name, s.namespace, tenant, secretName, data, path, args, opts, tty);
  try {
    await s.call(() => s.core.createNamespacedPod({ namespace: s.namespace, body: pod }));
  } catch (err) {
    const code = statusCode(err);
    if (code === 403)
      throw new CliError(
        `you may not create pods in namespace ${s.namespace} (--pod needs create, get and delete on pods and create on pods/attach there); without --pod, psql runs on this machine`,
      );
    throw new CliError(`cannot create pod ${name}: ${describeError(err)}`);
  }
  const remove = () =>
    s.core.deleteNamespacedPod({ name, namespace: s.namespace, gracePeriodSeconds: 0 }).then(
      () => undefined,
      () => undefined,
    );
  // Ctrl-C belongs to psql (the terminal sends it through); a termination of the plugin removes the pod.
  const onTerm = () => void remove().then(() => process.exit(143));
  process.on('SIGTERM', onTerm);
  process.on('SIGHUP', onTerm);
  try {
    const running = await started(s, name, opts.startTimeout * 1000);
    if (running.status?.phase === 'Running') {
      if (tty) process.stderr.write('If you see no prompt, press Enter.\n');
      const stdin = new PassThrough();
      process.stdin.pipe(stdin);
      if (tty) process.stdin.setRawMode?.(true);
      try {
        // (The socket's type comes from a package without types here: only its events are used.)
        const attacher = new k8s.Attach(s.kc);
        const attach = attacher.attach.bind(attacher) as (...a: unknown[]) => Promise<unknown>;
        const ws = (await attach(s.namespace, name, 'psql', process.stdout, tty ? null : process.stderr, stdin, tty)) as {
          on(event: 'close' | 'error', cb: () => void): void;
        };
        await new Promise<void>((resolve) => {
          ws.on('close', () => resolve());
          ws.on('error', () => resolve());
        });
      } catch (err) {
        if (statusCode(err) === 403) throw new CliError(`you may not attach to pods in namespace ${s.namespace} (create on pods/attach)`);
        throw new CliError(`cannot attach to pod ${name}: ${describeError(err)}`);
      } finally {
        if (tty) process.stdin.setRawMode?.(false);
        process.stdin.unpipe(stdin);
        process.stdin.pause();
      }
    }
    return await exitCode(s, name);
  } finally {
    process.off('SIGTERM', onTerm);
    process.off('SIGHUP', onTerm);
    await remove();
  }
}
