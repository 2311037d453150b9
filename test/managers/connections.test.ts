// createConnectionNetworks against real managers: `auto` follows whichever manager is on
// the bus; tables stay stable per connection; an unreachable bus is retried, not fatal.
// Needs root: it creates namespaces and runs NetworkManager and systemd-networkd.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, skipReason, waitFor } from './harness';
import { createConnectionNetworks, type ConnectionNetworks } from '../../src/sources/connections';
import type { Config } from '../../src/config/types';
import { recordingLog } from './util';

const skip = skipReason();

function config(over: Partial<Config>): Config {
  return {
    networks: [], logLevel: 2, logColor: false, source: 'auto', include: [], exclude: [],
    tableRange: { first: 1000, last: 1009 }, stateDirectory: '/nonexistent', tableIdleSeconds: 3600, dbus: false, ...over,
  };
}

describe('ConnectionNetworks with real managers', { skip, timeout: 150_000 }, () => {
  let tb: Testbed;
  let state: string;
  const stops: Array<() => Promise<void>> = [];

  before(async () => {
    tb = await Testbed.create({ nm: true, networkd: true, sharedBus: true });
    state = mkdtempSync(join(tmpdir(), 'dynmhs-state-'));
  });

  after(async () => {
    for (const stop of stops) await stop().catch(() => undefined);
    await tb?.destroy();
    rmSync(state, { recursive: true, force: true });
  });

  test('auto: none -> networkd -> NetworkManager -> networkd (after the grace period) -> none; tables stable', async () => {
    const log = recordingLog();
    const cn: ConnectionNetworks = createConnectionNetworks(config({ source: 'auto', stateDirectory: state }), log,
      { busAddress: tb.nmBus, tableInUse: () => false, graceMs: 500 });
    stops.push(() => cn.stop());
    let changes = 0;
    cn.on('changed', () => changes++);
    await cn.start();
    assert.equal(cn.activeSource(), 'static');
    assert.deepEqual(cn.networks(), []);

    await tb.startNetworkd();
    await waitFor('networkd picked', () => cn.activeSource() === 'networkd' && cn.networks().length === 2, 30_000);
    // whichever link became routable first got 1000
    const nd = cn.networks().map((n) => [n.interfaceName, n.table, n.priority, n.origin, n.connectionId]).sort();
    assert.deepEqual(nd.map((n) => [n[0], n[2] === n[1], n[3], n[4]]), [['wan1', true, 'networkd', '10-wan1.network'], ['wan2', true, 'networkd', '10-wan2.network']]);
    assert.deepEqual(nd.map((n) => n[1]).sort(), [1000, 1001]);
    const ndTables = cn.networks().map((n) => [n.interfaceName, n.table]).sort();

    await tb.startNetworkManager();
    await waitFor('NetworkManager picked', () => cn.activeSource() === 'networkmanager', 10_000);
    await tb.addNmProfiles({ ipv6: false });
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    await waitFor('NM wan1', () => cn.networks().length === 1, 10_000);
    const [nmWan1] = cn.networks();
    assert.equal(nmWan1!.origin, 'networkmanager');
    assert.equal(nmWan1!.connectionUuid, await tb.nmConnectionUuid('wan1'));
    assert.equal(nmWan1!.table, 1002, 'a new connection identity gets a new table');

    await tb.stopNetworkManager();
    assert.equal(cn.activeSource(), 'networkmanager', 'held during the grace period');
    await waitFor('back to networkd', () => cn.activeSource() === 'networkd', 5_000);
    assert.deepEqual(cn.networks().map((n) => [n.interfaceName, n.table]).sort(), ndTables, 'same tables as before');

    await tb.stopNetworkd();
    await waitFor('static', () => cn.activeSource() === 'static' && cn.networks().length === 0, 5_000);
    assert.ok(changes >= 4);
    await cn.stop();
  });

  test('networkmanager mode with the bus unreachable: one clear error, backoff, connects when the bus appears', async () => {
    const log = recordingLog();
    const address = tb.busAddress('bus-late');
    const cn = createConnectionNetworks(config({ source: 'networkmanager', stateDirectory: state }), log, { busAddress: address, tableInUse: () => false });
    stops.push(() => cn.stop());
    const t0 = Date.now();
    await cn.start();
    assert.ok(Date.now() - t0 < 1000, 'start does not wait for the bus');
    assert.equal(cn.activeSource(), 'networkmanager');
    assert.deepEqual(cn.networks(), []);
    // The tables the first test stored: their entries must stay until NetworkManager is heard.
    const stored = Object.values((JSON.parse(readFileSync(join(state, 'tables.json'), 'utf8')) as { connections: Record<string, { table: number }> }).connections).map((c) => c.table);
    assert.ok(stored.length > 0);
    assert.deepEqual([...cn.heldTables()].sort(), stored.sort(), 'stored tables held while the manager is unheard');
    await new Promise((r) => setTimeout(r, 2500));
    const errors = log.lines.filter((l) => l.level === 'error');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errors[0]!.message, /Cannot connect to the system bus at unix:path=.*bus-late.*ENOENT.*Retrying/);
    const attempts = log.lines.filter((l) => /Cannot connect to the system bus/.test(l.message)).length;
    assert.ok(attempts >= 2 && attempts <= 4, `backoff 0.5, 1, 2 s: ${attempts} attempts in 2.5 s`);
    await tb.startExtraBus('bus-late');
    await waitFor('connected', () => log.lines.some((l) => /Connected to the system bus .* after \d+ failed attempt/.test(l.message)), 10_000);
    assert.deepEqual(cn.networks(), [], 'no NetworkManager on that bus');
    await waitFor('NetworkManager heard to be absent', () => cn.heldTables().size === 0, 5_000);
    await cn.stop();
  });
});
