/**
 * One copy of each short string that many cached objects repeat. Every object a watch delivers is
 * parsed afresh, so ten thousand TenantDatabases hold ten thousand copies of their apiVersion,
 * finalizer, condition types, reasons and messages, and of the creation second they share with
 * their burst; interning keeps one. Values never change, only which copy holds them. The pool is
 * bounded: when full it starts over (strings in use stay alive where they are used).
 */
export class Interner {
  private readonly pool = new Map<string, string>();
  constructor(
    private readonly max = 50_000,
    private readonly maxLength = 160,
  ) {}

  of(s: string): string {
    if (s.length > this.maxLength) return s;
    const hit = this.pool.get(s);
    if (hit !== undefined) return hit;
    if (this.pool.size >= this.max) this.pool.clear();
    this.pool.set(s, s);
    return s;
  }

  get size(): number {
    return this.pool.size;
  }

  /** Replaces, in place, every short string value of an object tree (keys in `skip` are left as they are). */
  walk(o: unknown, skip: ReadonlySet<string> = UNIQUE_KEYS): void {
    if (Array.isArray(o)) {
      for (let i = 0; i < o.length; i++) {
        const v: unknown = o[i];
        if (typeof v === 'string') o[i] = this.of(v);
        else if (v && typeof v === 'object') this.walk(v, skip);
      }
      return;
    }
    if (!o || typeof o !== 'object') return;
    const rec = o as Record<string, unknown>;
    for (const k of Object.keys(rec)) {
      if (skip.has(k)) continue;
      const v = rec[k];
      if (typeof v === 'string') rec[k] = this.of(v);
      else if (v && typeof v === 'object') this.walk(v, skip);
    }
  }
}

/** Values that are unique per object: interning them would only fill the pool. */
const UNIQUE_KEYS: ReadonlySet<string> = new Set(['uid', 'resourceVersion']);
