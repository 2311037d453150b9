// Rate limits for putting back what another program keeps taking away, and backoff
// for operations the kernel refuses. Two managers must never spin against each other.

export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * The README's words: three restores within a minute go through at once, then each waits
 * twice as long as the one before (1 s … 60 s), counted from the restore before it.
 */
export const FREE_RESTORES = 3;
export const FREE_WINDOW_MS = 60_000;
export const FIRST_DELAY_MS = 1_000;
export const MAX_DELAY_MS = 60_000;

interface History {
  /** When the restores within the window happened, oldest first. */
  times: number[];
  /** The wait the last restore had to keep; 0 when it was one of the free ones. */
  delay: number;
}

export class Backoff {
  private readonly histories = new Map<string, History>();

  constructor(
    private readonly freeCount = FREE_RESTORES,
    private readonly windowMs = FREE_WINDOW_MS,
    private readonly firstDelayMs = FIRST_DELAY_MS,
    private readonly maxDelayMs = MAX_DELAY_MS,
  ) {}

  /** 0 when the action may happen now (and it is counted), else how many ms to wait. */
  take(key: string, now: number): number {
    let history = this.histories.get(key);
    if (history === undefined) {
      history = { times: [], delay: 0 };
      this.histories.set(key, history);
    }
    history.times = history.times.filter((t) => now - t < this.windowMs);
    if (history.times.length < this.freeCount) {
      history.delay = 0;
    } else {
      const delay = history.delay === 0 ? this.firstDelayMs : Math.min(history.delay * 2, this.maxDelayMs);
      const due = history.times[history.times.length - 1] + delay;
      if (now < due) return due - now;
      history.delay = delay;
    }
    history.times.push(now);
    return 0;
  }

  /** How often the action happened within the window. */
  count(key: string): number {
    return this.histories.get(key)?.times.length ?? 0;
  }

  /** Drops histories idle for longer than the window, so the map cannot grow without bound. */
  prune(now: number): void {
    for (const [key, history] of this.histories) {
      const last = history.times[history.times.length - 1] ?? 0;
      if (now - last >= this.windowMs) this.histories.delete(key);
    }
  }
}
