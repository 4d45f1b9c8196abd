/**
 * What a reconcile threw reaches the object, not only the log: Ready=False with the error's reason,
 * Reconciling (it is retried with backoff) or Stalled (a TerminalError), and a warning Event when
 * that is news. The work queue calls this for every failed reconcile of every kind.
 */
import type * as k8s from '@kubernetes/client-node';
import { API_VERSION } from '../api/common.js';
import type { KindInfo } from '../api/kinds.js';
import { customResourceApi } from '../kube/client.js';
import { RetryableError, TerminalError, errorMessage } from '../runtime/errors.js';
import type { ResilientInformer } from '../runtime/informer.js';
import { commitStatus, transitioned } from '../runtime/status.js';
import { splitKey, type OperatorContext } from './context.js';

export async function reportFailure(
  ctx: OperatorContext,
  kind: KindInfo,
  cache: ResilientInformer<k8s.KubernetesObject & { status?: unknown }>,
  key: string,
  err: unknown,
): Promise<void> {
  const { namespace, name } = splitKey(key);
  const raw = cache.get(name, namespace);
  if (!raw?.metadata?.uid) return;
  const reason = err instanceof RetryableError || err instanceof TerminalError ? err.reason : 'ReconcileError';
  const message = errorMessage(err);
  const meta = { name, namespace, resourceVersion: raw.metadata.resourceVersion ?? '', generation: raw.metadata.generation };
  const t = await commitStatus(customResourceApi(ctx.clients, kind), meta, raw.status, {
    observed: [{ type: 'Ready', status: 'False', reason, message }],
    terminal: err instanceof TerminalError,
  });
  if (transitioned(t, 'Ready')) {
    ctx.events.warning({ apiVersion: API_VERSION, kind: kind.kind, name, namespace, uid: raw.metadata.uid }, reason, message);
  }
}
