// What the bench measures: this dynmhs, and, given BENCH_UPSTREAM=/path/to/dynmhs, the C++
// DynMHS it reimplements, so that both run in the same kind of fresh namespaces in one run.
//
// Upstream differs in what "converged" and "clean" look like: its copies keep the main
// route's protocol (no 249 tag), its rules carry no protocol, and it cleans up on SIGINT
// (its unit's KillSignal), while SIGTERM kills it outright. It only ever runs inside a
// bench namespace (`ip netns exec`), and is stopped by its PID.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonProcess, leftovers, networkArgs, type ExitStatus } from '../test/helpers/daemon';
import { convergence, diffKeys, expectedRuleKeys, isPlainDeviceRoute, README_NETS, routeKey, ruleKey, type Topology } from '../test/helpers/netns';

/** A running daemon under test: what the bench needs of it. */
export interface Running {
  readonly pid: number;
  readonly running: boolean;
  readonly status: ExitStatus | undefined;
  signal(signal: NodeJS.Signals): void;
  waitExit(timeoutMs?: number): Promise<ExitStatus>;
  killNow(): void;
  output(): string;
}

export interface Subject {
  readonly name: 'dynmhs' | 'upstream';
  /** Start it for the README networks at log level 2 in namespace `ns`. */
  start(ns: string): Running;
  /** '' once its rules and tables match the README networks, else what differs. */
  convergence(topo: Topology): string;
  /** Its rules and table routes still in the kernel (none after a clean stop). */
  leftovers(topo: Topology): string[];
  /** The signal it cleans up on. */
  readonly stopSignal: NodeJS.Signals;
  /** What the count probe counts as its copies: routes of this protocol (null: any) in tables 2000/3000. */
  readonly copyProtocol: number | null;
}

export function dynmhsSubject(args: readonly string[], nodeArgs: readonly string[]): Subject {
  return {
    name: 'dynmhs',
    start: (ns) => DaemonProcess.start(ns, [...networkArgs(README_NETS), ...args], { nodeArgs }),
    convergence: (topo) => convergence(topo, README_NETS),
    leftovers: (topo) => leftovers(topo),
    stopSignal: 'SIGTERM',
    copyProtocol: 249,
  };
}

const TABLES = new Set(README_NETS.map((n) => n.table));

/** The README networks' rules (whatever their protocol) and table routes against main. */
function upstreamConvergence(topo: Topology): string {
  const problems: string[] = [];
  for (const fam of [4, 6] as const) {
    const want = expectedRuleKeys(topo, fam, README_NETS);
    const have = topo.rules(fam).filter((r) => TABLES.has(Number(r.table))).map(ruleKey).sort();
    const d = diffKeys(want, have);
    if (d.missing.length || d.extra.length) problems.push(`v${fam} rules ${JSON.stringify(d)}`);
    const main = topo.routes(fam, 'main');
    for (const n of README_NETS) {
      const m = diffKeys(main.filter((r) => isPlainDeviceRoute(r) && r.dev === n.ifName).map(routeKey),
        topo.routes(fam, n.table).map(routeKey));
      if (m.missing.length || m.extra.length) problems.push(`v${fam} table ${n.table} missing=${m.missing.length} extra=${m.extra.length}`);
    }
  }
  return problems.join('; ');
}

function upstreamLeftovers(topo: Topology): string[] {
  const out: string[] = [];
  for (const fam of [4, 6] as const) {
    out.push(...topo.rules(fam).filter((r) => TABLES.has(Number(r.table))).map((r) => `v${fam} rule ${ruleKey(r)}`));
    for (const t of TABLES) out.push(...topo.routes(fam, t).map((r) => `v${fam} route table ${t} ${routeKey(r)}`));
  }
  return out;
}

const started = new Set<UpstreamProcess>();
let hookInstalled = false;

class UpstreamProcess implements Running {
  readonly pid: number;
  private exitStatus: ExitStatus | undefined;
  private readonly exited: Promise<ExitStatus>;

  constructor(child: ChildProcess, readonly logFile: string) {
    if (child.pid === undefined) throw new Error('upstream dynmhs did not start (no pid)');
    this.pid = child.pid;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      this.exitStatus = { code, signal };
      started.delete(this);
      resolve(this.exitStatus);
    }));
  }

  get running(): boolean { return this.exitStatus === undefined; }
  get status(): ExitStatus | undefined { return this.exitStatus; }
  signal(signal: NodeJS.Signals): void { if (this.running) process.kill(this.pid, signal); }
  killNow(): void {
    if (!this.running) return;
    try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  output(): string {
    try { return readFileSync(this.logFile, 'utf8'); } catch { return ''; }
  }
  async waitExit(timeoutMs = 10000): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`upstream pid ${this.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

let seq = 0;

export function upstreamSubject(binary: string): Subject {
  return {
    name: 'upstream',
    start(ns: string): Running {
      if (!hookInstalled) {
        hookInstalled = true;
        // `ip netns exec` execs in place: the child's PID is upstream's own.
        process.on('exit', () => { for (const p of started) p.killNow(); });
      }
      const dir = join(tmpdir(), `dynmhs-bench-${process.pid}`);
      mkdirSync(dir, { recursive: true });
      const logFile = join(dir, `${ns}-upstream-${++seq}.log`);
      const fd = openSync(logFile, 'w');
      let child: ChildProcess;
      try {
        child = spawn('ip', ['netns', 'exec', ns, binary, ...networkArgs(README_NETS), '--loglevel', '2', '--logcolor', 'false'],
          { stdio: ['ignore', fd, fd] });
      } finally {
        closeSync(fd);
      }
      const p = new UpstreamProcess(child, logFile);
      started.add(p);
      return p;
    },
    convergence: upstreamConvergence,
    leftovers: upstreamLeftovers,
    stopSignal: 'SIGINT',
    copyProtocol: null,
  };
}

/** `dynmhs --version` of the upstream binary (it only prints it; nothing is started). */
export function upstreamVersion(binary: string): string {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 5000 });
  return (r.stdout ?? '').trim() || `unknown (${r.error?.message ?? r.stderr})`;
}
