// NetworkManager: which active connections are managed, derived from a mirror of NM's
// D-Bus objects (plain property values, as GetManagedObjects and PropertiesChanged
// deliver them). Pure: unit-tested with recorded property values.
import type { ConnectionFact } from './types';
import { sortFacts } from './facts';

export const NM_BUS_NAME = 'org.freedesktop.NetworkManager';
export const NM_ROOT = '/org/freedesktop';
export const NM_MANAGER_PATH = '/org/freedesktop/NetworkManager';
export const NM_IFACE = {
  manager: 'org.freedesktop.NetworkManager',
  device: 'org.freedesktop.NetworkManager.Device',
  active: 'org.freedesktop.NetworkManager.Connection.Active',
  ip4: 'org.freedesktop.NetworkManager.IP4Config',
  ip6: 'org.freedesktop.NetworkManager.IP6Config',
} as const;
/** The interfaces whose properties the source mirrors; everything else (access points, settings, ...) is ignored. */
export const NM_MIRRORED: readonly string[] = Object.values(NM_IFACE);

/** path -> interface -> property -> plain value */
export type NmObjects = ReadonlyMap<string, Readonly<Record<string, Readonly<Record<string, unknown>>>>>;

/** NMDeviceState */
export const NmDeviceState = {
  UNKNOWN: 0, UNMANAGED: 10, UNAVAILABLE: 20, DISCONNECTED: 30, PREPARE: 40, CONFIG: 50, NEED_AUTH: 60,
  IP_CONFIG: 70, IP_CHECK: 80, SECONDARIES: 90, ACTIVATED: 100, DEACTIVATING: 110, FAILED: 120,
} as const;

/** NMActiveConnectionState */
export const NmActiveState = { UNKNOWN: 0, ACTIVATING: 1, ACTIVATED: 2, DEACTIVATING: 3, DEACTIVATED: 4 } as const;

/** NMDeviceType -> the name used in facts and in `type:` selectors. */
const DEVICE_TYPES: Readonly<Record<number, string>> = {
  0: 'unknown', 1: 'ethernet', 2: 'wifi', 5: 'bluetooth', 6: 'olpc-mesh', 7: 'wimax', 8: 'modem',
  9: 'infiniband', 10: 'bond', 11: 'vlan', 12: 'adsl', 13: 'bridge', 14: 'generic', 15: 'team',
  16: 'tun', 17: 'ip-tunnel', 18: 'macvlan', 19: 'vxlan', 20: 'veth', 21: 'macsec', 22: 'dummy',
  23: 'ppp', 24: 'ovs-interface', 25: 'ovs-port', 26: 'ovs-bridge', 27: 'wpan', 28: '6lowpan',
  29: 'wireguard', 30: 'wifi-p2p', 31: 'vrf', 32: 'loopback', 33: 'hsr',
};

/**
 * Device type name. A modem is reported as its connection type (`gsm` or `cdma`), since
 * that is what users write (`type:gsm`); `modem` selectors match both (see tables.ts).
 */
export function nmDeviceTypeName(deviceType: unknown, connectionType?: unknown): string {
  const n = typeof deviceType === 'number' ? deviceType : -1;
  if (n === 8 && (connectionType === 'gsm' || connectionType === 'cdma')) return connectionType;
  return DEVICE_TYPES[n] ?? `type-${n}`;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' ? v : -1);

/** True when the IP config object at `path` lists at least one address (IPv6: other than link-local). */
function hasAddresses(objects: NmObjects, path: unknown, iface: string): boolean {
  if (typeof path !== 'string' || path === '/' || path === '') return false;
  const data = objects.get(path)?.[iface]?.AddressData;
  if (!Array.isArray(data)) return false;
  return data.some((a: unknown) => {
    const address = str((a as Record<string, unknown> | null)?.address);
    return address !== '' && !(iface === NM_IFACE.ip6 && /^fe[89ab]/i.test(address));
  });
}

/**
 * An active connection is reported when:
 * - its own state is ACTIVATING or ACTIVATED (never DEACTIVATING/DEACTIVATED: the daemon
 *   must drop the rules as soon as NM starts tearing down, before the kernel flushes), and
 * - its device points back to it (Device.ActiveConnection; this skips VPN connections,
 *   which name their parent device), and
 * - the device is ACTIVATED, or in IP_CONFIG / IP_CHECK / SECONDARIES with at least one
 *   address already in its Ip4Config or Ip6Config (a non-link-local one for IPv6), and
 * - the device is not the loopback.
 * Interface: the device's IpInterface (the IP-level name: wwan0 for a modem on ttyUSB2,
 * ppp0 for PPP), falling back to Interface.
 */
export function deriveNmFacts(objects: NmObjects): ConnectionFact[] {
  const facts: ConnectionFact[] = [];
  const seen = new Set<string>();
  for (const [acPath, ifaces] of objects) {
    const ac = ifaces[NM_IFACE.active];
    if (!ac) continue;
    const acState = num(ac.State);
    if (acState !== NmActiveState.ACTIVATING && acState !== NmActiveState.ACTIVATED) continue;
    const devices = Array.isArray(ac.Devices) ? ac.Devices : [];
    for (const devPath of devices) {
      const dev = objects.get(str(devPath))?.[NM_IFACE.device];
      if (!dev || str(dev.ActiveConnection) !== acPath) continue;
      const deviceType = nmDeviceTypeName(dev.DeviceType, ac.Type);
      if (deviceType === 'loopback') continue;
      const state = num(dev.State);
      const configuring = state === NmDeviceState.IP_CONFIG || state === NmDeviceState.IP_CHECK || state === NmDeviceState.SECONDARIES;
      if (state !== NmDeviceState.ACTIVATED
        && !(configuring && (hasAddresses(objects, dev.Ip4Config, NM_IFACE.ip4) || hasAddresses(objects, dev.Ip6Config, NM_IFACE.ip6)))) continue;
      const interfaceName = str(dev.IpInterface) || str(dev.Interface);
      if (!interfaceName || interfaceName === 'lo' || seen.has(interfaceName)) continue;
      seen.add(interfaceName);
      facts.push({
        interfaceName,
        origin: 'networkmanager',
        connectionId: str(ac.Id),
        connectionUuid: str(ac.Uuid),
        deviceType,
      });
    }
  }
  return sortFacts(facts);
}

/** Startup: NM is still activating connections after its start (ends the grace period once false). */
export function nmStartingUp(objects: NmObjects): boolean {
  return objects.get(NM_MANAGER_PATH)?.[NM_IFACE.manager]?.Startup === true;
}
