/**
 * A terminal error means "the spec (or the world) is wrong in a way retrying will not fix":
 * the reconcile reports reason and message in status and waits for a change instead of backing off.
 * Any other thrown error is retried with per-key backoff.
 */
export class TerminalError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly conditionType?: string,
  ) {
    super(message);
    this.name = 'TerminalError';
  }
}

/** A retryable error with a status reason a person can act on (e.g. the server is unreachable). */
export class RetryableError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly conditionType?: string,
  ) {
    super(message);
    this.name = 'RetryableError';
  }
}

/** One line for a person: the API server's own message for Kubernetes errors, the SQLSTATE for PostgreSQL ones. */
export function errorMessage(err: unknown): string {
  if (err && typeof err === 'object' && 'body' in err && typeof (err as { code?: unknown }).code === 'number') {
    const e = err as { code: number; body: unknown };
    let body = e.body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        /* keep the string */
      }
    }
    const msg = body && typeof body === 'object' && 'message' in body ? String(body.message) : undefined;
    return `Kubernetes API ${e.code}: ${msg ?? 'request failed'}`;
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const first = err.message.split('\n')[0] ?? err.message;
    return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? `${first} (SQLSTATE ${code})` : first;
  }
  return String(err);
}
