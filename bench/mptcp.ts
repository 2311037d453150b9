// `sudo node dist/bench/mptcp.js`: address added -> MPTCP endpoint in the kernel, beside
// address -> rule, p50/p99, IPv4 and IPv6, with `--mptcp subflow` on the README scenario.
// Writes bench/results/mptcp-<date>.json.
//
// The kernel announces no endpoint changes, so the probe (this file again, run inside the
// host namespace with `probe`) dumps the endpoints in a loop after each address event;
// one dump takes tens of microseconds, which bounds the resolution.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createNetlink, createRtNetlink, Protocol, rt, type NetlinkMessage } from 'netlink';
import { textToAddress } from '../src/address';
import { MptcpPathManager } from '../src/kernel/mptcp';

const RUNS = Number(process.env.BENCH_RUNS ?? 100);
const RESULTS = resolve(__dirname, '..', '..', 'bench', 'results');
const now = (): number => performance.timeOrigin + performance.now();

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const stats = (xs: number[]) => (xs.length === 0 ? null : {
  n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), min: Math.min(...xs), max: Math.max(...xs),
});

async function probe(cfg: { ifName: string; family: 4 | 6; address: string; prefixLength: number; runs: number }) {
  const index = Number(readFileSync(`/sys/class/net/${cfg.ifName}/ifindex`, 'utf8'));
  const addr = textToAddress(cfg.address);
  const mon = createNetlink(Protocol.ROUTE, { ref: true, recvBufferSize: 4 << 20, sendBufferSize: 1 << 20 });
  for (const g of ['IPV4_IFADDR', 'IPV6_IFADDR', 'IPV4_RULE', 'IPV6_RULE'] as const) mon.socket.addMembership(rt.MulticastGroups[g]);
  const cmd = createRtNetlink();
  const pm = await MptcpPathManager.open();
  const seen = new Map<string, number>();
  mon.on('message', (msgs: NetlinkMessage[]) => {
    const t = now();
    for (const m of msgs) {
      const p = rt.parseMessage(m.type, m.data);
      if (p.kind === 'address') {
        const a = (p.attrs.local ?? p.attrs.address) as Buffer | undefined;
        if (a?.equals(addr)) seen.set(m.type === rt.MessageType.NEWADDR ? 'addr-new' : 'addr-del', t);
      } else if (p.kind === 'rule') {
        const s = p.attrs.src as Buffer | undefined;
        if (s?.equals(addr)) seen.set(m.type === rt.MessageType.NEWRULE ? 'rule-new' : 'rule-del', t);
      }
    }
  });
  const until = async (what: () => Promise<boolean> | boolean, timeoutMs = 3000): Promise<number> => {
    const end = now() + timeoutMs;
    for (;;) {
      if (await what()) return now();
      if (now() > end) throw new Error('timeout');
      await new Promise((r) => setImmediate(r));
    }
  };
  const hasEndpoint = async (): Promise<boolean> => (await pm.endpoints()).some((e) => e.address === cfg.address);
  const data = { family: cfg.family === 4 ? 2 : 10, prefixlen: cfg.prefixLength, index, flags: { nodad: true } as const };
  const attrs = { local: addr, address: addr, flags: { nodad: true, noprefixroute: true } as const };
  const toRule: number[] = []; const toEndpoint: number[] = []; const toGone: number[] = [];
  let failures = 0;
  for (let i = 0; i < cfg.runs; i++) {
    seen.clear();
    try {
      await cmd.newAddress(data, attrs, { flags: 0x400 | 0x200 } as never);
      const added = await until(hasEndpoint);
      const ta = seen.get('addr-new');
      await until(() => seen.has('rule-new'));
      if (ta === undefined) throw new Error('no RTM_NEWADDR seen');
      toEndpoint.push(added - ta);
      toRule.push(seen.get('rule-new')! - ta);
      await cmd.delAddress(data, attrs);
      const gone = await until(async () => !(await hasEndpoint()));
      await until(() => seen.has('addr-del'));
      toGone.push(gone - seen.get('addr-del')!);
    } catch (e) {
      failures++;
      try { await cmd.delAddress(data, attrs); } catch { /* gone */ }
      if (failures > 5) throw e;
    }
    await new Promise((r) => setTimeout(r, 3));
  }
  mon.close();
  cmd.socket.close();
  pm.close();
  return { addrEventToRule: stats(toRule), addrEventToEndpoint: stats(toEndpoint), delAddrEventToEndpointGone: stats(toGone), failures };
}

async function main(): Promise<number> {
  if (process.argv[2] === 'probe') {
    process.stdout.write(`${JSON.stringify(await probe(JSON.parse(process.argv[3]!)))}\n`);
    return 0;
  }
  // The test helpers build the README topology and run the daemon there.
  const { startConverged } = await import('../test/helpers/daemon');
  const { netnsSkipReason, README_NETS, Topology } = await import('../test/helpers/netns');
  const skip = netnsSkipReason();
  if (skip !== undefined) { console.error(`bench: ${skip}`); return 2; }
  const topo = Topology.create({ tag: 'm' });
  const state = mkdtempSync(join(tmpdir(), `dynmhs-bench-mptcp-${process.pid}-`));
  let d: Awaited<ReturnType<typeof startConverged>> | undefined;
  try {
    d = await startConverged(topo, README_NETS, ['--loglevel', '2', '--mptcp', 'subflow', '--state-directory', state]);
    const results: Record<string, unknown> = { date: new Date().toISOString(), node: process.version, kernel: release(), runs: RUNS,
      commit: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim() };
    for (const [family, address, prefixLength] of [[4, '10.101.0.100', 24], [6, 'fd00:101::100', 64]] as const) {
      const r = spawnSync('ip', ['netns', 'exec', topo.host, process.execPath, __filename, 'probe',
        JSON.stringify({ ifName: 'wan1', family, address, prefixLength, runs: RUNS })], { encoding: 'utf8', timeout: 600_000 });
      results[`v${family}`] = r.status === 0 ? JSON.parse(r.stdout.trim().split('\n').pop()!) : { error: r.stderr.slice(-1000) };
    }
    await d.stop();
    mkdirSync(RESULTS, { recursive: true });
    const file = join(RESULTS, `mptcp-${(results.date as string).slice(0, 10)}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    console.log(JSON.stringify(results, null, 2));
    console.error(`written: ${file}`);
    return 0;
  } finally {
    d?.killNow();
    topo.destroy();
    rmSync(state, { recursive: true, force: true });
  }
}

main().then((code) => process.exit(code), (error: Error) => { console.error(error.stack ?? error.message); process.exit(1); });
