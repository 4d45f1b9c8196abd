import { createLogger, parseLogFormat, textLine } from '../../src/runtime/logger.js';

/** What the logger writes to stdout while fn runs. */
function captured(fn: () => void): string {
  const original = process.stdout.write.bind(process.stdout);
  let out = '';
  process.stdout.write = (chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  };
  try {
    fn();
  } finally {
    process.stdout.write = original;
  }
  return out;
}

describe('log formats', () => {
  test('text: one readable line per entry, fields as key=value, secrets still redacted', () => {
    const out = captured(() =>
      createLogger('info', 'text')
        .child({ kind: 'TenantDatabase', namespace: 'team-a' })
        .info({ role: 'team_a_orders', password: 'hunter2-secret', note: 'two words' }, 'Created role'),
    );
    expect(out).toMatch(
      /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO Created role kind=TenantDatabase namespace=team-a role=team_a_orders password=\[redacted\] note="two words"\n$/,
    );
    expect(out).not.toContain('hunter2');
  });

  test('json stays the default', () => {
    expect(parseLogFormat(undefined)).toBe('json');
    expect(parseLogFormat('')).toBe('json');
    expect(parseLogFormat('text')).toBe('text');
    expect(() => parseLogFormat('yaml')).toThrow(/json or text/);
  });

  test('a line that is not JSON passes through', () => {
    expect(textLine('plain')).toBe('plain\n');
  });
});
