// What the service publishes: the daemon's status as the D-Bus objects' property values,
// and the signals that take a client from one snapshot to the next. Pure: no bus here.
import { Variant } from 'dbus-next';
import type { DaemonStatus, NetworkStatus } from '../control';
import { MANAGER_INTERFACE, MANAGER_PATH, NETWORK_INTERFACE, OBJECT_MANAGER_INTERFACE, PROPERTIES_INTERFACE, networkPath } from './names';
import { MANAGER_SPEC, NETWORK_SPEC } from './spec';
import type { InterfaceSpec } from './spec';

export type PropertyValues = ReadonlyMap<string, unknown>;

export interface PublishedNetwork {
  readonly interfaceName: string;
  readonly values: PropertyValues;
  /** JSON of each value, to find what changed. */
  readonly keys: ReadonlyMap<string, string>;
}

export interface Snapshot {
  readonly status: DaemonStatus;
  readonly managerValues: PropertyValues;
  readonly managerKeys: ReadonlyMap<string, string>;
  /** By object path, in the order of status().networks. */
  readonly networks: ReadonlyMap<string, PublishedNetwork>;
}

/** A signal to send: `path` is the object it is about, `from` the object that emits it (ObjectManager signals). */
export interface ChangeSignal {
  readonly path: string;
  readonly iface: string;
  readonly member: string;
  readonly signature: string;
  readonly body: unknown[];
  readonly from?: string;
}

export function snapshotOf(status: DaemonStatus): Snapshot {
  const networks = new Map<string, PublishedNetwork>();
  for (const network of status.networks) {
    const values = networkValues(network);
    networks.set(networkPath(network.interfaceName), { interfaceName: network.interfaceName, values, keys: keysOf(values) });
  }
  const managerValues = managerValues_(status, [...networks.keys()]);
  return { status, managerValues, managerKeys: keysOf(managerValues), networks };
}

/** The signals that tell a client what changed from `previous` to `next`, in the order to send them. */
export function changeSignals(previous: Snapshot, next: Snapshot): ChangeSignal[] {
  const out: ChangeSignal[] = [];
  for (const [path, old] of previous.networks) {
    if (next.networks.has(path)) continue;
    out.push({ path, iface: OBJECT_MANAGER_INTERFACE, member: 'InterfacesRemoved', signature: 'oas', body: [path, [NETWORK_INTERFACE]], from: MANAGER_PATH });
    out.push({ path: MANAGER_PATH, iface: MANAGER_INTERFACE, member: 'NetworkRemoved', signature: 'os', body: [path, old.interfaceName] });
  }
  for (const [path, network] of next.networks) {
    const old = previous.networks.get(path);
    if (old === undefined) {
      out.push({ path, iface: OBJECT_MANAGER_INTERFACE, member: 'InterfacesAdded', signature: 'oa{sa{sv}}',
        body: [path, { [NETWORK_INTERFACE]: variants(NETWORK_SPEC, network.values) }], from: MANAGER_PATH });
      out.push({ path: MANAGER_PATH, iface: MANAGER_INTERFACE, member: 'NetworkAdded', signature: 'os', body: [path, network.interfaceName] });
    } else {
      propertiesChanged(out, path, NETWORK_SPEC, old.keys, network);
    }
  }
  propertiesChanged(out, MANAGER_PATH, MANAGER_SPEC, previous.managerKeys, { values: next.managerValues, keys: next.managerKeys });
  return out;
}

function propertiesChanged(out: ChangeSignal[], path: string, spec: InterfaceSpec, oldKeys: ReadonlyMap<string, string>,
  next: { values: PropertyValues; keys: ReadonlyMap<string, string> }): void {
  const changed: Record<string, Variant> = {};
  const invalidated: string[] = [];
  for (const property of spec.properties) {
    if (oldKeys.get(property.name) === next.keys.get(property.name)) continue;
    if (property.emits === 'invalidates') invalidated.push(property.name);
    else changed[property.name] = new Variant(property.type, next.values.get(property.name));
  }
  if (Object.keys(changed).length === 0 && invalidated.length === 0) return;
  out.push({ path, iface: PROPERTIES_INTERFACE, member: 'PropertiesChanged', signature: 'sa{sv}as', body: [spec.name, changed, invalidated] });
}

function keysOf(values: PropertyValues): Map<string, string> {
  const keys = new Map<string, string>();
  for (const [name, value] of values) keys.set(name, JSON.stringify(value));
  return keys;
}

export function variants(spec: InterfaceSpec, values: PropertyValues): Record<string, Variant> {
  const out: Record<string, Variant> = {};
  for (const property of spec.properties) out[property.name] = new Variant(property.type, values.get(property.name));
  return out;
}

export const u32 = (n: number): number => (Number.isFinite(n) && n >= 0 ? Math.min(Math.trunc(n), 0xffffffff) : 0);
const i32 = (n: number): number => (Number.isFinite(n) ? Math.max(-0x80000000, Math.min(Math.trunc(n), 0x7fffffff)) : 0);
const str = (s: unknown): string => (typeof s === 'string' ? s : s === undefined || s === null ? '' : String(s));

function managerValues_(status: DaemonStatus, paths: string[]): Map<string, unknown> {
  return new Map<string, unknown>([
    ['Version', str(status.version)],
    ['Source', str(status.source)],
    ['State', str(status.state)],
    ['Networks', paths],
  ]);
}

function networkValues(n: NetworkStatus): Map<string, unknown> {
  return new Map<string, unknown>([
    ['Interface', str(n.interfaceName)],
    ['InterfaceIndex', i32(n.interfaceIndex)],
    ['Table', u32(n.table)],
    ['Priority', u32(n.priority)],
    ['Origin', str(n.origin)],
    ['ConnectionId', str(n.connectionId)],
    ['ConnectionUuid', str(n.connectionUuid)],
    ['DeviceType', str(n.deviceType)],
    ['Addresses', n.addresses.map((x) => [i32(x.family), str(x.address), u32(x.prefixLength)])],
    ['Rules', n.rules.map((r) => [i32(r.family), u32(r.priority), str(r.from), u32(r.table)])],
    ['Routes', n.routes.map((r) => [
      i32(r.family), str(r.destination), str(r.gateway), str(r.device), u32(r.metric), str(r.prefsrc), str(r.scope), str(r.type),
    ])],
    ['State', str(n.state)],
    ['MptcpFlags', str(n.mptcpFlags ?? 'off')],
    ['Endpoints', (n.endpoints ?? []).map((e) => [u32(e.id), str(e.address), str(e.flags), e.own === true])],
  ]);
}

/** Describe(): the whole state as one JSON document (field names as in DaemonStatus, plus each network's object path). */
export function describe(snapshot: Snapshot): string {
  const { status } = snapshot;
  return JSON.stringify({
    version: status.version,
    source: status.source,
    state: status.state,
    networks: status.networks.map((n) => ({ path: networkPath(n.interfaceName), ...n })),
  });
}
