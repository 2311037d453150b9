// MPTCP with real NetworkManager as the source: NetworkManager makes endpoints of its own
// for a connection with connection.mptcp-flags; dynmhs --mptcp subflow adds them for the
// others, leaves NetworkManager's alone (no duplicate, no fight), and an MPTCP connection
// uses both uplinks. Needs root, NetworkManager, dnsmasq and python3.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, skipReason, waitFor } from './harness';
import { daemonRunning, startDaemon } from './util';
import type { DaemonProcess } from '../helpers/daemon';
import { MptcpTraffic, mptcpSkipReason, type KernelEndpoint } from '../helpers/mptcp';
import { SERVER4 } from '../helpers/netns';
import { holdsFor } from '../helpers/wait';

const skip = skipReason() ?? mptcpSkipReason();
const MB = 1 << 20;

describe('MPTCP endpoints with real NetworkManager, which makes endpoints of its own', { skip, timeout: 150_000 }, () => {
  let tb: Testbed;
  let traffic: MptcpTraffic | undefined;
  let daemon: DaemonProcess | undefined;
  let state: string;
  const ns = (): string => tb.ns.nm;
  const daemonTail = (): string => `\n--- daemon output (tail) ---\n${daemon?.output().slice(-3000) ?? '(none)'}`;
  const addressesOf = async (dev: string): Promise<string[]> => [...await tb.addresses(ns(), dev, 4), ...await tb.addresses(ns(), dev, 6)];
  /** "ADDRESS id ID DEV" per endpoint, sorted. */
  const endpointLines = (endpoints: readonly KernelEndpoint[]): string[] => endpoints.map((e) => `${e.address} id ${e.id} ${e.dev ?? '-'}`).sort();

  before(async () => {
    tb = await Testbed.create({ nm: true, internet: true });
    state = mkdtempSync(join(tmpdir(), 'dynmhs-state-'));
    await tb.startNetworkManager();
    await tb.addNmProfiles();
    // NetworkManager's own endpoints for wan2 only; wan1 none (explicitly: not the default).
    await tb.nmcli('con', 'modify', 'wan1', 'connection.mptcp-flags', 'disabled');
    await tb.nmcli('con', 'modify', 'wan2', 'connection.mptcp-flags', 'enabled,subflow');
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    await tb.nmcli('-w', '60', 'con', 'up', 'wan2');
    traffic = await MptcpTraffic.start({ host: ns(), inet: tb.ns.inet }, 200);
  });

  after(async () => {
    await daemon?.stop().catch(() => daemon?.killNow());
    traffic?.stop();
    await tb?.destroy();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  test('NetworkManager\'s endpoints stay as they are, dynmhs adds the missing ones, and both uplinks carry one connection', async () => {
    const wan2Addresses = await tb.addresses(ns(), 'wan2', 4);
    const nmEndpoints = await waitFor('NetworkManager\'s endpoints for wan2', () => {
      const found = traffic!.endpoints().filter((e) => e.dev === 'wan2');
      return found.some((e) => wan2Addresses.includes(e.address)) ? found : undefined;
    }, 20_000);
    const nmLines = endpointLines(nmEndpoints);

    daemon = startDaemon(tb, ns(), tb.nmBus, ['--source', 'networkmanager', '--mptcp', 'subflow', '--state-directory', state, '--loglevel', '1', '--logcolor', 'off']);
    await daemonRunning(daemon);
    const wan1Addresses = (await addressesOf('wan1')).filter((a) => !a.startsWith('fe80'));
    await waitFor('dynmhs\'s endpoints for wan1', () => {
      const addresses = traffic!.endpoints().filter((e) => e.dev === 'wan1').map((e) => e.address);
      return wan1Addresses.every((a) => addresses.includes(a)) ? true : undefined;
    }, 20_000).catch((e: Error) => { throw new Error(`${e.message}: ${JSON.stringify(traffic!.endpoints())}${daemonTail()}`); });

    // No duplicates and no fight: for three seconds every endpoint stays as it is.
    const settled = endpointLines(traffic!.endpoints());
    await holdsFor(() => {
      const now = traffic!.endpoints();
      assert.deepEqual(endpointLines(now), settled);
      const addresses = now.map((e) => e.address);
      assert.equal(new Set(addresses).size, addresses.length, `one endpoint per address: ${addresses.join(' ')}`);
    }, 3000, 200);
    for (const line of nmLines) assert.ok(settled.includes(line), `NetworkManager's ${line} is untouched: ${settled.join('; ')}`);
    const output = daemon.output();
    for (const e of nmEndpoints) {
      assert.equal(output.split('\n').filter((l) => l.includes(`Leaving foreign MPTCP endpoint alone: id ${e.id} ${e.address}`)).length, 1, `${e.address} reported once${daemonTail()}`);
    }

    const t = traffic!.transfer(SERVER4, 16 * MB);
    assert.equal(t.received, 16 * MB);
    assert.ok(t.bytes.wan1 >= MB && t.bytes.wan2 >= MB, `wan1 ${t.bytes.wan1} B, wan2 ${t.bytes.wan2} B, subflows from ${t.subflowSources.join(' ')}`);
    process.stdout.write(`# NetworkManager's endpoints: ${nmLines.join('; ')}; all: ${settled.join('; ')}\n`
      + `# transfer: wan1 ${t.bytes.wan1} B, wan2 ${t.bytes.wan2} B, subflows from ${t.subflowSources.join(' ')}\n`);

    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
    assert.deepEqual(endpointLines(traffic!.endpoints()), nmLines, 'SIGTERM removes dynmhs\'s endpoints and leaves NetworkManager\'s');
  });
});
