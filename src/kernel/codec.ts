// rtnetlink messages <-> model values. The only place that knows the `netlink`
// package's message shapes; everything above it sees plain model values.
import { rt } from 'netlink';
import { addressToText, anyAddress, textToAddress } from '../address';
import type { Address, Family, Link, NextHop, Route, RouteType, Rule } from '../model';

const AF_INET = 2;
const AF_INET6 = 10;
const RTA_GATEWAY = 5;
const RTNH_F_ONLINK = 4;
const SUPPRESS_PREFIXLEN_NONE = 0xffffffff;

export function familyOfAf(af: number | undefined): Family | undefined {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined;
}

export function afOf(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

function enumValue<E extends Record<string, string | number>>(values: E, value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && typeof values[value] === 'number') return values[value] as number;
  return 0;
}

const ROUTE_TYPES: readonly RouteType[] = [
  'unspec', 'unicast', 'local', 'broadcast', 'anycast', 'multicast',
  'blackhole', 'unreachable', 'prohibit', 'throw', 'nat', 'xresolve',
];

export function parseLink(message: rt.LinkMessage): Link | undefined {
  const { data, attrs } = message;
  if (data.index === undefined || attrs.ifname === undefined) return undefined;
  return {
    index: data.index,
    name: attrs.ifname,
    up: data.flags?.up === true,
    loopback: data.flags?.loopback === true,
    pointToPoint: data.flags?.pointopoint === true,
  };
}

export function parseAddress(message: rt.AddressMessage): Address | undefined {
  const { data, attrs } = message;
  const family = familyOfAf(data.family);
  // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
  const local = attrs.local ?? attrs.address;
  if (family === undefined || local === undefined || data.index === undefined) return undefined;
  return {
    index: data.index,
    family,
    local: addressToText(local),
    prefixLength: data.prefixlen ?? 0,
    scope: data.scope ?? 0,
  };
}

function parseMultipath(family: Family, buffer: Buffer): NextHop[] {
  const hops: NextHop[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const length = buffer.readUInt16LE(offset);
    if (length < 8) break;
    const hopCount = buffer.readUInt8(offset + 3);
    const oif = buffer.readInt32LE(offset + 4);
    let gateway: string | undefined;
    for (let a = offset + 8; a + 4 <= offset + length; ) {
      const attrLength = buffer.readUInt16LE(a);
      const attrType = buffer.readUInt16LE(a + 2) & 0x3fff;
      if (attrLength < 4) break;
      if (attrType === RTA_GATEWAY && attrLength - 4 === (family === 4 ? 4 : 16)) {
        gateway = addressToText(buffer.subarray(a + 4, a + attrLength));
      }
      a += (attrLength + 3) & ~3;
    }
    hops.push({ oif, gateway, weight: hopCount + 1 });
    offset += (length + 3) & ~3;
  }
  return hops;
}

function formatMultipath(hops: readonly NextHop[]): Buffer {
  const parts = hops.map((hop) => {
    const gateway = hop.gateway === undefined ? undefined : textToAddress(hop.gateway);
    const attrLength = gateway === undefined ? 0 : 4 + gateway.length;
    const part = Buffer.alloc(8 + ((attrLength + 3) & ~3));
    part.writeUInt16LE(8 + attrLength, 0);
    part.writeUInt8(0, 2);
    part.writeUInt8(Math.max(0, hop.weight - 1), 3);
    part.writeInt32LE(hop.oif, 4);
    if (gateway !== undefined) {
      part.writeUInt16LE(attrLength, 8);
      part.writeUInt16LE(RTA_GATEWAY, 10);
      gateway.copy(part, 12);
    }
    return part;
  });
  return Buffer.concat(parts);
}

export function parseRoute(message: rt.RouteMessage): Route | undefined {
  const { data, attrs } = message;
  const family = familyOfAf(data.family);
  // Cloned entries are the route cache, not routes anyone configured.
  if (family === undefined || data.flags?.cloned) return undefined;
  const flags = data.flags?.__unknown ?? 0;
  return {
    family,
    table: attrs.table ?? data.table ?? 0,
    dst: attrs.dst ? addressToText(attrs.dst) : anyAddress(family),
    dstLength: data.dstLen ?? 0,
    tos: data.tos ?? 0,
    metric: attrs.priority ?? 0,
    protocol: enumValue(rt.RouteProtocol, data.protocol),
    scope: enumValue(rt.RouteScope, data.scope),
    type: ROUTE_TYPES[enumValue(rt.RouteType, data.type)] ?? 'unspec',
    oif: attrs.oif,
    gateway: attrs.gateway ? addressToText(attrs.gateway) : undefined,
    prefsrc: attrs.prefsrc ? addressToText(attrs.prefsrc) : undefined,
    nexthops: attrs.multipath ? parseMultipath(family, attrs.multipath) : undefined,
    nhid: attrs.nhId && attrs.nhId.length >= 4 ? attrs.nhId.readUInt32LE(0) : undefined,
    onlink: (flags & RTNH_F_ONLINK) !== 0,
    src: attrs.src ? addressToText(attrs.src) : undefined,
    srcLength: data.srcLen ?? 0,
  };
}

export function parseRule(message: rt.RuleMessage): Rule | undefined {
  const { data, attrs } = message;
  const family = familyOfAf(data.family);
  if (family === undefined) return undefined;
  const action = enumValue(rt.RuleAction, data.action);
  const plain = action === rt.RuleAction.toTbl
    && (data.dstLen ?? 0) === 0 && (data.tos ?? 0) === 0 && !data.flags?.invert
    && attrs.dst === undefined && attrs.iifname === undefined && attrs.oifname === undefined
    && attrs.goto === undefined && !attrs.fwmark && !attrs.fwmask && attrs.uidRange === undefined
    && attrs.ipProto === undefined && attrs.sportRange === undefined && attrs.dportRange === undefined
    && !attrs.l3Mdev && attrs.tunId === undefined && attrs.suppressIfgroup === undefined
    && (attrs.suppressPrefixlen === undefined || attrs.suppressPrefixlen.readUInt32LE(0) === SUPPRESS_PREFIXLEN_NONE);
  return {
    family,
    priority: attrs.priority ?? 0,
    table: attrs.table ?? data.table ?? 0,
    src: attrs.src ? addressToText(attrs.src) : undefined,
    srcLength: data.srcLen ?? 0,
    protocol: attrs.protocol ?? 0,
    plain,
  };
}

export interface RouteRequest { data: rt.Route; attrs: rt.RouteAttrs }
export interface RuleRequest { data: rt.Rule; attrs: rt.RuleAttrs }

/** The request that creates (or, for delete, names) `route`. */
export function routeRequest(route: Route): RouteRequest {
  const attrs: rt.RouteAttrs = { table: route.table, priority: route.metric };
  if (route.dstLength > 0) attrs.dst = textToAddress(route.dst);
  if (route.src !== undefined && route.srcLength > 0) attrs.src = textToAddress(route.src);
  if (route.oif !== undefined) attrs.oif = route.oif;
  if (route.gateway !== undefined) attrs.gateway = textToAddress(route.gateway);
  if (route.prefsrc !== undefined) attrs.prefsrc = textToAddress(route.prefsrc);
  if (route.nexthops !== undefined) attrs.multipath = formatMultipath(route.nexthops);
  return {
    data: {
      family: afOf(route.family),
      dstLen: route.dstLength,
      srcLen: route.srcLength,
      tos: route.tos,
      table: route.table < 256 ? route.table : rt.RoutingTableClass.COMPAT,
      protocol: route.protocol,
      scope: route.scope,
      type: ROUTE_TYPES.indexOf(route.type),
      flags: route.onlink ? { __unknown: RTNH_F_ONLINK } : {},
    },
    attrs,
  };
}

export function ruleRequest(rule: Rule): RuleRequest {
  const attrs: rt.RuleAttrs = { table: rule.table, priority: rule.priority, protocol: rule.protocol };
  if (rule.src !== undefined && rule.srcLength > 0) attrs.src = textToAddress(rule.src);
  return {
    data: {
      family: afOf(rule.family),
      srcLen: rule.srcLength,
      table: rule.table < 256 ? rule.table : rt.RoutingTableClass.COMPAT,
      action: rt.RuleAction.toTbl,
    },
    attrs,
  };
}
