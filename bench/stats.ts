// Percentiles as the bench reports them (nearest rank), shared by the probe and the runner.

export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export interface Stats { n: number; p50: number; p99: number; min: number; max: number }

export function stats(xs: readonly number[]): Stats | null {
  return xs.length === 0 ? null : { n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), min: Math.min(...xs), max: Math.max(...xs) };
}
