import { InvalidArgumentError } from 'commander';
import { TENANT_METRICS_LEVELS, type TenantMetricsLevel } from '../runtime/metrics.js';

/** Parses durations such as 30s, 5m, 1h or a number of seconds. */
export function duration(v: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('must be a duration such as 30s, 5m or 1h');
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
}

/** Parses --tenant-metrics: off, basic or full. */
export function tenantMetricsLevel(v: string): TenantMetricsLevel {
  const level = TENANT_METRICS_LEVELS.find((l) => l === v.trim());
  if (!level) throw new InvalidArgumentError(`must be one of ${TENANT_METRICS_LEVELS.join(', ')}`);
  return level;
}

/** Parses an on/off switch. */
export function onOff(v: string): boolean {
  if (v === 'on' || v === 'true') return true;
  if (v === 'off' || v === 'false') return false;
  throw new InvalidArgumentError(`expected on or off, not "${v}"`);
}
