// What the patched binding adds to a `netlink` socket (scripts/build-netlink.js).
import type { RawNetlinkSocket } from 'netlink/dist/raw';

export interface PatchedNative {
  /** SO_ATTACH_FILTER with a classic BPF program (8-byte `struct sock_filter`s). */
  attachFilter(program: Buffer): void;
  /** false: stop watching for input (sends go on); true: watch again. */
  setReading(on: boolean): void;
  /** sendmsg() to the kernel on a worker thread; the callback gets its error, if any. */
  sendAsync(datagram: Buffer, callback: (error?: Error & { code?: string }) => void): void;
}

/** The socket's native half with the patched methods; a TypeError if the binding was not rebuilt. */
export function patchedNative(socket: RawNetlinkSocket): PatchedNative {
  const native = (socket as unknown as { __native: Partial<PatchedNative> }).__native;
  if (typeof native.attachFilter !== 'function' || typeof native.setReading !== 'function'
    || typeof native.sendAsync !== 'function') {
    throw new TypeError('the netlink binding is not the patched one: rebuild it with scripts/build-netlink.js (npm install)');
  }
  return native as PatchedNative;
}
