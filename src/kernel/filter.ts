// Classic BPF socket filters for netlink sockets (attached by the patched binding, see
// scripts/build-netlink.js): the kernel runs them on each datagram before queueing it,
// so what a socket does not want costs it no wake-up, no read and no decoding.
import { endianness } from 'node:os';
import type { RawNetlinkSocket } from 'netlink/dist/raw';
import { patchedNative } from './native';

// Opcodes (linux/filter.h, linux/bpf_common.h).
const BPF_LD_W_ABS = 0x20;
const BPF_LD_B_ABS = 0x30;
const BPF_JEQ_K = 0x15;
const BPF_RET_K = 0x06;
const ACCEPT = 0xffffffff;
const DROP = 0;

interface Instruction {
  readonly code: number;
  readonly jt: number;
  readonly jf: number;
  readonly k: number;
}

const op = (code: number, k: number, jt = 0, jf = 0): Instruction => ({ code, jt, jf, k });

/** The filter as the kernel reads it: `struct sock_filter` { u16 code; u8 jt; u8 jf; u32 k }, host byte order. */
function assemble(program: readonly Instruction[]): Buffer {
  const out = Buffer.alloc(program.length * 8);
  const little = endianness() === 'LE';
  program.forEach((ins, i) => {
    if (little) { out.writeUInt16LE(ins.code, i * 8); out.writeUInt32LE(ins.k, i * 8 + 4); }
    else { out.writeUInt16BE(ins.code, i * 8); out.writeUInt32BE(ins.k, i * 8 + 4); }
    out[i * 8 + 2] = ins.jt;
    out[i * 8 + 3] = ins.jf;
  });
  return out;
}

/**
 * BPF loads words in network byte order, netlink headers are in host order: the value a
 * word load of a host-order u32 yields.
 */
function asLoaded(value: number): number {
  if (endianness() === 'BE') return value >>> 0;
  return (((value & 0xff) << 24) | ((value & 0xff00) << 8) | ((value >>> 8) & 0xff00) | (value >>> 24)) >>> 0;
}

/** Offset of the low byte of nlmsg_type (a u16 at 4), which is all a route or rule type needs. */
const TYPE_LOW_BYTE = endianness() === 'LE' ? 4 : 5;
const NLMSG_PID = 12;
/** rtm_protocol: after the 16-byte netlink header, byte 5 of struct rtmsg. */
const RTM_PROTOCOL = 16 + 5;

/**
 * Drops what the kernel multicasts about our own requests: the kernel stamps such a
 * notification with the requesting socket's port (nlmsg_pid). The daemon knows the
 * outcome of its own requests from their acknowledgements, so reading back 10,000 echoes
 * of a start-up's 10,000 inserts is pure cost; everyone else's changes, and the
 * kernel's own (port 0), still arrive.
 */
export function dropMessagesFrom(port: number): Buffer {
  return assemble([
    op(BPF_LD_W_ABS, NLMSG_PID),
    op(BPF_JEQ_K, asLoaded(port), 0, 1),
    op(BPF_RET_K, DROP),
    op(BPF_RET_K, ACCEPT),
  ]);
}

/** Keeps route messages with rtm_protocol `protocol` and every message of the given types; drops the rest. */
export function onlyRoutesOfProtocol(protocol: number, routeTypes: readonly number[], keepTypes: readonly number[]): Buffer {
  const program: Instruction[] = [op(BPF_LD_B_ABS, TYPE_LOW_BYTE)];
  // Each test jumps to "check protocol" / "accept" further down, counted from the next instruction.
  const tests = [...routeTypes.map((t) => ({ t, route: true })), ...keepTypes.map((t) => ({ t, route: false }))];
  tests.forEach(({ t, route }, i) => {
    const remaining = tests.length - 1 - i;
    // Layout after the tests: [0] ret DROP, [1] ld protocol, [2] jeq, [3] ret DROP, [4] ret ACCEPT.
    program.push(op(BPF_JEQ_K, t, route ? remaining + 1 : remaining + 4, 0));
  });
  program.push(
    op(BPF_RET_K, DROP),
    op(BPF_LD_B_ABS, RTM_PROTOCOL),
    op(BPF_JEQ_K, protocol, 1, 0),
    op(BPF_RET_K, DROP),
    op(BPF_RET_K, ACCEPT),
  );
  return assemble(program);
}

/** Attaches a filter; throws the kernel's error (or a TypeError from an unpatched binding). */
export function attachFilter(socket: RawNetlinkSocket, program: Buffer): void {
  patchedNative(socket).attachFilter(program);
}
