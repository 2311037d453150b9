// Memory back when the daemon goes idle. V8 collects when the heap next grows, which for
// a daemon that then idles is never: what a start-up or a burst left behind would stay
// resident. Both collections here use V8's gc(), given --expose-gc on main.ts's first line.
import type { Clock } from './reconcile/limiter';

export type CollectGarbage = (options?: { type: 'minor' | 'major' }) => void;

/** V8's gc(), if the daemon runs with --expose-gc. */
export function exposedGarbageCollection(): CollectGarbage | undefined {
  return (globalThis as { gc?: CollectGarbage }).gc;
}

/** Heaps below this are scavenged once after start-up (collectStartUpGarbage). */
const SMALL_HEAP_BYTES = 16 * 1024 * 1024;
/** When collectStartUpGarbage runs: after the first changes a start-up brings. */
export const START_UP_SETTLED_MS = 10_000;

/**
 * A small start-up (a few networks and routes) allocates less than the fixed young
 * generation holds, so V8 collects nothing, and nothing at idle starts a collection: what
 * loading the modules and the first pass left in the young generation would stay resident
 * for good. One scavenge frees it and starts V8's memory reducer. A scavenge's pause grows
 * with what survives it, so a larger heap is left alone here: V8 collects a start-up's
 * young generation once it has filled, and a start-up over a full table is a large change
 * for the Reclaimer below.
 */
export function collectStartUpGarbage(gc: CollectGarbage, heapUsedBytes: number): void {
  if (heapUsedBytes < SMALL_HEAP_BYTES) gc({ type: 'minor' });
}

// A start-up or a burst over a full table leaves the old generation full of what it
// decoded and sent (messages, events, operations): once a large change has been applied
// and the kernel has been quiet for a moment, one full collection gives the memory back.

/** Passes that together changed fewer routes and rules than this leave too little to matter. */
export const RECLAIM_MIN_CHANGES = 10_000;
/** Collect once no large pass has run for this long: never in the middle of a burst. */
export const RECLAIM_QUIET_MS = 2_000;

export class Reclaimer {
  private changes = 0;
  private timer?: unknown;

  /** `collect` runs a full garbage collection. */
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
