// (8) Scale: the curve of start-up time, memory, a burst and clean-up against the number
// of routes in main, for dynmhs and (given BENCH_UPSTREAM) the C++ DynMHS, interleaved.
//
// For each size N of BENCH_SCALE (default 10000,100000,1000000), in fresh namespaces:
//   - N IPv4 /32 routes in main via one interface (wan1), written with `ip -batch`;
//   - the daemon starts: time until all N copies (and the README networks' rules) are in
//     its tables, counted by the probe (bench/probe.ts), RSS after a short settle and
//     peak RSS (VmHWM);
//   - a burst of BENCH_SCALE_BURST (default 100,000) more route adds with `ip -batch`
//     while it runs: time until every copy is there, and how many are missing (lost);
//   - its stop signal: time to exit, and what is left of its rules and table routes.
//     A daemon that has not exited after the stop timeout is SIGKILLed, and the result
//     says so and whether it had cleaned up by then.
// The kernel's own `ip -batch` time for the same work (N adds into a table, the burst's
// adds on top, then deleting them all) is measured once per size in namespaces of its
// own: start-up, burst and stop are given as multiples of it. Bytes per mirrored route come from the curve:
// (RSS at 100,000 − RSS at 10,000) / 90,000, when both sizes are in it.

import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { sleep } from '../test/helpers/wait';
import type { Topology } from '../test/helpers/netns';
import type { Running, Subject } from './subjects';

export const SCALE_SIZES = (process.env.BENCH_SCALE ?? '10000,100000,1000000').split(',')
  .map((x) => Number(x.trim())).filter((n) => Number.isInteger(n) && n > 0);
const BURST = Number(process.env.BENCH_SCALE_BURST ?? 100000);
/**
 * Wait after convergence before RSS is read: what a daemon that then idles keeps. dynmhs
 * collects 2 s after a large change (src/reclaim.ts), and V8's memory reducer gives back
 * the young generation within about 30 s after that.
 */
const SETTLE_S = Number(process.env.BENCH_SCALE_SETTLE_S ?? 35);
/** The first of the tables the probe counts (README_NETS: wan1 → 2000, wan2 → 3000). */
const TABLES = [2000, 3000];
/** Copies and rules of the README networks without the scale routes (device and default routes, 4 addresses). */
type Counts = { routes: number; rules: number };
type CountResult = { tMs: number | null; firstMs: number | null; routes: number; rules: number; overflow: boolean };

/** What bench/run.ts lends this section. */
export interface ScaleTools {
  readonly subjects: readonly Subject[];
  /** Subjects in the order of round r (ABBA…). */
  inTurn(r: number): Subject[];
  /** Where a subject's results go (dynmhs: the top level; upstream: `upstream`). */
  sink(s: Subject): Record<string, unknown>;
  withTopology<T>(tag: string, fn: (topo: Topology) => Promise<T>): Promise<T>;
  expectedCounts(topo: Topology): Counts;
  startCounter(topo: Topology, want: Counts, timeoutMs: number, protocol: number | null, options?: Record<string, unknown>):
    Promise<{ result: Promise<CountResult> }>;
  procTotals(pid: number): { rssKb: number; hwmKb: number };
}

const now = (): number => performance.timeOrigin + performance.now();
const r1 = (x: number | null | undefined): number | null => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);
const mb = (kb: number): number => Math.round(kb / 1024 * 10) / 10;

/** `count` IPv4 /32 routes via wan1, numbered from `from` (10.64.0.0 on, clear of the topology's networks). */
export function scaleRouteLines(from: number, count: number, table?: number, verb: 'add' | 'del' = 'add'): string[] {
  const lines = new Array<string>(count);
  const suffix = `${verb === 'add' ? ' via 10.101.0.1 dev wan1' : ''}${table === undefined ? '' : ` table ${table}`}`;
  for (let k = 0; k < count; k++) {
    const i = from + k;
    lines[k] = `route ${verb} 10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32${suffix}`;
  }
  return lines;
}

function timeBatch(topo: Topology, lines: readonly string[]): number {
  const t0 = now();
  topo.batch(topo.host, lines);
  return now() - t0;
}

/** Lines `ip ARGS` prints in the bench's host namespace that match `re` (a count, without parsing a million routes as JSON). */
function countLines(topo: Topology, args: string[], re: RegExp = /\S/): number {
  const r = spawnSync('ip', ['-n', topo.host, ...args], { encoding: 'utf8', maxBuffer: 1024 * 1024 * 1024 });
  if (r.status !== 0) {
    if (/table does not exist/i.test(r.stderr)) return 0;
    throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  }
  return r.stdout.split('\n').filter((l) => re.test(l)).length;
}

/**
 * What is left of a subject after its stop: dynmhs's are everything of protocol 249,
 * upstream's (which tags nothing) its tables' routes and the rules that look them up.
 */
function leftoverCount(topo: Topology, subject: Subject): number {
  let n = 0;
  for (const fam of ['-4', '-6']) {
    if (subject.copyProtocol !== null) {
      const tagged = new RegExp(`\\bproto (${subject.copyProtocol}|dynmhs)\\b`);
      n += countLines(topo, [fam, 'route', 'show', 'table', 'all', 'proto', String(subject.copyProtocol)]);
      n += countLines(topo, [fam, 'rule', 'show'], tagged);
    } else {
      for (const t of TABLES) {
        n += countLines(topo, [fam, 'route', 'show', 'table', String(t)]);
        n += countLines(topo, [fam, 'rule', 'show'], new RegExp(`lookup ${t}\\b`));
      }
    }
  }
  return n;
}

export type KernelScale = { n: number; addMs: number; burstAddMs: number; deleteMs: number };

/**
 * The kernel's own time for the same work: N adds into a table, the burst's adds on top,
 * then deleting them all (what a clean stop does).
 */
async function kernelReference(tools: ScaleTools, n: number): Promise<KernelScale> {
  return tools.withTopology('zk', async (topo) => {
    const addMs = timeBatch(topo, scaleRouteLines(0, n, 2000));
    const burstAddMs = timeBatch(topo, scaleRouteLines(n, BURST, 2000));
    const deleteMs = timeBatch(topo, scaleRouteLines(0, n + BURST, 2000, 'del'));
    return { n, addMs: r1(addMs)!, burstAddMs: r1(burstAddMs)!, deleteMs: r1(deleteMs)! };
  });
}

/** Resolves with the count, or rejects as soon as the daemon dies (rather than at the probe's timeout). */
async function countOrDeath(count: Promise<CountResult>, d: Running, what: string): Promise<CountResult> {
  let watching = true;
  const death = (async (): Promise<never> => {
    while (watching && d.running) await sleep(200);
    throw new Error(`daemon exited during ${what} (${JSON.stringify(d.status)}): ${d.output().slice(-800)}`);
  })();
  death.catch(() => undefined);
  try {
    return await Promise.race([count, death]);
  } finally {
    watching = false;
  }
}

type ScaleRun = Record<string, unknown> & {
  n: number; startupMs: number | null; rssMb: number | null; peakRssMb: number | null;
  burstMs: number | null; burstLost: number | null; stopMs: number | null; exitCode: number | null; leftovers: number | null;
};

async function runOne(tools: ScaleTools, s: Subject, n: number, kernel: KernelScale): Promise<ScaleRun> {
  return tools.withTopology('z', async (topo) => {
    const base = tools.expectedCounts(topo);
    const mainAddMs = timeBatch(topo, scaleRouteLines(0, n));
    const want = { routes: base.routes + n, rules: base.rules };
    // Ten times the target (2× the kernel) before giving up: a slow subject still gets a
    // figure, one that lost events (upstream stops reading at ENOBUFS) is not waited for long.
    const timeout = (kernelMs: number, atLeastMs: number): number =>
      Number(process.env.BENCH_SCALE_TIMEOUT_S ?? 0) * 1000 || Math.max(atLeastMs, 20 * kernelMs);
    const probe = { receiveBufferMb: 64 };
    const run: ScaleRun = {
      n, mainAddMs: r1(mainAddMs), mirroredWanted: want.routes, startupMs: null, rssMb: null, peakRssMb: null,
      burstMs: null, burstLost: null, stopMs: null, exitCode: null, leftovers: null,
    };
    const counter = await tools.startCounter(topo, want, timeout(kernel.addMs, 60000), s.copyProtocol, probe);
    const t0 = now();
    const d = s.start(topo.host);
    try {
      const c = await countOrDeath(counter.result, d, 'start-up');
      const startupMs = c.tMs === null ? null : c.tMs - t0;
      Object.assign(run, {
        startupMs: r1(startupMs), converged: c.tMs !== null, counted: c, exact: c.routes === want.routes,
        ratioVsKernelAdd: startupMs === null ? null : r1(startupMs / kernel.addMs),
        // The same work in this run's namespace moments before: steadier on a shared machine.
        ratioVsMainAdd: startupMs === null ? null : r1(startupMs / mainAddMs),
      });
      if (c.tMs === null) return run;
      await sleep(SETTLE_S * 1000);
      const p = tools.procTotals(d.pid);
      Object.assign(run, { rssMb: mb(p.rssKb), peakRssMb: mb(p.hwmKb) });

      const wantAfter = { routes: want.routes + BURST, rules: want.rules };
      const burstCounter = await tools.startCounter(topo, wantAfter, timeout(kernel.burstAddMs, 30000), s.copyProtocol, probe);
      const tb = now();
      const batchMs = timeBatch(topo, scaleRouteLines(n, BURST));
      const b = await countOrDeath(burstCounter.result, d, 'the burst').catch((e: Error) =>
        ({ tMs: null, firstMs: null, routes: -1, rules: -1, overflow: false, error: e.message }));
      const burstMs = b.tMs === null ? null : b.tMs - tb;
      const afterBurst = d.running ? tools.procTotals(d.pid) : undefined;
      Object.assign(run, {
        burstAdds: BURST, burstBatchMs: r1(batchMs), burstMs: r1(burstMs), burstCounted: b,
        burstLost: b.routes < 0 ? null : wantAfter.routes - b.routes,
        burstRatioVsKernelAdd: burstMs === null ? null : r1(burstMs / kernel.burstAddMs),
        burstRatioVsThisBatch: burstMs === null ? null : r1(burstMs / batchMs),
        rssAfterBurstMb: afterBurst && mb(afterBurst.rssKb), peakRssAfterBurstMb: afterBurst && mb(afterBurst.hwmKb),
      });

      // The signal it cleans up on; a daemon still running after ten times the kernel's
      // own deletes (upstream may spin once clean) is killed, and the result says so.
      const stopTimeoutMs = Number(process.env.BENCH_SCALE_STOP_S ?? 0) * 1000 || Math.max(20000, 10 * kernel.deleteMs);
      const ts = now();
      d.signal(s.stopSignal);
      const st = await d.waitExit(stopTimeoutMs).catch(() => null);
      const stopMs = now() - ts;
      const cleanedBeforeKill = st === null ? leftoverCount(topo, s) === 0 : undefined;
      if (st === null) d.killNow();
      Object.assign(run, {
        stopSignal: s.stopSignal, stopMs: st === null ? null : r1(stopMs), exitCode: st?.code ?? null, exitSignal: st?.signal ?? null,
        stopRatioVsKernelDelete: st === null ? null : r1(stopMs / kernel.deleteMs),
        ...(st === null ? { killedAfterMs: stopTimeoutMs, cleanedBeforeKill } : {}),
        leftovers: leftoverCount(topo, s),
      });
      return run;
    } catch (e) {
      run.error = (e as Error).message.slice(0, 1000);
      return run;
    } finally {
      d.killNow();
    }
  });
}

/** Runs the scale section; results go to each subject's sink as `scale`, the kernel's to `scaleKernel`. */
export async function benchScale(tools: ScaleTools): Promise<KernelScale[]> {
  const kernel: KernelScale[] = [];
  const runs = new Map<string, ScaleRun[]>(tools.subjects.map((s) => [s.name, []]));
  for (const [i, n] of SCALE_SIZES.entries()) {
    console.error(`(8) scale: ${n} routes in main, burst of ${BURST} …`);
    const k = await kernelReference(tools, n);
    kernel.push(k);
    for (const s of tools.inTurn(i)) {
      const run = await runOne(tools, s, n, k);
      console.error(`    ${s.name}: start-up ${run.startupMs} ms, RSS ${run.rssMb} MB (peak ${run.peakRssMb}), ` +
        `burst ${run.burstMs} ms lost ${run.burstLost}, stop ${run.stopMs} ms exit ${run.exitCode} leftovers ${run.leftovers}` +
        `${run.error ? `, error: ${String(run.error).slice(0, 200)}` : ''}`);
      runs.get(s.name)!.push(run);
    }
  }
  for (const s of tools.subjects) {
    const curve = runs.get(s.name)!;
    const at = (n: number): ScaleRun | undefined => curve.find((r) => r.n === n);
    const [small, large] = [at(10000), at(100000)];
    const bytesPerRoute = small?.rssMb != null && large?.rssMb != null
      ? Math.round(((large.rssMb - small.rssMb) * 1024 * 1024) / 90000) : null;
    tools.sink(s).scale = { burst: BURST, settleSeconds: SETTLE_S, curve, bytesPerRoute10kTo100k: bytesPerRoute };
  }
  return kernel;
}
