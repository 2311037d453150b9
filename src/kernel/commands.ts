// Requests to the kernel, many per sendmsg(). The kernel handles every message of a
// datagram in turn; only the last one asks for an acknowledgement, since the kernel
// reports every failure anyway (netlink_rcv_skb acks on error whatever the flags), and
// in order: once the last message is acknowledged, every failure before it has been
// reported. 10,000 route changes then cost 12 system calls and 12 replies instead of
// 10,000 of each; `ip -batch`, for comparison, sends one and waits for its answer.
// The kernel carries a request out inside sendmsg(), so the binding makes that call on
// a worker thread (sendAsync): the event loop encodes the next datagram, and reads
// events, while the kernel works through this one. One datagram is in the kernel at a
// time, so they are carried out in the order written (device routes before the
// gateway routes that need them). A small datagram (a lone change: a rule, a few routes)
// goes from the event loop instead, with the binding's plain send(): the kernel's work
// on it is short, and a lone change need not wait for a worker thread to wake.
import { RawNetlinkSocket } from 'netlink/dist/raw';
import type { Operation } from '../model';
import { patchedNative, type PatchedNative } from './native';
import { errnoName, errorOf, forEachMessage, NLMSG_ERROR } from './codec';
import { RequestWriter } from './requests';

const NETLINK_ROUTE = 0;
/**
 * A datagram ends after the message that takes it past this size: ~900 IPv4 routes.
 * Fewer, larger datagrams keep the kernel busy without the event loop: each one costs a
 * round trip through it (the worker's callback, the acknowledgement, encoding the next),
 * and in a burst the event loop is busy with the burst's events (docs/performance.md
 * compares datagram sizes).
 */
const DATAGRAM_BYTES = 64 * 1024;
/** Datagrams up to this size (~25 IPv4 routes) are sent from the event loop (see above). */
const SEND_ON_LOOP_BYTES = 2048;
/**
 * Datagrams written and not yet acknowledged: the kernel works through one while we
 * write the next. The kernel's answers to them must fit the socket's receive buffer even
 * if every request fails (an error repeats the request: ~1.3 times its size); 4 × 64 KiB
 * fit the 416 KiB a default rmem_max allows.
 */
const CHUNKS_IN_FLIGHT = 4;
const TIMEOUT_MS = 5000;
const MAX_SEQ = 0x7fffffff;

/** undefined on success, else the errno name ("EEXIST"). */
export type Outcome = string | undefined;

interface Chunk {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly outcomes: Outcome[];
  readonly done: () => void;
}

export class CommandSocket {
  private readonly socket: RawNetlinkSocket;
  /** This socket's netlink port: the kernel stamps its notifications about our requests with it. */
  readonly port: number;
  private readonly writer = new RequestWriter();
  private seq = 0;
  private readonly inFlight = new Set<Chunk>();
  private readonly native: PatchedNative;
  /** Datagrams waiting for the one in the kernel to come back from sendmsg(). */
  private readonly unsent: Array<{ readonly datagram: Buffer; readonly chunk: Chunk }> = [];
  private sending = false;
  private closed = false;

  constructor(bufferSize: number, onError: (error: Error) => void) {
    this.socket = new RawNetlinkSocket(NETLINK_ROUTE, { recvBufferSize: bufferSize, sendBufferSize: bufferSize });
    this.port = this.socket.address().port;
    this.native = patchedNative(this.socket);
    this.socket.on('message', (data) => this.onReply(data));
    this.socket.on('error', onError);
    // A lost reply cannot be matched to its request: every request waiting fails, and is retried.
    this.socket.on('truncatedMessage', () => {
      for (const chunk of [...this.inFlight]) this.settle(chunk, 'EMSGSIZE');
    });
  }

  close(): void {
    this.closed = true;
    this.unsent.length = 0;
    for (const chunk of this.inFlight) this.settle(chunk, 'ECANCELED');
    this.socket.close();
  }

  /** Sends all operations, a bounded number of datagrams at a time; one outcome per operation, in order. */
  async run(operations: readonly Operation[]): Promise<Outcome[]> {
    const outcomes = new Array<Outcome>(operations.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < operations.length) {
        const start = next;
        const chunk = this.sendChunk(operations, start);
        next = chunk.end;
        const results = await chunk.outcomes;
        for (let i = 0; i < results.length; i++) outcomes[start + i] = results[i];
      }
    };
    await Promise.all(Array.from({ length: CHUNKS_IN_FLIGHT }, worker));
    return outcomes;
  }

  /** Writes operations from `start` into one datagram and sends it; `end` is where it stopped. */
  private sendChunk(operations: readonly Operation[], start: number): { end: number; outcomes: Promise<Outcome[]> } {
    if (this.closed) {
      return { end: operations.length, outcomes: Promise.resolve(new Array<Outcome>(operations.length - start).fill('ECANCELED')) };
    }
    // Sequence numbers of one datagram are consecutive, so a reply finds its chunk by range.
    if (this.seq + (operations.length - start) > MAX_SEQ) this.seq = 0;
    const firstSeq = this.seq + 1;
    let end = start;
    while (end < operations.length && this.writer.size < DATAGRAM_BYTES) {
      this.writer.operation(operations[end++], ++this.seq, this.port);
    }
    this.writer.requestAck();
    const datagram = this.writer.take();
    return { end, outcomes: this.send(datagram, firstSeq, end - start) };
  }

  private send(datagram: Buffer, firstSeq: number, count: number): Promise<Outcome[]> {
    return new Promise<Outcome[]>((resolve) => {
      // An acknowledgement the kernel could not queue is lost: fail the chunk, the loop retries.
      const timer = setTimeout(() => this.settle(chunk, 'ETIMEDOUT'), TIMEOUT_MS);
      const chunk: Chunk = {
        firstSeq, lastSeq: firstSeq + count - 1, outcomes: new Array<Outcome>(count),
        done: () => { clearTimeout(timer); resolve(chunk.outcomes); },
      };
      this.inFlight.add(chunk);
      this.unsent.push({ datagram, chunk });
      this.sendNext();
    });
  }

  private sendNext(): void {
    if (this.sending || this.closed) return;
    // A chunk settled meanwhile (timed out) is not sent.
    let next = this.unsent.shift();
    while (next !== undefined && !this.inFlight.has(next.chunk)) next = this.unsent.shift();
    if (next === undefined) return;
    this.sending = true;
    const sent = (error?: Error & { code?: string }): void => {
      this.sending = false;
      if (error !== undefined) this.settle(next.chunk, error.code ?? 'EIO');
      this.sendNext();
    };
    // send() makes the sendmsg() at once when the binding has nothing of its own queued
    // and calls back on a later tick: the next datagram waits for that, as for sendAsync.
    if (next.datagram.length <= SEND_ON_LOOP_BYTES) this.socket.send(next.datagram, {}, sent);
    else this.native.sendAsync(next.datagram, sent);
  }

  /** Ends a chunk early: every operation without an outcome yet gets `code`. */
  private settle(chunk: Chunk, code: string): void {
    if (!this.inFlight.delete(chunk)) return;
    for (let i = 0; i < chunk.outcomes.length; i++) chunk.outcomes[i] ??= code;
    chunk.done();
  }

  private onReply(data: Buffer): void {
    forEachMessage(data, (type, _flags, seq, start) => {
      if (type !== NLMSG_ERROR) return;
      for (const chunk of this.inFlight) {
        if (seq < chunk.firstSeq || seq > chunk.lastSeq) continue;
        const errno = errorOf(data, start);
        if (errno !== 0) chunk.outcomes[seq - chunk.firstSeq] = errnoName(errno);
        // The last message's answer (ack or error) comes after every other one of its datagram.
        if (seq === chunk.lastSeq) {
          this.inFlight.delete(chunk);
          chunk.done();
        }
        return;
      }
    });
  }
}

