import { RESYNC_SPREAD, createController, periodicDelay } from '../../src/runtime/controller.js';
import { createLogger } from '../../src/runtime/logger.js';
import { createMetrics } from '../../src/runtime/metrics.js';

describe('controller workers', () => {
  test('a parked reconcile gives its worker to the next key, and takes one back before keys not started', async () => {
    const order: string[] = [];
    let running = 0;
    let most = 0;
    const c = createController(
      'test',
      async (key, _log, info) => {
        running++;
        most = Math.max(most, running);
        order.push(`start ${key}`);
        if (key === 'a') {
          running--;
          await info.park?.(60_000);
          running++;
          order.push('resumed a');
        } else {
          await new Promise((r) => setTimeout(r, 20));
        }
        running--;
        return {};
      },
      createLogger('silent'),
      createMetrics(),
    );
    const done = c.run(1);
    c.queue.add('a');
    c.queue.add('b');
    c.queue.add('c');
    await new Promise((r) => setTimeout(r, 5));
    // a parked: b runs on the one worker meanwhile; a, woken, goes before c.
    expect(order).toEqual(['start a', 'start b']);
    expect(c.queue.wake('a')).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(order).toEqual(['start a', 'start b', 'resumed a', 'start c']);
    expect(most).toBe(1);
    await c.stop();
    await done;
  });
});

test('with a minimum interval, what asks for a key again soon joins one later reconcile', async () => {
  const starts: number[] = [];
  const c = createController(
    'interval',
    async () => {
      starts.push(Date.now());
      return {};
    },
    createLogger('silent'),
    createMetrics(),
    undefined,
    200,
  );
  const done = c.run(2);
  c.queue.add('s');
  while (starts.length === 0) await new Promise((r) => setTimeout(r, 5));
  // Asked again five times, each after the first reconcile ended (a busy machine must not spread
  // them past the interval: they are asked at once, between ticks).
  for (let i = 0; i < 5; i++) {
    c.queue.add('s');
    await Promise.resolve();
  }
  await new Promise((r) => setTimeout(r, 400));
  expect(starts).toHaveLength(2);
  expect((starts[1] ?? 0) - (starts[0] ?? 0)).toBeGreaterThanOrEqual(195);
  await c.stop();
  await done;
});

test('with a duration factor, a key whose reconciles take long is reconciled that many times their duration apart', async () => {
  const starts: number[] = [];
  const c = createController(
    'spaced',
    async () => {
      starts.push(Date.now());
      await new Promise((r) => setTimeout(r, 100));
      return {};
    },
    createLogger('silent'),
    createMetrics(),
    undefined,
    50,
    3,
    10_000,
  );
  const done = c.run(2);
  c.queue.add('s');
  while (starts.length === 0) await new Promise((r) => setTimeout(r, 5));
  // Asked again at once: the second waits for three times the first one's 100 ms, not for 50 ms.
  c.queue.add('s');
  while (starts.length < 2) await new Promise((r) => setTimeout(r, 5));
  expect((starts[1] ?? 0) - (starts[0] ?? 0)).toBeGreaterThanOrEqual(295);
  // Another key is not held up by it.
  c.queue.add('other');
  while (starts.length < 3) await new Promise((r) => setTimeout(r, 5));
  await c.stop();
  await done;
});

test('the duration factor is capped, and a failed reconcile is spaced by the backoff alone', async () => {
  const starts: number[] = [];
  let fail = true;
  const c = createController(
    'capped',
    async () => {
      starts.push(Date.now());
      await new Promise((r) => setTimeout(r, 100));
      if (fail) {
        fail = false;
        throw new Error('first one fails');
      }
      return {};
    },
    createLogger('silent'),
    createMetrics(),
    undefined,
    20,
    100,
    1500,
  );
  const done = c.run(1);
  c.queue.add('s');
  // The failure is retried after its backoff, not after 100 x its duration (or the cap, 1.5 s).
  while (starts.length < 2) await new Promise((r) => setTimeout(r, 5));
  expect((starts[1] ?? 0) - (starts[0] ?? 0)).toBeLessThan(1400);
  // A success spaces the next by the cap, not by 100 x 100 ms.
  while (starts.length < 2 || Date.now() - (starts[1] ?? 0) < 120) await new Promise((r) => setTimeout(r, 5));
  c.queue.add('s');
  while (starts.length < 3) await new Promise((r) => setTimeout(r, 5));
  const gap = (starts[2] ?? 0) - (starts[1] ?? 0);
  expect(gap).toBeGreaterThanOrEqual(1495);
  expect(gap).toBeLessThan(5000);
  await c.stop();
  await done;
});

describe('periodicDelay', () => {
  test('is the period less at most RESYNC_SPREAD of it, never more', () => {
    expect(periodicDelay(300_000, () => 0)).toBe(300_000);
    expect(periodicDelay(300_000, () => 0.999999)).toBe(Math.round(300_000 * (1 - RESYNC_SPREAD * 0.999999)));
    for (let i = 0; i < 1000; i++) {
      const d = periodicDelay(300_000);
      expect(d).toBeLessThanOrEqual(300_000);
      expect(d).toBeGreaterThanOrEqual(300_000 * (1 - RESYNC_SPREAD));
    }
  });

  test('keys reconciled together drift apart', () => {
    // 1,000 keys due at once: after one period their next re-checks are spread over RESYNC_SPREAD of it.
    const next = Array.from({ length: 1000 }, () => periodicDelay(300_000));
    expect(Math.max(...next) - Math.min(...next)).toBeGreaterThan(300_000 * RESYNC_SPREAD * 0.9);
  });
});
