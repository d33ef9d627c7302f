/** Summaries of repeated measurements: median, min, max and, for latencies, p95. */

export interface Summary {
  runs: number;
  median: number;
  min: number;
  max: number;
  /** Only for latency rows (many samples). */
  p95?: number;
}

/** Nearest-rank percentile of sorted samples (p in 0..100): an observed value, never an interpolation. */
export function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) throw new RangeError("percentile of no samples");
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** The median of an even count is the mean of the two middle samples. */
export function median(samples: readonly number[]): number {
  if (!samples.length) throw new RangeError("median of no samples");
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarise(samples: readonly number[], options: { p95?: boolean } = {}): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    runs: sorted.length,
    median: median(sorted),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    ...(options.p95 ? { p95: percentile(sorted, 95) } : {}),
  };
}

/** Rounds for the JSON: 4 significant digits are more than the noise of any of these figures. */
export function round(value: number): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const digits = Math.max(0, 3 - Math.floor(Math.log10(Math.abs(value))));
  const factor = 10 ** Math.min(digits, 6);
  return Math.round(value * factor) / factor;
}
