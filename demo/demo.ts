// `sudo npm run demo`: the DynMHS README scenario in throwaway network namespaces.
//
// A "host" with two uplinks (wan1 → ISP 1, metric 200; wan2 → ISP 2, metric 300), both
// ISPs connected to a common "internet" namespace with a server at 10.250.0.1 / fd00:250::1.
// Without dynmhs every packet leaves through wan1, whatever its source address; with
// dynmhs each source address leaves through its own interface. A UDP probe proves it:
// datagrams from each source address to a server that answers with the address it saw,
// and the uplinks' packet counters. It needs only Node and iproute2 (no nftables, no
// ping, no procps). Everything lives in namespaces this demo creates and
// deletes again (also on failure or Ctrl-C); the machine's own network is never touched.

import { existsSync } from 'node:fs';
import { DAEMON_MAIN, DaemonProcess } from '../test/helpers/daemon';
import { convergence, netnsSkipReason, README_NETS, SERVER4, SERVER6, Topology, WAN1, WAN2, type Wan } from '../test/helpers/netns';
import { waitFor } from '../test/helpers/wait';
import { mptcpStep } from './mptcp';

const useColor = process.stdout.isTTY === true;
const c = (code: string, s: string) => (useColor ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = (s: string) => c('1', s);
const green = (s: string) => c('32', s);
const red = (s: string) => c('31', s);
const dim = (s: string) => c('2', s);

function heading(s: string): void {
  console.log('\n' + bold(`==== ${s} ${'='.repeat(Math.max(0, 72 - s.length))}`));
}

function show(topo: Topology, args: string[]): void {
  console.log(c('36', `host# ip ${args.join(' ')}`));
  let out: string;
  try {
    out = topo.ip(args).trimEnd();
  } catch (e) {
    if (/table does not exist/i.test((e as Error).message)) out = '';
    else throw e;
  }
  console.log(out === '' ? dim('(empty)') : out);
}

function showState(topo: Topology): void {
  show(topo, ['-4', 'route', 'show']);
  show(topo, ['-6', 'route', 'show']);
  show(topo, ['-4', 'rule', 'show']);
  show(topo, ['-6', 'rule', 'show']);
  for (const w of [WAN1, WAN2]) {
    show(topo, ['-4', 'route', 'show', 'table', String(w.table)]);
    show(topo, ['-6', 'route', 'show', 'table', String(w.table)]);
  }
}

interface Proof {
  source: string;
  own: Wan;
  ok: boolean;
}

/**
 * From every source address, send UDP datagrams to the server (which answers with the
 * source address it saw) and count the packets each uplink sent meanwhile.
 */
function proveEgress(topo: Topology, expectOwn: boolean): Proof[] {
  const count = 5;
  const proofs: Proof[] = [];
  console.log(dim(`  ${count} UDP datagrams from each source address to ${SERVER4} / ${SERVER6}, one at a time;`));
  console.log(dim('  packets sent per uplink meanwhile (interface counters), and the source address the server saw'));
  const sources = [WAN1, WAN2].flatMap((own) => [{ own, source: own.v4 }, { own, source: own.v6 }]);
  const results = topo.egressOf(sources.map((s) => s.source), count);
  results.forEach((r, i) => {
    const own = sources[i]!.own;
    const counts = Object.entries(r.txPackets).map(([name, n]) => `${name} ${n}`).join(', ');
    const ownOnly = r.via.length === 1 && r.via[0] === own.ifName;
    const verdict = ownOnly ? green(`leaves via its own ${own.ifName}`) :
      (expectOwn ? red(`WRONG: should leave via ${own.ifName}`) : c('33', `not via its own ${own.ifName}`));
    const seen = r.seenAs.length === 1 && r.seenAs[0] === r.source;
    const answers = r.answers === r.sent ? `${r.answers}/${r.sent} answered` : red(`${r.answers}/${r.sent} answered`);
    console.log(`  from ${r.source.padEnd(12)} → ${counts.padEnd(16)} ${answers}${seen ? '' : red(` seen as ${r.seenAs.join(' ') || 'nothing'}`)}  ${verdict}`);
    proofs.push({ source: r.source, own, ok: ownOnly && r.answers === r.sent && seen });
  });
  return proofs;
}

async function main(): Promise<number> {
  const skip = netnsSkipReason();
  if (skip) {
    console.error(`demo: ${skip}. Try: sudo npm run demo`);
    return 2;
  }
  let topo: Topology | undefined;
  let daemon: DaemonProcess | undefined;
  const cleanup = () => {
    daemon?.killNow();
    topo?.destroy();
  };
  const onSignal = (sig: NodeJS.Signals) => {
    console.error(`\ndemo: ${sig}, cleaning up`);
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    heading('Building throwaway namespaces');
    topo = Topology.create({ tag: 'd' });
    await topo.startEgressServer();
    console.log(`  ${topo.host}: wan1 ${WAN1.v4}/24 ${WAN1.v6}/64 (metric 200), wan2 ${WAN2.v4}/24 ${WAN2.v6}/64 (metric 300)`);
    console.log(`  ${topo.isp1}, ${topo.isp2}: routers ${WAN1.gw4} / ${WAN2.gw4}, IPv6 gateway fe80::1 on each link`);
    console.log(`  ${topo.inet}: the "internet", server ${SERVER4} and ${SERVER6}, reachable through both ISPs`);

    heading('Before dynmhs: the host\'s routes, rules and tables');
    showState(topo);

    heading('Before dynmhs: where do packets from each source address go?');
    const before = proveEgress(topo, false);
    const wrongBefore = before.filter((p) => !p.ok).length;
    console.log(`  → ${wrongBefore} of ${before.length} source addresses do NOT use their own interface: ` +
      'the lowest-metric default route (wan1) wins for every source.');

    if (!existsSync(DAEMON_MAIN)) {
      console.error(red(`\n${DAEMON_MAIN} is missing (build with \`npx tsc -p tsconfig.json\`); stopping after the "before" part.`));
      return 1;
    }

    heading('Starting dynmhs --network wan1:2000 --network wan2:3000 --loglevel 2');
    const t0 = Date.now();
    daemon = DaemonProcess.start(topo.host, ['--network', 'wan1:2000', '--network', 'wan2:3000', '--loglevel', '2']);
    const d = daemon;
    console.log(`  pid ${d.pid} in ${topo.host}, log ${d.logFile}`);
    try {
      await waitFor(() => {
        if (!d.running) throw new Error(`dynmhs exited early with ${JSON.stringify(d.status)}`);
        return convergence(topo!, README_NETS) === '';
      }, 15000, { what: 'dynmhs to set up tables and rules', intervalMs: 20 });
    } catch (e) {
      console.error(red(`  ${(e as Error).message}`));
      console.error(dim(d.output().slice(-4000)));
      return 1;
    }
    console.log(`  tables and rules in place after ${Date.now() - t0} ms (including Node start-up)`);
    console.log(dim(d.output().trimEnd().split('\n').slice(0, 30).map((l) => '  | ' + l).join('\n')));

    heading('With dynmhs: routes, rules and tables');
    showState(topo);

    heading('With dynmhs: where do packets from each source address go?');
    const withD = proveEgress(topo, true);
    const good = withD.filter((p) => p.ok).length;
    console.log(`  → ${good} of ${withD.length} source addresses leave through their own interface.`);

    heading('Stopping dynmhs (SIGTERM): it removes everything it created');
    const code = await d.stop('SIGTERM', 5000);
    console.log(`  exit code ${code}`);
    show(topo, ['-4', 'rule', 'show']);
    show(topo, ['-6', 'rule', 'show']);
    for (const w of [WAN1, WAN2]) {
      show(topo, ['-4', 'route', 'show', 'table', String(w.table)]);
      show(topo, ['-6', 'route', 'show', 'table', String(w.table)]);
    }
    const leftovers = [4, 6].flatMap((f) => topo!.ourRules(f as 4 | 6).length + topo!.ourRoutes(f as 4 | 6, 'all').length);
    const clean = leftovers.every((n) => n === 0);
    console.log(clean ? green('  clean: no dynmhs rules or routes left') : red('  leftovers found'));

    heading('MPTCP: one connection over both uplinks (dynmhs --mptcp subflow)');
    const mptcpOk = await mptcpStep(topo, (line) => console.log(line));
    console.log(mptcpOk ? green('  both uplinks carried the connection with --mptcp, only wan1 without') : red('  MPTCP step FAILED'));

    const success = good === withD.length && code === 0 && clean && mptcpOk;
    heading(success ? 'Demo succeeded' : 'Demo FAILED');
    return success ? 0 : 1;
  } catch (e) {
    console.error(red(`demo failed: ${(e as Error).stack ?? e}`));
    if (daemon) console.error(dim(daemon.output().slice(-4000)));
    return 1;
  } finally {
    heading('Tearing down the namespaces');
    cleanup();
    console.log('  done; nothing of the demo is left on this machine.');
  }
}

main().then((code) => { process.exitCode = code; }, (e) => {
  console.error(e);
  process.exitCode = 1;
});
