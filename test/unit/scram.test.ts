import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { deterministicSalt, generatePassword, isAcceptablePassword, scramVerifier } from '../../src/pg/scram.js';

describe('scramVerifier', () => {
  test('has the PostgreSQL format and keys that match RFC 5802', () => {
    const salt = Buffer.from('0123456789abcdef');
    const v = scramVerifier('pencil', salt);
    const m = /^SCRAM-SHA-256\$4096:([^$]+)\$([^:]+):(.+)$/.exec(v);
    expect(m).not.toBeNull();
    expect(Buffer.from(m?.[1] ?? '', 'base64')).toEqual(salt);
    const salted = pbkdf2Sync('pencil', salt, 4096, 32, 'sha256');
    const stored = createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest()).digest('base64');
    const server = createHmac('sha256', salted).update('Server Key').digest('base64');
    expect(m?.[2]).toBe(stored);
    expect(m?.[3]).toBe(server);
  });

  test('is deterministic for a role and password, different across roles', () => {
    const p = generatePassword();
    const a1 = scramVerifier(p, deterministicSalt('uid-1/role', p));
    const a2 = scramVerifier(p, deterministicSalt('uid-1/role', p));
    const b = scramVerifier(p, deterministicSalt('uid-2/role', p));
    expect(a1).toBe(a2);
    expect(a1).not.toBe(b);
  });

  test('a random salt by default', () => {
    expect(scramVerifier('x')).not.toBe(scramVerifier('x'));
  });
});

describe('passwords', () => {
  test('are 32 URL-safe characters and accepted back', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const p = generatePassword();
      expect(p).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(isAcceptablePassword(p)).toBe(true);
      seen.add(p);
    }
    expect(seen.size).toBe(100);
  });

  test.each(['', 'short', 'has space in it and is long enough', 'x'.repeat(129), 'ümlaut-ümlaut-ümlaut-ümlaut'])('rejects %j', (p) => {
    expect(isAcceptablePassword(p)).toBe(false);
  });
});
