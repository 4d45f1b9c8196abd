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

export type LogFormat = 'json' | 'text';

/**
 * One entry of pino's JSON as one readable line: `<time> <LEVEL> <msg> key=value ...`, values of
 * objects as JSON. Redaction has already happened: this sees what the JSON would have shown.
 */
export function textLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const { time, level, msg, component: _component, ...rest } = entry;
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' && !/[\s"=]/.test(v) ? v : JSON.stringify(v)}`);
  return `${[String(time), String(level).toUpperCase(), typeof msg === 'string' ? msg : JSON.stringify(msg ?? ''), ...fields].join(' ')}\n`;
}

export function parseLogFormat(v: string | undefined): LogFormat {
  if (v === undefined || v === '' || v === 'json') return 'json';
  if (v === 'text') return 'text';
  throw new Error(`LOG_FORMAT must be json or text, not "${v}"`);
}

export function createLogger(level = process.env.LOG_LEVEL ?? 'info', format = parseLogFormat(process.env.LOG_FORMAT)): Logger {
  const options = {
    level,
    base: { component: 'tenantdb' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (format === 'json') return pino(options);
  return pino(options, { write: (line: string) => process.stdout.write(textLine(line)) });
}

export type { Logger };
