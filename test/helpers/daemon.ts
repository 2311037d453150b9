// Runs the real daemon (dist/src/main.js) inside a test namespace and captures its output.
//
// `ip netns exec NS node …` execs node in place (no fork), so the child's PID is the
// daemon's own: signals go to exactly that process, never to anything found by name.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { convergence, isOurs, README_NETS, ruleKey, routeKey, type Topology } from './netns';
import { WaitAbort, waitFor } from './wait';

/** dist/src/main.js, resolved from dist/test/helpers/. */
export const DAEMON_MAIN = resolve(__dirname, '..', '..', 'src', 'main.js');

/** The Node options the daemon runs with, from its own `#!/usr/bin/env -S node …` line (see src/main.ts). */
export function daemonNodeOptions(): string[] {
  const first = readFileSync(DAEMON_MAIN, 'utf8').split('\n', 1)[0];
  const match = /^#!\/usr\/bin\/env -S node((?: --?[\w-]+(?:=\S+)?)*)$/.exec(first);
  if (match === null) throw new Error(`${DAEMON_MAIN}: unexpected first line ${JSON.stringify(first)}`);
  return match[1].split(' ').filter((option) => option !== '');
}

/**
 * The environment the daemon runs with: this one, without NODE_EXTRA_CA_CERTS, as under
 * systemd (a service's environment is clean) and the installed wrapper, plus `extra`.
 * Node reads and parses that certificate file as it starts, before any of the daemon's
 * code, and the daemon makes no TLS connection: on a host that sets it for every shell
 * (this VM does, for 140 certificates), Node took 56 ms to start instead of 20.
 */
export function daemonEnvironment(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const running = new Set<DaemonProcess>();
let hookInstalled = false;
function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on('exit', () => {
    for (const d of running) d.killNow();
  });
}

let seq = 0;

export interface StartOptions {
  /** Extra environment for the daemon. */
  env?: NodeJS.ProcessEnv;
  /** Directory for the log file; a per-process temp dir by default. */
  logDir?: string;
  /** Add `--no-dbus` (default true: these tests run without a system bus). */
  noDbus?: boolean;
  /** Options for node itself, before the script (e.g. `--cpu-prof`, which NODE_OPTIONS refuses). */
  nodeArgs?: readonly string[];
}

export class DaemonProcess {
  readonly pid: number;
  readonly logFile: string;
  readonly exited: Promise<ExitStatus>;
  private exitStatus: ExitStatus | undefined;

  private constructor(child: ChildProcess, logFile: string) {
    this.logFile = logFile;
    if (child.pid === undefined) throw new Error('daemon did not start (no pid)');
    this.pid = child.pid;
    this.exited = new Promise<ExitStatus>((res) => {
      child.once('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        running.delete(this);
        res(this.exitStatus);
      });
    });
  }

  /**
   * Start `node dist/src/main.js ARGS` in namespace `ns`. Output (stdout and stderr,
   * interleaved) goes straight to a file, so a chatty daemon never blocks on a pipe.
   */
  static start(ns: string, args: readonly string[], opts: StartOptions = {}): DaemonProcess {
    installExitHook();
    if (!existsSync(DAEMON_MAIN)) throw new Error(`${DAEMON_MAIN} missing: run \`npx tsc -p tsconfig.json\` first`);
    const dir = opts.logDir ?? join(tmpdir(), `dynmhs-test-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    const logFile = join(dir, `${ns}-daemon-${++seq}.log`);
    const fd = openSync(logFile, 'w');
    const fullArgs = [...args];
    if (opts.noDbus ?? true) fullArgs.push('--no-dbus');
    let child: ChildProcess;
    try {
      child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...daemonNodeOptions(), ...(opts.nodeArgs ?? []), DAEMON_MAIN, ...fullArgs], {
        stdio: ['ignore', fd, fd],
        env: daemonEnvironment(opts.env),
      });
    } finally {
      closeSync(fd);
    }
    const d = new DaemonProcess(child, logFile);
    running.add(d);
    return d;
  }

  /** Everything the daemon printed so far. */
  output(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Output printed after a given offset (use `output().length` as a mark). */
  outputSince(mark: number): string {
    return this.output().slice(mark);
  }

  get running(): boolean {
    return this.exitStatus === undefined;
  }

  get status(): ExitStatus | undefined {
    return this.exitStatus;
  }

  async waitForOutput(re: RegExp, timeoutMs = 5000, sinceMark = 0): Promise<string> {
    return waitFor(() => {
      const m = re.exec(this.outputSince(sinceMark));
      return m ? m[0] : undefined;
    }, timeoutMs, { what: `daemon output matching ${re}`, intervalMs: 20 });
  }

  /** Wait for the process to exit on its own; rejects on timeout. */
  async waitExit(timeoutMs = 10000): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`daemon pid ${this.pid} did not exit within ${timeoutMs} ms\n` +
        this.output().slice(-3000))), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Send `signal` to this daemon's PID only (no waiting). */
  signal(signal: NodeJS.Signals): void {
    if (this.running) process.kill(this.pid, signal);
  }

  /**
   * Send `signal` and wait for the exit; returns the exit code (null if killed by a signal).
   * If it does not exit in time, it is SIGKILLed and an error is thrown.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10000): Promise<number | null> {
    if (!this.running) return this.exitStatus!.code;
    this.signal(signal);
    try {
      const st = await this.waitExit(timeoutMs);
      return st.code;
    } catch (e) {
      this.killNow();
      throw e;
    }
  }

  /** SIGKILL by PID, synchronously (teardown). */
  killNow(): void {
    if (!this.running) return;
    try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
  }

  /** SIGKILL and wait until it is gone. */
  async kill(): Promise<ExitStatus> {
    this.killNow();
    return this.waitExit(5000);
  }

  /** Resident set size and context switches from /proc. */
  procStatus(): { rssKb: number; voluntary: number; nonvoluntary: number } {
    const s = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const num = (k: string) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) ?? [])[1] ?? NaN);
    return { rssKb: num('VmRSS'), voluntary: num('voluntary_ctxt_switches'), nonvoluntary: num('nonvoluntary_ctxt_switches') };
  }

  /** utime + stime in clock ticks, from /proc/PID/stat. */
  cpuTicks(): number {
    const s = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // after "pid (comm) ": state is field 3 -> index 0; utime field 14 -> index 11; stime 15 -> 12
    return Number(f[11]) + Number(f[12]);
  }
}

/** Kill every daemon this process started that still runs (teardown). */
export function killAllDaemons(): void {
  for (const d of running) d.killNow();
}

/** `--network IF:TABLE` arguments for a list of networks. */
export function networkArgs(nets: readonly { ifName: string; table: number }[]): string[] {
  return nets.flatMap((n) => ['--network', `${n.ifName}:${n.table}`]);
}

// ---- the daemon against a test topology ----

export type Nets = readonly { ifName: string; table: number }[];

/** Wait until tables and rules match what `nets` call for; fails fast if the daemon dies. */
export async function waitConverged(topo: Topology, d: DaemonProcess | undefined, nets: Nets = README_NETS,
  timeoutMs = 10000, intervalMs = 20): Promise<void> {
  let last = '';
  try {
    await waitFor(() => {
      if (d && !d.running) throw new WaitAbort(`dynmhs exited early (${JSON.stringify(d.status)})`);
      last = convergence(topo, nets);
      return last === '';
    }, timeoutMs, { what: 'tables and rules to converge', intervalMs });
  } catch (e) {
    const out = d ? `\n--- daemon output (tail) ---\n${d.output().slice(-3000)}` : '';
    throw new Error(`${(e as Error).message}\nnot converged: ${last}${out}`);
  }
}

/** Start the daemon for `nets` in the topology's host namespace and wait until converged. */
export async function startConverged(topo: Topology, nets: Nets = README_NETS,
  extraArgs: readonly string[] = ['--loglevel', '1'], opts: StartOptions = {}): Promise<DaemonProcess> {
  const d = DaemonProcess.start(topo.host, [...networkArgs(nets), ...extraArgs], opts);
  // generous: start-up includes Node's own, and CI machines may be busy
  await waitConverged(topo, d, nets, 20000);
  return d;
}

/** Every dynmhs-tagged rule and route still in the kernel (should be none after SIGTERM). */
export function leftovers(topo: Topology): string[] {
  const out: string[] = [];
  for (const fam of [4, 6] as const) {
    out.push(...topo.rules(fam).filter(isOurs).map((r) => `v${fam} rule ${ruleKey(r)}`));
    out.push(...topo.routes(fam, 'all').filter(isOurs).map((r) => `v${fam} route table ${r.table ?? 'main'} ${routeKey(r)}`));
  }
  return out;
}

/** A snapshot of every rule and route in the host namespace (all tables), for "nothing changed". */
export function kernelSnapshot(topo: Topology): string[] {
  const out: string[] = [];
  for (const fam of [4, 6] as const) {
    out.push(...topo.rules(fam).map((r) => `v${fam} rule ${ruleKey(r)} proto ${r.protocol ?? '-'}`));
    out.push(...topo.routes(fam, 'all').map((r) => `v${fam} route ${r.table ?? 'main'} ${routeKey(r)} proto ${r.protocol ?? '-'}`));
  }
  return out.sort();
}
