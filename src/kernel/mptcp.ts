// The in-kernel MPTCP path manager over generic netlink (family "mptcp_pm"): its endpoints
// and limits, as `ip mptcp endpoint|limits` reads and sets them (iproute2 ip/ipmptcp.c).
// Attribute layout from uapi linux/mptcp_pm.h.
import { readFileSync } from 'node:fs';
// The binding's generic netlink part only: its index also loads nl80211, WireGuard and
// rtnetlink structure code (~500 KB of source) that dynmhs never uses, and keeps it resident.
import { createGenericNetlink, type GenericNetlinkSocket } from 'netlink/dist/genl/genl';
import * as genl from 'netlink/dist/genl/structs';
import { readAddress, writeAddress } from '../address';
import type { Endpoint, Family, MptcpLimits, OperationResult } from '../model';

const MPTCP_PM_NAME = 'mptcp_pm';
const MPTCP_PM_VER = 1;

const CMD_ADD_ADDR = 1;
const CMD_DEL_ADDR = 2;
const CMD_GET_ADDR = 3;
const CMD_SET_LIMITS = 5;
const CMD_GET_LIMITS = 6;

const ATTR_ADDR = 1;
const ATTR_RCV_ADD_ADDRS = 2;
const ATTR_SUBFLOWS = 3;

const ADDR_ATTR_FAMILY = 1;
const ADDR_ATTR_ID = 2;
const ADDR_ATTR_ADDR4 = 3;
const ADDR_ATTR_ADDR6 = 4;
const ADDR_ATTR_PORT = 5;
const ADDR_ATTR_FLAGS = 6;
const ADDR_ATTR_IF_IDX = 7;

const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;
const NLM_F_DUMP = 0x300;
const AF_INET = 2;
const AF_INET6 = 10;
const REQUEST_TIMEOUT_MS = 5_000;

/** Raised when the kernel has no MPTCP path manager (CONFIG_MPTCP off or the module absent). */
export class MptcpUnavailableError extends Error {
  readonly code = 'MPTCP_UNAVAILABLE';
}

function attribute(type: number, payload: Buffer): Buffer {
  const length = 4 + payload.length;
  const out = Buffer.alloc((length + 3) & ~3);
  out.writeUInt16LE(length, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}

const u8 = (value: number): Buffer => Buffer.from([value]);
const u16 = (value: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16LE(value); return b; };
const u32 = (value: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(value >>> 0); return b; };
const s32 = (value: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32LE(value); return b; };

function* attributes(data: Buffer): Generator<[number, Buffer]> {
  let offset = 0;
  while (offset + 4 <= data.length) {
    const length = data.readUInt16LE(offset);
    if (length < 4 || offset + length > data.length) return;
    yield [data.readUInt16LE(offset + 2) & NLA_TYPE_MASK, data.subarray(offset + 4, offset + length)];
    offset += (length + 3) & ~3;
  }
}

/** The MPTCP_PM_ATTR_ADDR nest describing one endpoint; `id` 0 lets the kernel choose. */
function addressNest(endpoint: Pick<Endpoint, 'id' | 'family' | 'address' | 'flags' | 'ifindex'>): Buffer {
  const family = endpoint.family === 4 ? AF_INET : AF_INET6;
  const bytes = Buffer.alloc(endpoint.family === 4 ? 4 : 16);
  writeAddress(endpoint.address, bytes, 0);
  const parts = [
    attribute(ADDR_ATTR_FAMILY, u16(family)),
    attribute(endpoint.family === 4 ? ADDR_ATTR_ADDR4 : ADDR_ATTR_ADDR6, bytes),
  ];
  if (endpoint.id !== 0) parts.push(attribute(ADDR_ATTR_ID, u8(endpoint.id)));
  if (endpoint.flags !== 0) parts.push(attribute(ADDR_ATTR_FLAGS, u32(endpoint.flags)));
  if (endpoint.ifindex !== 0) parts.push(attribute(ADDR_ATTR_IF_IDX, s32(endpoint.ifindex)));
  return attribute(ATTR_ADDR | NLA_F_NESTED, Buffer.concat(parts));
}

function parseEndpoint(data: Buffer): Endpoint | undefined {
  for (const [type, nest] of attributes(data)) {
    if (type !== ATTR_ADDR) continue;
    let family: Family | undefined;
    let address: string | undefined;
    let id = 0;
    let flags = 0;
    let ifindex = 0;
    let port = 0;
    for (const [kind, value] of attributes(nest)) {
      switch (kind) {
        case ADDR_ATTR_FAMILY: family = value.readUInt16LE(0) === AF_INET ? 4 : 6; break;
        case ADDR_ATTR_ID: id = value.readUInt8(0); break;
        case ADDR_ATTR_ADDR4: address = readAddress(value, 0, 4); break;
        case ADDR_ATTR_ADDR6: address = readAddress(value, 0, 16); break;
        case ADDR_ATTR_PORT: port = value.readUInt16LE(0); break;
        case ADDR_ATTR_FLAGS: flags = value.readUInt32LE(0); break;
        case ADDR_ATTR_IF_IDX: ifindex = value.readInt32LE(0); break;
      }
    }
    if (family === undefined || address === undefined) return undefined;
    return { id, family, address, flags, ifindex, port };
  }
  return undefined;
}

/** "EEXIST" from the netlink package's "Request rejected: EEXIST". */
function errnoName(error: unknown): string {
  const message = (error as Error).message ?? String(error);
  return /Request rejected: (\S+)/.exec(message)?.[1] ?? message;
}

/** One generic netlink socket to the path manager of the current network namespace. */
export class MptcpPathManager {
  private constructor(private readonly socket: GenericNetlinkSocket, private readonly family: number) {}

  /** Resolves the family; MptcpUnavailableError when the kernel has no MPTCP. */
  static async open(): Promise<MptcpPathManager> {
    const socket = createGenericNetlink();
    try {
      const [reply] = await socket.ctrlRequest(genl.Commands.GET_FAMILY, { familyName: MPTCP_PM_NAME }, { timeout: REQUEST_TIMEOUT_MS });
      if (reply?.familyId === undefined) throw new Error('no family id in the reply');
      return new MptcpPathManager(socket, reply.familyId);
    } catch (error) {
      socket.socket.close();
      throw new MptcpUnavailableError(`the kernel has no MPTCP path manager (generic netlink family ${MPTCP_PM_NAME}: ${errnoName(error)}); is CONFIG_MPTCP enabled?`);
    }
  }

  close(): void {
    this.socket.socket.close();
  }

  /**
   * Settings of this network namespace under which endpoints do nothing: MPTCP sockets
   * disabled (net.mptcp.enabled=0), or the userspace path manager (mptcpd) in charge,
   * which ignores the in-kernel endpoints. One sentence each; none when all is well.
   */
  problems(): string[] {
    const read = (name: string): string | undefined => {
      try { return readFileSync(`/proc/sys/net/mptcp/${name}`, 'utf8').trim(); } catch { return undefined; }
    };
    const found: string[] = [];
    if (read('enabled') === '0') found.push('net.mptcp.enabled is 0, so no MPTCP socket can be opened; set it to 1');
    const manager = read('path_manager') ?? (read('pm_type') === '1' ? 'userspace' : undefined);
    if (manager === 'userspace') found.push('net.mptcp.path_manager is userspace (mptcpd?), which does not use these endpoints; set it to kernel');
    return found;
  }

  async endpoints(): Promise<Endpoint[]> {
    const [messages] = await this.socket.request(this.family, CMD_GET_ADDR, MPTCP_PM_VER, [], { flags: NLM_F_DUMP, timeout: REQUEST_TIMEOUT_MS });
    const found: Endpoint[] = [];
    for (const message of messages) {
      const endpoint = parseEndpoint(message.data);
      if (endpoint !== undefined) found.push(endpoint);
    }
    return found;
  }

  /** Adds an endpoint with the given id (not 0: dynmhs always chooses, see docs/mptcp.md). */
  add(endpoint: Omit<Endpoint, 'port'>): Promise<OperationResult> {
    return this.command(CMD_ADD_ADDR, addressNest(endpoint));
  }

  remove(endpoint: Pick<Endpoint, 'id' | 'family' | 'address'>): Promise<OperationResult> {
    return this.command(CMD_DEL_ADDR, addressNest({ ...endpoint, flags: 0, ifindex: 0 }));
  }

  async limits(): Promise<MptcpLimits> {
    const [messages] = await this.socket.request(this.family, CMD_GET_LIMITS, MPTCP_PM_VER, [], { timeout: REQUEST_TIMEOUT_MS });
    let subflows = 0;
    let addAddrAccepted = 0;
    for (const message of messages) {
      for (const [type, value] of attributes(message.data)) {
        if (type === ATTR_SUBFLOWS) subflows = value.readUInt32LE(0);
        if (type === ATTR_RCV_ADD_ADDRS) addAddrAccepted = value.readUInt32LE(0);
      }
    }
    return { subflows, addAddrAccepted };
  }

  setLimits(limits: MptcpLimits): Promise<OperationResult> {
    return this.command(CMD_SET_LIMITS, Buffer.concat([
      attribute(ATTR_RCV_ADD_ADDRS, u32(limits.addAddrAccepted)),
      attribute(ATTR_SUBFLOWS, u32(limits.subflows)),
    ]));
  }

  private async command(cmd: number, payload: Buffer): Promise<OperationResult> {
    try {
      await this.socket.request(this.family, cmd, MPTCP_PM_VER, [payload], { timeout: REQUEST_TIMEOUT_MS });
      return { ok: true };
    } catch (error) {
      return { ok: false, code: errnoName(error) };
    }
  }
}
