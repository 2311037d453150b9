// MPTCP with real systemd-networkd as the source: networkd makes no endpoints, so dynmhs
// --mptcp subflow adds one for each of its addresses, and an MPTCP connection uses both
// uplinks. Needs root, systemd-networkd, dnsmasq and python3.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, skipReason, waitFor } from './harness';
import { daemonRunning, startDaemon } from './util';
import type { DaemonProcess } from '../helpers/daemon';
import { MptcpTraffic, mptcpSkipReason } from '../helpers/mptcp';
import { SERVER4, SERVER6 } from '../helpers/netns';

const skip = skipReason() ?? mptcpSkipReason();
const MB = 1 << 20;

describe('MPTCP endpoints with real systemd-networkd', { skip, timeout: 150_000 }, () => {
  let tb: Testbed;
  let traffic: MptcpTraffic | undefined;
  let daemon: DaemonProcess | undefined;
  let state: string;
  const ns = (): string => tb.ns.nd;
  const daemonTail = (): string => `\n--- daemon output (tail) ---\n${daemon?.output().slice(-3000) ?? '(none)'}`;

  before(async () => {
    tb = await Testbed.create({ nm: false, networkd: true, internet: true });
    state = mkdtempSync(join(tmpdir(), 'dynmhs-state-'));
    await tb.startNetworkd({ manageForeignRoutingPolicyRules: false, manageForeignRoutes: false });
    await tb.networkdWaitOnline();
    traffic = await MptcpTraffic.start({ host: ns(), inet: tb.ns.inet }, 200);
  });

  after(async () => {
    await daemon?.stop().catch(() => daemon?.killNow());
    traffic?.stop();
    await tb?.destroy();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  test('an endpoint for every address networkd configured, and one connection over both uplinks (IPv4 and IPv6)', async () => {
    assert.deepEqual(traffic!.endpoints(), [], 'networkd makes no endpoints');
    daemon = startDaemon(tb, ns(), tb.ndBus, ['--source', 'networkd', '--mptcp', 'subflow', '--state-directory', state, '--loglevel', '1', '--logcolor', 'off']);
    await daemonRunning(daemon);
    const global = async (dev: string): Promise<string[]> =>
      [...await tb.addresses(ns(), dev, 4), ...await tb.addresses(ns(), dev, 6)].filter((a) => !a.startsWith('fe80'));
    const expected = [...(await global('wan1')).map((a) => `${a} wan1`), ...(await global('wan2')).map((a) => `${a} wan2`)].sort();
    assert.ok(expected.length >= 4, `two addresses per uplink: ${expected.join(' ')}`);
    await waitFor('an endpoint for every address', () => {
      const lines = traffic!.endpoints().map((e) => `${e.address} ${e.dev ?? '-'}`).sort();
      return JSON.stringify(lines) === JSON.stringify(expected) ? true : undefined;
    }, 20_000).catch((e: Error) => { throw new Error(`${e.message}: ${JSON.stringify(traffic!.endpoints())}${daemonTail()}`); });

    for (const target of [SERVER4, SERVER6]) {
      const t = traffic!.transfer(target, 16 * MB);
      assert.equal(t.received, 16 * MB);
      assert.ok(t.bytes.wan1 >= MB && t.bytes.wan2 >= MB, `${target}: wan1 ${t.bytes.wan1} B, wan2 ${t.bytes.wan2} B, subflows from ${t.subflowSources.join(' ')}`);
      process.stdout.write(`# networkd ${target}: wan1 ${t.bytes.wan1} B, wan2 ${t.bytes.wan2} B, subflows from ${t.subflowSources.join(' ')}\n`);
    }
    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
    assert.deepEqual(traffic!.endpoints(), []);
  });
});
