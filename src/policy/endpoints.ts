// Which MPTCP endpoints dynmhs wants, and what to change to get there: pure functions of
// the pass's plans, the kernel's endpoints and the ids dynmhs owns (see docs/mptcp.md).
import type { MptcpFlags, NetworkSpec } from '../config/types';
import {
  MPTCP_FLAG_BITS, MPTCP_FLAG_IMPLICIT,
  type Endpoint, type Family, type ManagedNetwork, type MptcpLimits,
} from '../model';
import type { NetworkPlan } from './derive';

/** The kernel's highest endpoint id (MPTCP_PM_MAX_ADDR_ID). */
export const MAX_ENDPOINT_ID = 255;
/** The kernel's highest accepted value of either limit, and its most endpoints (MPTCP_PM_ADDR_MAX). */
export const MAX_LIMIT = 8;
export const MAX_ENDPOINTS = 8;

export interface WantedEndpoint {
  readonly family: Family;
  readonly address: string;
  readonly flags: number;
  readonly ifindex: number;
  readonly interfaceName: string;
}

export interface EndpointPlan {
  readonly wanted: readonly WantedEndpoint[];
  /** Own endpoints as wanted, left as they are. */
  readonly kept: readonly Endpoint[];
  /** Own endpoints to delete: no longer wanted, or with other flags or device than wanted. */
  readonly remove: readonly Endpoint[];
  /** New endpoints, each with an id no endpoint (present or recorded as ours) has. */
  readonly add: readonly (Endpoint & { readonly interfaceName: string })[];
  /** Addresses that already have someone else's endpoint: never touched, reported. */
  readonly foreign: readonly { readonly wanted: WantedEndpoint; readonly present: Endpoint }[];
  /** Wanted, but the kernel has room for no more endpoints (MAX_ENDPOINTS in all): reported. */
  readonly noRoom: readonly WantedEndpoint[];
}

export function flagBits(flags: MptcpFlags): number {
  let bits = 0;
  for (const flag of flags) bits |= MPTCP_FLAG_BITS[flag];
  return bits;
}

/** "subflow,backup" for flag bits, as `ip mptcp endpoint` names them. */
export function flagNames(bits: number): string {
  const names = Object.entries(MPTCP_FLAG_BITS).filter(([, bit]) => (bits & bit) !== 0).map(([name]) => name);
  if ((bits & MPTCP_FLAG_IMPLICIT) !== 0) names.push('implicit');
  return names.join(',');
}

function matches(spec: NetworkSpec, network: ManagedNetwork): boolean {
  switch (spec.match) {
    case 'interface': return spec.value === network.interfaceName;
    case 'uuid': return spec.value === network.connectionUuid?.toLowerCase();
    case 'id': return spec.value === network.connectionId;
    case 'type': return spec.value === network.deviceType?.toLowerCase();
  }
}

/** The network's endpoint flags: its mapping's `:mptcp=` override if it has one, else the global setting. */
export function mptcpFlagsFor(network: ManagedNetwork, specs: readonly NetworkSpec[], global: MptcpFlags | undefined): MptcpFlags {
  for (const spec of specs) {
    if (spec.mptcp !== undefined && matches(spec, network)) return spec.mptcp;
  }
  return global ?? [];
}

/** The network's table has a way beyond its link for the family: a default route or one via a gateway. */
function reachesBeyondLink(plan: NetworkPlan, family: Family): boolean {
  return plan.routes.some((r) => r.family === family && (r.dstLength === 0 || r.gateway !== undefined || r.nexthops !== undefined));
}

/**
 * One endpoint per address that gets a rule (same eligibility), on the network's device,
 * once the network's table can carry a subflow beyond the link. The kernel tries a new
 * endpoint's subflows on open connections once, when it is added: an endpoint that came
 * with the address, before the default route, would leave them without that subflow.
 *
 * In an order that shares the kernel's few endpoints (MAX_ENDPOINTS) fairly: the first
 * address of each network and family, then the second of each, and so on, so a network
 * with many addresses cannot leave another without any.
 */
export function wantedEndpoints(plans: readonly NetworkPlan[], flagsOf: (network: ManagedNetwork) => MptcpFlags): WantedEndpoint[] {
  const lists: WantedEndpoint[][] = [];
  const seen = new Set<string>();
  for (const plan of plans) {
    if (plan.link === undefined) continue;
    const flags = flagBits(flagsOf(plan.network));
    if (flags === 0) continue;
    for (const family of [4, 6] as const) {
      if (!reachesBeyondLink(plan, family)) continue;
      const list: WantedEndpoint[] = [];
      for (const address of plan.addresses) {
        if (address.family !== family || seen.has(address.local)) continue;
        seen.add(address.local);
        list.push({ family, address: address.local, flags, ifindex: plan.link.index, interfaceName: plan.network.interfaceName });
      }
      lists.push(list);
    }
  }
  const wanted: WantedEndpoint[] = [];
  for (let rank = 0; lists.some((list) => rank < list.length); rank++) {
    for (const list of lists) if (rank < list.length) wanted.push(list[rank]!);
  }
  return wanted;
}

/** True when the endpoint is one dynmhs made: its id is recorded with this very address. */
export function isOwn(endpoint: Endpoint, owned: ReadonlyMap<number, string>): boolean {
  return owned.get(endpoint.id) === endpoint.address;
}

export function planEndpoints(wanted: readonly WantedEndpoint[], present: readonly Endpoint[], owned: ReadonlyMap<number, string>): EndpointPlan {
  const presentByAddress = new Map<string, Endpoint>();
  for (const endpoint of present) {
    // Port-based (signal with a port) endpoints are for listening; an address may have one
    // beside a plain one. The plain one is what decides here.
    if (endpoint.port === 0 || !presentByAddress.has(endpoint.address)) presentByAddress.set(endpoint.address, endpoint);
  }
  const wantedByAddress = new Map(wanted.map((w) => [w.address, w]));
  const kept: Endpoint[] = [];
  const remove: Endpoint[] = [];
  const foreign: { wanted: WantedEndpoint; present: Endpoint }[] = [];
  const toAdd: WantedEndpoint[] = [];

  for (const endpoint of present) {
    if (!isOwn(endpoint, owned)) continue;
    const want = wantedByAddress.get(endpoint.address);
    if (want !== undefined && want.flags === endpoint.flags && want.ifindex === endpoint.ifindex && endpoint.port === 0) kept.push(endpoint);
    else remove.push(endpoint);
  }
  const removed = new Set(remove.map((e) => e.id));
  for (const want of wanted) {
    const there = presentByAddress.get(want.address);
    if (there === undefined || removed.has(there.id)) { toAdd.push(want); continue; }
    if (isOwn(there, owned)) continue;
    // The kernel's own placeholder for an address in use gives way to a user endpoint.
    if ((there.flags & MPTCP_FLAG_IMPLICIT) !== 0) { toAdd.push(want); continue; }
    foreign.push({ wanted: want, present: there });
  }

  const taken = new Set<number>([...present.map((e) => e.id), ...owned.keys()]);
  const add: (Endpoint & { interfaceName: string })[] = [];
  const noRoom: WantedEndpoint[] = [];
  let used = present.length - remove.length;
  let next = 1;
  for (const want of toAdd) {
    // A user endpoint takes the place of the kernel's implicit one for its address.
    const there = presentByAddress.get(want.address);
    const replacesImplicit = there !== undefined && !removed.has(there.id);
    if (!replacesImplicit && used >= MAX_ENDPOINTS) { noRoom.push(want); continue; }
    while (next <= MAX_ENDPOINT_ID && taken.has(next)) next++;
    if (next > MAX_ENDPOINT_ID) { noRoom.push(want); continue; }
    if (!replacesImplicit) used++;
    taken.add(next);
    add.push({ id: next, family: want.family, address: want.address, flags: want.flags, ifindex: want.ifindex, port: 0, interfaceName: want.interfaceName });
  }
  return { wanted, kept, remove, add, foreign, noRoom };
}

/**
 * Limits that let every wanted endpoint be used, or undefined when the current ones do.
 * Never lower than now: another user of MPTCP may have raised them for its own reasons.
 */
export function raisedLimits(current: MptcpLimits, wantedCount: number): MptcpLimits | undefined {
  const need = Math.min(MAX_LIMIT, wantedCount);
  if (current.subflows >= need && current.addAddrAccepted >= need) return undefined;
  return { subflows: Math.max(current.subflows, need), addAddrAccepted: Math.max(current.addAddrAccepted, need) };
}
