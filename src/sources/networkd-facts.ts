// systemd-networkd: which links are managed, derived from the link states networkd
// reports (Manager.Describe JSON, Link properties). Pure: unit-tested with recorded values.
import type { ConnectionFact } from './types';
import { sortFacts } from './facts';

export const NETWORKD_BUS_NAME = 'org.freedesktop.network1';
export const NETWORKD_PATH = '/org/freedesktop/network1';
export const NETWORKD_LINK_PREFIX = '/org/freedesktop/network1/link/';
export const NETWORKD_MANAGER_IFACE = 'org.freedesktop.network1.Manager';
export const NETWORKD_LINK_IFACE = 'org.freedesktop.network1.Link';

export interface NetworkdLink {
  readonly index: number;
  readonly name: string;
  /** Describe "Type": ether, loopback, wlan, wwan, none, ... */
  readonly type?: string;
  /** Describe "Kind": veth, bridge, vlan, wireguard, tun, ... (virtual links only). */
  readonly kind?: string;
  /** Full path of the .network file applied to the link, if any. */
  readonly networkFile?: string;
  readonly administrativeState?: string;
  readonly operationalState?: string;
  readonly addressState?: string;
  readonly ipv4AddressState?: string;
  readonly ipv6AddressState?: string;
}

/**
 * sd_bus_path_encode's label escaping: ASCII letters and digits stay (except a leading
 * digit), every other byte becomes `_xx` (lower-case hex). ifindex 2 -> `_32`, 12 -> `_312`.
 */
export function escapeLabel(label: string): string {
  if (label === '') return '_';
  let out = '';
  for (const [i, ch] of [...Buffer.from(label, 'utf8')].entries()) {
    const c = String.fromCharCode(ch);
    const alpha = (ch >= 0x41 && ch <= 0x5a) || (ch >= 0x61 && ch <= 0x7a);
    const digit = ch >= 0x30 && ch <= 0x39;
    out += alpha || (digit && i > 0) ? c : `_${ch.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** Inverse of escapeLabel; undefined for a malformed label. */
export function unescapeLabel(label: string): string | undefined {
  if (label === '_') return '';
  const bytes: number[] = [];
  for (let i = 0; i < label.length; i++) {
    const ch = label[i]!;
    if (ch === '_') {
      const hex = label.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (/[A-Za-z0-9]/.test(ch)) {
      bytes.push(ch.charCodeAt(0));
    } else {
      return undefined;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

export function linkPath(index: number): string {
  return NETWORKD_LINK_PREFIX + escapeLabel(String(index));
}

/** The ifindex of a link object path, or undefined if it is not one. */
export function linkIndexOfPath(path: string): number | undefined {
  if (!path.startsWith(NETWORKD_LINK_PREFIX)) return undefined;
  const text = unescapeLabel(path.slice(NETWORKD_LINK_PREFIX.length));
  if (text === undefined || !/^[1-9][0-9]*$/.test(text)) return undefined;
  return Number(text);
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** One entry of Manager.Describe()'s "Interfaces" (or Link.Describe()) as a NetworkdLink. */
export function linkFromDescribe(json: Record<string, unknown>): NetworkdLink | undefined {
  const index = json.Index;
  const name = str(json.Name);
  if (typeof index !== 'number' || !name) return undefined;
  return {
    index, name,
    type: str(json.Type), kind: str(json.Kind), networkFile: str(json.NetworkFile),
    administrativeState: str(json.AdministrativeState), operationalState: str(json.OperationalState),
    addressState: str(json.AddressState), ipv4AddressState: str(json.IPv4AddressState), ipv6AddressState: str(json.IPv6AddressState),
  };
}

/** Apply Link PropertiesChanged values. */
export function withLinkProperties(link: NetworkdLink, changed: Record<string, unknown>): NetworkdLink {
  const next: { -readonly [K in keyof NetworkdLink]: NetworkdLink[K] } = { ...link };
  if ('AdministrativeState' in changed) next.administrativeState = str(changed.AdministrativeState);
  if ('OperationalState' in changed) next.operationalState = str(changed.OperationalState);
  if ('AddressState' in changed) next.addressState = str(changed.AddressState);
  if ('IPv4AddressState' in changed) next.ipv4AddressState = str(changed.IPv4AddressState);
  if ('IPv6AddressState' in changed) next.ipv6AddressState = str(changed.IPv6AddressState);
  return next;
}

/** Device type name for facts and `type:` selectors: Kind for virtual links, else from Type. */
export function networkdDeviceType(link: NetworkdLink): string {
  if (link.kind) return link.kind;
  switch (link.type) {
    case 'ether': return 'ethernet';
    case 'wlan': return 'wifi';
    case 'wwan': return 'wwan';
    case 'loopback': return 'loopback';
    case undefined: return 'unknown';
    default: return link.type;
  }
}

const basename = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

/**
 * A link is managed while networkd manages it and it has a routable address:
 * - AdministrativeState `configured`, or `configuring` (DHCP still running, or a
 *   `networkctl reconfigure` in progress: the addresses stay, so must the rules), and
 * - OperationalState `routable` or `degraded`, and
 * - AddressState, IPv4AddressState or IPv6AddressState `routable` (a global address;
 *   link-local alone never gets a table: the daemon makes no rules for link-local).
 * Never the loopback. Connection id = the .network file's name, uuid =
 * `networkd:<file name>:<ifname>` (networkd has no connection identity of its own).
 */
export function networkdManaged(link: NetworkdLink): boolean {
  if (link.type === 'loopback' || link.name === 'lo') return false;
  if (link.administrativeState !== 'configured' && link.administrativeState !== 'configuring') return false;
  if (link.operationalState !== 'routable' && link.operationalState !== 'degraded') return false;
  return link.addressState === 'routable' || link.ipv4AddressState === 'routable' || link.ipv6AddressState === 'routable';
}

export function deriveNetworkdFacts(links: Iterable<NetworkdLink>): ConnectionFact[] {
  const facts: ConnectionFact[] = [];
  for (const link of links) {
    if (!networkdManaged(link)) continue;
    const file = link.networkFile ? basename(link.networkFile) : link.name;
    facts.push({
      interfaceName: link.name,
      origin: 'networkd',
      connectionId: file,
      connectionUuid: `networkd:${file}:${link.name}`,
      deviceType: networkdDeviceType(link),
    });
  }
  return sortFacts(facts);
}

/** networkd has finished adopting links after its start: none is still pending or initialized. */
export function networkdSettled(links: Iterable<NetworkdLink>): boolean {
  for (const link of links) {
    if (link.administrativeState === 'pending' || link.administrativeState === 'initialized') return false;
  }
  return true;
}
