import FlatQueue from 'flatqueue';

/**
 * A keyed work queue with the semantics of client-go's rate-limited queue:
 * - a key waits in the queue at most once (dedupe);
 * - a key being processed is not handed to a second worker; re-adds while it runs are kept
 *   ("dirty") and it is queued again when `done` is called;
 * - per-key exponential backoff for failures, forgotten on success;
 * - delayed adds for periodic re-checks.
 *
 * Delayed keys wait in one priority queue of due times served by a single Node timer, not a timer
 * each: every tenant has its periodic re-check pending, and a Timeout with its closure per key was
 * a few hundred bytes of each of ten thousand tenants.
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly polls = new Map<string, number>();
  /** Keys waiting for a delay: when they are due (performance.now) and whether only the periodic re-check asked. */
  private readonly delayed = new Map<string, { at: number; periodic: boolean }>();
  /**
   * The due times, earliest first. A key brought forward leaves its later entry behind: popped, it
   * no longer matches `delayed` and is skipped.
   */
  private readonly due = new FlatQueue<string>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  /** Keys added for a reason other than the periodic re-check since they were last handed out. */
  private readonly eventful = new Set<string>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  /** Keys whose running reconcile waits inside for an outside event (see park), with how to wake it. */
  private readonly parked = new Map<string, (woken: boolean) => void>();
  /** Keys being processed that were woken before they parked: their next park returns at once. */
  private readonly woken = new Set<string>();
  private stopped = false;

  constructor(private readonly backoff: BackoffOptions = { baseMs: 500, maxMs: 5 * 60_000 }) {}

  add(key: string, periodic = false): void {
    if (this.stopped) return;
    if (!periodic) this.eventful.add(key);
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter(key);
    } else {
      this.queue.push(key);
    }
  }

  /**
   * Adds the key after a delay; an earlier pending delay for the same key wins. `periodic` marks the
   * periodic re-check: a reconcile that only that brought may take a cheaper path (see takeEventful).
   */
  addAfter(key: string, delayMs: number, periodic = false): void {
    if (this.stopped) return;
    if (delayMs <= 0) return this.add(key, periodic);
    const at = performance.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) {
      pending.periodic &&= periodic;
      return;
    }
    this.delayed.set(key, { at, periodic: periodic && (pending?.periodic ?? true) });
    this.due.push(key, at);
    this.arm();
  }

  /** Keeps the one timer set for the earliest due time. */
  private arm(): void {
    const next = this.due.peekValue();
    if (next === undefined || this.stopped) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Infinity;
      return;
    }
    if (this.timer && this.timerAt <= next) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next;
    // setTimeout takes at most 2^31-1 ms; a later due time is looked at again then.
    this.timer = setTimeout(() => this.fire(), Math.min(MAX_TIMEOUT_MS, Math.max(0, next - performance.now())));
    this.timer.unref();
  }

  /** Adds every key that is due. */
  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    for (let at = this.due.peekValue(); at !== undefined && at <= now; at = this.due.peekValue()) {
      const key = this.due.pop() as string;
      const pending = this.delayed.get(key);
      if (!pending || pending.at !== at) continue; // brought forward since, and already handed out
      this.delayed.delete(key);
      this.add(key, pending.periodic);
    }
    // The heap's arrays keep popped slots: let them go once it is empty.
    if (this.due.length === 0) this.due.shrink();
    this.arm();
  }

  /** Whether anything but the periodic re-check asked for this key since it was last handed out; clears it. */
  takeEventful(key: string): boolean {
    return this.eventful.delete(key);
  }

  /** Re-adds after a failure, with a delay that doubles per consecutive failure of this key. */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.min(this.backoff.maxMs, this.backoff.baseMs * 2 ** n);
    this.addAfter(key, delay);
    return delay;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  /**
   * Re-adds a key that waits for something outside (an agent, a pooler) to catch up: soon at first,
   * then less and less often, so that a wait that never ends costs little. What it waits for usually
   * arrives as a watch event long before.
   */
  addPolling(key: string, baseMs = 1000, maxMs = 30_000): number {
    const n = this.polls.get(key) ?? 0;
    this.polls.set(key, n + 1);
    const delay = Math.min(maxMs, baseMs * 2 ** n);
    this.addAfter(key, delay);
    return delay;
  }

  forgetPolling(key: string): void {
    this.polls.delete(key);
  }

  /**
   * Tells the running reconcile of a key about an outside event it may wait for, instead of
   * queueing another reconcile: a parked one resumes; one not parked yet is told, so that its
   * next park returns at once (it may have looked just before the event). Returns false when the
   * key is not being processed: the caller adds it as usual.
   */
  wake(key: string): boolean {
    if (!this.processing.has(key)) return false;
    const resume = this.parked.get(key);
    if (resume) {
      this.parked.delete(key);
      resume(true);
    } else {
      this.woken.add(key);
    }
    return true;
  }

  /**
   * Called by the running reconcile of a key: resolves true when wake() is called for it, false
   * after timeoutMs or at shutdown. A wake that came since the key was handed out and was not yet
   * taken resolves at once.
   */
  park(key: string, timeoutMs: number): Promise<boolean> {
    if (this.woken.delete(key)) return Promise.resolve(true);
    if (this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.parked.delete(key);
        resolve(false);
      }, timeoutMs);
      this.parked.set(key, (woken) => {
        clearTimeout(timer);
        resolve(woken);
      });
    });
  }

  /** The next key, or undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    this.woken.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      // Whatever asked for it while it ran has already said whether it was an event.
      this.add(key, true);
    }
  }

  get length(): number {
    return this.queue.length;
  }

  get inFlight(): number {
    return this.processing.size;
  }

  shutdown(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.delayed.clear();
    this.due.clear();
    this.due.shrink();
    for (const w of this.waiters.splice(0)) w(undefined);
    for (const resume of this.parked.values()) resume(false);
    this.parked.clear();
    this.queue.length = 0;
  }
}
