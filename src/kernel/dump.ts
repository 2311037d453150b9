// Full dumps (links, addresses, routes, rules) on a socket of their own, so that a
// multipart reply is never interleaved with events. One dump at a time: the kernel
// answers a second one on the same socket with EBUSY.
import { RawNetlinkSocket } from 'netlink/dist/raw';
import type { CacheEvent, CacheKind } from './cache';
import { decodeEvent, errnoName, errorOf, forEachMessage, NLM_F_DUMP_INTR, NLMSG_DONE, NLMSG_ERROR, RTM } from './codec';
import { RequestWriter } from './requests';

const NETLINK_ROUTE = 0;
/** A dump the kernel marks inconsistent (the table changed under it) is repeated this often. */
const INTERRUPTED_RETRIES = 5;

interface Running {
  readonly seq: number;
  readonly events: CacheEvent[];
  /** Routes of other protocols are skipped before they are decoded. */
  readonly routeProtocol: number | undefined;
  interrupted: boolean;
  readonly finish: (error?: Error) => void;
  /** Restarts the timeout: the kernel is still answering. */
  readonly progress: () => void;
}

export class DumpSocket {
  private readonly socket: RawNetlinkSocket;
  private readonly port: number;
  private readonly writer = new RequestWriter();
  private seq = 0;
  private running?: Running;

  constructor(bufferSize: number) {
    this.socket = new RawNetlinkSocket(NETLINK_ROUTE, { recvBufferSize: bufferSize, sendBufferSize: bufferSize });
    this.port = this.socket.address().port;
    this.socket.on('message', (data) => this.onReply(data));
    this.socket.on('error', (error) => this.running?.finish(error));
    // Part of the dump is lost; the binding grows its buffer, so the caller's retry gets it whole.
    this.socket.on('truncatedMessage', (_data, info) =>
      this.running?.finish(new Error(`a ${info.truncated ?? '?'}-byte dump reply did not fit the receive buffer`)));
  }

  close(): void {
    this.running?.finish(new Error('socket closed'));
    this.socket.close();
  }

  /**
   * Everything of one kind the kernel has, as events; repeated while the kernel says it
   * was interrupted. Fails when the kernel has not answered for `timeoutMs`: a dump of a
   * million routes takes seconds, and as long as its replies keep coming it is not stuck.
   * With `routeProtocol`, only routes of that protocol (the kernel sends every route).
   */
  async dump(kind: CacheKind, timeoutMs: number, routeProtocol?: number): Promise<CacheEvent[]> {
    for (let attempt = 0; ; attempt++) {
      const { events, interrupted } = await this.once(kind, timeoutMs, routeProtocol);
      if (!interrupted || attempt >= INTERRUPTED_RETRIES) return events;
    }
  }

  private once(kind: CacheKind, timeoutMs: number, routeProtocol: number | undefined): Promise<{ events: CacheEvent[]; interrupted: boolean }> {
    if (this.running !== undefined) return Promise.reject(new Error('a dump is already running on this socket'));
    this.seq = this.seq >= 0x7fffffff ? 1 : this.seq + 1;
    this.writer.dump(kind, this.seq, this.port);
    const request = this.writer.take();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => running.finish(new Error(`no reply to the ${kind} dump for ${timeoutMs} ms`)), timeoutMs);
      const running: Running = {
        seq: this.seq, events: [], routeProtocol, interrupted: false, progress: () => timer.refresh(),
        finish: (error) => {
          if (this.running !== running) return;
          this.running = undefined;
          clearTimeout(timer);
          if (error !== undefined) reject(error); else resolve({ events: running.events, interrupted: running.interrupted });
        },
      };
      this.running = running;
      this.socket.send(request, {}, (error) => { if (error !== undefined) running.finish(error); });
    });
  }

  private onReply(data: Buffer): void {
    this.running?.progress();
    forEachMessage(data, (type, flags, seq, start, end) => {
      const running = this.running;
      if (running === undefined || seq !== running.seq) return;
      if ((flags & NLM_F_DUMP_INTR) !== 0) running.interrupted = true;
      if (type === NLMSG_DONE) { running.finish(); return; }
      if (type === NLMSG_ERROR) {
        const errno = errorOf(data, start);
        running.finish(errno === 0 ? undefined : new Error(`dump failed: ${errnoName(errno)}`));
        return;
      }
      // rtm_protocol is the sixth byte of the route header.
      if (running.routeProtocol !== undefined && type === RTM.NEWROUTE && data[start + 5] !== running.routeProtocol) return;
      const event = decodeEvent(type, flags, data, start, end);
      if (event !== undefined) running.events.push(event);
    });
  }
}

