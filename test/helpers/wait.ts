// Polling helpers for real-kernel tests: wait for a condition, never sleep blindly.

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class WaitTimeoutError extends Error {
  constructor(what: string, timeoutMs: number, last: unknown) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}` +
      (last === undefined ? '' : `; last observation: ${describe(last)}`));
    this.name = 'WaitTimeoutError';
  }
}

function describe(v: unknown): string {
  if (v instanceof Error) return v.message;
  if (typeof v === 'string') return v;
  try {
    const s = JSON.stringify(v);
    return s.length > 4000 ? s.slice(0, 4000) + '…' : s;
  } catch {
    return String(v);
  }
}

/** Thrown by a predicate to stop waiting at once (e.g. the daemon died). */
export class WaitAbort extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WaitAbort';
  }
}

export interface WaitOptions {
  /** Poll interval; 15 ms by default (cheap checks). Use more for heavy dumps. */
  intervalMs?: number;
  /** Shown in the timeout message. */
  what?: string;
}

/**
 * Poll `predicate` until it returns a truthy value (returned) or the timeout passes.
 * A predicate may throw (e.g. an assertion): the last error is reported on timeout.
 * Returning `false`/`undefined`/`null` means "not yet".
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  timeoutMs: number,
  opts: WaitOptions = {},
): Promise<Exclude<T, false | null | undefined | 0 | ''>> {
  const interval = opts.intervalMs ?? 15;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v as Exclude<T, false | null | undefined | 0 | ''>;
      last = v;
    } catch (e) {
      if (e instanceof WaitAbort) throw e;
      last = e;
    }
    if (Date.now() >= deadline) {
      throw new WaitTimeoutError(opts.what ?? 'condition', timeoutMs, last);
    }
    await sleep(interval);
  }
}

/** Like waitFor, but the predicate is an assertion block: done when it stops throwing. */
export async function eventually(
  assertion: () => void | Promise<void>,
  timeoutMs: number,
  opts: WaitOptions = {},
): Promise<void> {
  await waitFor(async () => { await assertion(); return true; }, timeoutMs, opts);
}

/**
 * Assert that `assertion` keeps holding for `forMs` (checked every interval):
 * for "nothing happens" claims (e.g. a foreign route stays).
 */
export async function holdsFor(
  assertion: () => void | Promise<void>,
  forMs: number,
  intervalMs = 25,
): Promise<void> {
  const end = Date.now() + forMs;
  for (;;) {
    await assertion();
    if (Date.now() >= end) return;
    await sleep(intervalMs);
  }
}
