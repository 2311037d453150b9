// Model operations -> rtnetlink requests, written in place into one reusable buffer
// (codec.ts reads the other way and holds the layouts' constants).
import { writeAddress } from '../address';
import type { NextHop, Operation, Route, Rule } from '../model';
import type { CacheKind } from './cache';
import {
  afOf, align4, FR_ACT_TO_TBL, FRA_PRIORITY, FRA_PROTOCOL, FRA_SRC, FRA_TABLE, HEADER_LENGTH, NLM_F_ACK, NLM_F_CREATE,
  NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, ROUTE_TYPES, RT_TABLE_COMPAT, RTA_DST, RTA_GATEWAY,
  RTA_MULTIPATH, RTA_OIF, RTA_PREFSRC, RTA_PRIORITY, RTA_SRC, RTA_TABLE, RTM, RTNH_F_ONLINK,
} from './codec';

// Plain byte stores: Buffer's write and fill methods check their arguments and, for
// fill, call into C++, which costs more than the store itself; a pass writes ~10 per route.
function put16(b: Buffer, offset: number, value: number): void {
  b[offset] = value & 0xff;
  b[offset + 1] = (value >>> 8) & 0xff;
}

function put32(b: Buffer, offset: number, value: number): void {
  b[offset] = value & 0xff;
  b[offset + 1] = (value >>> 8) & 0xff;
  b[offset + 2] = (value >>> 16) & 0xff;
  b[offset + 3] = (value >>> 24) & 0xff;
}

/**
 * Builds datagrams of requests. The buffer is reused from one datagram to the next;
 * take() copies out what was written.
 */
export class RequestWriter {
  private buffer = Buffer.allocUnsafe(64 * 1024);
  private length = 0;
  private messageStart = 0;

  get size(): number {
    return this.length;
  }

  /** The datagram so far; the writer starts over. */
  take(): Buffer {
    const datagram = Buffer.from(this.buffer.subarray(0, this.length));
    this.length = 0;
    return datagram;
  }

  dump(kind: CacheKind, seq: number, port: number): void {
    const [type, headerLength] = DUMPS[kind];
    this.begin(type, NLM_F_REQUEST | NLM_F_DUMP, seq, port);
    this.zeros(headerLength);
    this.end();
  }

  /** The request for `op`; requestAck() marks the one whose answer ends a datagram. */
  operation(op: Operation, seq: number, port: number): void {
    switch (op.kind) {
      case 'add-route': this.route(RTM.NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, seq, port, op.route); break;
      case 'replace-route': this.route(RTM.NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq, port, op.route); break;
      case 'delete-route': this.route(RTM.DELROUTE, 0, seq, port, op.route); break;
      case 'add-rule': this.rule(RTM.NEWRULE, NLM_F_CREATE | NLM_F_EXCL, seq, port, op.rule); break;
      case 'delete-rule': this.rule(RTM.DELRULE, 0, seq, port, op.rule); break;
    }
  }


  /** The request that creates (or, for delete, names) `route`. */
  route(type: number, flags: number, seq: number, port: number, route: Route): void {
    this.begin(type, flags | NLM_F_REQUEST, seq, port);
    this.ensure(12);
    const b = this.buffer;
    const o = this.length;
    b[o] = afOf(route.family);
    b[o + 1] = route.dstLength;
    b[o + 2] = route.srcLength;
    b[o + 3] = route.tos;
    b[o + 4] = route.table < 256 ? route.table : RT_TABLE_COMPAT;
    b[o + 5] = route.protocol;
    b[o + 6] = route.scope;
    b[o + 7] = Math.max(0, ROUTE_TYPES.indexOf(route.type));
    put32(b, o + 8, route.onlink ? RTNH_F_ONLINK : 0);
    this.length += 12;
    this.u32(RTA_TABLE, route.table);
    this.u32(RTA_PRIORITY, route.metric);
    if (route.dstLength > 0) this.address(RTA_DST, route.dst);
    if (route.src !== undefined && route.srcLength > 0) this.address(RTA_SRC, route.src);
    if (route.oif !== undefined) this.u32(RTA_OIF, route.oif);
    if (route.gateway !== undefined) this.address(RTA_GATEWAY, route.gateway);
    if (route.prefsrc !== undefined) this.address(RTA_PREFSRC, route.prefsrc);
    if (route.nexthops !== undefined) this.multipath(route.nexthops);
    this.end();
  }

  rule(type: number, flags: number, seq: number, port: number, rule: Rule): void {
    this.begin(type, flags | NLM_F_REQUEST, seq, port);
    this.ensure(12);
    const b = this.buffer;
    const o = this.length;
    b.fill(0, o, o + 12);
    b[o] = afOf(rule.family);
    b[o + 2] = rule.srcLength;
    b[o + 4] = rule.table < 256 ? rule.table : RT_TABLE_COMPAT;
    b[o + 7] = FR_ACT_TO_TBL;
    this.length += 12;
    this.u32(FRA_TABLE, rule.table);
    this.u32(FRA_PRIORITY, rule.priority);
    this.attribute(FRA_PROTOCOL, 1);
    this.buffer[this.length - 4] = rule.protocol;
    if (rule.src !== undefined && rule.srcLength > 0) this.address(FRA_SRC, rule.src);
    this.end();
  }

  private multipath(hops: readonly NextHop[]): void {
    const start = this.length;
    this.attribute(RTA_MULTIPATH, 0);
    for (const hop of hops) {
      this.ensure(8);
      const o = this.length;
      this.buffer.writeUInt16LE(8, o);
      this.buffer[o + 2] = 0;
      this.buffer[o + 3] = Math.max(0, hop.weight - 1);
      this.buffer.writeInt32LE(hop.oif, o + 4);
      this.length += 8;
      if (hop.gateway !== undefined) this.address(RTA_GATEWAY, hop.gateway);
      this.buffer.writeUInt16LE(this.length - o, o);
    }
    this.buffer.writeUInt16LE(this.length - start, start);
  }

  /** Asks for an acknowledgement of the last message written. */
  requestAck(): void {
    put16(this.buffer, this.messageStart + 6, this.buffer.readUInt16LE(this.messageStart + 6) | NLM_F_ACK);
  }

  private begin(type: number, flags: number, seq: number, port: number): void {
    this.ensure(HEADER_LENGTH);
    this.messageStart = this.length;
    const b = this.buffer;
    const o = this.length;
    put16(b, o + 4, type);
    put16(b, o + 6, flags);
    put32(b, o + 8, seq);
    put32(b, o + 12, port);
    this.length += HEADER_LENGTH;
  }

  private end(): void {
    put32(this.buffer, this.messageStart, this.length - this.messageStart);
  }

  /** An attribute header and `size` bytes of value, left for the caller to fill, then zero padding to 4. */
  private attribute(type: number, size: number): void {
    const padded = align4(size);
    this.ensure(4 + padded);
    const b = this.buffer;
    const o = this.length;
    put16(b, o, 4 + size);
    put16(b, o + 2, type);
    for (let i = o + 4 + size; i < o + 4 + padded; i++) b[i] = 0;
    this.length += 4 + padded;
  }

  private u32(type: number, value: number): void {
    this.attribute(type, 4);
    put32(this.buffer, this.length - 4, value);
  }

  private address(type: number, text: string): void {
    const size = text.includes(':') ? 16 : 4;
    this.attribute(type, size);
    writeAddress(text, this.buffer, this.length - size);
  }

  private zeros(count: number): void {
    this.ensure(count);
    this.buffer.fill(0, this.length, this.length + count);
    this.length += count;
  }

  private ensure(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + extra));
    this.buffer.copy(bigger, 0, 0, this.length);
    this.buffer = bigger;
  }
}

/** Request type and the size of its (all-zero: every family, every object) header per kind. */
const DUMPS: Record<CacheKind, readonly [number, number]> = {
  links: [RTM.GETLINK, 16],
  addresses: [RTM.GETADDR, 8],
  routes: [RTM.GETROUTE, 12],
  rules: [RTM.GETRULE, 12],
};
