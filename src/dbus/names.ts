// Names of the no.nntb.DynMHS D-Bus API, shared by the service and dynmhsctl.

export const BUS_NAME = 'no.nntb.DynMHS';
export const MANAGER_PATH = '/no/nntb/DynMHS';
export const NETWORK_PATH_PREFIX = '/no/nntb/DynMHS/Network';
export const MANAGER_INTERFACE = 'no.nntb.DynMHS1';
export const NETWORK_INTERFACE = 'no.nntb.DynMHS1.Network';

export const PROPERTIES_INTERFACE = 'org.freedesktop.DBus.Properties';
export const INTROSPECTABLE_INTERFACE = 'org.freedesktop.DBus.Introspectable';
export const OBJECT_MANAGER_INTERFACE = 'org.freedesktop.DBus.ObjectManager';
export const PEER_INTERFACE = 'org.freedesktop.DBus.Peer';

/** Error names of the API; ControlError codes map onto the first four. */
export const DbusErrorName = {
  InvalidArgument: 'no.nntb.DynMHS1.Error.InvalidArgument',
  NotFound: 'no.nntb.DynMHS1.Error.NotFound',
  Exists: 'no.nntb.DynMHS1.Error.Exists',
  Failed: 'no.nntb.DynMHS1.Error.Failed',
  NotAuthorized: 'no.nntb.DynMHS1.Error.NotAuthorized',
} as const;

/** polkit action ids (polkit/no.nntb.DynMHS.policy). */
export const PolkitAction = {
  reload: 'no.nntb.DynMHS.reload',
  manageNetworks: 'no.nntb.DynMHS.manage-networks',
  setLogLevel: 'no.nntb.DynMHS.set-log-level',
} as const;

/**
 * The object path of a network: the interface name escaped as sd_bus_path_encode()
 * does (every byte outside [A-Za-z0-9] becomes _XX), so "wan1" stays
 * /no/nntb/DynMHS/Network/wan1 and "eth-0" becomes .../eth_2d0. The path is
 * deterministic: the same interface keeps its path across daemon restarts.
 */
export function networkPath(interfaceName: string): string {
  if (interfaceName === '') return `${NETWORK_PATH_PREFIX}/_`;
  let out = '';
  for (const byte of Buffer.from(interfaceName, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9]/.test(c) ? c : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return `${NETWORK_PATH_PREFIX}/${out}`;
}

/** The inverse of networkPath(); undefined for a path that is not a network's. */
export function interfaceNameOfPath(path: string): string | undefined {
  const prefix = `${NETWORK_PATH_PREFIX}/`;
  if (!path.startsWith(prefix)) return undefined;
  const label = path.slice(prefix.length);
  if (label === '_') return '';
  if (!/^(?:[A-Za-z0-9]|_[0-9a-f]{2})+$/.test(label)) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < label.length; i++) {
    if (label[i] === '_') {
      bytes.push(parseInt(label.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(label.charCodeAt(i));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}
