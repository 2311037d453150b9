// Plain values shared by every layer. Addresses are kept as canonical text
// (as printed by `ip`), so they compare with === and log as they read.

export type Family = 4 | 6;

/** rtnetlink protocol number that marks every route and rule dynmhs owns (rt_protos.d: "dynmhs"). */
export const DYNMHS_PROTOCOL = 249;

export const MAIN_TABLE = 254;

export interface Link {
  readonly index: number;
  readonly name: string;
  /** IFF_UP: administratively up. */
  readonly up: boolean;
  readonly loopback: boolean;
  readonly pointToPoint: boolean;
}

export interface Address {
  readonly index: number;
  readonly family: Family;
  /** The local address: IFA_LOCAL where present (point-to-point links), else IFA_ADDRESS. */
  readonly local: string;
  readonly prefixLength: number;
  /** RT_SCOPE_*: 0 universe, 200 site, 253 link, 254 host. */
  readonly scope: number;
}

export interface NextHop {
  readonly oif: number;
  readonly gateway?: string;
  readonly weight: number;
}

export type RouteType =
  | 'unicast' | 'local' | 'broadcast' | 'anycast' | 'multicast'
  | 'blackhole' | 'unreachable' | 'prohibit' | 'throw' | 'nat' | 'xresolve' | 'unspec';

export interface Route {
  readonly family: Family;
  readonly table: number;
  /** Destination prefix address, e.g. "0.0.0.0" or "::" for default. */
  readonly dst: string;
  readonly dstLength: number;
  readonly tos: number;
  /** RTA_PRIORITY, the metric. */
  readonly metric: number;
  readonly protocol: number;
  readonly scope: number;
  readonly type: RouteType;
  /** Single-path output device; undefined for device-less and multipath routes. */
  readonly oif?: number;
  readonly gateway?: string;
  readonly prefsrc?: string;
  /** Present for multipath routes (RTA_MULTIPATH). */
  readonly nexthops?: readonly NextHop[];
  /** RTNH_F_ONLINK: the gateway is on the link even without a covering prefix route. */
  readonly onlink?: boolean;
  /** RTA_NH_ID: the route uses a nexthop object. */
  readonly nhid?: number;
  /** IPv6 source-specific routing (from ... ) or IPv4 RTA_SRC. */
  readonly src?: string;
  readonly srcLength: number;
}

export interface Rule {
  readonly family: Family;
  readonly priority: number;
  readonly table: number;
  /** "from" selector; undefined means "from all". */
  readonly src?: string;
  readonly srcLength: number;
  readonly protocol: number;
  /**
   * True when the rule has only the selectors dynmhs itself ever sets (from, priority,
   * table, action "lookup"). A rule with other selectors (fwmark, iif, dst, ...) is
   * never confused with one of ours, even when it shares their key.
   */
  readonly plain: boolean;
}

export type Origin = 'static' | 'networkmanager' | 'networkd';

/** One network dynmhs manages: an interface bound to a table, from whichever source. */
export interface ManagedNetwork {
  readonly interfaceName: string;
  readonly table: number;
  /** Rule priority; follows the table by default, as in DynMHS. */
  readonly priority: number;
  readonly origin: Origin;
  readonly connectionId?: string;
  readonly connectionUuid?: string;
  readonly deviceType?: string;
}

/** What the kernel shows right now, as far as dynmhs cares. */
export interface Observed {
  readonly links: ReadonlyMap<number, Link>;
  readonly addresses: readonly Address[];
  readonly routes: readonly Route[];
  readonly rules: readonly Rule[];
  /** The same routes by identity (keys.ts routeKey), kept by the cache so a pass need not rebuild it. */
  readonly routesByKey: ReadonlyMap<string, Route>;
}

/** What dynmhs wants in the kernel: only its own tables' routes and its own rules. */
export interface Desired {
  /** By identity (keys.ts routeKey): a pass looks routes up by key, both ways. */
  readonly routes: ReadonlyMap<string, Route>;
  readonly rules: readonly Rule[];
}

/** One change to the kernel. `network` names the interface it is for, for log lines. */
export type Operation =
  | { readonly kind: 'add-route'; readonly route: Route; readonly network?: string }
  | { readonly kind: 'replace-route'; readonly route: Route; readonly network?: string }
  | { readonly kind: 'delete-route'; readonly route: Route; readonly network?: string }
  | { readonly kind: 'add-rule'; readonly rule: Rule; readonly network?: string }
  | { readonly kind: 'delete-rule'; readonly rule: Rule; readonly network?: string };

export interface OperationResult {
  readonly ok: boolean;
  /** errno name on failure, e.g. "ENETUNREACH". */
  readonly code?: string;
}

/** MPTCP_PM_ADDR_FLAG_* bits of an endpoint (uapi linux/mptcp_pm.h). */
export const MPTCP_FLAG_BITS = { signal: 1, subflow: 2, backup: 4, fullmesh: 8 } as const;
/** Set by the kernel on endpoints it made for an address in use without one; a user endpoint replaces it. */
export const MPTCP_FLAG_IMPLICIT = 16;

/** An endpoint of the kernel's in-kernel MPTCP path manager (`ip mptcp endpoint`). */
export interface Endpoint {
  /** 1-255; the kernel's handle for it. */
  readonly id: number;
  readonly family: Family;
  readonly address: string;
  /** MPTCP_FLAG_BITS and others. */
  readonly flags: number;
  /** The `dev` it is bound to; 0 for none. */
  readonly ifindex: number;
  readonly port: number;
}

/** The path manager's limits (`ip mptcp limits`). */
export interface MptcpLimits {
  readonly subflows: number;
  readonly addAddrAccepted: number;
}
