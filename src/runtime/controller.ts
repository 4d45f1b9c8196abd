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
  /**
   * Waits inside this reconcile for an outside event that a watch marked as waking (resolves true),
   * or timeoutMs (false), without holding a worker: the others go on meanwhile. One reconcile
   * instead of a second one queued behind every other key.
   */
  park?: (timeoutMs: number) => Promise<boolean>;
}

/** How much sooner than its period a periodic re-check may come, at most (a fraction of it). */
export const RESYNC_SPREAD = 0.15;

/**
 * A periodic re-check's delay: the period, less a random part of up to RESYNC_SPREAD of it. Keys
 * reconciled together (a burst of new tenants, every key at a restart) would otherwise come due
 * together at every period, and a re-check that costs more now and then (the hourly deep one of a
 * tenant) with them; each draw moves a key's phase, so they drift apart. Never later than the
 * period: "re-checked every --resync" holds.
 */
export function periodicDelay(periodMs: number, random: () => number = Math.random): number {
  return Math.round(periodMs * (1 - RESYNC_SPREAD * random()));
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
  /**
   * A key is reconciled at most once per this many ms: what asks for it sooner waits for the rest
   * of the interval and joins that one reconcile (a server that many tenant events concern).
   */
  minIntervalMs = 0,
  /**
   * And, where its reconciles take long, at most once per this many times its last successful
   * one's duration (5: they take at most a fifth of the time), up to maxSpacingMs: a reconcile whose
   * cost grows with what the key covers (a server's catalog and configs, with its tenants) does not
   * run back to back. A failed one is spaced by the backoff alone.
   */
  durationFactor = 0,
  maxSpacingMs = 0,
): Controller {
  const queue = new WorkQueue();
  /** When each recently reconciled key may start again. */
  const notBefore = new Map<string, number>();
  const inFlight = new Set<Promise<void>>();
  let slots = new Slots(1);
  const park = (key: string) => async (timeoutMs: number) => {
    slots.release();
    try {
      return await queue.park(key, timeoutMs);
    } finally {
      await slots.acquire(true);
    }
  };
  const reconcileOne = async (key: string) => {
    metrics.queueDepth.set({ controller: name }, queue.length);
    const rlog = log.child({ controller: name, key, reconcileId: randomBytes(4).toString('hex') });
    const end = metrics.reconcileDuration.startTimer({ controller: name });
    const started = performance.now();
    try {
      const result = await reconcile(key, rlog, { periodic: !queue.takeEventful(key), park: park(key) });
      if (durationFactor > 0 && minIntervalMs > 0) {
        const spacing = Math.min((performance.now() - started) * durationFactor, maxSpacingMs);
        if (started + spacing > (notBefore.get(key) ?? 0)) notBefore.set(key, started + spacing);
      }
      queue.forget(key);
      metrics.reconcileTotal.inc({ controller: name, result: 'success' });
      metrics.lastSuccess.get(name)?.record(key);
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
      slots.release();
    }
  };
  /** Hands keys out while a slot is free; a key waits for its slot outside the queue (one at most). */
  const dispatch = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      if (minIntervalMs > 0) {
        const now = performance.now();
        const wait = (notBefore.get(key) ?? 0) - now;
        if (wait > 0) {
          // Not yet: back after the interval, with whatever asked for it meanwhile.
          const eventful = queue.takeEventful(key);
          queue.done(key);
          queue.addAfter(key, wait, !eventful);
          continue;
        }
        for (const [k, at] of notBefore) if (at <= now) notBefore.delete(k);
        notBefore.set(key, now + minIntervalMs);
      }
      await slots.acquire(false);
      const p = reconcileOne(key).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  };
  let dispatching: Promise<void> | undefined;
  return {
    name,
    queue,
    run: async (workers) => {
      slots = new Slots(workers);
      dispatching = dispatch();
      await dispatching;
      await Promise.all(inFlight);
    },
    stop: async () => {
      queue.shutdown();
      await dispatching;
      await Promise.all(inFlight);
    },
  };
}

/**
 * How many reconciles of a controller run at once. A reconcile that parks gives its slot back and
 * takes one again, ahead of keys not started yet (finishing what is begun comes first). Written
 * here because the libraries at hand (p-limit) cannot give a slot back in the middle of a task.
 */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  private readonly resuming: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  acquire(resume: boolean): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((r) => (resume ? this.resuming : this.waiting).push(r));
  }
  release(): void {
    const next = this.resuming.shift() ?? this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}
