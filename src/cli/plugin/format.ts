/** Pure output helpers: kubectl-style tables and ages, sizes, and -o json|yaml. */
import { stringify } from 'yaml';
import type { Output } from './session.js';

/** An age as kubectl prints it (HumanDuration): 45s, 3m12s, 25m, 5h3m, 17h, 3d4h, 12d, 400d, 3y. */
export function humanAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (h < 24 * 8) return h % 24 ? `${d}d${h % 24}h` : `${d}d`;
  if (d < 365 * 2) return `${d}d`;
  const y = Math.floor(d / 365);
  return d < 365 * 8 && d % 365 ? `${y}y${d % 365}d` : `${y}y`;
}

/** The age of an RFC 3339 time, or <unknown>. */
export function ageOf(time: string | Date | undefined, now = Date.now()): string {
  if (!time) return '<unknown>';
  const t = typeof time === 'string' ? Date.parse(time) : time.getTime();
  return Number.isNaN(t) ? '<unknown>' : humanAge(now - t);
}

/** Bytes in binary units with one decimal: 512 B, 7.5 MiB. */
export function humanBytes(n: number | undefined): string {
  if (n === undefined) return '<unknown>';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Columns left-aligned, separated by three spaces, headers in upper case, as kubectl get does. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n') + '\n';
}

/** Machine output of a value; table output is the caller's. */
export function renderData(output: Exclude<Output, 'table'>, value: unknown): string {
  return output === 'json' ? JSON.stringify(value, null, 2) + '\n' : stringify(value, { lineWidth: 0 });
}

/** Quotes a value for a POSIX shell: 'it'\''s'. */
export function shellQuote(v: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}
