// Fact derivation for NetworkManager and systemd-networkd from recorded property values,
// and the sources' signal handling (owner changes, grace period) on a fake bus.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { deriveNmFacts, nmDeviceTypeName, nmStartingUp, type NmObjects } from '../../src/sources/nm-facts';
import {
  deriveNetworkdFacts, escapeLabel, unescapeLabel, linkPath, linkIndexOfPath, linkFromDescribe, withLinkProperties, networkdSettled, type NetworkdLink,
} from '../../src/sources/networkd-facts';
import { mergeHeld } from '../../src/sources/facts';
import { NetworkManagerSource } from '../../src/sources/networkmanager';
import { NetworkdSource } from '../../src/sources/networkd';
import { BusCallError, plain, type SignalMessage, type SystemBusClient } from '../../src/sources/bus';
import { Variant } from 'dbus-next';
import type { Logger } from '../../src/log';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const quiet: Logger = {
  trace: () => undefined, debug: () => undefined, info: () => undefined, warning: () => undefined, error: () => undefined, fatal: () => undefined,
  setLevel: () => undefined, level: () => 0, close: async () => undefined,
};

// ---- recorded from NetworkManager 1.42.4 (GetManagedObjects, trimmed to what matters) ----
const DEV = '/org/freedesktop/NetworkManager/Devices/';
const AC = '/org/freedesktop/NetworkManager/ActiveConnection/';
const IP4 = '/org/freedesktop/NetworkManager/IP4Config/';
const IP6 = '/org/freedesktop/NetworkManager/IP6Config/';
const D = 'org.freedesktop.NetworkManager.Device';
const A = 'org.freedesktop.NetworkManager.Connection.Active';
const I4 = 'org.freedesktop.NetworkManager.IP4Config';
const I6 = 'org.freedesktop.NetworkManager.IP6Config';

function device(n: number, name: string, over: Record<string, unknown> = {}): [string, Record<string, Record<string, unknown>>] {
  return [DEV + n, { [D]: {
    Interface: name, IpInterface: name, Driver: 'veth', State: 100, StateReason: [100, 0], ActiveConnection: AC + n,
    Ip4Config: IP4 + n, Ip6Config: IP6 + n, Dhcp4Config: '/', Managed: true, DeviceType: 20, Real: true, ...over,
  } }];
}
function active(n: number, id: string, uuid: string, over: Record<string, unknown> = {}): [string, Record<string, Record<string, unknown>>] {
  return [AC + n, { [A]: {
    Connection: '/org/freedesktop/NetworkManager/Settings/' + n, Id: id, Uuid: uuid, Type: '802-3-ethernet', Devices: [DEV + n],
    State: 2, StateFlags: 28, Ip4Config: IP4 + n, Ip6Config: IP6 + n, Vpn: false, ...over,
  } }];
}
const ip4 = (n: number, addrs: string[]): [string, Record<string, Record<string, unknown>>] =>
  [IP4 + n, { [I4]: { AddressData: addrs.map((a) => ({ address: a, prefix: 24 })), Gateway: '10.101.0.1' } }];
const ip6 = (n: number, addrs: string[]): [string, Record<string, Record<string, unknown>>] =>
  [IP6 + n, { [I6]: { AddressData: addrs.map((a) => ({ address: a, prefix: 64 })) } }];

const U1 = 'c0ac7c2d-f2aa-4af3-aab3-6c53c2b48bc5';
const U2 = '75448d90-cb98-41cd-99a2-44e7c8fd9398';
const nmObjects = (...entries: Array<[string, Record<string, Record<string, unknown>>]>): NmObjects => new Map(entries);
const names = (facts: ReadonlyArray<{ interfaceName: string }>): string[] => facts.map((f) => f.interfaceName);

describe('NetworkManager facts', () => {
  test('an activated connection is reported with id, uuid, IP interface and device type', () => {
    const facts = deriveNmFacts(nmObjects(device(2, 'wan1'), active(2, 'wan1', U1), ip4(2, ['10.101.0.142'])));
    assert.deepEqual(facts, [{ interfaceName: 'wan1', origin: 'networkmanager', connectionId: 'wan1', connectionUuid: U1, deviceType: 'veth' }]);
  });
  test('device states: ACTIVATED yes; IP_CONFIG/IP_CHECK only with addresses (not link-local v6); earlier and DEACTIVATING no', () => {
    const at = (state: number, v4: string[], v6: string[]): string[] =>
      names(deriveNmFacts(nmObjects(device(2, 'wan1', { State: state }), active(2, 'wan1', U1, { State: state >= 100 ? 2 : 1 }), ip4(2, v4), ip6(2, v6))));
    assert.deepEqual(at(100, [], []), ['wan1']);
    assert.deepEqual(at(70, [], []), []);
    assert.deepEqual(at(70, [], ['fe80::1']), []);
    assert.deepEqual(at(70, ['10.101.0.142'], []), ['wan1']);
    assert.deepEqual(at(80, [], ['fd00:101::9c28:30ff:fe99:80da']), ['wan1']);
    assert.deepEqual(at(50, ['10.101.0.142'], []), []);
    assert.deepEqual(at(110, ['10.101.0.142'], []), []);
    assert.deepEqual(at(120, ['10.101.0.142'], []), []);
  });
  test('the active connection DEACTIVATING removes it at once, even while the device is still ACTIVATED', () => {
    assert.deepEqual(deriveNmFacts(nmObjects(device(2, 'wan1'), active(2, 'wan1', U1, { State: 3 }))), []);
    assert.deepEqual(deriveNmFacts(nmObjects(device(2, 'wan1'), active(2, 'wan1', U1, { State: 4 }))), []);
  });
  test('the device must point back to the connection (VPNs name their parent device)', () => {
    const vpn = active(9, 'corp-vpn', 'v-1', { Devices: [DEV + 2], Vpn: true });
    assert.deepEqual(deriveNmFacts(nmObjects(device(2, 'wan1'), active(2, 'wan1', U1), vpn)).map((f) => f.connectionId), ['wan1']);
  });
  test('loopback excluded; IpInterface preferred over Interface; modem reported as gsm', () => {
    const objs = nmObjects(
      device(1, 'lo', { DeviceType: 32 }), active(1, 'lo', 'lo-uuid'),
      device(3, 'ttyUSB2', { IpInterface: 'wwan0', DeviceType: 8 }), active(3, 'LTE', 'lte-uuid', { Type: 'gsm' }),
      device(4, 'wg0', { IpInterface: '', DeviceType: 29 }), active(4, 'wg', 'wg-uuid', { Type: 'wireguard' }),
      device(2, 'wan1'), active(2, 'wan1', U1),
    );
    assert.deepEqual(deriveNmFacts(objs).map((f) => [f.interfaceName, f.deviceType, f.connectionId]),
      [['wan1', 'veth', 'wan1'], ['wg0', 'wireguard', 'wg'], ['wwan0', 'gsm', 'LTE']]);
  });
  test('device type names', () => {
    assert.equal(nmDeviceTypeName(1), 'ethernet');
    assert.equal(nmDeviceTypeName(2), 'wifi');
    assert.equal(nmDeviceTypeName(16), 'tun');
    assert.equal(nmDeviceTypeName(8), 'modem');
    assert.equal(nmDeviceTypeName(8, 'cdma'), 'cdma');
    assert.equal(nmDeviceTypeName(11), 'vlan');
    assert.equal(nmDeviceTypeName(13), 'bridge');
    assert.equal(nmDeviceTypeName(32), 'loopback');
    assert.equal(nmDeviceTypeName(99), 'type-99');
  });
  test('Startup flag', () => {
    assert.equal(nmStartingUp(nmObjects(['/org/freedesktop/NetworkManager', { 'org.freedesktop.NetworkManager': { Startup: true } }])), true);
    assert.equal(nmStartingUp(nmObjects(['/org/freedesktop/NetworkManager', { 'org.freedesktop.NetworkManager': { Startup: false } }])), false);
  });
});

// ---- recorded from systemd-networkd 252 (Manager.Describe, trimmed) ----
const describeJson = {
  Interfaces: [
    { Index: 1, Name: 'lo', Type: 'loopback', AdministrativeState: 'unmanaged', OperationalState: 'carrier', AddressState: 'off', IPv4AddressState: 'off', IPv6AddressState: 'off' },
    { Index: 2, Name: 'wan1', Kind: 'veth', Type: 'ether', Driver: 'veth', AdministrativeState: 'configured', OperationalState: 'routable', CarrierState: 'carrier', AddressState: 'routable', IPv4AddressState: 'routable', IPv6AddressState: 'routable', OnlineState: 'online', NetworkFile: '/etc/systemd/network/10-wan1.network' },
    { Index: 3, Name: 'wan2', Kind: 'veth', Type: 'ether', Driver: 'veth', AdministrativeState: 'configuring', OperationalState: 'degraded', CarrierState: 'carrier', AddressState: 'degraded', IPv4AddressState: 'off', IPv6AddressState: 'degraded', NetworkFile: '/etc/systemd/network/10-wan2.network' },
  ],
};

describe('systemd-networkd facts', () => {
  const links = describeJson.Interfaces.map((j) => linkFromDescribe(j)!);
  test('configured + routable is managed; loopback and link-local-only are not; id from the .network file', () => {
    assert.deepEqual(deriveNetworkdFacts(links), [
      { interfaceName: 'wan1', origin: 'networkd', connectionId: '10-wan1.network', connectionUuid: 'networkd:10-wan1.network:wan1', deviceType: 'veth' },
    ]);
  });
  test('state rules', () => {
    const l: NetworkdLink = links[1]!;
    const managed = (over: Partial<NetworkdLink>): boolean => deriveNetworkdFacts([{ ...l, ...over }]).length === 1;
    assert.ok(managed({}));
    assert.ok(managed({ administrativeState: 'configuring' }), 'reconfigure keeps addresses');
    assert.ok(managed({ operationalState: 'degraded', addressState: 'degraded', ipv4AddressState: 'routable', ipv6AddressState: 'degraded' }));
    assert.ok(!managed({ operationalState: 'degraded', addressState: 'degraded', ipv4AddressState: 'off', ipv6AddressState: 'degraded' }));
    assert.ok(!managed({ operationalState: 'off', addressState: 'off', ipv4AddressState: 'off', ipv6AddressState: 'off' }));
    assert.ok(!managed({ operationalState: 'no-carrier' }));
    for (const admin of ['pending', 'initialized', 'unmanaged', 'failed', 'linger']) assert.ok(!managed({ administrativeState: admin }), admin);
  });
  test('device types: Kind, else Type mapped', () => {
    assert.equal(deriveNetworkdFacts([{ ...links[1]!, kind: undefined }])[0]!.deviceType, 'ethernet');
    assert.equal(deriveNetworkdFacts([{ ...links[1]!, kind: undefined, type: 'wlan' }])[0]!.deviceType, 'wifi');
    assert.equal(deriveNetworkdFacts([{ ...links[1]!, kind: 'wireguard', type: 'none' }])[0]!.deviceType, 'wireguard');
  });
  test('PropertiesChanged values update a link; settled once nothing is pending', () => {
    const l = withLinkProperties(links[2]!, { AdministrativeState: 'configured', OperationalState: 'routable', AddressState: 'routable', IPv4AddressState: 'routable' });
    assert.deepEqual(names(deriveNetworkdFacts([l])), ['wan2']);
    assert.ok(networkdSettled(links));
    assert.ok(!networkdSettled([{ ...l, administrativeState: 'pending' }]));
  });
  test('object path escaping of link labels (sd_bus_path_encode)', () => {
    assert.equal(escapeLabel('2'), '_32');
    assert.equal(escapeLabel('12'), '_312');
    assert.equal(escapeLabel('10-wan1'), '_310_2dwan1');
    assert.equal(escapeLabel(''), '_');
    assert.equal(unescapeLabel('_310_2dwan1'), '10-wan1');
    assert.equal(linkPath(3), '/org/freedesktop/network1/link/_33');
    assert.equal(linkIndexOfPath('/org/freedesktop/network1/link/_3123'), 123);
    assert.equal(linkIndexOfPath('/org/freedesktop/network1/link/_32'), 2);
    assert.equal(linkIndexOfPath('/org/freedesktop/network1/network/_32'), undefined);
    assert.equal(linkIndexOfPath('/org/freedesktop/network1/link/_zz'), undefined);
    for (const s of ['1', '42', '65535', 'wan-1.x', 'ü']) assert.equal(unescapeLabel(escapeLabel(s)), s);
  });
});

describe('grace merge and plain values', () => {
  test('held facts stay unless reported again by uuid or interface', () => {
    const f = (i: string, u: string) => ({ interfaceName: i, origin: 'networkmanager' as const, connectionId: i, connectionUuid: u, deviceType: 'ethernet' });
    assert.deepEqual(names(mergeHeld([f('wan1', 'a'), f('wan2', 'b'), f('wan3', 'c')], [f('wan2', 'x'), f('wwan0', 'c')])), ['wan2', 'wwan0', 'wan1'].sort());
  });
  test('plain() unwraps variants, bigints and nested dicts', () => {
    assert.deepEqual(plain({ a: new Variant('aa{sv}', [{ address: new Variant('s', '10.0.0.1'), prefix: new Variant('u', 24) }]), t: BigInt(5) }),
      { a: [{ address: '10.0.0.1', prefix: 24 }], t: 5 });
  });
});

// ---- the sources on a fake bus ----
class FakeBus extends EventEmitter {
  owners = new Map<string, string>();
  objects: Record<string, unknown> = {};
  describe: unknown = { Interfaces: [] };
  calls: string[] = [];
  matches: string[] = [];
  connected(): boolean { return true; }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  async addMatch(rule: string): Promise<void> { this.matches.push(rule); }
  async nameOwner(name: string): Promise<string | undefined> { return this.owners.get(name); }
  seq = 0;
  /** Signals to deliver "in the same socket read" as the next reply: [before it, after it]. */
  around?: [Array<Omit<SignalMessage, 'seq'>>, Array<Omit<SignalMessage, 'seq'>>];
  async callOrdered(dest: string, path: string, iface: string, member: string): Promise<{ body: unknown[]; seq: number }> {
    const around = this.around;
    this.around = undefined;
    for (const m of around?.[0] ?? []) this.signal(m);
    const body = await this.call(dest, path, iface, member);
    const seq = ++this.seq;
    for (const m of around?.[1] ?? []) this.signal(m);
    return { body, seq };
  }
  async call(dest: string, _path: string, _iface: string, member: string): Promise<unknown[]> {
    this.calls.push(`${dest} ${member}`);
    if (![...this.owners.values()].includes(dest)) throw new BusCallError('Remote', 'org.freedesktop.DBus.Error.ServiceUnknown', 'gone');
    if (member === 'GetManagedObjects') return [structuredClone(this.objects)];
    if (member === 'Describe') return [JSON.stringify(this.describe)];
    throw new BusCallError('Remote', 'org.freedesktop.DBus.Error.UnknownMethod', member);
  }
  signal(msg: Omit<SignalMessage, 'seq'>): void { this.emit('signal', { ...msg, seq: ++this.seq }); }
  ownerChanged(name: string, from: string, to: string): void {
    if (to) this.owners.set(name, to); else this.owners.delete(name);
    this.signal({ sender: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'NameOwnerChanged', body: [name, from, to] });
  }
}
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const NM = 'org.freedesktop.NetworkManager';
function nmManagedObjects(startup: boolean, ...entries: Array<[string, Record<string, Record<string, unknown>>]>): Record<string, unknown> {
  return Object.fromEntries([['/org/freedesktop/NetworkManager', { [NM]: { Startup: startup } }], ...entries]);
}

describe('NetworkManagerSource on a fake bus', () => {
  test('dump, PropertiesChanged, InterfacesAdded/Removed; signals from others ignored; changed only on a difference', async () => {
    const bus = new FakeBus();
    bus.owners.set(NM, ':1.5');
    bus.objects = nmManagedObjects(false, device(2, 'wan1', { State: 30, ActiveConnection: '/' }));
    const src = new NetworkManagerSource({ log: quiet, bus: bus as unknown as SystemBusClient });
    let changes = 0;
    src.on('changed', () => changes++);
    await src.start();
    assert.equal(changes, 1, 'present() became true');
    changes = 0;
    assert.deepEqual(src.connections(), []);
    assert.ok(bus.matches.some((m) => m.includes("arg0='org.freedesktop.NetworkManager.Device'")));
    const [acPath, ac] = active(2, 'wan1', U1);
    bus.signal({ sender: ':1.5', path: '/org/freedesktop', interface: 'org.freedesktop.DBus.ObjectManager', member: 'InterfacesAdded', body: [acPath, ac] });
    assert.equal(changes, 0);
    bus.signal({ sender: ':1.99', path: DEV + 2, interface: 'org.freedesktop.DBus.Properties', member: 'PropertiesChanged', body: [D, { State: 100, ActiveConnection: acPath }, []] });
    assert.deepEqual(src.connections(), [], 'a stranger cannot fake NM');
    bus.signal({ sender: ':1.5', path: DEV + 2, interface: 'org.freedesktop.DBus.Properties', member: 'PropertiesChanged', body: [D, { State: 100, ActiveConnection: acPath }, []] });
    assert.deepEqual(names(src.connections()), ['wan1']);
    assert.equal(changes, 1);
    bus.signal({ sender: ':1.5', path: DEV + 2, interface: 'org.freedesktop.DBus.Properties', member: 'PropertiesChanged', body: [D, { Mtu: 1400 }, []] });
    assert.equal(changes, 1);
    bus.signal({ sender: ':1.5', path: acPath, interface: 'org.freedesktop.DBus.Properties', member: 'PropertiesChanged', body: [A, { State: 3 }, []] });
    assert.deepEqual(src.connections(), []);
    assert.equal(changes, 2);
    bus.signal({ sender: ':1.5', path: '/org/freedesktop', interface: 'org.freedesktop.DBus.ObjectManager', member: 'InterfacesRemoved', body: [acPath, [A]] });
    assert.ok(!src.mirror().has(acPath));
    await src.stop();
  });

  test('NM leaving keeps the facts for the grace period; back and settled ends it; not back empties after the grace', async () => {
    const bus = new FakeBus();
    bus.owners.set(NM, ':1.5');
    bus.objects = nmManagedObjects(false, device(2, 'wan1'), active(2, 'wan1', U1), device(3, 'wan2'), active(3, 'wan2', U2));
    const src = new NetworkManagerSource({ log: quiet, bus: bus as unknown as SystemBusClient, graceMs: 200 });
    await src.start();
    assert.deepEqual(names(src.connections()), ['wan1', 'wan2']);
    bus.ownerChanged(NM, ':1.5', '');
    assert.deepEqual(names(src.connections()), ['wan1', 'wan2'], 'held');
    assert.ok(src.present());
    // back, still starting: wan1 re-adopted, wan2 not yet -> both reported
    bus.objects = nmManagedObjects(true, device(2, 'wan1'), active(5, 'wan1', U1, { Devices: [DEV + 2] }), device(3, 'wan2', { State: 30, ActiveConnection: '/' }));
    (bus.objects[DEV + 2] as Record<string, Record<string, unknown>>)[D]!.ActiveConnection = AC + 5;
    bus.ownerChanged(NM, '', ':1.7');
    await src.synced();
    assert.deepEqual(names(src.connections()), ['wan1', 'wan2']);
    // startup complete: grace over, wan2 gone
    bus.signal({ sender: ':1.7', path: '/org/freedesktop/NetworkManager', interface: 'org.freedesktop.DBus.Properties', member: 'PropertiesChanged', body: [NM, { Startup: false }, []] });
    assert.deepEqual(names(src.connections()), ['wan1']);
    // gone for good: empty after the grace period
    bus.ownerChanged(NM, ':1.7', '');
    assert.deepEqual(names(src.connections()), ['wan1']);
    await new Promise((r) => setTimeout(r, 260));
    assert.deepEqual(src.connections(), []);
    assert.ok(!src.present());
    await src.stop();
  });

  test('signals dispatched while a dump is in flight: older ones dropped, newer ones applied', async () => {
    const bus = new FakeBus();
    bus.owners.set(NM, ':1.5');
    bus.objects = nmManagedObjects(false, device(2, 'wan1', { State: 70 }), active(2, 'wan1', U1, { State: 1 }));
    const change = (state: number): Omit<SignalMessage, 'seq'> =>
      ({ sender: ':1.5', path: DEV + 2, interface: 'org.freedesktop.DBus.Properties', member: 'PropertiesChanged', body: [D, { State: state }, []] });
    const activated = { sender: ':1.5', path: AC + 2, interface: 'org.freedesktop.DBus.Properties', member: 'PropertiesChanged', body: [A, { State: 2 }, []] };
    // before the reply: a stale State=30 (the dump already has 70); after it: 100 + ACTIVATED
    bus.around = [[change(30)], [change(100), activated]];
    const src = new NetworkManagerSource({ log: quiet, bus: bus as unknown as SystemBusClient });
    await src.start();
    assert.deepEqual(names(src.connections()), ['wan1']);
    assert.equal(src.mirror().get(DEV + 2)?.[D]?.State, 100);
    await src.stop();
  });

  test('no NM on the bus: empty, not present; appears later: read', async () => {
    const bus = new FakeBus();
    const src = new NetworkManagerSource({ log: quiet, bus: bus as unknown as SystemBusClient });
    await src.start();
    assert.ok(!src.present());
    bus.objects = nmManagedObjects(false, device(2, 'wan1'), active(2, 'wan1', U1));
    bus.ownerChanged(NM, '', ':1.3');
    await src.synced();
    await tick();
    assert.deepEqual(names(src.connections()), ['wan1']);
    await src.stop();
  });
});

describe('NetworkdSource on a fake bus', () => {
  test('Describe at start; PropertiesChanged applied; unknown link path re-lists', async () => {
    const bus = new FakeBus();
    bus.owners.set('org.freedesktop.network1', ':1.9');
    bus.describe = describeJson;
    const src = new NetworkdSource({ log: quiet, bus: bus as unknown as SystemBusClient });
    await src.start();
    assert.deepEqual(names(src.connections()), ['wan1']);
    const props = (path: string, changed: Record<string, unknown>): Omit<SignalMessage, 'seq'> =>
      ({ sender: ':1.9', path, interface: 'org.freedesktop.DBus.Properties', member: 'PropertiesChanged', body: ['org.freedesktop.network1.Link', changed, []] });
    bus.signal(props('/org/freedesktop/network1/link/_32', { OperationalState: 'off', AddressState: 'off', IPv4AddressState: 'off', IPv6AddressState: 'off' }));
    assert.deepEqual(src.connections(), []);
    bus.describe = { Interfaces: [...describeJson.Interfaces, { Index: 7, Name: 'wan7', Type: 'ether', AdministrativeState: 'configured', OperationalState: 'routable', AddressState: 'routable', NetworkFile: '/run/systemd/network/70-wan7.network' }] };
    bus.signal(props('/org/freedesktop/network1/link/_37', { OperationalState: 'routable' }));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(src.connections().map((f) => f.connectionUuid), ['networkd:10-wan1.network:wan1', 'networkd:70-wan7.network:wan7']);
    await src.stop();
  });
});

describe('createConnectionNetworks', () => {
  test('an unusable state directory is a typed error at start; static mode needs none', async () => {
    const { createConnectionNetworks } = await import('../../src/sources/connections');
    const { StateDirectoryError } = await import('../../src/sources/tables');
    const base = {
      networks: [], logLevel: 2 as const, logColor: false, include: [], exclude: [], tableRange: { first: 1000, last: 1009 },
      stateDirectory: '/proc/version/dynmhs', tableIdleSeconds: 60, dbus: false,
    };
    const bad = createConnectionNetworks({ ...base, source: 'networkmanager' }, quiet, { busAddress: 'unix:path=/nonexistent/bus', tableInUse: () => false });
    await assert.rejects(bad.start(), StateDirectoryError);
    const none = createConnectionNetworks({ ...base, source: 'static' }, quiet, { tableInUse: () => false });
    await none.start();
    assert.equal(none.activeSource(), 'static');
    assert.deepEqual(none.networks(), []);
    await none.stop();
  });
});

describe('createConnectionNetworks: reload', () => {
  const base = {
    networks: [], logLevel: 2 as const, logColor: false, include: [], exclude: [], tableRange: { first: 1000, last: 1009 },
    tableIdleSeconds: 60, dbus: false, source: 'networkmanager' as const,
  };
  const nmBus = (): FakeBus => {
    const bus = new FakeBus();
    bus.owners.set(NM, ':1.5');
    bus.objects = nmManagedObjects(false, device(2, 'wan1'), active(2, 'wan1', U1), device(3, 'wan2'), active(3, 'wan2', U2));
    return bus;
  };
  const tables = (networks: ReadonlyArray<{ interfaceName: string; table: number }>): string[] => networks.map((n) => `${n.interfaceName}:${n.table}`);

  test('EXCLUDE and a connection mapping given on reload apply at once; SOURCE and STATE_DIRECTORY stay', async () => {
    const { createConnectionNetworks } = await import('../../src/sources/connections');
    const dir = mkdtempSync(join(tmpdir(), 'dynmhs-reload-'));
    const config = { ...base, stateDirectory: dir };
    const bus = nmBus();
    const source = createConnectionNetworks(config, quiet, { tableInUse: () => false, bus: bus as unknown as SystemBusClient });
    try {
      await source.start();
      assert.deepEqual(tables(source.networks()), ['wan1:1000', 'wan2:1001']);
      let changes = 0;
      source.on('changed', () => changes++);
      source.reconfigure({ ...config, exclude: [{ match: 'interface', value: 'wan2' }] });
      assert.deepEqual(tables(source.networks()), ['wan1:1000']);
      assert.equal(changes, 1);
      source.reconfigure({ ...config, exclude: [{ match: 'interface', value: 'wan2' }], networks: [{ match: 'id', value: 'wan1', table: 3000, definedAt: 'test' }] });
      assert.deepEqual(tables(source.networks()), ['wan1:3000']);
      // a reload back to the first configuration: wan1 gets its stored table again, wan2 its own
      source.reconfigure({ ...config, source: 'networkd', stateDirectory: '/elsewhere' });
      assert.deepEqual(tables(source.networks()), ['wan1:1000', 'wan2:1001']);
      assert.equal(source.activeSource(), 'networkmanager');
      assert.ok(existsSync(join(dir, 'tables.json')) && !existsSync('/elsewhere'));
      // a new range: the stored tables outside it are dropped and the connections get tables in it
      source.reconfigure({ ...config, tableRange: { first: 5000, last: 5009 } });
      assert.deepEqual(tables(source.networks()), ['wan1:5000', 'wan2:5001']);
    } finally {
      await source.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('until the manager has been heard, the tables of connection mappings are held too', async () => {
    const { createConnectionNetworks } = await import('../../src/sources/connections');
    const dir = mkdtempSync(join(tmpdir(), 'dynmhs-hold-'));
    const bus = nmBus();
    bus.connected = () => false;
    const config = { ...base, stateDirectory: dir, networks: [
      { match: 'id' as const, value: 'wan1', table: 3000, definedAt: 'test' },
      { match: 'interface' as const, value: 'eth9', table: 4000, definedAt: 'test' },
    ] };
    const source = createConnectionNetworks(config, quiet, { tableInUse: () => false, bus: bus as unknown as SystemBusClient });
    try {
      await source.start();
      assert.deepEqual([...source.heldTables()], [3000], 'mapped by id: held; by interface: a static network of the daemon');
    } finally {
      await source.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
