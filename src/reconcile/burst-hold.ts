// Waiting for a burst to end. While changes keep coming (thousands of routes) and passes
// are expensive, one pass over the result beats a full pass per handful of changes.
import type { Clock } from './limiter';

/**
 * A full pass that computed for less than this never waits for a burst to end. Route-only
 * and address passes count as free: they cost in proportion to the changes they look at, and the
 * monitor reads a stream in batches (kernel/pacer.ts), so keeping up with an `ip -batch`
 * costs no more passes than there are batches, and keeping up with a burst converges
 * sooner than waiting for its end (docs/performance.md).
 */
const HOLD_THRESHOLD_MS = 0.5;
/** Changes closer together than this are one burst. */
const QUIET_MS = 5;
/** The longest a pass waits for a burst to end: a storm still gets a pass this often. */
const MAX_HOLD_MS = 250;

export class BurstHold {
  /** CPU time of the last full pass's own work (derive, diff, bookkeeping), without waiting for the kernel; 0 after a route-only or address pass. */
  computeMs = 0;
  private timer?: unknown;
  /** When the current hold began; undefined when no pass is held. */
  private start?: number;
  private lastChangeAt?: number;

  constructor(private readonly clock: Clock, private readonly thresholdMs = HOLD_THRESHOLD_MS) {}

  /** A change came in at `now`: whether the pass for it should wait (asked before it counts). */
  noteChange(now: number): boolean {
    const hold = this.shouldHold(now);
    this.lastChangeAt = now;
    return hold;
  }

  /** Changes are still coming in (the last one less than QUIET_MS ago) and the last pass was expensive. */
  shouldHold(now: number): boolean {
    return this.lastChangeAt !== undefined && now - this.lastChangeAt < QUIET_MS && this.computeMs >= this.thresholdMs;
  }

  /** A pass waits for the burst to end. */
  get holding(): boolean {
    return this.timer !== undefined;
  }

  /** Runs `then` once changes have been quiet for QUIET_MS, or MAX_HOLD_MS after the hold began. */
  hold(now: number, then: () => void): void {
    this.start ??= now;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    const wait = Math.min(QUIET_MS, this.start + MAX_HOLD_MS - now);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.start = undefined;
      then();
    }, Math.max(0, wait));
  }

  cancel(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.start = undefined;
  }
}
