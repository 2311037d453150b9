// The table `npm run bench` prints, from the results it writes: one column per daemon
// (dynmhs, and upstream DynMHS given BENCH_UPSTREAM) and their ratio.
import type { benchManagers } from './managers';
import type { ReplaceRun } from './replace';

type LatencyKind = 'addrEventToRule' | 'sendToRule' | 'delAddrEventToRuleGone' | 'delSendToRuleGone';
const r1 = (x: number | null | undefined): number | null => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);

/** dynmhs's results are `results` itself, upstream's `results.upstream`. */
export function printReport(results: Record<string, unknown>, idleSeconds: number): void {
  const upstream = results.upstream as (Record<string, unknown> & { version: string }) | undefined;
  const sinks = upstream === undefined ? [results] : [results, upstream];
  const kernel = results.kernel as { add10kTableMs: number; del10kTableMs: number; add10kMainMs: number };
  type Lat = Partial<Record<LatencyKind, { p50: number; p99: number } | null>> | undefined;
  type Idle = { rssMb: number; cpuPercent: number; ctxSwitchesMainThread: number; ctxSwitchesAllThreads: number } | undefined;
  type Startup = { startupMs: number | null; ratioVsKernelAdd: number | null; converged: boolean; runsMs: (number | null)[]; allRunsOk: boolean } | undefined;
  type Sigterm = { exitMs: number; exitCode: number | null; leftovers: number; runsMs: (number | null)[]; allRunsOk: boolean } | undefined;
  const bu = results.burst as { convergeMs: number | null; ratioVsKernelAdd: number | null; lost: number; daemonAlive: boolean; runsMs: (number | null)[]; allRunsOk: boolean } | undefined;
  const spread = (xs: (number | null)[]): string => {
    const done = xs.filter((x): x is number => x !== null);
    return done.length === 0 ? '' : `, runs ${Math.round(Math.min(...done))}–${Math.round(Math.max(...done))}${done.length < xs.length ? `, ${xs.length - done.length} failed` : ''}`;
  };
  /** A row: the cell and the figure a ratio is taken of, per subject. */
  type Cell = { text: string; value: number | null | undefined };
  const rows: { label: string; cells: Cell[]; target: string }[] = [];
  const row = (label: string, target: string, cell: (r: Record<string, unknown>) => Cell | undefined): void => {
    const cells = sinks.map((r) => cell(r));
    if (cells.some((c) => c !== undefined)) rows.push({ label, target, cells: cells.map((c) => c ?? { text: '-', value: null }) });
  };
  const latency = (fam: 4 | 6, which: LatencyKind) => (r: Record<string, unknown>): Cell | undefined => {
    const l = r[`latencyV${fam}`] as Lat;
    const x = l?.[which];
    return l === undefined ? undefined : { text: `${r1(x?.p50)} / ${r1(x?.p99)} ms`, value: x?.p50 };
  };
  row('(1) v4 address → rule p50 / p99', '< 1 / < 5 ms', latency(4, 'addrEventToRule'));
  row('(1) v6 address → rule p50 / p99', '< 1 / < 5 ms', latency(6, 'addrEventToRule'));
  row('(1) v4 address gone → rule gone p50 / p99', '', latency(4, 'delAddrEventToRuleGone'));
  row('(1) v6 address gone → rule gone p50 / p99', '', latency(6, 'delAddrEventToRuleGone'));
  // From the probe's own request: the same start for both daemons (see bench/probe.ts).
  row('(1) v4 address add request → rule p50 / p99', '', latency(4, 'sendToRule'));
  row('(1) v6 address add request → rule p50 / p99', '', latency(6, 'sendToRule'));
  row('(1) v4 address delete request → rule gone p50 / p99', '', latency(4, 'delSendToRuleGone'));
  row('(1) v6 address delete request → rule gone p50 / p99', '', latency(6, 'delSendToRuleGone'));
  row('(2) start-up 52 addr + 10k routes → converged', '≤ 2× kernel', (r) => {
    const st = r.startup as Startup;
    return st && { value: st.startupMs, text: `${st.startupMs === null ? 'NOT converged' : Math.round(st.startupMs) + ' ms'} (${st.ratioVsKernelAdd ?? '-'}× kernel${spread(st.runsMs)})${st.allRunsOk ? '' : ', A RUN DID NOT CONVERGE'}` };
  });
  if (bu) row('(3) burst 10k adds → all mirrored', '≤ 2× kernel, 0 lost', (r) => (r !== results ? undefined : {
    value: bu.convergeMs,
    text: `${bu.convergeMs === null ? 'NOT converged' : Math.round(bu.convergeMs) + ' ms'} (${bu.ratioVsKernelAdd ?? '-'}× kernel${spread(bu.runsMs)}), lost ${bu.lost}${bu.allRunsOk ? '' : ', A RUN LOST ROUTES OR ITS DAEMON DIED'}`,
  }));
  row(`(4) SIGTERM${upstream ? ' (upstream: SIGINT)' : ''} with 10k mirrored → exited`, '< 1000 ms, clean', (r) => {
    const sg = r.sigterm as Sigterm;
    if (sg === undefined) return undefined;
    const exit = sg.exitCode === null ? 'no exit, SIGKILLed' : `exit ${sg.exitCode}`;
    return { value: sg.exitCode === null ? null : sg.exitMs, text: `${Math.round(sg.exitMs)} ms${spread(sg.runsMs)}, ${exit}, leftovers ${sg.leftovers}${sg.allRunsOk ? '' : ', A RUN EXITED UNCLEAN'}` };
  });
  row(`(5) idle RSS / CPU / ctx switches (${idleSeconds} s)`, '< 60 MB, no wake-ups', (r) => {
    const idle = r.idle as Idle;
    return idle && { value: idle.rssMb, text: `${idle.rssMb} MB / ${idle.cpuPercent} % / main ${idle.ctxSwitchesMainThread}, all ${idle.ctxSwitchesAllThreads}` };
  });
  const only = (text: string): (r: Record<string, unknown>) => Cell | undefined => (r) => (r === results ? { text, value: null } : undefined);
  // The floor: Node with the daemon's options and nothing to do, measured in the same window.
  type Floor = { rssMb: number; rssAnonMb: number; rssFileMb: number } | undefined;
  type AboveFloor = { rssMb: number; rssAnonMb: number; rssFileMb: number; aboveFloorMb: number } | { skipped: string } | undefined;
  const floor = results.idleFloor as Floor;
  if (floor !== undefined) {
    const split = (x: { rssAnonMb: number; rssFileMb: number }): string => `anon ${x.rssAnonMb}, file ${x.rssFileMb}`;
    const aboveFloor = (x: AboveFloor): string => (x === undefined ? '-' : 'skipped' in x ? `skipped: ${x.skipped}`
      : `${x.aboveFloorMb} MB (${x.rssMb} MB: ${split(x)})`);
    row(`(5) idle RSS − Node floor (floor ${floor.rssMb} MB: ${split(floor)})`, '≤ 8 MB', only(aboveFloor(results.idle as AboveFloor)));
    row('(5) the same with the D-Bus service', '≤ 8 MB', only(aboveFloor(results.idleWithDbus as AboveFloor)));
  }
  const managers = results.managers as Awaited<ReturnType<typeof benchManagers>> | undefined;
  if (managers !== undefined && 'skipped' in managers) row('(7) managers → policy in the kernel', '< 20 ms', only(`skipped: ${managers.skipped}`));
  else if (managers !== undefined) {
    const [nm, nd] = managers.rows;
    row('(7) NM ACTIVATED → rule + route p50 / p99', '< 20 ms', only(`${nm.p50_ms} / ${nm.p99_ms} ms (n=${nm.runs})`));
    row('(7) networkd link up → rule + route p50 / p99', '< 20 ms', only(`${nd.p50_ms} / ${nd.p99_ms} ms (n=${nd.runs})`));
  }
  scaleRows(results, row, only);
  const replace = results.replace6 as ReplaceRun | undefined;
  if (replace !== undefined) {
    row(`(9) ${replace.routes / 1000}k IPv6 routes: ${replace.replaced / 1000}k replaced → copies follow`, '', (r) => {
      const x = r.replace6 as ReplaceRun | undefined;
      return x && { value: x.convergeMs, text: `${x.convergeMs === null ? 'NOT converged' : `${Math.round(x.convergeMs)} ms`} (the batch ${Math.round(x.batchMs)} ms), ${x.stale} stale` };
    });
  }
  row('(6) kernel ip -batch 10k adds / 10k deletes', 'reference', only(`${Math.round(kernel.add10kTableMs)} / ${Math.round(kernel.del10kTableMs)} ms (main adds ${Math.round(kernel.add10kMainMs)} ms)`));
  // With upstream: its column, and dynmhs ÷ upstream of the first figure (p50, ms, MB).
  const table = rows.map((r) => {
    const [o, u] = r.cells;
    if (u === undefined) return [r.label, o!.text, r.target];
    const ratio = typeof o!.value === 'number' && typeof u.value === 'number' && u.value > 0 ? `${(o!.value / u.value).toFixed(2)}×` : '';
    return [r.label, o!.text, u.text, ratio, r.target];
  });
  const header = upstream ? ['benchmark', 'dynmhs', `upstream ${String(upstream.version).replace(/^.*Version /, '')}`, 'ratio', 'target'] : ['benchmark', 'result', 'target'];
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  console.log(line(header));
  for (const r of table) console.log(line(r));
}

type ScaleCell = { text: string; value: number | null | undefined };
type Row = (label: string, target: string, cell: (r: Record<string, unknown>) => ScaleCell | undefined) => void;

/** (8): one group of rows per size, bytes per route, and the kernel's time for the same work (bench/scale.ts). */
function scaleRows(results: Record<string, unknown>, row: Row, only: (text: string) => (r: Record<string, unknown>) => ScaleCell | undefined): void {
  const kernel = results.scaleKernel as KernelScale[] | undefined;
  if (kernel === undefined) return;
  type Run = KernelScaleRun;
  const runOf = (r: Record<string, unknown>, n: number): Run | undefined =>
    (r.scale as { curve: Run[] } | undefined)?.curve.find((c) => c.n === n);
  const k = (n: number): string => (n >= 1000000 ? `${n / 1000000}M` : n >= 1000 ? `${n / 1000}k` : String(n));
  const ms = (x: number | null): string => (x === null ? 'NOT converged' : `${Math.round(x)} ms`);
  for (const { n, addMs, burstAddMs, deleteMs } of kernel) {
    const burst = (results.scale as { burst?: number } | undefined)?.burst ?? 0;
    row(`(8) ${k(n)} routes: start-up → converged`, '≤ 2× kernel', (r) => {
      const run = runOf(r, n);
      return run && { value: run.startupMs, text: `${ms(run.startupMs)} (${run.ratioVsKernelAdd ?? '-'}× kernel, ${run.ratioVsMainAdd ?? '-'}× its main batch)${run.error ? ', ERROR' : ''}` };
    });
    row(`(8) ${k(n)} routes: RSS / peak after convergence`, n >= 1000000 ? '< 800 MB' : '', (r) => {
      const run = runOf(r, n);
      return run && { value: run.rssMb, text: `${run.rssMb ?? '-'} / ${run.peakRssMb ?? '-'} MB` };
    });
    row(`(8) ${k(n)} routes: burst ${k(burst)} adds → mirrored`, '≤ 2× kernel, 0 lost', (r) => {
      const run = runOf(r, n);
      return run && { value: run.burstMs, text: `${ms(run.burstMs)} (${run.burstRatioVsKernelAdd ?? '-'}× kernel, ${run.burstRatioVsThisBatch ?? '-'}× the burst's batch), lost ${run.burstLost ?? '-'}` };
    });
    row(`(8) ${k(n)} routes: stop → exited`, 'clean', (r) => {
      const run = runOf(r, n);
      if (run === undefined) return undefined;
      const exit = run.killedAfterMs !== undefined
        ? `no exit, SIGKILLed after ${Math.round(run.killedAfterMs / 1000)} s (${run.cleanedBeforeKill ? 'had cleaned up' : 'had NOT cleaned up'})`
        : run.exitSignal ? `killed by ${run.exitSignal} after ${ms(run.stopMs)}`
          : `${ms(run.stopMs)} (${run.stopRatioVsKernelDelete ?? '-'}× kernel), exit ${run.exitCode}`;
      // A ratio only between clean exits: a kill in a few ms is no faster stop.
      return { value: run.exitCode === 0 ? run.stopMs : null, text: `${run.stopSignal ?? '-'}: ${exit}, leftovers ${run.leftovers ?? '-'}` };
    });
    row(`(8) kernel ip -batch ${k(n)} adds / ${k(burst)} more / all deleted`, 'reference',
      only(`${Math.round(addMs)} / ${Math.round(burstAddMs)} / ${Math.round(deleteMs)} ms`));
  }
  row('(8) bytes per mirrored route (RSS 10k → 100k)', '≤ ~600 B', (r) => {
    const b = (r.scale as { bytesPerRoute10kTo100k: number | null } | undefined)?.bytesPerRoute10kTo100k;
    return b === undefined ? undefined : { value: b, text: b === null ? '-' : `${b} B` };
  });
}

type KernelScale = { n: number; addMs: number; burstAddMs: number; deleteMs: number };
type KernelScaleRun = {
  n: number; startupMs: number | null; ratioVsKernelAdd?: number | null; ratioVsMainAdd?: number | null; burstRatioVsThisBatch?: number | null; rssMb: number | null; peakRssMb: number | null;
  burstMs: number | null; burstRatioVsKernelAdd?: number | null; burstLost: number | null; stopSignal?: string; stopMs: number | null;
  stopRatioVsKernelDelete?: number | null; exitSignal?: string | null;
  exitCode: number | null; leftovers: number | null; killedAfterMs?: number; cleanedBeforeKill?: boolean; error?: string;
};
