// Interrupt mitigation for the monitor socket. A stream of events (an `ip -batch` of
// 10,000 routes is 10,000 datagrams) read as it comes costs a wake-up of this thread
// per event, paid by the writer's system call, and a read and a callback each here (a
// listener reading every event at once slows the writer markedly, one reading every
// few milliseconds hardly: docs/performance.md). So once a
// read brings a stream's worth of messages, the reader stops watching the socket for a
// moment between reads and each read takes the whole backlog. When the stream is over
// it reads each event at once again: a lone change is never delayed.
import { systemClock, type Clock } from '../reconcile/limiter';

/** A read with at least this many messages means a stream. */
export const STREAM_MESSAGES = 8;
/** The pause between reads while a stream lasts. */
export const PAUSE_MS = 1;
/** A stream is over when reads are further apart than this (its pauses and a pass included). */
export const STREAM_GAP_MS = 3;

export interface Pausable {
  setReading(on: boolean): void;
}

export class ReadPacer {
  private streaming = false;
  private lastReadAt = Number.NEGATIVE_INFINITY;
  private timer?: unknown;

  constructor(private readonly socket: Pausable, private readonly clock: Clock = systemClock) {}

  /** After each read: `messages` is how many it brought. */
  afterRead(messages: number): void {
    const now = this.clock.now();
    this.streaming = messages >= STREAM_MESSAGES || (this.streaming && now - this.lastReadAt < STREAM_GAP_MS);
    this.lastReadAt = now;
    if (!this.streaming || this.timer !== undefined) return;
    this.socket.setReading(false);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.socket.setReading(true);
    }, PAUSE_MS);
  }

  /** True while the reader waits out a pause (it reads again when the pause ends). */
  get paused(): boolean {
    return this.timer !== undefined;
  }

  /** Cancels a pending resume (the socket is being closed). */
  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
