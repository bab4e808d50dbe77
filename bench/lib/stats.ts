/**
 * Small measurement helpers shared by every benchmark section: rate loops,
 * percentiles, the result row type and the one table `npm run bench` prints.
 *
 * @example
 * ```ts
 * const r = await measureRate(() => crypto.randomBytes(16), { minMs: 200 });
 * console.log(formatTable([{ section: 'crypto', name: 'randomBytes(16)', value: r.opsPerSec, unit: 'op/s' }]));
 * ```
 * @module
 */

/** One figure of the benchmark: printed as a table row and written to JSON. */
export interface BenchRow {
  /** Figure number and topic, e.g. `1 handshakes`. */
  section: string;
  /** What was measured. */
  name: string;
  value: number;
  unit: string;
  /** Context: ratio to a baseline, CPU share, conditions. */
  note?: string;
  /** Extra machine-readable figures (JSON only). */
  extra?: Record<string, unknown>;
}

/** Result of {@link measureRate}. */
export interface RateResult {
  iterations: number;
  elapsedMs: number;
  opsPerSec: number;
  /** Mean wall time of one operation in microseconds. */
  usPerOp: number;
}

/** Options of {@link measureRate}. */
export interface RateOptions {
  /** Run at least this long (default 500 ms). */
  minMs?: number;
  /** And at least this many iterations (default 10). */
  minIterations?: number;
  /** Untimed warm-up iterations (default 5). */
  warmup?: number;
}

/**
 * Calls `fn` back to back (awaiting it when it returns a promise) and reports
 * the rate. Work is checked in batches so the clock is not the cost.
 */
export async function measureRate(fn: () => unknown, options: RateOptions = {}): Promise<RateResult> {
  const minMs = options.minMs ?? 500;
  const minIterations = options.minIterations ?? 10;
  for (let i = 0; i < (options.warmup ?? 5); i++) await fn();
  let iterations = 0;
  let batch = 1;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < minMs || iterations < minIterations) {
    for (let i = 0; i < batch; i++) {
      const r = fn();
      if (r instanceof Promise) await r;
    }
    iterations += batch;
    elapsed = performance.now() - start;
    if (elapsed < minMs / 20) batch *= 2;
  }
  return { iterations, elapsedMs: elapsed, opsPerSec: (iterations * 1000) / elapsed, usPerOp: (elapsed * 1000) / iterations };
}

/** The `p`-th percentile (0..100) of ascending `sorted` values (nearest rank); NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Formats a number with at most 3 significant decimals and thousands separators. */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** Ratio `a / b` as a short string (`0.83x`), or `n/a`. */
export function ratio(a: number, b: number): string {
  return b > 0 && Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : 'n/a';
}

/** Renders rows as one aligned text table, grouped by section in order of appearance. */
export function formatTable(rows: readonly BenchRow[]): string {
  const head = ['section', 'measurement', 'value', 'unit', 'note'];
  const body = rows.map((r) => [r.section, r.name, fmt(r.value), r.unit, r.note ?? '']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  ')];
  let last: string | undefined;
  for (let i = 0; i < body.length; i++) {
    const cells = body[i]!;
    if (last !== undefined && cells[0] !== last) out.push('');
    if (cells[0] === last) cells[0] = '';
    else last = cells[0];
    out.push(line(cells));
  }
  return out.join('\n');
}
