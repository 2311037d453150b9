// Requests to the kernel, many per sendmsg(). The kernel handles every message of a
// datagram in turn and acknowledges each one, so a batch of a few hundred route changes
// costs one system call instead of hundreds; `ip -batch`, for comparison, sends one
// message and waits for its answer before the next.
import { getSystemErrorName } from 'node:util';
import { formatMessage, parseError, parseMessages, Protocol, RawNetlinkSocket } from 'netlink';

const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
/** Messages per datagram. */
const CHUNK = 128;
/**
 * Datagrams in flight. Each acknowledgement takes about 1 KiB of the receive buffer
 * (4 MiB), so this keeps well clear of ENOBUFS, which would drop acknowledgements.
 */
const CHUNKS_IN_FLIGHT = 4;
const TIMEOUT_MS = 5000;

export interface Request {
  readonly type: number;
  readonly flags: number;
  readonly payload: readonly Uint8Array[];
}

/** undefined on success, else the errno name ("EEXIST"). */
export type Outcome = string | undefined;

export class CommandSocket {
  private readonly socket: RawNetlinkSocket;
  private readonly port: number;
  private seq = 1;
  private readonly pending = new Map<number, (outcome: Outcome) => void>();

  constructor(bufferSize: number, onError: (error: Error) => void) {
    this.socket = new RawNetlinkSocket(Protocol.ROUTE, { recvBufferSize: bufferSize, sendBufferSize: bufferSize });
    this.port = this.socket.address().port;
    this.socket.on('message', (data) => this.onReply(data));
    this.socket.on('error', onError);
  }

  close(): void {
    for (const resolve of this.pending.values()) resolve('ECANCELED');
    this.pending.clear();
    this.socket.close();
  }

  /** Sends all requests, a bounded number at a time; one outcome per request, in order. */
  async run(requests: readonly Request[]): Promise<Outcome[]> {
    const outcomes = new Array<Outcome>(requests.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < requests.length) {
        const start = next;
        next = Math.min(requests.length, next + CHUNK);
        const results = await this.sendChunk(requests.slice(start, next));
        results.forEach((outcome, i) => { outcomes[start + i] = outcome; });
      }
    };
    const workers = Math.min(CHUNKS_IN_FLIGHT, Math.ceil(requests.length / CHUNK));
    await Promise.all(Array.from({ length: workers }, worker));
    return outcomes;
  }

  private sendChunk(requests: readonly Request[]): Promise<Outcome[]> {
    const buffers: Uint8Array[] = [];
    const seqs: number[] = [];
    let length = 0;
    const answers = requests.map((request) => {
      const seq = this.nextSeq();
      seqs.push(seq);
      const data = [...request.payload];
      for (const part of formatMessage({ type: request.type, flags: request.flags | NLM_F_REQUEST | NLM_F_ACK, seq, port: this.port, data })) {
        buffers.push(part);
        length += part.length;
      }
      if (length % 4 !== 0) {
        buffers.push(new Uint8Array(4 - (length % 4)));
        length += 4 - (length % 4);
      }
      return new Promise<Outcome>((resolve) => this.pending.set(seq, resolve));
    });
    const settle = (code: string): void => {
      for (const seq of seqs) {
        this.pending.get(seq)?.(code);
        this.pending.delete(seq);
      }
    };
    // An acknowledgement the kernel could not queue is lost: fail those, the loop retries.
    const timer = setTimeout(() => settle('ETIMEDOUT'), TIMEOUT_MS);
    this.socket.send(Buffer.concat(buffers), {}, (error) => {
      if (error !== undefined) settle((error as { code?: string }).code ?? 'EIO');
    });
    return Promise.all(answers).finally(() => clearTimeout(timer));
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0x7fffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  private onReply(data: Buffer): void {
    for (const message of parseMessages(data)) {
      if (message.type !== NLMSG_ERROR) continue;
      const resolve = this.pending.get(message.seq);
      if (resolve === undefined) continue;
      this.pending.delete(message.seq);
      const { errno } = parseError(message.data, message.flags);
      resolve(errno === 0 ? undefined : errnoName(errno));
    }
  }
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(errno < 0 ? errno : -errno);
  } catch {
    return `errno ${Math.abs(errno)}`;
  }
}
