// `sudo npm run bench`: dynmhs benchmarks in throwaway network namespaces (not timed tests).
// Prints a table and writes bench/results/<date>.json (+ latest.json).
//
//  (1) address added → rule in the kernel, p50/p99 over ≥100 runs, IPv4 and IPv6
//      (timestamps from an in-process rtnetlink listener inside the namespace: bench/probe.ts)
//  (2) start-up with 50 addresses and 10,000 main-table routes → converged
//  (3) burst of 10,000 route adds via `ip -batch` while running → mirrored, time, lost
//  (4) SIGTERM with 10,000 mirrored routes → clean and exited
//  (5) idle RSS, CPU and context switches over 30 s; in the same window Node alone with the
//      daemon's options (the floor) and dynmhs with its D-Bus service on a private bus
//  (6) the kernel's own `ip -batch` time for 10,000 route adds into a table and 10,000 deletes
//  (7) NetworkManager / systemd-networkd reporting a connection up → its policy in the kernel
//      (real managers on a private bus: bench/managers.ts; BENCH_MANAGER_RUNS per manager)
//  (8) scale: 10k, 100k, 1M main-table routes → start-up, RSS, a burst of 100k adds, stop
//      (bench/scale.ts; BENCH_SCALE sizes, BENCH_SCALE_BURST)
//  (9) IPv6 replaces beside 20,000 IPv6 routes → the copies follow (bench/replace.ts;
//      BENCH_REPLACE_ROUTES, BENCH_REPLACE_BURST)
//
// Environment: BENCH_RUNS (default 200 latency runs per family), BENCH_IDLE_S (default 30),
// BENCH_SETTLE_S (default 25: wait after convergence before the idle window),
// BENCH_ONLY (comma list of latency,idle,startup,burst,managers,scale,replace: run only these; the kernel reference always runs),
// BENCH_REPEAT (default 5: runs of (2)+(4) and of (3), each in fresh namespaces; the median run is reported),
// BENCH_DAEMON_NODE_ARGS (node options for the daemon only, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`),
// BENCH_DAEMON_ARGS (more daemon options, e.g. `--loglevel 1`),
// BENCH_UPSTREAM (path of a C++ DynMHS binary: (1), (2)+(4), (5), (8) and (9) then run for both, interleaved,
// and the table prints both and the ratio), BENCH_ROUNDS (latency rounds, each against a fresh
// daemon in fresh namespaces, the two alternating; default 4 with BENCH_UPSTREAM, else 1),
// BENCH_LATENCY_ROUTES (default 0: routes via wan1/wan2 in main during (1), e.g. 10000 for a
// lone change beside a full table's copies).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { daemonEnvironment, daemonNodeOptions, DaemonProcess, networkArgs, waitConverged } from '../test/helpers/daemon';
import { REPO, startSystemBus, type PrivateBus } from '../test/helpers/dbus-harness';
import { netnsSkipReason, README_NETS, Topology, WAN1, WAN2 } from '../test/helpers/netns';
import { sleep, WaitAbort, waitFor } from '../test/helpers/wait';
import { benchManagers } from './managers';
import { printReport } from './report';
import { benchReplace } from './replace';
import { benchScale } from './scale';
import { stats } from './stats';
import { dynmhsSubject, upstreamSubject, upstreamVersion, type Running, type Subject } from './subjects';

const PROBE = resolve(__dirname, 'probe.js');
const RESULTS = resolve(__dirname, '..', '..', 'bench', 'results');
const RUNS = Number(process.env.BENCH_RUNS ?? 200);
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 30);
// V8's memory reducer runs GC on timers for ~20 s after start-up activity, then stops:
// measured, 10-40 wake-ups in that window, none after. Idle is measured after it.
const SETTLE_S = Number(process.env.BENCH_SETTLE_S ?? 25);
const N = 10000;
// One run of (2), (3) or (4) moves by tens of milliseconds on a shared VM; the median of
// several says more, and every run must be correct (converged, nothing lost or left).
const REPEAT = Math.max(1, Number(process.env.BENCH_REPEAT ?? 5));
/** SIGTERM, so a --cpu-prof profile gets written; SIGKILL if that hangs. */
async function stopDaemon(d: DaemonProcess): Promise<void> {
  if (!d.running) return;
  d.signal('SIGTERM');
  await d.waitExit(10000).catch(() => d.killNow());
}
const UPSTREAM = process.env.BENCH_UPSTREAM ? resolve(process.env.BENCH_UPSTREAM) : undefined;
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? (UPSTREAM ? 4 : 1)));
const LATENCY_ROUTES = Math.max(0, Number(process.env.BENCH_LATENCY_ROUTES ?? 0));
const ONLY = new Set((process.env.BENCH_ONLY ?? 'latency,idle,startup,burst,managers,scale,replace').split(',').map((x) => x.trim()));
const DAEMON_ENV = { nodeArgs: (process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== '') };
const now = (): number => performance.timeOrigin + performance.now();
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const r1 = (x: number | null | undefined): number | null => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);

/**
 * The run with the median of `metric` (a run without a value, which failed, counts as
 * the slowest), with every run's value, and whether `ok` held in every run.
 */
function medianRun<T extends object>(runs: readonly T[], metric: (run: T) => number | null, ok: (run: T) => boolean):
  T & { runsMs: (number | null)[]; allRunsOk: boolean } {
  const value = (run: T): number => metric(run) ?? Number.POSITIVE_INFINITY;
  const sorted = [...runs].sort((a, b) => value(a) - value(b));
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, runsMs: runs.map(metric), allRunsOk: runs.every(ok) };
}

function routeLines(n: number, opts: { table?: number; base?: number; verb?: string } = {}): string[] {
  const lines: string[] = [];
  const base = opts.base ?? 160;
  for (let i = 0; i < n; i++) {
    const dst = `10.${base + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`;
    const via = i % 2 === 0 ? 'via 10.101.0.1 dev wan1' : 'via 10.102.0.1 dev wan2';
    const verb = opts.verb ?? 'add';
    lines.push(verb === 'del' ? `route del ${dst}${opts.table ? ` table ${opts.table}` : ''}`
      : `route ${verb} ${dst} ${via}${opts.table ? ` table ${opts.table}` : ''}`);
  }
  return lines;
}

function timeBatch(topo: Topology, lines: string[]): number {
  const t0 = now();
  topo.batch(topo.host, lines);
  return now() - t0;
}

/** Expected number of dynmhs routes and rules once converged (README networks). */
function expectedCounts(topo: Topology): { routes: number; rules: number } {
  let routes = 0;
  let rules = 0;
  for (const fam of [4, 6] as const) {
    routes += topo.routes(fam, 'main').filter((r) => (r.dev === 'wan1' || r.dev === 'wan2') && !r.nexthops).length;
    for (const w of [WAN1, WAN2]) {
      rules += topo.addresses(fam, w.ifName).filter((a) => a.scope !== 'link' && !a.local.startsWith('169.254.')).length;
    }
  }
  return { routes, rules };
}

/** Start the count probe in the host ns; resolves once it has dumped and subscribed. */
function startCounter(topo: Topology, want: { routes: number; rules: number }, timeoutMs: number, protocol: number | null = 249,
  options: Record<string, unknown> = {}):
  Promise<{ result: Promise<{ tMs: number | null; firstMs: number | null; routes: number; rules: number; overflow: boolean }> }> {
  return new Promise((resolveReady, rejectReady) => {
    const child = spawn('ip', ['netns', 'exec', topo.host, process.execPath, PROBE, 'count',
      JSON.stringify({ tables: [2000, 3000], routes: want.routes, rules: want.rules, timeoutMs, protocol, ...options })], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let ready = false;
    let err = '';
    child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    const result = new Promise<{ tMs: number | null; firstMs: number | null; routes: number; rules: number; overflow: boolean }>((res, rej) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (!ready && out.includes('READY\n')) { ready = true; resolveReady({ result }); }
      });
      child.on('exit', (code, sig) => {
        const last = out.trim().split('\n').pop() ?? '';
        try {
          const j = JSON.parse(last);
          if (j.error) rej(new Error(j.error)); else res(j);
        } catch {
          rej(new Error(`probe exited ${code ?? sig}: ${err.slice(-500)}`));
        }
        if (!ready) rejectReady(new Error(`probe died before READY: ${err.slice(-500)}`));
      });
    });
    result.catch(() => undefined);
  });
}

type LatencySamples = { addrEventToRule: number[]; sendToRule: number[]; delAddrEventToRuleGone: number[]; delSendToRuleGone: number[] };
const LATENCY_KINDS = ['addrEventToRule', 'sendToRule', 'delAddrEventToRuleGone', 'delSendToRuleGone'] as const;
type LatencyResult = { samples?: LatencySamples; failures?: number; error?: string };

function probeLatency(topo: Topology, fam: 4 | 6, runs: number): LatencyResult {
  const cfg = fam === 4
    ? { ifName: 'wan1', family: 4, address: '10.101.0.100', prefixLength: 24, runs }
    : { ifName: 'wan1', family: 6, address: 'fd00:101::100', prefixLength: 64, runs };
  const r = spawnSync('ip', ['netns', 'exec', topo.host, process.execPath, PROBE, 'latency', JSON.stringify(cfg)],
    { encoding: 'utf8', timeout: 600000 });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as LatencyResult;
  } catch {
    return { error: `probe failed: ${r.stderr}` };
  }
}

function procTotals(pid: number): { cpuTicks: number; ctxMain: number; ctxAll: number; rssKb: number; rssAnonKb: number; rssFileKb: number; hwmKb: number; threads: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const num = (s: string, k: string) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) ?? [])[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let ctxAll = 0;
  const tasks = readdirSync(`/proc/${pid}/task`);
  for (const t of tasks) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      ctxAll += num(s, 'voluntary_ctxt_switches') + num(s, 'nonvoluntary_ctxt_switches');
    } catch { /* thread gone */ }
  }
  return {
    cpuTicks: Number(f[11]) + Number(f[12]),
    ctxMain: num(status, 'voluntary_ctxt_switches') + num(status, 'nonvoluntary_ctxt_switches'),
    ctxAll, rssKb: num(status, 'VmRSS'), rssAnonKb: num(status, 'RssAnon'), rssFileKb: num(status, 'RssFile'),
    hwmKb: num(status, 'VmHWM'), threads: tasks.length,
  };
}

/** Wait until `d` has set up the README networks; fails fast if it dies. */
async function waitReady(topo: Topology, subject: Subject, d: Running, timeoutMs = 20000): Promise<void> {
  if (subject.name === 'dynmhs') return waitConverged(topo, d as DaemonProcess, README_NETS, timeoutMs);
  let last = '';
  await waitFor(() => {
    if (!d.running) throw new WaitAbort(`${subject.name} exited early (${JSON.stringify(d.status)}): ${d.output().slice(-1000)}`);
    last = subject.convergence(topo);
    return last === '';
  }, timeoutMs, { what: `${subject.name} to converge`, intervalMs: 20 }).catch((e: Error) => {
    throw new Error(`${e.message}\nnot converged: ${last}`);
  });
}

/** Stop `d` the way it cleans up; SIGKILL if that hangs. Returns the exit status, or null on a hang. */
async function stopSubject(subject: Subject, d: Running, timeoutMs = 10000): Promise<{ code: number | null; signal: NodeJS.Signals | null } | null> {
  if (!d.running) return d.status ?? null;
  d.signal(subject.stopSignal);
  return d.waitExit(timeoutMs).catch(() => { d.killNow(); return null; });
}

async function withTopology<T>(tag: string, fn: (topo: Topology) => Promise<T>): Promise<T> {
  const topo = Topology.create({ tag });
  try {
    return await fn(topo);
  } finally {
    topo.destroy();
  }
}

async function main(): Promise<number> {
  const skip = netnsSkipReason();
  if (skip) {
    console.error(`bench: ${skip}. Try: sudo npm run bench`);
    return 2;
  }
  if (UPSTREAM !== undefined) {
    try {
      accessSync(UPSTREAM, constants.X_OK);
    } catch {
      console.error(`bench: BENCH_UPSTREAM=${UPSTREAM} is not an executable file`);
      return 2;
    }
  }
  const results: Record<string, unknown> = {
    date: new Date().toISOString(), node: process.version, kernel: release(), cpu: cpus()[0]?.model, cpus: cpus().length,
    commit: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim(),
    targets: { latencyP50Ms: 1, latencyP99Ms: 5, startupRatio: 2, burstRatio: 2, sigtermMs: 1000, idleRssMb: 60, idleAboveFloorMb: 8, idleWakeups: 0, managerSignalToPolicyMs: 20 },
  };
  const args = ['--loglevel', '2', ...(process.env.BENCH_DAEMON_ARGS ?? '').split(' ').filter((a) => a !== '')];
  const ours = dynmhsSubject(args, DAEMON_ENV.nodeArgs);
  const subjects: Subject[] = [ours, ...(UPSTREAM ? [upstreamSubject(UPSTREAM)] : [])];
  /** Round r's order, ABBA…: neither always goes first into a machine in the same state. */
  const inTurn = (r: number): Subject[] => (r % 2 === 0 ? subjects : [...subjects].reverse());
  // dynmhs's results at the top level, as without upstream; upstream's under `upstream`.
  const upstreamResults: Record<string, unknown> = {};
  if (UPSTREAM) results.upstream = Object.assign(upstreamResults, { binary: UPSTREAM, version: upstreamVersion(UPSTREAM), rounds: ROUNDS });
  const sink = (s: Subject): Record<string, unknown> => (s.name === 'dynmhs' ? results : upstreamResults);

  // (6) kernel reference, 3 repetitions, medians
  console.error('(6) kernel reference: ip -batch 10,000 adds / deletes …');
  const kernel = await withTopology('k', async (topo) => {
    const adds: number[] = []; const dels: number[] = []; const mainAdds: number[] = [];
    for (let i = 0; i < 3; i++) {
      adds.push(timeBatch(topo, routeLines(N, { table: 2000 })));
      dels.push(timeBatch(topo, routeLines(N, { table: 2000, verb: 'del' })));
      mainAdds.push(timeBatch(topo, routeLines(N)));
      timeBatch(topo, routeLines(N, { verb: 'del' }));
    }
    return { add10kTableMs: median(adds), del10kTableMs: median(dels), add10kMainMs: median(mainAdds), runs: { adds, dels, mainAdds } };
  });
  results.kernel = kernel;

  // (5) idle: each subject in a topology of its own, all in the same window, beside the
  // floor (Node with the daemon's options and nothing to do) and dynmhs as a system's unit
  // runs it, with its D-Bus service (here on a private bus; the other runs use --no-dbus).
  console.error(`(5) idle ${IDLE_S} s …`);
  if (ONLY.has('idle')) {
    const topos: Topology[] = [];
    const ds: Running[] = [];
    const names: string[] = [];
    let floor: ChildProcess | undefined;
    let bus: PrivateBus | undefined;
    const busDir = mkdtempSync(join(tmpdir(), `dynmhs-bench-bus-${process.pid}-`));
    try {
      for (const s of subjects) {
        const topo = Topology.create({ tag: `i${s.name[0]}` });
        topos.push(topo);
        ds.push(s.start(topo.host));
        names.push(s.name);
      }
      try {
        bus = await startSystemBus(busDir, [join(REPO, 'dbus', 'no.nntb.DynMHS.conf')]);
      } catch (e) {
        results.idleWithDbus = { skipped: (e as Error).message.split('\n')[0] };
      }
      if (bus !== undefined) {
        const topo = Topology.create({ tag: 'ib' });
        topos.push(topo);
        ds.push(DaemonProcess.start(topo.host, [...networkArgs(README_NETS), ...args],
          { ...DAEMON_ENV, noDbus: false, env: { DBUS_SYSTEM_BUS_ADDRESS: bus.address } }));
        names.push('dynmhs with D-Bus');
      }
      floor = spawn(process.execPath, [...daemonNodeOptions(), '-e', 'setInterval(() => undefined, 1 << 30)'],
        { stdio: 'ignore', env: daemonEnvironment() });
      await Promise.all(ds.map((d, i) => waitReady(topos[i]!, subjects[i] ?? ours, d)));
      const s0 = ds.map((d) => procTotals(d.pid));
      await sleep(SETTLE_S * 1000);
      const a = ds.map((d) => procTotals(d.pid));
      await sleep(IDLE_S * 1000);
      const b = ds.map((d) => procTotals(d.pid));
      const f = procTotals(floor.pid!);
      const hz = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
      const mb = (kb: number): number | null => r1(kb / 1024);
      results.idleFloor = {
        command: `node ${daemonNodeOptions().join(' ')} -e 'setInterval(() => undefined, 1 << 30)'`,
        rssMb: mb(f.rssKb), rssAnonMb: mb(f.rssAnonKb), rssFileMb: mb(f.rssFileKb),
      };
      ds.forEach((d, i) => {
        const [s0i, ai, bi] = [s0[i]!, a[i]!, b[i]!];
        const idle = {
          seconds: IDLE_S, rssMb: mb(bi.rssKb), rssAnonMb: mb(bi.rssAnonKb), rssFileMb: mb(bi.rssFileKb), peakRssMb: mb(bi.hwmKb),
          threads: bi.threads,
          cpuMs: r1(((bi.cpuTicks - ai.cpuTicks) * 1000) / hz),
          cpuPercent: r1(((bi.cpuTicks - ai.cpuTicks) / hz / IDLE_S) * 100),
          ctxSwitchesMainThread: bi.ctxMain - ai.ctxMain, ctxSwitchesAllThreads: bi.ctxAll - ai.ctxAll,
          settleSeconds: SETTLE_S,
          settleCtxSwitchesMainThread: ai.ctxMain - s0i.ctxMain, settleCtxSwitchesAllThreads: ai.ctxAll - s0i.ctxAll,
          aliveAfter: d.running,
          ...(names[i] === 'upstream' ? {} : { aboveFloorMb: mb(bi.rssKb - f.rssKb) }),
        };
        if (i < subjects.length) sink(subjects[i]!).idle = idle;
        else results.idleWithDbus = idle;
      });
    } finally {
      for (const d of ds) d.killNow();
      if (floor?.pid !== undefined && floor.exitCode === null) floor.kill('SIGKILL');
      for (const t of topos) t.destroy();
      await bus?.stop();
      rmSync(busDir, { recursive: true, force: true });
    }
  }

  // (1) latency: ROUNDS rounds, each a fresh daemon in fresh namespaces, subjects alternating
  console.error(`(1) latency ${RUNS} runs per family in ${ROUNDS} round(s)${LATENCY_ROUTES > 0 ? ` with ${LATENCY_ROUTES} routes in main` : ''} …`);
  if (ONLY.has('latency')) {
    const perRound = Math.ceil(RUNS / ROUNDS);
    const merged = new Map(subjects.map((s) => [s.name, {
      4: { addrEventToRule: [], sendToRule: [], delAddrEventToRuleGone: [], delSendToRuleGone: [] } as LatencySamples,
      6: { addrEventToRule: [], sendToRule: [], delAddrEventToRuleGone: [], delSendToRuleGone: [] } as LatencySamples,
      roundP50: { 4: [] as number[], 6: [] as number[] }, failures: 0, errors: [] as string[], alive: true,
    }]));
    for (let r = 0; r < ROUNDS; r++) for (const s of inTurn(r)) await withTopology('l', async (topo) => {
      const m = merged.get(s.name)!;
      if (LATENCY_ROUTES > 0) topo.batch(topo.host, routeLines(LATENCY_ROUTES));
      const d = s.start(topo.host);
      try {
        await waitReady(topo, s, d, LATENCY_ROUTES > 0 ? 120000 : undefined);
        for (const fam of [4, 6] as const) {
          const res = probeLatency(topo, fam, perRound);
          if (res.error !== undefined || res.samples === undefined) { m.errors.push(`round ${r} v${fam}: ${res.error}`); continue; }
          m.failures += res.failures ?? 0;
          for (const k of LATENCY_KINDS) m[fam][k].push(...res.samples[k]);
          const p50 = stats(res.samples.addrEventToRule)?.p50;
          if (p50 !== undefined) m.roundP50[fam].push(r1(p50)!);
        }
        m.alive &&= d.running;
      } finally {
        d.killNow();
      }
    });
    for (const s of subjects) {
      const m = merged.get(s.name)!;
      for (const fam of [4, 6] as const) {
        sink(s)[`latencyV${fam}`] = {
          addrEventToRule: stats(m[fam].addrEventToRule), sendToRule: stats(m[fam].sendToRule),
          delAddrEventToRuleGone: stats(m[fam].delAddrEventToRuleGone), delSendToRuleGone: stats(m[fam].delSendToRuleGone),
          rounds: ROUNDS, addP50PerRound: m.roundP50[fam], failures: m.failures, mainRoutes: LATENCY_ROUTES,
          ...(m.errors.length > 0 ? { errors: m.errors } : {}),
        };
      }
      sink(s).latencyDaemonAlive = m.alive;
    }
  }

  // (2) start-up with 50 addresses + 10,000 routes, then (4) SIGTERM with 10,000 mirrored
  console.error('(2) start-up with 50 addresses and 10,000 routes, (4) SIGTERM …');
  type StartupRun = Record<string, unknown> & { startupMs: number | null; converged: boolean };
  type SigtermRun = Record<string, unknown> & { exitMs: number; exitCode: number | null; leftovers: number };
  const startups = new Map<string, StartupRun[]>(subjects.map((s) => [s.name, []]));
  const sigterms = new Map<string, SigtermRun[]>(subjects.map((s) => [s.name, []]));
  if (ONLY.has('startup')) for (let run = 0; run < REPEAT; run++) for (const s of inTurn(run)) await withTopology('s', async (topo) => {
    const addrLines: string[] = [];
    for (let i = 0; i < 24; i++) {
      const w = i % 2 === 0 ? WAN1 : WAN2;
      addrLines.push(`addr add 10.10${w === WAN1 ? 1 : 2}.0.${100 + i}/24 dev ${w.ifName}`);
      addrLines.push(`addr add fd00:10${w === WAN1 ? 1 : 2}::${(0x100 + i).toString(16)}/64 dev ${w.ifName} noprefixroute`);
    }
    topo.batch(topo.host, addrLines); // + the 4 README addresses = 52
    topo.batch(topo.host, routeLines(N));
    const want = expectedCounts(topo);
    const counter = await startCounter(topo, want, 120000, s.copyProtocol);
    const t0 = now();
    const d = s.start(topo.host);
    try {
      const c = await counter.result;
      const startupMs = c.tMs === null ? null : c.tMs - t0;
      const conv = s.convergence(topo);
      startups.get(s.name)!.push({
        addresses: want.rules, mainRoutesMirrored: want.routes, startupMs: r1(startupMs),
        firstWriteMs: c.firstMs === null ? null : r1(c.firstMs - t0), converged: conv === '',
        problems: conv.slice(0, 500), counted: c, daemonAlive: d.running,
        ratioVsKernelAdd: startupMs === null ? null : r1(startupMs / kernel.add10kTableMs),
      });
      // (4) the signal it cleans up on (SIGTERM; upstream: SIGINT)
      const ts = now();
      const st = await stopSubject(s, d);
      const exitMs = now() - ts;
      const left = s.leftovers(topo);
      sigterms.get(s.name)!.push({
        signal: s.stopSignal, mirroredRoutes: want.routes, exitMs: r1(exitMs)!, exitCode: st?.code ?? null, exitSignal: st?.signal ?? null,
        leftovers: left.length, ratioVsKernelDel: r1(exitMs / kernel.del10kTableMs),
      });
    } finally {
      d.killNow();
    }
  });
  for (const s of subjects) {
    const runs = startups.get(s.name)!;
    if (runs.length === 0) continue;
    sink(s).startup = medianRun(runs, (r) => r.startupMs, (r) => r.converged);
    sink(s).sigterm = medianRun(sigterms.get(s.name)!, (r) => r.exitMs, (r) => r.exitCode === 0 && r.leftovers === 0);
  }

  // (3) burst of 10,000 adds while running
  console.error('(3) burst of 10,000 route adds while running …');
  const bursts: Array<Record<string, unknown> & { convergeMs: number | null; lost: number; daemonAlive: boolean }> = [];
  if (ONLY.has('burst')) for (let run = 0; run < REPEAT; run++) await withTopology('b', async (topo) => {
    const d = DaemonProcess.start(topo.host, [...networkArgs(README_NETS), ...args], DAEMON_ENV);
    try {
      await waitConverged(topo, d);
      const lines = routeLines(N);
      const base = expectedCounts(topo);
      const want = { routes: base.routes + N, rules: base.rules };
      const counter = await startCounter(topo, want, 120000);
      const t0 = now();
      topo.batch(topo.host, lines);
      const batchMs = now() - t0;
      const c = await counter.result.catch((e: Error) => ({ tMs: null, firstMs: null, routes: -1, rules: -1, overflow: true, error: e.message }));
      const convergeMs = c.tMs === null ? null : c.tMs - t0;
      const mirrored = topo.ourRoutes(4, 2000).length + topo.ourRoutes(4, 3000).length +
        topo.ourRoutes(6, 2000).length + topo.ourRoutes(6, 3000).length;
      const burst: (typeof bursts)[number] = {
        adds: N, batchMs: r1(batchMs), convergeMs: r1(convergeMs), lost: want.routes - mirrored,
        daemonAlive: d.running, daemonExit: d.status ?? null, counted: c,
        ratioVsKernelAdd: convergeMs === null ? null : r1(convergeMs / kernel.add10kMainMs),
        ratioVsThisBatch: convergeMs === null ? null : r1(convergeMs / batchMs),
      };
      if (!d.running) burst.daemonOutputTail = d.output().slice(-600);
      bursts.push(burst);
    } finally {
      await stopDaemon(d);
    }
  });
  if (bursts.length > 0) results.burst = medianRun(bursts, (r) => r.convergeMs, (r) => r.lost === 0 && r.daemonAlive);

  // (7) the network managers
  if (ONLY.has('managers')) {
    console.error(`(7) NetworkManager and systemd-networkd → policy in the kernel …`);
    results.managers = await benchManagers();
  }

  // (8) scale: the curve over 10k, 100k and 1M main-table routes, subjects interleaved
  if (ONLY.has('scale')) {
    results.scaleKernel = await benchScale({ subjects, inTurn, sink, withTopology, expectedCounts, startCounter, procTotals });
  }

  // (9) IPv6 replaces beside a large IPv6 table
  if (ONLY.has('replace')) {
    console.error('(9) IPv6 replaces beside a large IPv6 table …');
    await benchReplace({ subjects, sink, withTopology, stopSubject });
  }

  printReport(results, IDLE_S);
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `${(results.date as string).replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(RESULTS, 'latest.json'), JSON.stringify(results, null, 2) + '\n');
  console.log(`\nresults: ${file}`);
  return 0;
}

let exiting = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    if (exiting) return;
    exiting = true;
    console.error(`bench: ${sig}, cleaning up`);
    process.exit(130); // the harness's exit hooks kill daemons and delete our namespaces
  });
}

main().then((code) => { process.exitCode = code; }, (e) => {
  console.error(e);
  process.exitCode = 1;
});
