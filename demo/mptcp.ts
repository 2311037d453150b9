// The demo's MPTCP step: one MPTCP connection from the host to the server, first with
// dynmhs as above (one subflow, wan1 only), then with --mptcp subflow (an endpoint per
// address, a subflow from each, both uplinks carry data).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonProcess, waitConverged } from '../test/helpers/daemon';
import { MptcpTraffic, mptcpSkipReason } from '../test/helpers/mptcp';
import { README_NETS, SERVER4, type Topology } from '../test/helpers/netns';
import { waitFor } from '../test/helpers/wait';

const SIZE = 16 << 20;
const UPLINK_MBIT = 200;

/** Runs the step in `topo` (the demo's daemon stopped); `say` prints a line; true when it showed what it should. */
export async function mptcpStep(topo: Topology, say: (line: string) => void): Promise<boolean> {
  const skip = mptcpSkipReason();
  if (skip !== undefined) {
    say(`  skipped: ${skip}`);
    return true;
  }
  const traffic = await MptcpTraffic.start(topo, UPLINK_MBIT);
  const state = mkdtempSync(join(tmpdir(), `dynmhs-demo-${process.pid}-`));
  let daemon: DaemonProcess | undefined;
  const report = (label: string): { wan1: number; wan2: number; sources: string[] } => {
    const t = traffic.transfer(SERVER4, SIZE);
    const mb = (n: number): string => `${(n / (1 << 20)).toFixed(1)} MiB`;
    say(`  ${label}: 16 MiB over one MPTCP connection -> wan1 ${mb(t.bytes.wan1)}, wan2 ${mb(t.bytes.wan2)}; subflows from ${t.subflowSources.join(', ')}`);
    return { wan1: t.bytes.wan1, wan2: t.bytes.wan2, sources: t.subflowSources };
  };
  try {
    say(`  uplinks limited to ${UPLINK_MBIT} Mbit/s each (tbf); server: python3 MPTCP socket on ${SERVER4}`);
    daemon = DaemonProcess.start(topo.host, ['--network', 'wan1:2000', '--network', 'wan2:3000', '--loglevel', '2']);
    await waitConverged(topo, daemon, README_NETS, 15000);
    const without = report('dynmhs without --mptcp');
    await daemon.stop();

    say('  host# dynmhs --network wan1:2000 --network wan2:3000 --mptcp subflow');
    daemon = DaemonProcess.start(topo.host, ['--network', 'wan1:2000', '--network', 'wan2:3000', '--mptcp', 'subflow',
      '--loglevel', '2', '--state-directory', state]);
    await waitConverged(topo, daemon, README_NETS, 15000);
    await waitFor(() => traffic.endpoints().length === 4, 10000, { what: 'four MPTCP endpoints' });
    say('  host# ip mptcp endpoint show');
    for (const line of topo.ip(['mptcp', 'endpoint', 'show']).trimEnd().split('\n')) say(`  ${line}`);
    say('  host# ip mptcp limits show');
    say(`  ${topo.ip(['mptcp', 'limits', 'show']).trim()}`);
    const withMptcp = report('dynmhs --mptcp subflow');
    await daemon.stop();
    daemon = undefined;
    const cleaned = traffic.endpoints().length === 0;
    say(`  after SIGTERM: ${cleaned ? 'no endpoints left' : 'endpoints LEFT'}`);
    return without.wan2 < (1 << 20) && withMptcp.wan1 >= (1 << 20) && withMptcp.wan2 >= (1 << 20) && withMptcp.sources.length === 2 && cleaned;
  } finally {
    daemon?.killNow();
    traffic.stop();
    rmSync(state, { recursive: true, force: true });
  }
}
