// rtnetlink wire format -> model values, read in place, and the layouts' constants
// (requests.ts writes the other way). The daemon reads every route event twice over (the
// kernel's and the echo of its own copy) and writes one request per copy, so a generic
// attribute codec that allocates an object and a Buffer per attribute dominated the CPU
// of a 10,000-route burst; this one allocates only the values it returns. Layouts:
// linux/netlink.h, rtnetlink.h, if_addr.h, if_link.h, fib_rules.h.
import { getSystemErrorName } from 'node:util';
import { anyAddress, readAddress } from '../address';
import type { Address, Family, Link, NextHop, Route, RouteType, Rule } from '../model';
import { RouteRecord } from '../route-record';
import type { CacheEvent } from './cache';

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const HEADER_LENGTH = 16;

export const RTM = {
  NEWLINK: 16, DELLINK: 17, GETLINK: 18,
  NEWADDR: 20, DELADDR: 21, GETADDR: 22,
  NEWROUTE: 24, DELROUTE: 25, GETROUTE: 26,
  NEWRULE: 32, DELRULE: 33, GETRULE: 34,
  NEWNEXTHOP: 104, DELNEXTHOP: 105,
} as const;

/** rtnetlink multicast groups (RTNLGRP_*) the monitor joins. */
export const GROUPS = { LINK: 1, IPV4_IFADDR: 5, IPV4_ROUTE: 7, IPV4_RULE: 8, IPV6_IFADDR: 9, IPV6_ROUTE: 11, IPV6_RULE: 19, NEXTHOP: 32 } as const;

const AF_INET = 2;
const AF_INET6 = 10;
const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;
const IFF_POINTOPOINT = 0x10;
const IFLA_IFNAME = 3;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
export const RTA_DST = 1;
export const RTA_SRC = 2;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_MULTIPATH = 9;
export const RTA_TABLE = 15;
const RTA_NH_ID = 30;
const RTM_F_CLONED = 0x200;
export const RTNH_F_ONLINK = 4;
export const RT_TABLE_COMPAT = 252;
const FRA_DST = 1;
export const FRA_SRC = 2;
const FRA_IIFNAME = 3;
const FRA_GOTO = 4;
export const FRA_PRIORITY = 6;
const FRA_FWMARK = 10;
const FRA_TUN_ID = 12;
const FRA_SUPPRESS_IFGROUP = 13;
const FRA_SUPPRESS_PREFIXLEN = 14;
export const FRA_TABLE = 15;
const FRA_FWMASK = 16;
const FRA_OIFNAME = 17;
const FRA_L3MDEV = 19;
const FRA_UID_RANGE = 20;
export const FRA_PROTOCOL = 21;
const FRA_IP_PROTO = 22;
const FRA_SPORT_RANGE = 23;
const FRA_DPORT_RANGE = 24;
const FIB_RULE_INVERT = 0x2;
export const FR_ACT_TO_TBL = 1;
const SUPPRESS_NONE = 0xffffffff;
const NLA_TYPE_MASK = 0x3fff;

export const ROUTE_TYPES: readonly RouteType[] = [
  'unspec', 'unicast', 'local', 'broadcast', 'anycast', 'multicast',
  'blackhole', 'unreachable', 'prohibit', 'throw', 'nat', 'xresolve',
];

export function familyOfAf(af: number): Family | undefined {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined;
}

export function afOf(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

export const align4 = (n: number): number => (n + 3) & ~3;

/** Calls `visit` for each message in a datagram; `start`..`end` is its payload. */
export function forEachMessage(
  data: Buffer,
  visit: (type: number, flags: number, seq: number, start: number, end: number) => void,
): void {
  let offset = 0;
  while (offset + HEADER_LENGTH <= data.length) {
    const length = data.readUInt32LE(offset);
    if (length < HEADER_LENGTH || offset + length > data.length) return;
    visit(data.readUInt16LE(offset + 4), data.readUInt16LE(offset + 6), data.readUInt32LE(offset + 8), offset + HEADER_LENGTH, offset + length);
    offset += align4(length);
  }
}

/**
 * Offsets of the attributes of interest between `start` and `end`, by type; -1 where
 * absent. The value of attribute t starts at `at[t]` and is `size[t]` bytes long.
 */
class Attributes {
  readonly at: Int32Array;
  readonly size: Int32Array;
  constructor(count: number) {
    this.at = new Int32Array(count);
    this.size = new Int32Array(count);
  }
  read(data: Buffer, start: number, end: number): this {
    this.at.fill(-1);
    let offset = start;
    while (offset + 4 <= end) {
      const length = data.readUInt16LE(offset);
      if (length < 4 || offset + length > end) break;
      const type = data.readUInt16LE(offset + 2) & NLA_TYPE_MASK;
      if (type < this.at.length) {
        this.at[type] = offset + 4;
        this.size[type] = length - 4;
      }
      offset += align4(length);
    }
    return this;
  }
  has(type: number): boolean {
    return this.at[type] >= 0;
  }
  u32(data: Buffer, type: number, fallback: number): number {
    return this.at[type] >= 0 && this.size[type] >= 4 ? data.readUInt32LE(this.at[type]) : fallback;
  }
  address(data: Buffer, type: number): string | undefined {
    const size = this.size[type];
    return this.at[type] >= 0 && (size === 4 || size === 16) ? readAddress(data, this.at[type], size) : undefined;
  }
  /** An address many routes name (a gateway, a source hint): one string for all of them. */
  sharedAddress(data: Buffer, type: number): string | undefined {
    const text = this.address(data, type);
    return text === undefined ? undefined : shared(text);
  }
}

// A full table names a handful of gateways and source hints a million times over: each
// route keeping its own copy of the text would cost more than the route's other fields.
const SHARED_LIMIT = 4096;
const sharedTexts = new Map<string, string>();
function shared(text: string): string {
  const known = sharedTexts.get(text);
  if (known !== undefined) return known;
  if (sharedTexts.size >= SHARED_LIMIT) sharedTexts.clear();
  sharedTexts.set(text, text);
  return text;
}

// One scratch table per message kind: decoding is synchronous and never re-entrant.
const linkAttrs = new Attributes(IFLA_IFNAME + 1);
const addressAttrs = new Attributes(IFA_LOCAL + 1);
const routeAttrs = new Attributes(RTA_NH_ID + 1);
const ruleAttrs = new Attributes(FRA_DPORT_RANGE + 1);

function decodeLink(data: Buffer, start: number, end: number): Link | undefined {
  if (end - start < 16) return undefined;
  const attrs = linkAttrs.read(data, start + 16, end);
  if (!attrs.has(IFLA_IFNAME)) return undefined;
  const nameStart = attrs.at[IFLA_IFNAME];
  let nameEnd = nameStart;
  while (nameEnd < nameStart + attrs.size[IFLA_IFNAME] && data[nameEnd] !== 0) nameEnd++;
  const flags = data.readUInt32LE(start + 8);
  return {
    index: data.readInt32LE(start + 4),
    name: data.toString('utf8', nameStart, nameEnd),
    up: (flags & IFF_UP) !== 0,
    loopback: (flags & IFF_LOOPBACK) !== 0,
    pointToPoint: (flags & IFF_POINTOPOINT) !== 0,
  };
}

function decodeAddress(data: Buffer, start: number, end: number): Address | undefined {
  if (end - start < 8) return undefined;
  const family = familyOfAf(data[start]);
  if (family === undefined) return undefined;
  const attrs = addressAttrs.read(data, start + 8, end);
  // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
  const local = attrs.address(data, IFA_LOCAL) ?? attrs.address(data, IFA_ADDRESS);
  if (local === undefined) return undefined;
  return { index: data.readUInt32LE(start + 4), family, local, prefixLength: data[start + 1], scope: data[start + 3] };
}

function decodeMultipath(data: Buffer, start: number, end: number): NextHop[] {
  const hops: NextHop[] = [];
  let offset = start;
  while (offset + 8 <= end) {
    const length = data.readUInt16LE(offset);
    if (length < 8 || offset + length > end) break;
    let gateway: string | undefined;
    for (let a = offset + 8; a + 4 <= offset + length;) {
      const attrLength = data.readUInt16LE(a);
      if (attrLength < 4) break;
      const size = attrLength - 4;
      if ((data.readUInt16LE(a + 2) & NLA_TYPE_MASK) === RTA_GATEWAY && (size === 4 || size === 16)) gateway = shared(readAddress(data, a + 4, size));
      a += align4(attrLength);
    }
    hops.push({ oif: data.readInt32LE(offset + 4), gateway, weight: data[offset + 3] + 1 });
    offset += align4(length);
  }
  return hops;
}

// A RouteRecord, as copyVia (policy/derive.ts) makes them: one hidden class for both.
function decodeRoute(data: Buffer, start: number, end: number): Route | undefined {
  if (end - start < 12) return undefined;
  const family = familyOfAf(data[start]);
  const flags = data.readUInt32LE(start + 8);
  // Cloned entries are the route cache, not routes anyone configured.
  if (family === undefined || (flags & RTM_F_CLONED) !== 0) return undefined;
  const attrs = routeAttrs.read(data, start + 12, end);
  return new RouteRecord(
    family,
    attrs.u32(data, RTA_TABLE, data[start + 4]),
    attrs.address(data, RTA_DST) ?? anyAddress(family),
    data[start + 1],
    data[start + 3],
    attrs.u32(data, RTA_PRIORITY, 0),
    data[start + 5],
    data[start + 6],
    ROUTE_TYPES[data[start + 7]] ?? 'unspec',
    attrs.has(RTA_OIF) ? data.readInt32LE(attrs.at[RTA_OIF]) : undefined,
    attrs.sharedAddress(data, RTA_GATEWAY),
    attrs.sharedAddress(data, RTA_PREFSRC),
    attrs.has(RTA_MULTIPATH) ? decodeMultipath(data, attrs.at[RTA_MULTIPATH], attrs.at[RTA_MULTIPATH] + attrs.size[RTA_MULTIPATH]) : undefined,
    attrs.has(RTA_NH_ID) ? attrs.u32(data, RTA_NH_ID, 0) : undefined,
    (flags & RTNH_F_ONLINK) !== 0,
    attrs.address(data, RTA_SRC),
    data[start + 2],
  );
}

function decodeRule(data: Buffer, start: number, end: number): Rule | undefined {
  if (end - start < 12) return undefined;
  const family = familyOfAf(data[start]);
  if (family === undefined) return undefined;
  const attrs = ruleAttrs.read(data, start + 12, end);
  const nonZero = (type: number): boolean => attrs.u32(data, type, 0) !== 0;
  const plain = data[start + 7] === FR_ACT_TO_TBL
    && data[start + 1] === 0 && data[start + 3] === 0 && (data.readUInt32LE(start + 8) & FIB_RULE_INVERT) === 0
    && !attrs.has(FRA_DST) && !attrs.has(FRA_IIFNAME) && !attrs.has(FRA_OIFNAME) && !attrs.has(FRA_GOTO)
    && !nonZero(FRA_FWMARK) && !nonZero(FRA_FWMASK) && !attrs.has(FRA_UID_RANGE) && !attrs.has(FRA_IP_PROTO)
    && !attrs.has(FRA_SPORT_RANGE) && !attrs.has(FRA_DPORT_RANGE)
    && !(attrs.has(FRA_L3MDEV) && data[attrs.at[FRA_L3MDEV]] !== 0) && !attrs.has(FRA_TUN_ID) && !attrs.has(FRA_SUPPRESS_IFGROUP)
    && attrs.u32(data, FRA_SUPPRESS_PREFIXLEN, SUPPRESS_NONE) === SUPPRESS_NONE;
  return {
    family,
    priority: attrs.u32(data, FRA_PRIORITY, 0),
    table: attrs.u32(data, FRA_TABLE, data[start + 4]),
    src: attrs.address(data, FRA_SRC),
    srcLength: data[start + 2],
    protocol: attrs.has(FRA_PROTOCOL) ? data[attrs.at[FRA_PROTOCOL]] : 0,
    plain,
  };
}

/** Decodes one rtnetlink message into a cache event; undefined for what we don't track. */
export function decodeEvent(type: number, flags: number, data: Buffer, start: number, end: number): CacheEvent | undefined {
  switch (type) {
    case RTM.NEWLINK: case RTM.DELLINK: {
      const link = decodeLink(data, start, end);
      return link && { kind: 'link', removed: type === RTM.DELLINK, link };
    }
    case RTM.NEWADDR: case RTM.DELADDR: {
      const address = decodeAddress(data, start, end);
      return address && { kind: 'address', removed: type === RTM.DELADDR, address };
    }
    case RTM.NEWROUTE: case RTM.DELROUTE: {
      const route = decodeRoute(data, start, end);
      return route && { kind: 'route', removed: type === RTM.DELROUTE, replace: (flags & NLM_F_REPLACE) !== 0, route };
    }
    case RTM.NEWRULE: case RTM.DELRULE: {
      const rule = decodeRule(data, start, end);
      return rule && { kind: 'rule', removed: type === RTM.DELRULE, rule };
    }
    default:
      return undefined;
  }
}

/** The errno of an NLMSG_ERROR payload (0 for an acknowledgement), as a positive number. */
export function errorOf(data: Buffer, start: number): number {
  return Math.abs(data.readInt32LE(start));
}

/** "EEXIST" for 17. */
export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}
