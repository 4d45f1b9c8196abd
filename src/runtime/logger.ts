import { pino, type Logger } from 'pino';

/**
 * The one root logger. Redaction is a second line of defence: code never passes a password to a
 * log call, and these paths catch one that slips into a logged object anyway.
 */
export const REDACT_PATHS = [
  'password',
  '*.password',
  '*.*.password',
  'PGPASSWORD',
  '*.PGPASSWORD',
  'uri',
  '*.uri',
  'DATABASE_URL',
  '*.DATABASE_URL',
  'verifier',
  '*.verifier',
  'data',
  '*.data',
  'stringData',
  '*.stringData',
  'token',
  '*.token',
];

export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { component: 'tenantdb' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

export type { Logger };
