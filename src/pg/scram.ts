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

export function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = SCRAM_ITERATIONS): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
