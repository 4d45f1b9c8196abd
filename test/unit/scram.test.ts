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

describe("pg's SCRAM helpers on node:crypto", () => {
  // What pg's own helpers compute, through WebCrypto.
  const subtle = globalThis.crypto.subtle;
  const webDerive = async (password: string, salt: Uint8Array, iterations: number) =>
    Buffer.from(
      await subtle.deriveBits(
        { name: 'PBKDF2', hash: 'SHA-256', salt, iterations },
        await subtle.importKey('raw', new TextEncoder().encode(password), 'PBKDF2', false, ['deriveBits']),
        256,
      ),
    );
  const webHmac = async (key: Uint8Array, msg: string) =>
    Buffer.from(
      await subtle.sign(
        'HMAC',
        await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']),
        new TextEncoder().encode(msg),
      ),
    );

  test('give what WebCrypto gives, cached or not, and hand out copies', async () => {
    const { useNodeCryptoForScram } = await import('../../src/pg/pg-scram.js');
    const utils: Record<string, unknown> = { deriveKey: () => undefined, hmacSha256: () => undefined, sha256: () => undefined };
    expect(useNodeCryptoForScram(utils)).toBe(true);
    const u = utils as {
      deriveKey: (p: string, s: Uint8Array, i: number) => Promise<Buffer>;
      hmacSha256: (k: ArrayBuffer | Uint8Array, m: string) => Promise<Buffer>;
      sha256: (d: ArrayBuffer | Uint8Array) => Promise<Buffer>;
    };
    for (const password of [generatePassword(), 'pencil', 'ünïcode']) {
      const salt = deterministicSalt('role', password);
      const want = await webDerive(password, salt, 4096);
      const first = await u.deriveKey(password, salt, 4096);
      expect(first).toEqual(want);
      first.fill(0); // a caller writing into it does not reach the cache
      expect(await u.deriveKey(password, salt, 4096)).toEqual(want);
      expect(await u.deriveKey(password, salt, 4097)).toEqual(await webDerive(password, salt, 4097));
      const key = new Uint8Array(want).buffer;
      expect(await u.hmacSha256(key, 'Client Key')).toEqual(await webHmac(want, 'Client Key'));
      expect(await u.sha256(want.subarray(4, 20))).toEqual(Buffer.from(await subtle.digest('SHA-256', want.subarray(4, 20))));
    }
  });

  test('leave a helper module of another shape alone', async () => {
    const { useNodeCryptoForScram } = await import('../../src/pg/pg-scram.js');
    const other = { deriveKey: 'not a function' };
    expect(useNodeCryptoForScram(other as never)).toBe(false);
    expect(other.deriveKey).toBe('not a function');
  });
});
