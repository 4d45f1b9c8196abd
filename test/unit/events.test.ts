import { EVENT_MESSAGE_MAX, cutAt, cutMessage, messageEndingWith } from '../../src/runtime/events.js';

describe('messageEndingWith', () => {
  it('joins a head and a tail that fit as they are', () => {
    expect(messageEndingWith('Created role a', '; Ready: ok')).toBe('Created role a; Ready: ok');
  });

  it('shortens a long head and keeps the tail whole, within the Event limit', () => {
    const head = `Created ${'x'.repeat(2000)}`;
    const tail = '; Ready: all objects are in place';
    const m = messageEndingWith(head, tail);
    expect(m).toHaveLength(EVENT_MESSAGE_MAX);
    expect(m.endsWith(`\u2026${tail}`)).toBe(true);
    expect(m.startsWith('Created xxx')).toBe(true);
  });

  it('never exceeds the limit, even with a tail longer than it', () => {
    const m = messageEndingWith('head', 'y'.repeat(EVENT_MESSAGE_MAX + 10));
    expect(m.length).toBeLessThanOrEqual(EVENT_MESSAGE_MAX);
  });

  it('does not split a character outside the BMP', () => {
    const tail = '; Ready: ok';
    const head = `${'a'.repeat(EVENT_MESSAGE_MAX - tail.length - 2)}\u{1F600}${'b'.repeat(50)}`;
    const m = messageEndingWith(head, tail);
    expect(m.endsWith(`a\u2026${tail}`)).toBe(true);
  });
});

describe('cutMessage', () => {
  it('keeps a message that fits', () => {
    expect(cutMessage('Created role a')).toBe('Created role a');
  });

  it('cuts a long one to the limit, never between the halves of a character outside the BMP', () => {
    expect(cutMessage('z'.repeat(EVENT_MESSAGE_MAX + 5))).toHaveLength(EVENT_MESSAGE_MAX);
    const m = cutMessage(`${'a'.repeat(EVENT_MESSAGE_MAX - 1)}\u{1F600}tail`);
    expect(m).toBe('a'.repeat(EVENT_MESSAGE_MAX - 1));
  });
});

describe('cutAt', () => {
  test('keeps what fits, and never ends in half a character', () => {
    expect(cutAt('abc', 5)).toBe('abc');
    expect(cutAt('abcdef', 3)).toBe('abc');
    expect(cutAt('ab\u{1F600}c', 3)).toBe('ab');
    expect(cutAt('ab\u{1F600}c', 4)).toBe('ab\u{1F600}');
    expect(cutAt('abc', 0)).toBe('');
  });
});
