/** SQLSTATEs the operator acts on. */
export const SQLSTATE = {
  duplicateDatabase: '42P04',
  duplicateObject: '42710',
  uniqueViolation: '23505',
  invalidPassword: '28P01',
  invalidAuthorization: '28000',
  insufficientPrivilege: '42501',
  objectInUse: '55006',
  undefinedObject: '42704',
  invalidCatalogName: '3D000',
  dependentObjectsStillExist: '2BP01',
  tooManyConnections: '53300',
  lockNotAvailable: '55P03',
  outOfMemory: '53200',
  featureNotSupported: '0A000',
  undefinedFile: '58P01',
  invalidParameterValue: '22023',
} as const;

export function sqlState(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}

/** A readable one-line description of a connection or query error, with no connection string in it. */
export function describePgError(err: unknown): string {
  if (err instanceof Error) {
    const code = sqlState(err);
    const msg = err.message.replace(/postgres(ql)?:\/\/\S+/gi, '<uri>');
    return code && /^[0-9A-Z]{5}$/.test(code) ? `${msg} (SQLSTATE ${code})` : code ? `${msg} (${code})` : msg;
  }
  return String(err);
}
