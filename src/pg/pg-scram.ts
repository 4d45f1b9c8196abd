import { createHash, createHmac, pbkdf2 } from 'node:crypto';
import { promisify } from 'node:util';
import pgCrypto from 'pg/lib/crypto/utils.js';
import { SCRAM_ITERATIONS, saltedPassword } from './scram.js';

/**
 * pg (8.x, lib/crypto/utils.js) computes a SCRAM login's PBKDF2 and its four HMACs through
 * WebCrypto: an importKey and a job for each HMAC. In bench:provision that was a tenth of the
 * operator's CPU (two logins per new tenant: the admin's into the new database, and the tenant's own
 * check). Its helpers are replaced here by node:crypto's, with the same results, and the PBKDF2 goes
 * through saltedPassword's cache: the admin's logins share one, and a new tenant's check reuses the
 * one its verifier was derived from. pg has no option for this, hence by hand. Should a later pg
 * change these helpers' shape, they are left as they are.
 */
interface PgCryptoUtils {
  deriveKey: (password: string, salt: Uint8Array, iterations: number) => Promise<ArrayBuffer | Buffer>;
  hmacSha256: (key: ArrayBuffer | Uint8Array, msg: string) => Promise<ArrayBuffer | Buffer>;
  sha256: (data: ArrayBuffer | Uint8Array) => Promise<ArrayBuffer | Buffer>;
}

const toBuffer = (x: ArrayBuffer | Uint8Array): Buffer =>
  x instanceof ArrayBuffer ? Buffer.from(x) : Buffer.from(x.buffer, x.byteOffset, x.byteLength);

export function useNodeCryptoForScram(utils: Partial<PgCryptoUtils> = pgCrypto): boolean {
  if (typeof utils.deriveKey !== 'function' || typeof utils.hmacSha256 !== 'function' || typeof utils.sha256 !== 'function') return false;
  // Copies: a cached salted password must not be handed out where it could be written to. An
  // iteration count other than the operator's own comes from a verifier someone else set (a tenant
  // may set its own, up to pg's scramMaxIterations): derived off the event loop as pg did, and not
  // remembered.
  utils.deriveKey = async (password, salt, iterations) =>
    iterations === SCRAM_ITERATIONS
      ? Buffer.from(saltedPassword(password, salt, iterations))
      : await promisify(pbkdf2)(password, salt, iterations, 32, 'sha256');
  utils.hmacSha256 = async (key, msg) => createHmac('sha256', toBuffer(key)).update(msg).digest();
  utils.sha256 = async (data) => createHash('sha256').update(toBuffer(data)).digest();
  return true;
}

useNodeCryptoForScram();
