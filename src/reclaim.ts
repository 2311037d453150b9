// Memory back after a burst. A start-up or a burst over a full table leaves the old
// generation full of what it decoded and sent (messages, events, operations), and V8
// collects it only when the heap next grows, which for a daemon that then idles is never:
// the resident size stays at the burst's peak. So once a large change has been applied
// and the kernel has been quiet for a moment, one full collection gives the memory back.
import type { Clock } from './reconcile/limiter';

/** Passes that together changed fewer routes and rules than this leave too little to matter. */
export const RECLAIM_MIN_CHANGES = 10_000;
/** Collect once no large pass has run for this long: never in the middle of a burst. */
export const RECLAIM_QUIET_MS = 2_000;

export class Reclaimer {
  private changes = 0;
  private timer?: unknown;

  /** `collect` runs a full garbage collection (V8's gc(), given --expose-gc). */
  constructor(private readonly collect: () => void, private readonly clock: Clock) {}

  /** After each pass: how many routes and rules it added and removed. */
  afterPass(changed: number): void {
    if (changed === 0) return;
    this.changes += changed;
    if (this.changes < RECLAIM_MIN_CHANGES) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.changes = 0;
      this.collect();
    }, RECLAIM_QUIET_MS);
  }

  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
