// A throwaway testbed with real NetworkManager and real systemd-networkd, ported from
// the proven shell recipe (README "pitfalls"): network namespaces, two "ISP" namespaces
// with dnsmasq (DHCPv4 + router advertisements), private dbus-daemon "system" buses,
// and each manager in its own private mount + UTS namespace (read-only /sys, `mount -n`,
// tmpfs /run, private /etc dirs and machine-id). Nothing on the host is touched: every
// bind mount happens inside a private mount namespace, every address lives in our own
// namespaces, every process is stopped by the PID we started, and every namespace has
// a unique prefix (`dmm<pid>…`) and is deleted in destroy().
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVER4, SERVER6 } from '../helpers/netns';

export const NM_BINARY = '/usr/sbin/NetworkManager';
export const NETWORKD_BINARY = '/lib/systemd/systemd-networkd';

/** Why the manager tests cannot run here, or undefined when they can. */
export function skipReason(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'needs root: creates network/mount namespaces and runs NetworkManager, systemd-networkd and dnsmasq in them';
  for (const [bin, pkg] of [
    [NM_BINARY, 'network-manager'], ['/usr/bin/nmcli', 'network-manager'], [NETWORKD_BINARY, 'systemd'],
    ['/usr/sbin/dnsmasq', 'dnsmasq-base'], ['/usr/bin/dbus-daemon', 'dbus-daemon'], ['/usr/bin/unshare', 'util-linux'],
    ['/usr/bin/nsenter', 'util-linux'], ['/usr/share/dbus-1/system.conf', 'dbus-daemon'],
  ] as const) {
    if (!existsSync(bin)) return `${bin} missing (apt-get install ${pkg})`;
  }
  return undefined;
}

export interface ExecResult { readonly stdout: string; readonly stderr: string }

export class CommandError extends Error {
  constructor(readonly command: readonly string[], readonly code: number | string | null, readonly stderr: string) {
    super(`${command.join(' ')} failed (${code}): ${stderr.trim()}`);
    this.name = 'CommandError';
  }
}

export function run(cmd: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: options.env ?? process.env, timeout: options.timeoutMs ?? 90_000, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        if (error) reject(new CommandError([cmd, ...args], (error as NodeJS.ErrnoException).code ?? null, `${stderr}${error.message}`));
        else resolve({ stdout, stderr });
      });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Thrown from a waitFor check to give up at once (e.g. the process died). */
export class GiveUp extends Error {}

/** Poll `check` every 20 ms until it returns a truthy value; rejects with `what` after timeoutMs. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 30_000): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      if (error instanceof GiveUp) throw error;
      last = error;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(20);
  }
}

/** A process we started, stopped by its PID only. */
export class Proc {
  private exited: Promise<void>;
  private done = false;
  constructor(readonly name: string, readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', () => { this.done = true; resolve(); }));
  }
  get pid(): number { return this.child.pid ?? -1; }
  get alive(): boolean { return !this.done; }
  /** SIGTERM, wait up to timeoutMs, then SIGKILL that PID. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.done || this.pid <= 0) return;
    try { process.kill(this.pid, 'SIGTERM'); } catch { return; }
    // A timer left running would keep the test process alive for its whole length.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs); });
    const outcome = await Promise.race([this.exited.then(() => 'exited' as const), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
      await this.exited;
    }
  }
  /** SIGKILL that PID (a crash). */
  async kill(): Promise<void> {
    if (this.done || this.pid <= 0) return;
    try { process.kill(this.pid, 'SIGKILL'); } catch { return; }
    await this.exited;
  }
}

export interface TestbedOptions {
  /** Build the NetworkManager host namespace (wan1, wan2). Default true. */
  readonly nm?: boolean;
  /** Build the systemd-networkd host namespace (wan1, wan2). Default false. */
  readonly networkd?: boolean;
  /** Put both managers on one bus (for `auto` mode). Default false. */
  readonly sharedBus?: boolean;
  /** dnsmasq lease time. Default 10m (dnsmasq never hands out less than 2m). */
  readonly leaseTime?: string;
  /**
   * DHCPv4 renewal time T1 (option 58) the ISPs hand out, in seconds; T2 (option 59) is
   * T1 + 2. Lets a test see a real lease renewal within seconds although dnsmasq's
   * shortest lease is 2 minutes. Default: dnsmasq's own (T1 = half the lease).
   */
  readonly renewalSeconds?: number;
  /**
   * Add an "internet" namespace behind both ISPs (server SERVER4/SERVER6 on its loopback),
   * so traffic from a manager namespace has somewhere to go through either ISP. Default false.
   */
  readonly internet?: boolean;
}

export interface NetworkdStartOptions {
  readonly manageForeignRoutingPolicyRules?: boolean;
  readonly manageForeignRoutes?: boolean;
  /** Wait for wan1 and wan2 to have their DHCPv4 addresses. Default true. */
  readonly waitForAddresses?: boolean;
}

let counter = 0;
const living = new Set<Proc>();
// If the test process dies without destroy(), at least our own children must not outlive it
// (namespaces left behind are swept by the next run: see removeStaleTestbeds).
process.once('exit', () => {
  for (const p of living) if (p.alive && p.pid > 0) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
});

export class Testbed {
  readonly prefix: string;
  readonly dir: string;
  readonly run: string;
  readonly logs: string;
  readonly state: string;
  readonly ns: { readonly nm: string; readonly nd: string; readonly isp1: string; readonly isp2: string; readonly inet: string };
  readonly nmBus: string;
  readonly ndBus: string;
  private readonly created: string[] = [];
  private readonly procs = new Set<Proc>();
  private readonly buses: Proc[] = [];
  private readonly dnsmasq: Proc[] = [];
  nm?: Proc;
  networkd?: Proc;

  private constructor(readonly options: Required<TestbedOptions>) {
    this.prefix = `dmm${process.pid}${counter++ ? `x${counter}` : ''}`;
    this.dir = mkdtempSync(join(tmpdir(), `${this.prefix}-`));
    // networkd drops to user systemd-network, dnsmasq to nobody: they must reach the bus socket
    chmodSync(this.dir, 0o755);
    this.run = join(this.dir, 'run');
    this.logs = join(this.dir, 'logs');
    this.state = join(this.dir, 'state');
    for (const d of [this.run, this.logs, this.state]) mkdirSync(d, { recursive: true });
    this.ns = { nm: `${this.prefix}-nm`, nd: `${this.prefix}-nd`, isp1: `${this.prefix}-isp1`, isp2: `${this.prefix}-isp2`, inet: `${this.prefix}-inet` };
    this.nmBus = `unix:path=${join(this.run, 'bus-nm', 'system_bus_socket')}`;
    this.ndBus = options.sharedBus ? this.nmBus : `unix:path=${join(this.run, 'bus-nd', 'system_bus_socket')}`;
  }

  static async create(options: TestbedOptions = {}): Promise<Testbed> {
    await removeStaleTestbeds();
    const tb = new Testbed({
      nm: options.nm ?? true, networkd: options.networkd ?? false, sharedBus: options.sharedBus ?? false,
      leaseTime: options.leaseTime ?? '10m', renewalSeconds: options.renewalSeconds ?? 0, internet: options.internet ?? false,
    });
    try {
      await tb.build();
    } catch (error) {
      await tb.destroy();
      throw error;
    }
    return tb;
  }

  private hosts(): Array<{ ns: string; tag: string }> {
    const hosts: Array<{ ns: string; tag: string }> = [];
    if (this.options.nm) hosts.push({ ns: this.ns.nm, tag: 'nm' });
    if (this.options.networkd) hosts.push({ ns: this.ns.nd, tag: 'nd' });
    return hosts;
  }

  private async build(): Promise<void> {
    const all = [...this.hosts().map((h) => h.ns), this.ns.isp1, this.ns.isp2, ...(this.options.internet ? [this.ns.inet] : [])];
    for (const ns of all) {
      await run('ip', ['netns', 'add', ns]);
      this.created.push(ns);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    for (const i of [1, 2]) {
      const isp = i === 1 ? this.ns.isp1 : this.ns.isp2;
      await this.ip(isp, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0', 'mcast_snooping', '0');
      await this.ip(isp, 'addr', 'add', `10.10${i}.0.1/24`, 'dev', 'br0');
      await this.ip(isp, 'addr', 'add', `fd00:10${i}::1/64`, 'dev', 'br0', 'nodad');
      await this.ip(isp, 'link', 'set', 'br0', 'up');
      for (const h of this.hosts()) {
        await this.ip(h.ns, 'link', 'add', `wan${i}`, 'type', 'veth', 'peer', 'name', `${h.tag}-wan${i}`, 'netns', isp);
        await this.ip(isp, 'link', 'set', `${h.tag}-wan${i}`, 'master', 'br0');
        await this.ip(isp, 'link', 'set', `${h.tag}-wan${i}`, 'up');
      }
      await this.startDnsmasq(i, `10.10${i}.0.100`, `10.10${i}.0.199`);
    }
    if (this.options.internet) await this.buildInternet();
    await this.startBus('bus-nm');
    if (!this.options.sharedBus) await this.startBus('bus-nd');
  }

  /**
   * The addressing of test/helpers/netns.ts: ISP i's `uplink` 10.20i.0.1 / fd00:20i::1 to the
   * internet's `ispI` 10.20i.0.2 / fd00:20i::2; the ISPs forward and default to the internet,
   * which routes each ISP's customer prefix (10.10i.0.0/24, fd00:10i::/64) back through it.
   */
  private async buildInternet(): Promise<void> {
    const inet = this.ns.inet;
    await this.ip(inet, 'addr', 'add', `${SERVER4}/32`, 'dev', 'lo');
    await this.ip(inet, 'addr', 'add', `${SERVER6}/128`, 'dev', 'lo');
    for (const i of [1, 2]) {
      const isp = i === 1 ? this.ns.isp1 : this.ns.isp2;
      await run('ip', ['netns', 'exec', isp, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
      await this.ip(inet, 'link', 'add', `isp${i}`, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', isp);
      // nodad: the addresses are usable at once (no 1-2 s of tentative state)
      await this.ip(isp, 'addr', 'add', `10.20${i}.0.1/24`, 'dev', 'uplink');
      await this.ip(isp, 'addr', 'add', `fd00:20${i}::1/64`, 'dev', 'uplink', 'nodad');
      await this.ip(isp, 'link', 'set', 'uplink', 'up');
      await this.ip(inet, 'addr', 'add', `10.20${i}.0.2/24`, 'dev', `isp${i}`);
      await this.ip(inet, 'addr', 'add', `fd00:20${i}::2/64`, 'dev', `isp${i}`, 'nodad');
      await this.ip(inet, 'link', 'set', `isp${i}`, 'up');
      await this.ip(isp, 'route', 'add', 'default', 'via', `10.20${i}.0.2`, 'dev', 'uplink');
      await this.ip(isp, '-6', 'route', 'add', 'default', 'via', `fd00:20${i}::2`, 'dev', 'uplink');
      await this.ip(inet, 'route', 'add', `10.10${i}.0.0/24`, 'via', `10.20${i}.0.1`, 'dev', `isp${i}`);
      await this.ip(inet, '-6', 'route', 'add', `fd00:10${i}::/64`, 'via', `fd00:20${i}::1`, 'dev', `isp${i}`);
    }
  }

  /** (Re)start ISP i's dnsmasq with a DHCPv4 range (a lease renewal then hands out another address). */
  async startDnsmasq(i: 1 | 2 | number, first: string, last: string): Promise<void> {
    const old = this.dnsmasq[i];
    if (old) { await old.stop(); this.procs.delete(old); }
    const isp = i === 1 ? this.ns.isp1 : this.ns.isp2;
    const conf = join(this.state, `isp${i}-dnsmasq.conf`);
    writeFileSync(conf, [
      'port=0', 'interface=br0', 'bind-interfaces', 'dhcp-authoritative',
      // dnsmasq pings a new address ~3 s before offering it; skip that
      'no-ping',
      `dhcp-range=${first},${last},255.255.255.0,${this.options.leaseTime}`,
      `dhcp-option=option:router,10.10${i}.0.1`,
      ...(this.options.renewalSeconds > 0
        ? [`dhcp-option=option:T1,${this.options.renewalSeconds}`, `dhcp-option=option:T2,${this.options.renewalSeconds + 2}`] : []),
      'enable-ra', `dhcp-range=fd00:10${i}::,ra-only,64,${this.options.leaseTime}`, 'ra-param=br0,10,1800',
      `dhcp-leasefile=${join(this.run, `isp${i}.leases`)}`,
      // never the default /run/dnsmasq/dnsmasq.pid: that is the host's /run
      `pid-file=${join(this.run, `isp${i}-dnsmasq.pid`)}`,
      'log-dhcp', `log-facility=${join(this.logs, `isp${i}-dnsmasq.log`)}`, '',
    ].join('\n'));
    // -k: no fork, so the PID we get is dnsmasq's own (ip netns exec execs it)
    const proc = this.spawn(`dnsmasq-isp${i}`, 'ip', ['netns', 'exec', isp, '/usr/sbin/dnsmasq', `--conf-file=${conf}`, '--keep-in-foreground'], `isp${i}-dnsmasq.stderr`);
    this.dnsmasq[i] = proc;
    await sleep(200);
    if (!proc.alive) throw new Error(`dnsmasq for isp${i} died: ${this.readLog(`isp${i}-dnsmasq.stderr`)}`);
  }

  /** Another private bus (e.g. one that appears only after a client started); stopped by destroy(). */
  async startExtraBus(name: string): Promise<{ address: string; proc: Proc }> {
    await this.startBus(name);
    return { address: `unix:path=${join(this.run, name, 'system_bus_socket')}`, proc: this.buses[this.buses.length - 1]! };
  }

  /** Where a bus named `name` will listen (so a client can be started before the bus exists). */
  busAddress(name: string): string {
    return `unix:path=${join(this.run, name, 'system_bus_socket')}`;
  }

  /** A long-running helper process (e.g. `ip monitor`); stopped by destroy() if still running. */
  spawnHelper(name: string, cmd: string, args: readonly string[]): ChildProcess {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = new Proc(name, child);
    this.procs.add(proc);
    living.add(proc);
    child.once('exit', () => { living.delete(proc); this.procs.delete(proc); });
    return child;
  }

  private async startBus(name: string): Promise<void> {
    const dir = join(this.run, name);
    mkdirSync(dir, { recursive: true });
    const conf = join(this.run, `${name}.conf`);
    const policyDir = join(this.run, `${name}.d`);
    mkdirSync(policyDir, { recursive: true });
    copyFileSync(join(__dirname, '..', '..', '..', 'dbus', 'no.nntb.DynMHS.conf'), join(policyDir, 'no.nntb.DynMHS.conf'));
    // Derived from the distribution's system.conf: private socket path; no fork, no syslog;
    // NO service activation (the bus would spawn real system services); absolute includedir,
    // or the NetworkManager / network1 policy files are silently not loaded.
    const system = readFileSync('/usr/share/dbus-1/system.conf', 'utf8');
    const text = system
      .replace('<listen>unix:path=/run/dbus/system_bus_socket</listen>', `<listen>unix:path=${dir}/system_bus_socket</listen>`)
      .replace(/<pidfile>[^<]*<\/pidfile>/, '')
      .replace('<fork/>', '').replace('<syslog/>', '')
      .replace('<standard_system_servicedirs/>', '')
      .replace(/<servicehelper>[^<]*<\/servicehelper>/, '')
      .replace('<includedir>system.d</includedir>', '<includedir>/usr/share/dbus-1/system.d</includedir>')
      // and our own policy, as installed, so a daemon run as dynmhs.service runs it (--service) can own its name
      .replace('</busconfig>', `  <includedir>${policyDir}</includedir>\n</busconfig>`);
    if (!text.includes(`${dir}/system_bus_socket`)) throw new Error('bus config rewrite failed');
    writeFileSync(conf, text);
    const proc = this.spawn(name, 'dbus-daemon', [`--config-file=${conf}`, '--nofork', '--nosyslog'], `${name}.log`);
    this.buses.push(proc);
    const address = `unix:path=${dir}/system_bus_socket`;
    await waitFor(`${name} to come up`, async () => {
      if (!proc.alive) throw new GiveUp(`dbus-daemon died: ${this.readLog(`${name}.log`)}`);
      await run('busctl', [`--address=${address}`, 'status', 'org.freedesktop.DBus']);
      return true;
    }, 10_000);
  }

  private spawn(name: string, cmd: string, args: readonly string[], logName: string, env: NodeJS.ProcessEnv = process.env): Proc {
    const out = join(this.logs, logName);
    writeFileSync(out, `=== ${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`, { flag: 'a' });
    const { openSync, closeSync } = require('node:fs') as typeof import('node:fs');
    const fd = openSync(out, 'a');
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env });
    closeSync(fd);
    child.unref();
    const proc = new Proc(name, child);
    this.procs.add(proc);
    living.add(proc);
    child.once('exit', () => living.delete(proc));
    return proc;
  }

  readLog(name: string): string {
    try { return readFileSync(join(this.logs, name), 'utf8'); } catch { return ''; }
  }

  ip(ns: string, ...args: string[]): Promise<ExecResult> {
    return run('ip', ['-n', ns, ...args]);
  }

  /** Global-scope addresses of `dev` in `ns` (without prefix length). */
  async addresses(ns: string, dev: string, family: 4 | 6): Promise<string[]> {
    const { stdout } = await run('ip', ['-n', ns, '-j', `-${family}`, 'addr', 'show', 'dev', dev, 'scope', 'global']);
    const parsed = JSON.parse(stdout || '[]') as Array<{ addr_info?: Array<{ local: string }> }>;
    // iproute2 prints filtered-out addresses as empty objects: skip those
    return parsed.flatMap((l) => (l.addr_info ?? []).map((a) => a.local).filter((a): a is string => typeof a === "string" && a !== ""));
  }

  // ---------------------------------------------------------------- NetworkManager
  get nmStateDir(): string { return join(this.state, 'nm'); }

  async startNetworkManager(): Promise<Proc> {
    if (this.nm?.alive) return this.nm;
    const d = this.nmStateDir;
    for (const sub of ['etc/conf.d', 'etc/system-connections', 'etc/dispatcher.d', 'varlib', 'run']) mkdirSync(join(d, sub), { recursive: true });
    chmodSync(join(d, 'etc/system-connections'), 0o700);
    writeFileSync(join(d, 'etc/NetworkManager.conf'), [
      '[main]', 'plugins=keyfile',
      // no polkitd on the private bus: false = every client may control networking
      'auth-polkit=false', 'dhcp=internal',
      // never touch resolv.conf / hostname
      'dns=none', 'rc-manager=unmanaged', 'systemd-resolved=false', 'hostname-mode=none',
      // no automatic "Wired connection N" profiles
      'no-auto-default=*',
      '', '[keyfile]', 'unmanaged-devices=except:interface-name:wan*',
      '', '[connectivity]', 'enabled=false',
      '', '[logging]', 'level=INFO', 'domains=DEFAULT', '',
    ].join('\n'));
    writeFileSync(join(d, 'machine-id'), '6e6d686f737400000000000000000001\n');
    const script = [
      'set -e',
      // read-only /sys: NM does not wait for udev (there is no udevd here)
      'mount -n -o remount,bind,ro /sys',
      `mount -n -t tmpfs -o mode=0755 ${this.prefix}-nm-run /run`,
      'mkdir -p /run/NetworkManager',
      'mount -n --bind "$1/run" /run/NetworkManager',
      'mount -n --bind "$1/etc" /etc/NetworkManager',
      'mount -n --bind "$1/varlib" /var/lib/NetworkManager',
      'mount -n --bind "$1/machine-id" /etc/machine-id',
      `exec ${NM_BINARY} --debug --pid-file=/run/NetworkManager/NetworkManager.pid`,
    ].join('\n');
    // every step exec()s, so the PID is NetworkManager's own
    const proc = this.spawn('NetworkManager', 'ip', ['netns', 'exec', this.ns.nm, 'unshare', '--mount', '--uts', '--propagation', 'private', 'sh', '-c', script, 'sh', d],
      'nm.log', { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: this.nmBus });
    this.nm = proc;
    await waitFor('NetworkManager to claim its bus name', async () => {
      if (!proc.alive) throw new GiveUp(`NetworkManager died: ${this.readLog('nm.log').slice(-3000)}`);
      await run('busctl', [`--address=${this.nmBus}`, 'status', 'org.freedesktop.NetworkManager']);
      return true;
    }, 30_000);
    await run('ip', ['netns', 'exec', this.ns.nm, 'nm-online', '-s', '-q', '-t', '60'], { env: this.nmEnv() }).catch(() => undefined);
    return proc;
  }

  async stopNetworkManager(): Promise<void> {
    if (this.nm) { await this.nm.stop(); this.procs.delete(this.nm); this.nm = undefined; }
  }

  nmEnv(): NodeJS.ProcessEnv { return { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: this.nmBus }; }

  nmcli(...args: string[]): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', this.ns.nm, 'nmcli', ...args], { env: this.nmEnv() });
  }

  /** Create ethernet profiles wan1/wan2 (DHCPv4 + SLAAC; route metrics 100/200). */
  async addNmProfiles(options: { ipv6?: boolean } = {}): Promise<void> {
    const ipv6 = options.ipv6 ?? true;
    const existing = (await this.nmcli('-g', 'name', 'con', 'show')).stdout.split('\n');
    for (const i of [1, 2]) {
      if (existing.includes(`wan${i}`)) continue;
      await this.nmcli('con', 'add', 'type', 'ethernet', 'ifname', `wan${i}`, 'con-name', `wan${i}`, 'autoconnect', 'no',
        'ipv4.method', 'auto', 'ipv4.may-fail', 'no', 'ipv4.route-metric', `${i}00`,
        ...(ipv6 ? ['ipv6.method', 'auto', 'ipv6.may-fail', 'no', 'ipv6.route-metric', `${i}00`, 'ipv6.addr-gen-mode', 'eui64']
          : ['ipv6.method', 'disabled']));
    }
  }

  async nmConnectionUuid(name: string): Promise<string> {
    return (await this.nmcli('-g', 'connection.uuid', 'con', 'show', name)).stdout.trim();
  }

  // ---------------------------------------------------------------- systemd-networkd
  get ndStateDir(): string { return join(this.state, 'nd'); }

  async startNetworkd(options: NetworkdStartOptions = {}): Promise<Proc> {
    if (this.networkd?.alive) return this.networkd;
    const d = this.ndStateDir;
    mkdirSync(join(d, 'etc-network'), { recursive: true });
    mkdirSync(join(d, 'run-systemd', 'networkd.conf.d'), { recursive: true });
    writeFileSync(join(d, 'machine-id'), '6e64686f737400000000000000000002\n');
    for (const i of [1, 2]) {
      writeFileSync(join(d, 'etc-network', `10-wan${i}.network`), [
        '[Match]', `Name=wan${i}`, '', '[Network]', 'DHCP=ipv4', 'IPv6AcceptRA=yes', '',
        // UseHostname=no: would otherwise call hostname1.SetHostname with the DHCP host name
        '[DHCPv4]', `RouteMetric=${i}00`, 'UseHostname=no', '', '[IPv6AcceptRA]', `RouteMetric=${i}00`, '',
      ].join('\n'));
    }
    const yn = (v: boolean | undefined): string => (v ?? true ? 'yes' : 'no');
    writeFileSync(join(d, 'run-systemd', 'networkd.conf.d', '50-testbed.conf'), [
      '[Network]', `ManageForeignRoutingPolicyRules=${yn(options.manageForeignRoutingPolicyRules)}`, `ManageForeignRoutes=${yn(options.manageForeignRoutes)}`, '',
    ].join('\n'));
    const script = [
      'set -e',
      // read-only /sys: networkd does not wait for udev
      'mount -n -o remount,bind,ro /sys',
      `mount -n -t tmpfs -o mode=0755 ${this.prefix}-nd-run /run`,
      'mkdir -p /run/systemd',
      'mount -n --bind "$1/run-systemd" /run/systemd',
      'mount -n --bind "$1/etc-network" /etc/systemd/network',
      'mount -n --bind "$1/machine-id" /etc/machine-id',
      `exec ${NETWORKD_BINARY}`,
    ].join('\n');
    const proc = this.spawn('systemd-networkd', 'ip', ['netns', 'exec', this.ns.nd, 'unshare', '--mount', '--uts', '--propagation', 'private', 'sh', '-c', script, 'sh', d],
      'networkd.log', { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: this.ndBus, SYSTEMD_LOG_LEVEL: 'info', SYSTEMD_LOG_TARGET: 'console', SYSTEMD_LOG_TIME: '1' });
    this.networkd = proc;
    await waitFor('systemd-networkd to claim org.freedesktop.network1', async () => {
      if (!proc.alive) throw new GiveUp(`systemd-networkd died: ${this.readLog('networkd.log').slice(-3000)}`);
      await run('busctl', [`--address=${this.ndBus}`, 'status', 'org.freedesktop.network1']);
      return true;
    }, 30_000);
    if (options.waitForAddresses ?? true) {
      for (const dev of ['wan1', 'wan2']) {
        await waitFor(`${dev} DHCPv4 address from networkd`, async () => (await this.addresses(this.ns.nd, dev, 4)).length > 0, 60_000);
      }
    }
    return proc;
  }

  async stopNetworkd(): Promise<void> {
    if (this.networkd) { await this.networkd.stop(); this.procs.delete(this.networkd); this.networkd = undefined; }
  }

  /** networkctl must run in networkd's mount namespace (it reads /run/systemd/netif) and netns. */
  networkctl(...args: string[]): Promise<ExecResult> {
    if (!this.networkd?.alive) throw new Error('systemd-networkd is not running');
    return run('nsenter', ['-t', String(this.networkd.pid), '-m', '-n', 'networkctl', ...args], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: this.ndBus } });
  }

  /** Wait until networkd says wan1/wan2 (or `links`) are routable for IPv4 and IPv6. */
  async networkdWaitOnline(links: readonly string[] = ['wan1', 'wan2'], timeoutSeconds = 60): Promise<void> {
    if (!this.networkd?.alive) throw new Error('systemd-networkd is not running');
    await run('nsenter', ['-t', String(this.networkd.pid), '-m', '-n', '/lib/systemd/systemd-networkd-wait-online', '-q',
      ...links.flatMap((l) => ['-i', `${l}:routable`]), '-4', '-6', `--timeout=${timeoutSeconds}`],
    { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: this.ndBus }, timeoutMs: (timeoutSeconds + 5) * 1000 });
  }

  // ---------------------------------------------------------------- teardown
  /** Stop every process we started (by PID), delete our namespaces and the state dir. Never throws. */
  async destroy(): Promise<void> {
    const managers = [this.nm, this.networkd].filter((p): p is Proc => p !== undefined);
    for (const p of managers) await p.stop().catch(() => undefined);
    for (const p of [...this.procs].filter((p) => !this.buses.includes(p))) await p.stop().catch(() => undefined);
    for (const p of this.buses) await p.stop().catch(() => undefined);
    for (const ns of this.created.reverse()) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    this.created.length = 0;
    if (!process.env.DYNMHS_KEEP_TESTBED) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Namespaces left by a harness run that was SIGKILLed: names `dmm<pid>-…` whose pid no
 * longer exists. Only our own prefix, only dead owners, only when nothing runs inside.
 */
async function removeStaleTestbeds(): Promise<void> {
  let names: string[] = [];
  try { names = readdirSync('/run/netns'); } catch { return; }
  for (const name of names) {
    const m = /^dmm(\d+)(?:x\d+)?-(nm|nd|isp1|isp2|inet)$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || existsSync(`/proc/${pid}`)) continue;
    const pids = await run('ip', ['netns', 'pids', name]).then((r) => r.stdout.trim()).catch(() => 'unknown');
    if (pids !== '') continue;
    await run('ip', ['netns', 'del', name]).catch(() => undefined);
  }
}
