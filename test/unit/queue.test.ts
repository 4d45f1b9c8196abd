import { WorkQueue } from '../../src/runtime/queue.js';

describe('WorkQueue', () => {
  test('a key that keeps waiting for something outside is looked at less and less often, and starts over once done', () => {
    const q = new WorkQueue();
    expect([1, 2, 3, 4, 5, 6, 7].map(() => q.addPolling('a'))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    q.forgetPolling('a');
    expect(q.addPolling('a')).toBe(1000);
    q.shutdown();
  });

  test('a key waits at most once', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('a');
    q.add('b');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  test('a key in flight is not handed out again; a re-add while it runs comes back after done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const k = await q.get();
    q.add('a');
    expect(q.length).toBe(0);
    let second: string | undefined;
    void q.get().then((x) => (second = x));
    await new Promise((r) => setImmediate(r));
    expect(second).toBeUndefined();
    q.done(k ?? '');
    await new Promise((r) => setImmediate(r));
    expect(second).toBe('a');
  });

  test('backoff doubles per failure up to the cap and is forgotten on success', () => {
    const q = new WorkQueue({ baseMs: 100, maxMs: 1000 });
    expect([1, 2, 3, 4, 5].map(() => q.addRateLimited('a'))).toEqual([100, 200, 400, 800, 1000]);
    q.forget('a');
    expect(q.addRateLimited('a')).toBe(100);
    q.shutdown();
  });

  test('addAfter delivers later; an earlier pending delay wins', async () => {
    const q = new WorkQueue();
    q.addAfter('a', 30);
    q.addAfter('a', 5000);
    const t = Date.now();
    expect(await q.get()).toBe('a');
    expect(Date.now() - t).toBeLessThan(1000);
    q.shutdown();
  });

  test('delayed keys come out in the order they are due, each once, however they were moved', async () => {
    const q = new WorkQueue();
    q.addAfter('c', 50);
    q.addAfter('a', 20);
    q.addAfter('b', 80);
    q.addAfter('b', 30); // brought forward: its entry at 80 ms must not bring it back
    q.addAfter('a', 10);
    for (const k of ['a', 'b', 'c']) {
      expect(await q.get()).toBe(k);
      q.done(k);
    }
    await new Promise((r) => setTimeout(r, 150));
    expect(q.length).toBe(0);
    q.shutdown();
  });

  test('a key only the periodic re-check brought is told apart from one an event brought', async () => {
    const q = new WorkQueue();
    q.addAfter('p', 10, true);
    expect(await q.get()).toBe('p');
    expect(q.takeEventful('p')).toBe(false);
    q.done('p');
    // An event folded into a pending periodic re-check makes it an event-driven one.
    q.addAfter('m', 10, true);
    q.addAfter('m', 5000);
    expect(await q.get()).toBe('m');
    expect(q.takeEventful('m')).toBe(true);
    q.done('m');
    // An event while the key is being handled is kept for the next round.
    q.add('e');
    expect(await q.get()).toBe('e');
    expect(q.takeEventful('e')).toBe(true);
    q.add('e');
    q.done('e');
    expect(await q.get()).toBe('e');
    expect(q.takeEventful('e')).toBe(true);
    q.shutdown();
  });

  test('shutdown releases waiting workers', async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.shutdown();
    expect(await waiting).toBeUndefined();
    q.add('x');
    expect(await q.get()).toBeUndefined();
  });
});

describe('a reconcile parked inside, waiting for an outside event', () => {
  const tick = () => new Promise((r) => setImmediate(r));

  test('wake resumes it instead of queueing the key again; a key not running is not woken', async () => {
    const q = new WorkQueue();
    expect(q.wake('a')).toBe(false);
    q.add('a');
    const k = (await q.get()) ?? '';
    let woken: boolean | undefined;
    void q.park(k, 60_000).then((w) => (woken = w));
    expect(q.wake('a')).toBe(true);
    await tick();
    expect(woken).toBe(true);
    q.done(k);
    expect(q.length).toBe(0);
    q.shutdown();
  });

  test('a wake before it parks is kept: the park returns at once, and no second reconcile is queued', async () => {
    const q = new WorkQueue();
    q.add('a');
    const k = (await q.get()) ?? '';
    expect(q.wake('a')).toBe(true);
    expect(await q.park(k, 60_000)).toBe(true);
    q.done(k);
    expect(q.length).toBe(0);
    // Taken once: the next park waits.
    q.add('a');
    const again = (await q.get()) ?? '';
    expect(await q.park(again, 20)).toBe(false);
    q.shutdown();
  });

  test('without a wake it times out; shutdown ends a park', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    const a = (await q.get()) ?? '';
    const b = (await q.get()) ?? '';
    expect(await q.park(a, 20)).toBe(false);
    const parked = q.park(b, 60_000);
    q.shutdown();
    expect(await parked).toBe(false);
  });
});
