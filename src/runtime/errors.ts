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

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
