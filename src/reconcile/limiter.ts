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

/** Restores within FREE_WINDOW_MS that go through at once; beyond that each waits twice as long. */
export const FREE_RESTORES = 3;
export const FREE_WINDOW_MS = 60_000;
export const FIRST_DELAY_MS = 1_000;
export const MAX_DELAY_MS = 60_000;

interface History {
  times: number[];
  delay: number;
  notBefore: number;
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
      history = { times: [], delay: 0, notBefore: 0 };
      this.histories.set(key, history);
    }
    if (now < history.notBefore) return history.notBefore - now;
    history.times = history.times.filter((t) => now - t < this.windowMs);
    history.times.push(now);
    if (history.times.length > this.freeCount) {
      history.delay = history.delay === 0 ? this.firstDelayMs : Math.min(history.delay * 2, this.maxDelayMs);
      history.notBefore = now + history.delay;
    } else if (history.times.length === 1) {
      history.delay = 0;
    }
    return 0;
  }

  /** How often the action happened within the window. */
  count(key: string): number {
    return this.histories.get(key)?.times.length ?? 0;
  }

  forget(key: string): void {
    this.histories.delete(key);
  }

  /** Drops histories idle for longer than the window, so the map cannot grow without bound. */
  prune(now: number): void {
    for (const [key, history] of this.histories) {
      const last = history.times[history.times.length - 1] ?? 0;
      if (now - last >= this.windowMs && now >= history.notBefore) this.histories.delete(key);
    }
  }
}
