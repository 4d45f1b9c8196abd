import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { WorkQueue } from './queue.js';
import { randomBytes } from 'node:crypto';
import { errorMessage } from './errors.js';

export interface ReconcileResult {
  /** Re-check after this many ms even if nothing changes (periodic drift repair). */
  requeueAfterMs?: number;
  /** Waiting for something outside to catch up: look again soon, backing off while it lasts. */
  poll?: boolean;
}

export interface ReconcileInfo {
  /** Only the periodic re-check asked for this reconcile: nothing was seen to change. */
  periodic: boolean;
}

export type Reconciler = (key: string, log: Logger, info: ReconcileInfo) => Promise<ReconcileResult | void>;

export interface Controller {
  name: string;
  queue: WorkQueue;
  run(workers: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs a reconciler over a work queue with a bounded number of workers. A thrown error re-queues
 * the key with per-key backoff; success forgets the backoff and honours requeueAfterMs.
 */
export function createController(
  name: string,
  reconcile: Reconciler,
  log: Logger,
  metrics: Metrics,
  /** Puts a failure on the object (status, Event); its own failure is only logged. */
  onError?: (key: string, err: unknown) => Promise<void>,
): Controller {
  const queue = new WorkQueue();
  const running: Promise<void>[] = [];
  const worker = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      metrics.queueDepth.set({ controller: name }, queue.length);
      const rlog = log.child({ controller: name, key, reconcileId: randomBytes(4).toString('hex') });
      const end = metrics.reconcileDuration.startTimer({ controller: name });
      try {
        const result = await reconcile(key, rlog, { periodic: !queue.takeEventful(key) });
        queue.forget(key);
        metrics.reconcileTotal.inc({ controller: name, result: 'success' });
        if (result?.poll) queue.addPolling(key);
        else queue.forgetPolling(key);
        if (result?.requeueAfterMs) queue.addAfter(key, result.requeueAfterMs, true);
      } catch (err) {
        const delay = queue.addRateLimited(key);
        metrics.reconcileTotal.inc({ controller: name, result: 'error' });
        rlog.warn({ err: errorMessage(err), retryInMs: delay }, 'Reconcile failed');
        await onError?.(key, err).catch((e: unknown) => rlog.warn({ err: errorMessage(e) }, 'Could not report the failure in status'));
      } finally {
        end();
        queue.done(key);
      }
    }
  };
  return {
    name,
    queue,
    run: async (workers) => {
      for (let i = 0; i < workers; i++) running.push(worker());
      await Promise.all(running);
    },
    stop: async () => {
      queue.shutdown();
      await Promise.all(running);
    },
  };
}
