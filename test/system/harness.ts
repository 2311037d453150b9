// This machine's own OS booted with systemd as PID 1 in a container, for testing dynmhs
// the way a user runs it: installed (Debian package or scripts/install-system.sh),
// started by systemd, on the real system bus with real NetworkManager or
// systemd-networkd, logind and polkitd.
//
//   systemd-nspawn -D / --volatile=yes --overlay=/usr:<upper>:/usr -b --private-network
//
// --volatile=yes gives the container an empty tmpfs as its root: /etc and /var start
// empty and systemd fills them on boot (machine-id, users from sysusers.d, presets that
// enable dbus, NetworkManager, networkd, logind). /usr is the host's, seen through an
// overlay whose upper directory is ours, so an installation into /usr or /usr/local
// never reaches the host. The dpkg database is a copy of the host's (installing a .deb
// writes it). Each ISP is a network namespace with dnsmasq (DHCPv4 + router
// advertisements) on one end of a veth pair whose other end, wan1/wan2, is moved into
// the container's network namespace. Commands run in the container with
// `nsenter -t <its PID 1> -a`. Everything is torn down by the PIDs we started.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const REPO = join(__dirname, '..', '..', '..');
/** Where the checkout is seen inside the container (read-only). */
export const SRC = '/src';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Whether `promise` settles within ms; the timer does not outlive it (it would keep the test process up). */
function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  return Promise.race([promise.then(() => true), timeout]).finally(() => clearTimeout(timer));
}

/** Why these tests cannot run on this machine at all (nothing a test command could install). */
export function systemSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (systemd-nspawn)';
  if (process.getuid?.() !== 0) return 'needs root: boots this machine\'s OS with systemd in a systemd-nspawn container';
  return undefined;
}

/** Host programs the container tests need, with the Debian package that ships each. */
const HOST_TOOLS: ReadonlyArray<readonly [string, string]> = [
  ['/usr/bin/systemd-nspawn', 'systemd-container'],
  ['/usr/lib/systemd/systemd', 'systemd'],
  ['/usr/sbin/NetworkManager', 'network-manager'],
  ['/lib/systemd/systemd-networkd', 'systemd'],
  ['/usr/sbin/dnsmasq', 'dnsmasq-base'],
  ['/usr/bin/dbus-daemon', 'dbus-daemon'],
  ['/usr/lib/polkit-1/polkitd', 'polkitd'],
  ['/usr/bin/nsenter', 'util-linux'],
  ['/usr/bin/dpkg-deb', 'dpkg'],
];

/** Throws with the exact command to run when a host package is missing. */
export function requireHostTools(extra: ReadonlyArray<readonly [string, string]> = []): void {
  const missing = [...HOST_TOOLS, ...extra].filter(([path]) => !existsSync(path));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map(([, pkg]) => pkg))];
  throw new Error(`missing ${missing.map(([p]) => p).join(', ')}; run: apt-get install -y --no-install-recommends ${packages.join(' ')}`);
}

export interface Result { readonly code: number; readonly stdout: string; readonly stderr: string }

/** Run a command, never throwing: its exit code, stdout and stderr. */
export function attempt(cmd: string, args: readonly string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return new Promise((resolve) => {
    // its own process group: a timeout kills nsenter and the command it forked in the container
    const child = spawn(cmd, args, { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => { stderr += `\n(killed after ${options.timeoutMs} ms)`; try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, options.timeoutMs ?? 120_000);
    child.on('error', (e) => { stderr += String(e); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }); });
    child.stdin.on('error', () => undefined); // a command that does not read its input
    child.stdin.end(options.input ?? '');
  });
}

/** Run a command; throws with its output unless it exits 0. */
export async function must(cmd: string, args: readonly string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  const r = await attempt(cmd, args, options);
  if (r.code !== 0) throw new Error(`${[cmd, ...args].join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r;
}

/** Thrown from a waitUntil check to stop waiting at once. */
export class GiveUp extends Error {}

/** Poll until `check` returns a truthy value; the last error or value is in the timeout message. */
export async function waitUntil<T>(what: string, check: () => T | Promise<T>, timeoutMs = 30_000, intervalMs = 25): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (error) {
      if (error instanceof GiveUp) throw error;
      last = error;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await sleep(intervalMs);
  }
}

/** A container command's environment: what a root login has, not the test runner's. */
const CONTAINER_ENV: NodeJS.ProcessEnv = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root', LANG: 'C.UTF-8', TERM: 'dumb',
  SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0', DEBIAN_FRONTEND: 'noninteractive',
};

export type Manager = 'networkmanager' | 'networkd';

export interface BootOptions {
  /** Who configures wan1/wan2: NetworkManager (networkd leaves them alone) or networkd (NetworkManager masked). */
  readonly manager: Manager;
}

const PREFIX = `dmhs${process.pid}`;
let counter = 0;
const living = new Set<Container>();
// A test process that dies without destroy() still takes its containers and ISPs with it.
process.once('exit', () => { for (const c of living) c.destroySync(); });
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { for (const c of living) c.destroySync(); process.exit(128 + (signal === 'SIGINT' ? 2 : 15)); });
}

export class Container {
  readonly name: string;
  readonly dir: string;
  readonly isps: readonly string[];
  /** Host PID of the container's systemd. */
  pid1 = -1;
  /** Milliseconds from starting systemd-nspawn to `systemctl is-system-running` reporting boot finished. */
  bootMs = 0;
  private nspawn?: ChildProcess;
  private nspawnExited?: Promise<void>;
  private readonly helpers = new Set<ChildProcess>();
  private readonly namespaces: string[] = [];

  private constructor(readonly options: BootOptions) {
    this.name = `${PREFIX}c${counter++}`;
    this.dir = mkdtempSync(`/tmp/${this.name}-`);
    this.isps = [`${this.name}-isp1`, `${this.name}-isp2`];
  }

  static async boot(options: BootOptions): Promise<Container> {
    removeStale();
    const c = new Container(options);
    living.add(c);
    try {
      await c.start();
      await c.connectIsps();
    } catch (error) {
      const log = c.nspawnLog();
      await c.destroy();
      throw new Error(`${error instanceof Error ? error.message : String(error)}\nsystemd-nspawn output:\n${log.slice(-3000)}`);
    }
    return c;
  }

  private nspawnLog(): string {
    try { return readFileSync(join(this.dir, 'nspawn.log'), 'utf8'); } catch { return ''; }
  }

  private async start(): Promise<void> {
    const upper = join(this.dir, 'usr');
    const dpkg = join(this.dir, 'dpkg');
    const conf = join(this.dir, 'etc');
    for (const d of [upper, conf]) mkdirSync(d, { recursive: true });
    // installing a .deb writes the dpkg database: the container gets a copy of the host's
    await must('cp', ['-a', '/var/lib/dpkg', dpkg]);
    // The host's permission overrides name the host's groups (e.g. ssl-cert), which the
    // container's sysusers-made /etc/group lacks: dpkg would refuse to run at all.
    writeFileSync(join(dpkg, 'statoverride'), '');
    const binds: string[] = [];
    // NetworkManager: no automatic "Wired connection N" on wan1/wan2 (the test adds profiles
    // as a user does), no connectivity probes out of a container with no internet.
    writeFileSync(join(conf, 'nm.conf'), '[main]\nno-auto-default=*\n\n[connectivity]\nenabled=false\n');
    binds.push(`--bind-ro=${join(conf, 'nm.conf')}:/etc/NetworkManager/conf.d/50-dynmhs-test.conf`);
    const kernelArgs = ['systemd.firstboot=off',
      // reads the host's /etc/nftables.conf, absent here: a failed unit in every boot
      'systemd.mask=nftables.service'];
    if (this.options.manager === 'networkd') {
      const network = join(conf, 'network');
      mkdirSync(network);
      for (const i of [1, 2]) {
        writeFileSync(join(network, `10-wan${i}.network`), [
          '[Match]', `Name=wan${i}`, '', '[Network]', 'DHCP=ipv4', 'IPv6AcceptRA=yes', '',
          '[DHCPv4]', `RouteMetric=${i}00`, 'UseHostname=no', '', '[IPv6AcceptRA]', `RouteMetric=${i}00`, '',
        ].join('\n'));
      }
      binds.push(`--bind-ro=${network}:/etc/systemd/network`);
      kernelArgs.push('systemd.mask=NetworkManager.service');
    }
    const args = ['--keep-unit', '--register=no', '-D', '/', '--volatile=yes',
      `--overlay=/usr:${upper}:/usr`, `--bind=${dpkg}:/var/lib/dpkg`,
      `--bind-ro=${REPO}:${SRC}`, ...binds,
      '-b', '--private-network', '-M', this.name, '--console=passive', '--', ...kernelArgs];
    const started = Date.now();
    const log = openSync(join(this.dir, 'nspawn.log'), 'a');
    const child = spawn('systemd-nspawn', args, { stdio: ['ignore', log, log], detached: true });
    closeSync(log);
    this.nspawn = child;
    this.nspawnExited = new Promise((resolve) => child.once('exit', () => resolve()));
    const ownPidNs = readlinkSync('/proc/self/ns/pid');
    this.pid1 = await waitUntil('the container\'s systemd (PID 1)', () => {
      if (child.exitCode !== null) throw new GiveUp(`systemd-nspawn exited ${child.exitCode}`);
      return containerInit(child.pid ?? -1, ownPidNs);
    }, 20_000);
    // "degraded" (exit 1) still means boot finished; the state is checked below
    const state = await waitUntil('boot to finish', async () => {
      if (child.exitCode !== null) throw new GiveUp(`systemd-nspawn exited ${child.exitCode}`);
      const r = await this.attempt(['systemctl', 'is-system-running', '--wait'], { timeoutMs: 60_000 });
      return ['running', 'degraded'].includes(r.stdout.trim()) ? r.stdout.trim() : undefined;
    }, 60_000, 100);
    this.bootMs = Date.now() - started;
    // apt's configuration directories, empty: a local .deb needs no sources
    await this.exec(['mkdir', '-p', '/etc/apt/apt.conf.d', '/etc/apt/sources.list.d', '/etc/apt/preferences.d', '/etc/apt/trusted.gpg.d']);
    await this.exec(['touch', '/etc/apt/sources.list']);
    // A host built as a container image may have a policy-rc.d that forbids maintainer
    // scripts to start services (exit 101); a user's machine has none.
    if (existsSync('/usr/sbin/policy-rc.d')) await this.exec(['rm', '-f', '/usr/sbin/policy-rc.d']);
    if (state !== 'running') {
      const failed = await this.attempt(['systemctl', '--failed', '--no-legend', '--plain']);
      throw new Error(`the container booted "${state}": ${failed.stdout}`);
    }
  }

  /** ISP i: a namespace with dnsmasq on c-wan<i>, whose peer wan<i> is in the container. */
  private async connectIsps(): Promise<void> {
    for (const [index, ns] of this.isps.entries()) {
      const i = index + 1;
      await must('ip', ['netns', 'add', ns]);
      this.namespaces.push(ns);
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await must('ip', ['-n', ns, 'link', 'add', `c-wan${i}`, 'type', 'veth', 'peer', 'name', `wan${i}`, 'netns', String(this.pid1)]);
      await must('ip', ['-n', ns, 'addr', 'add', `10.10${i}.0.1/24`, 'dev', `c-wan${i}`]);
      await must('ip', ['-n', ns, 'addr', 'add', `fd00:10${i}::1/64`, 'dev', `c-wan${i}`, 'nodad']);
      await must('ip', ['-n', ns, 'link', 'set', `c-wan${i}`, 'up']);
      const confFile = join(this.dir, `isp${i}-dnsmasq.conf`);
      writeFileSync(confFile, [
        'port=0', `interface=c-wan${i}`, 'bind-interfaces', 'dhcp-authoritative',
        // dnsmasq pings a new address ~3 s before offering it
        'no-ping',
        `dhcp-range=10.10${i}.0.100,10.10${i}.0.199,255.255.255.0,10m`,
        `dhcp-option=option:router,10.10${i}.0.1`,
        'enable-ra', `dhcp-range=fd00:10${i}::,ra-only,64,10m`, `ra-param=c-wan${i},10,1800`,
        `dhcp-leasefile=${join(this.dir, `isp${i}.leases`)}`,
        // never the default /run/dnsmasq/dnsmasq.pid: that is the host's /run
        `pid-file=${join(this.dir, `isp${i}-dnsmasq.pid`)}`,
        `log-facility=${join(this.dir, `isp${i}-dnsmasq.log`)}`, '',
      ].join('\n'));
      const dnsmasq = this.spawnHelper('ip', ['netns', 'exec', ns, '/usr/sbin/dnsmasq', `--conf-file=${confFile}`, '--keep-in-foreground']);
      await sleep(100);
      if (dnsmasq.exitCode !== null) throw new Error(`dnsmasq for isp${i} exited ${dnsmasq.exitCode}`);
    }
  }

  /** A host process stopped by destroy() (by its PID). */
  spawnHelper(cmd: string, args: readonly string[]): ChildProcess {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.helpers.add(child);
    child.once('exit', () => this.helpers.delete(child));
    return child;
  }

  /** Run a command inside the container (all its namespaces), as root, with a login's environment. */
  attempt(argv: readonly string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
    return attempt('nsenter', ['-t', String(this.pid1), '-a', '--', ...argv], { ...options, env: { ...CONTAINER_ENV, ...options.env } });
  }

  /** Like attempt, but throws with the command's output unless it exits 0. */
  async exec(argv: readonly string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
    const r = await this.attempt(argv, options);
    if (r.code !== 0) throw new Error(`in ${this.name}: ${argv.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  sh(script: string, options: { timeoutMs?: number } = {}): Promise<string> {
    return this.exec(['sh', '-euc', script], options);
  }

  /** As an unprivileged user (nobody), with no session: what polkit sees of a local user without a seat. */
  asNobody(argv: readonly string[]): Promise<Result> {
    return this.attempt(['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', ...argv], { env: { HOME: '/nonexistent' } });
  }

  /** A unit property (`systemctl show -P`). */
  async unitProperty(unit: string, property: string): Promise<string> {
    return (await this.exec(['systemctl', 'show', '-P', property, unit])).trim();
  }

  async journal(unit: string, lines = 60): Promise<string> {
    return (await this.attempt(['journalctl', '-b', '-u', unit, '--no-pager', '-o', 'short-monotonic', '-n', String(lines)])).stdout;
  }

  // ------------------------------------------------------------- NetworkManager
  /** Ethernet profiles wan1/wan2 as a user adds them: DHCPv4 + SLAAC, metrics 100/200. */
  async addNmProfiles(): Promise<void> {
    for (const i of [1, 2]) {
      await this.exec(['nmcli', 'connection', 'add', 'type', 'ethernet', 'ifname', `wan${i}`, 'con-name', `wan${i}`, 'autoconnect', 'no',
        'ipv4.method', 'auto', 'ipv4.may-fail', 'no', 'ipv4.route-metric', `${i}00`,
        'ipv6.method', 'auto', 'ipv6.may-fail', 'no', 'ipv6.route-metric', `${i}00`, 'ipv6.addr-gen-mode', 'eui64']);
    }
  }

  /** `nmcli connection up` of each, in parallel (each waits for its DHCPv4 lease and SLAAC address). */
  async nmUp(...names: string[]): Promise<void> {
    await Promise.all(names.map((n) => this.exec(['nmcli', '--wait', '60', 'connection', 'up', n], { timeoutMs: 70_000 })));
  }

  async nmDown(...names: string[]): Promise<void> {
    await Promise.all(names.map((n) => this.exec(['nmcli', 'connection', 'down', n])));
  }

  // ------------------------------------------------------------- the kernel's view
  /** Global addresses of `dev` in the container. */
  async addresses(dev: string, family: 4 | 6): Promise<string[]> {
    const out = await must('nsenter', ['-t', String(this.pid1), '-n', 'ip', '-j', `-${family}`, 'addr', 'show', 'dev', dev, 'scope', 'global']);
    const links = JSON.parse(out.stdout || '[]') as Array<{ addr_info?: Array<{ local?: string; tentative?: boolean }> }>;
    return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.local && !a.tentative).map((a) => a.local!));
  }

  /** What carries protocol 249 in the container's kernel: rules and routes, one line each, sorted. */
  async policy(): Promise<Policy> {
    const ip = (...args: string[]): Promise<Result> => must('nsenter', ['-t', String(this.pid1), '-n', 'ip', ...args]);
    const lines = (text: string): string[] => text.split('\n').map((l) => l.replace(/\s+/g, ' ').trim()).filter((l) => /\bproto (249|dynmhs)\b/.test(l));
    const rules = [...lines((await ip('-4', 'rule', 'show')).stdout), ...lines((await ip('-6', 'rule', 'show')).stdout)];
    const routes = [...lines((await ip('-4', 'route', 'show', 'table', 'all')).stdout), ...lines((await ip('-6', 'route', 'show', 'table', 'all')).stdout)]
      .map((l) => l.replace(/ expires \d+sec/, ''));
    return { rules: rules.sort(), routes: routes.sort() };
  }

  // ------------------------------------------------------------- teardown
  /** Stop the container (SIGTERM to our systemd-nspawn: an orderly shutdown), the ISPs and helpers; remove every directory. */
  async destroy(): Promise<void> {
    for (const h of [...this.helpers]) await stopChild(h, 3_000);
    if (this.nspawn && this.nspawn.exitCode === null && this.nspawn.signalCode === null) {
      try { process.kill(this.nspawn.pid!, 'SIGTERM'); } catch { /* gone */ }
      const stopped = await settlesWithin(this.nspawnExited!, 20_000);
      if (!stopped) {
        // killing the init of a PID namespace kills everything in it; nspawn then exits
        if (this.pid1 > 0) { try { process.kill(this.pid1, 'SIGKILL'); } catch { /* gone */ } }
        const gone = await settlesWithin(this.nspawnExited!, 5_000);
        if (!gone) { try { process.kill(this.nspawn.pid!, 'SIGKILL'); } catch { /* gone */ } await this.nspawnExited; }
      }
    }
    for (const ns of this.namespaces.splice(0).reverse()) await attempt('ip', ['netns', 'del', ns]);
    if (!process.env.DYNMHS_KEEP_CONTAINER_DIR) rmSync(this.dir, { recursive: true, force: true });
    living.delete(this);
  }

  /** For process exit: no waiting, no orderly shutdown. */
  destroySync(): void {
    for (const h of this.helpers) { try { process.kill(h.pid!, 'SIGKILL'); } catch { /* gone */ } }
    if (this.nspawn && this.nspawn.exitCode === null) {
      if (this.pid1 > 0) { try { process.kill(this.pid1, 'SIGKILL'); } catch { /* gone */ } }
      try { process.kill(this.nspawn.pid!, 'SIGKILL'); } catch { /* gone */ }
      // the container's mounts go with its last process: wait (bounded) before removing its directory
      if (this.pid1 > 0) spawnSync('sh', ['-c', `while kill -0 ${this.pid1} 2>/dev/null; do sleep 0.05; done`], { timeout: 5_000 });
    }
    for (const ns of this.namespaces) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try { process.kill(child.pid, 'SIGTERM'); } catch { return; }
  const done = await settlesWithin(exited, timeoutMs);
  if (!done) { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } await exited; }
}

/** The container's init: a child of systemd-nspawn (or of its intermediate) in another PID namespace, running systemd. */
function containerInit(nspawnPid: number, ownPidNs: string): number | undefined {
  const queue = [nspawnPid];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    let children: number[] = [];
    try { children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number); } catch { continue; }
    for (const child of children) {
      try {
        if (readlinkSync(`/proc/${child}/ns/pid`) !== ownPidNs && readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'systemd') return child;
      } catch { /* gone */ }
      queue.push(child);
    }
  }
  return undefined;
}

/** ISP namespaces and directories of an earlier run that was killed (its PID is gone). */
function removeStale(): void {
  const owner = (name: string): number | undefined => {
    const m = /^dmhs(\d+)c\d+-/.exec(name);
    return m ? Number(m[1]) : undefined;
  };
  const dead = (pid: number | undefined): boolean => pid !== undefined && pid !== process.pid && !existsSync(`/proc/${pid}`);
  let names: string[] = [];
  try { names = readdirSync('/run/netns'); } catch { /* none */ }
  // a container of a killed run may still be up (its nspawn outlived the runner): leave it be
  const running = runningCommandLines();
  const stale = (name: string): boolean => dead(owner(name)) && !running.some((cmd) => cmd.includes(name.replace(/-.*$/, '')));
  for (const name of names) if (stale(name)) spawnSync('ip', ['netns', 'del', name]);
  for (const name of readdirSync('/tmp')) if (stale(name)) rmSync(join('/tmp', name), { recursive: true, force: true });
}

function runningCommandLines(): string[] {
  const lines: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try { lines.push(readFileSync(`/proc/${pid}/cmdline`, 'utf8')); } catch { /* gone */ }
  }
  return lines;
}

export interface Policy { readonly rules: string[]; readonly routes: string[] }

/** Items that occur more than once. */
export function duplicates(items: readonly string[]): string[] {
  return [...new Set(items.filter((item, i) => items.indexOf(item) !== i))];
}
