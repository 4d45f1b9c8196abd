/**
 * The loop both agents share: watch one Secret through the API (re-listing after any watch error),
 * hand its decoded data to `apply` when its fingerprint changes, and write the outcome back onto the
 * Secret as annotations, where the operator reads it into status.
 */
import * as k8s from '@kubernetes/client-node';
import { makeApiClient, mergePatch } from '../kube/client.js';
import { decodeSecretData } from '../kube/secrets.js';
import {
  AGENT_APPLIED_ANNOTATION,
  AGENT_ERROR_ANNOTATION,
  appliedAnnotations,
  configHash,
  refusedAnnotations,
} from '../pooler/contract.js';
import { errorMessage } from '../runtime/errors.js';
import { eventRecorder } from '../runtime/events.js';
import type { Logger } from '../runtime/logger.js';

export type ApplyOutcome = { ok: true; warning?: string } | { ok: false; error: string };

export interface SecretAgentOptions {
  kc: k8s.KubeConfig;
  namespace: string;
  secretName: string;
  log: Logger;
  /** Loads the files; a refusal keeps the last good ones. A throw means "retry shortly". */
  apply(files: Record<string, string>, hash: string): Promise<ApplyOutcome>;
}

export interface RunningSecretAgent {
  stop(): Promise<void>;
  appliedHash(): string | undefined;
}

export function runSecretAgent(o: SecretAgentOptions): RunningSecretAgent {
  const core = makeApiClient(o.kc, k8s.CoreV1Api);
  const watch = new k8s.Watch(o.kc);
  const events = eventRecorder(core, 'tenantdb-agent', o.log);
  let applied: string | undefined;
  let warning: string | undefined;
  let refused: string | undefined;
  let stopped = false;
  let abort: AbortController | undefined;
  let busy: Promise<void> = Promise.resolve();

  const annotate = async (annotations: Record<string, string | null>) => {
    await core
      .patchNamespacedSecret({ name: o.secretName, namespace: o.namespace, body: { metadata: { annotations } } }, mergePatch)
      .catch((err: unknown) => o.log.warn({ err: errorMessage(err) }, 'Could not report the outcome on the Secret'));
  };

  const handle = async (secret: k8s.V1Secret) => {
    const files = decodeSecretData(secret.data);
    const hash = configHash(files);
    const ann = secret.metadata?.annotations ?? {};
    if (hash === applied) {
      if (ann[AGENT_APPLIED_ANNOTATION] !== hash || ann[AGENT_ERROR_ANNOTATION]) await annotate(appliedAnnotations(hash, warning));
      return;
    }
    if (hash === refused) return;
    const out = await o.apply(files, hash);
    if (out.ok) {
      applied = hash;
      warning = out.warning;
      refused = undefined;
      o.log.info({ hash, ...(warning ? { warning } : {}) }, 'Applied config');
      await annotate(appliedAnnotations(hash, warning));
    } else {
      refused = hash;
      o.log.error({ hash, error: out.error }, 'Refused a config that fails its checks; the last good one stays');
      await annotate(refusedAnnotations(hash, out.error));
      events.warning(
        { apiVersion: 'v1', kind: 'Secret', name: o.secretName, namespace: o.namespace, uid: secret.metadata?.uid ?? '' },
        'ConfigRejected',
        `Refused config ${hash}; the last good one stays loaded: ${out.error}`,
      );
    }
  };

  const enqueue = (secret: k8s.V1Secret) => {
    busy = busy
      .then(() => handle(secret))
      .catch((err: unknown) => {
        o.log.warn({ err: errorMessage(err) }, 'Apply failed; retrying');
        setTimeout(() => void refresh(), 1000).unref();
      });
    return busy;
  };

  const refresh = async (): Promise<string | undefined> => {
    if (stopped) return undefined;
    try {
      const s = await core.readNamespacedSecret({ name: o.secretName, namespace: o.namespace });
      await enqueue(s);
      return s.metadata?.resourceVersion;
    } catch (err) {
      if ((err as { code?: number }).code !== 404) o.log.warn({ err: errorMessage(err) }, 'Could not read the config Secret');
      return undefined;
    }
  };

  void (async () => {
    let failures = 0;
    while (!stopped) {
      const rv = await refresh();
      await new Promise<void>((resolve) => {
        watch
          .watch(
            `/api/v1/namespaces/${o.namespace}/secrets`,
            { fieldSelector: `metadata.name=${o.secretName}`, ...(rv ? { resourceVersion: rv } : {}) },
            (type: string, obj: k8s.V1Secret) => {
              failures = 0;
              if (type === 'ADDED' || type === 'MODIFIED') void enqueue(obj);
            },
            () => resolve(),
          )
          .then((ctrl) => {
            abort = ctrl;
          })
          .catch(() => resolve());
      });
      if (stopped) return;
      failures++;
      await new Promise((r) => setTimeout(r, Math.min(10_000, 250 * 2 ** Math.min(failures, 6))));
    }
  })();

  return {
    stop: async () => {
      stopped = true;
      abort?.abort();
      await busy.catch(() => undefined);
    },
    appliedHash: () => applied,
  };
}
