// The D-Bus service's published state and the signals between two states, without a bus
// (test/dbus/service.test.ts checks what a client on a real bus receives).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Variant } from 'dbus-next';
import type { DaemonStatus, NetworkStatus } from '../../src/control';
import { NETWORK_INTERFACE } from '../../src/dbus/names';
import { changeSignals, snapshotOf } from '../../src/dbus/snapshot';

function network(name: string, extra: Partial<NetworkStatus> = {}): NetworkStatus {
  return {
    interfaceName: name, interfaceIndex: 3, table: 2000, priority: 2000, origin: 'static', connectionId: '',
    connectionUuid: '', deviceType: '', addresses: [], rules: [], routes: [], state: 'active', ...extra,
  };
}

function status(networks: NetworkStatus[], state: DaemonStatus['state'] = 'running'): DaemonStatus {
  return { version: '1.0', source: 'static', state, networks };
}

const summary = (signals: ReturnType<typeof changeSignals>): string[] =>
  signals.map((s) => `${s.from ?? s.path} ${s.member}`);

test('nothing changed: no signals', () => {
  const a = snapshotOf(status([network('wan1')]));
  assert.deepEqual(changeSignals(a, snapshotOf(status([network('wan1')]))), []);
});

test('a network added and one removed: the ObjectManager and the manager tell both, removals first', () => {
  const before = snapshotOf(status([network('wan1')]));
  const after = snapshotOf(status([network('wan2')]));
  assert.deepEqual(summary(changeSignals(before, after)), [
    '/no/nntb/DynMHS InterfacesRemoved', '/no/nntb/DynMHS NetworkRemoved',
    '/no/nntb/DynMHS InterfacesAdded', '/no/nntb/DynMHS NetworkAdded',
    '/no/nntb/DynMHS PropertiesChanged',
  ]);
  const managerChange = changeSignals(before, after).at(-1)!;
  assert.deepEqual(Object.keys(managerChange.body[1] as Record<string, Variant>), ['Networks']);
});

test('changed properties: values for small ones, names only for the large ones', () => {
  const before = snapshotOf(status([network('wan1')]));
  const after = snapshotOf(status([network('wan1', {
    state: 'degraded', rules: [{ family: 4, priority: 2000, from: '10.0.0.2', table: 2000 }],
  })], 'reloading'));
  const signals = changeSignals(before, after);
  const [onNetwork, onManager] = signals;
  assert.equal(signals.length, 2);
  assert.equal(onNetwork.member, 'PropertiesChanged');
  assert.equal(onNetwork.body[0], NETWORK_INTERFACE);
  assert.deepEqual(Object.keys(onNetwork.body[1] as Record<string, Variant>), ['State']);
  assert.equal((onNetwork.body[1] as Record<string, Variant>).State.value, 'degraded');
  assert.deepEqual(onNetwork.body[2], ['Rules']);
  assert.deepEqual(Object.keys(onManager.body[1] as Record<string, Variant>), ['State']);
});
