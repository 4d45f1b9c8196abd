import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * SCRAM-SHA-256 verifiers, written by hand because no maintained npm package produces the
 * PostgreSQL verifier format (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`, RFC 5802/7677).
 * The operator sets the role's password from a verifier, so the plaintext never reaches the server.
 */
export const SCRAM_ITERATIONS = 4096;

/** A random password: 32 URL-safe characters (24 random bytes). ASCII only, so SASLprep is a no-op. */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

/** What the operator accepts as a tenant password it finds in a Secret. */
export function isAcceptablePassword(p: string): boolean {
  return /^[A-Za-z0-9_-]{24,128}$/.test(p);
}

/**
 * The salt is derived from the role's identity and the password, so the same password always yields
 * the same verifier: reconciles are idempotent and PgBouncer's userlist can be rendered from the
 * Secret alone. The password has 144 random bits, so a known salt gives an attacker nothing.
 */
export function deterministicSalt(identity: string, password: string): Buffer {
  return createHmac('sha256', `tenantdb-scram-salt:${identity}`).update(password).digest().subarray(0, 16);
}

/**
 * The last salted passwords (PBKDF2 of password and salt, SCRAM's SaltedPassword), by a hash of what
 * they were derived from: a new tenant's verifier, computed here, and the login check that follows it
 * moments later (see pg-scram.ts) derive the same one, as do the admin's logins into each new
 * database. Bounded: the oldest goes first.
 */
const SALTED_CACHE_SIZE = 256;
const salted = new Map<string, Buffer>();

/** SCRAM's SaltedPassword: PBKDF2-HMAC-SHA-256 of the (already normalized) password. Shared: never write to it. */
export function saltedPassword(normalized: string, salt: Uint8Array, iterations: number): Buffer {
  const key = createHash('sha256')
    .update(`${Buffer.byteLength(normalized)}:${normalized}:${salt.byteLength}:`)
    .update(salt)
    .update(`:${iterations}`)
    .digest('base64');
  const hit = salted.get(key);
  if (hit) {
    salted.delete(key);
    salted.set(key, hit);
    return hit;
  }
  const value = pbkdf2Sync(normalized, salt, iterations, 32, 'sha256');
  salted.set(key, value);
  if (salted.size > SALTED_CACHE_SIZE) salted.delete(salted.keys().next().value as string);
  return value;
}

export function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = SCRAM_ITERATIONS): string {
  const salted = saltedPassword(password.normalize('NFKC'), salt, iterations);
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
