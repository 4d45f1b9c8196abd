import { createController } from '../../src/runtime/controller.js';
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
