/**
 * Errors as the plugin reports them: one line on stderr, never a stack trace. A CliError carries a
 * message already meant for the user; anything else (the API server's answers, network failures)
 * is turned into one by describeError.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Codes node and its fetch give when the API server cannot be reached or its certificate is refused. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** One line: whitespace runs (newlines included) become one space. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** The status code of an API server answer, when err is one. */
export function statusCode(err: unknown): number | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'number') return err.code;
  return undefined;
}

/** The Status object an API server sends with a refusal, when the body is one. */
export function apiStatus(err: unknown): { message?: string; reason?: string; details?: { name?: string; kind?: string } } | undefined {
  if (!err || typeof err !== 'object' || !('body' in err)) return undefined;
  let body: unknown = err.body;
  if (typeof body === 'string') {
    const text = body;
    try {
      body = JSON.parse(text);
    } catch {
      return text.trim() ? { message: text } : undefined;
    }
  }
  if (body && typeof body === 'object' && 'kind' in body && body.kind === 'Status') return body as ReturnType<typeof apiStatus>;
  return undefined;
}

/**
 * Whether a 404 is about the object (the API knows the kind, the name is not there) or about the
 * API itself (the CRD is not installed: the server answers with a bare "404 page not found").
 */
export function notFoundKind(err: unknown): 'object' | 'api' | undefined {
  if (statusCode(err) !== 404) return undefined;
  const s = apiStatus(err);
  return s?.reason === 'NotFound' && s.details?.name ? 'object' : 'api';
}

function networkCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
    const errno = (e as { errno?: unknown }).errno;
    if (typeof errno === 'string' && NETWORK_CODES.has(errno)) return errno;
  }
  return undefined;
}

/** The user-facing sentence for any error the plugin meets. */
export function describeError(err: unknown, server?: string): string {
  if (err instanceof CliError) return oneLine(err.message);
  const code = statusCode(err);
  if (code !== undefined && code >= 100 && code < 600) {
    const message = oneLine(apiStatus(err)?.message ?? '');
    if (code === 401)
      return `unauthorized: the API server${server ? ` at ${server}` : ''} refused the kubeconfig's credentials (an expired token?)`;
    if (code === 403) return message || 'forbidden: your account lacks the rights for this request';
    if (code === 404 && notFoundKind(err) === 'api')
      return `the API server${server ? ` at ${server}` : ''} does not serve tenantdb.dev/v1alpha1: are the tenantdb CRDs installed?`;
    return message || `the API server answered ${code}`;
  }
  const net = networkCode(err);
  const text = err instanceof Error ? err.message : String(err);
  if (net) {
    const reason = /reason: (.*)$/s.exec(text)?.[1] ?? text;
    return `cannot reach the API server${server ? ` at ${server}` : ''}: ${oneLine(reason)}`;
  }
  return oneLine(text) || 'unknown error';
}
