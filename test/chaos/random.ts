// A seeded pseudo-random source for the chaos tests: one seed replays a whole run.
// The seed comes from DYNMHS_CHAOS_SEED (decimal or 0x-hex) or is drawn at start; the
// tests print it first thing and again with every failure.

import { randomInt } from 'node:crypto';

/** The seed of this run: DYNMHS_CHAOS_SEED when set, else a fresh one. */
export function chaosSeed(): number {
  const text = process.env.DYNMHS_CHAOS_SEED;
  if (text === undefined || text.trim() === '') return randomInt(1, 2 ** 31);
  const value = Number(text.trim());
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** 32) {
    throw new Error(`DYNMHS_CHAOS_SEED=${JSON.stringify(text)}: use an integer 0…4294967295`);
  }
  return value;
}

/**
 * The size of a chaos run. The kernel suite makes this many random changes, the
 * NetworkManager suite one step per 8 of them, the D-Bus suite two random calls per one.
 */
export const DEFAULT_ITERATIONS = 120;

/** DYNMHS_CHAOS_ITERATIONS when set (a positive integer), else `fallback`. */
export function chaosIterations(fallback = DEFAULT_ITERATIONS): number {
  const text = process.env.DYNMHS_CHAOS_ITERATIONS;
  if (text === undefined || text.trim() === '') return fallback;
  const value = Number(text.trim());
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`DYNMHS_CHAOS_ITERATIONS=${JSON.stringify(text)}: use a positive integer`);
  }
  return value;
}

/** mulberry32: small, fast, and good enough to pick test actions. */
export class Random {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [low, high]. */
  int(low: number, high: number): number {
    return low + Math.floor(this.next() * (high - low + 1));
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** One of `choices`, each as likely as its weight. */
  weighted<T>(choices: readonly (readonly [T, number])[]): T {
    const total = choices.reduce((sum, [, w]) => sum + w, 0);
    let x = this.next() * total;
    for (const [value, weight] of choices) {
      x -= weight;
      if (x < 0) return value;
    }
    return choices[choices.length - 1]![0];
  }
}

/** Median and maximum of a list of durations (ms), for the diagnostics. */
export function stats(samples: readonly number[]): { n: number; median: number; max: number } {
  if (samples.length === 0) return { n: 0, median: NaN, max: NaN };
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { n: sorted.length, median, max: sorted[sorted.length - 1]! };
}
