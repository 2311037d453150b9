// The daemon: which networks are managed (config, runtime additions, connection
// sources), the reconcile loop over the kernel, and the control surface for D-Bus.
import { EventEmitter } from 'node:events';
import { appendFileSync } from 'node:fs';
import { prefixText } from './address';
import type { Config, LogLevel, SourceMode } from './config/types';
import { TABLE_MAX, TABLE_MIN } from './config/types';
import {
  ControlError, type DaemonControl, type DaemonState, type DaemonStatus, type NetworkState, type NetworkStatus, type RouteView,
} from './control';
import type { Kernel } from './kernel/types';
import type { Logger } from './log';
import { DYNMHS_PROTOCOL, type ManagedNetwork, type Observed, type Origin } from './model';
import type { NetworkPlan } from './policy/derive';
import { systemClock, type Clock } from './reconcile/limiter';
import { removeEverythingOurs } from './reconcile/cleanup';
import { Reclaimer } from './reclaim';
import { Reconciler, type PassResult } from './reconcile/loop';
import type { EndpointSync } from './reconcile/endpoints';
import { mptcpFlagsFor } from './policy/endpoints';

/** What a connection source (NetworkManager, networkd) gives the daemon: see src/sources/. */
export interface DynamicNetworks extends EventEmitter {
  start(): Promise<void>;
  stop(): Promise<void>;
  networks(): readonly ManagedNetwork[];
  activeSource(): Exclude<SourceMode, 'auto'>;
  /** Tables whose entries of ours stay for now although no network wants them (see src/sources/connections.ts). */
  heldTables(): ReadonlySet<number>;
  /** Applies a reloaded configuration (selection, mappings, table range and idle time). */
  reconfigure(config: Config): void;
}

export interface DaemonOptions {
  readonly kernel: Kernel;
  readonly log: Logger;
  readonly config: Config;
  /** Re-reads the configuration (SIGHUP, Reload); throws a typed error on bad input. */
  readonly loadConfig: () => Config;
  readonly version: string;
  /** Builds the connection source for a config whose source is not 'static'. */
  readonly connections?: (config: Config, tableInUse: (table: number) => boolean) => DynamicNetworks;
  readonly clock?: Clock;
  /** MPTCP endpoints for the managed addresses (src/reconcile/endpoints.ts); absent: none. */
  readonly endpoints?: EndpointSync;
  /** A full garbage collection, run once a large change is done (src/reclaim.ts); absent: V8 decides. */
  readonly collectGarbage?: () => void;
}

/**
 * Keys a reload does not apply (man dynmhs.conf(5)): the source and the state directory
 * are what the connection source was built on; the bus name and the log outputs are
 * opened once, before the first pass.
 */
const RESTART_ONLY = [
  ['source', 'SOURCE'], ['stateDirectory', 'STATE_DIRECTORY'], ['dbus', 'DBUS'], ['logFile', 'LOGFILE'], ['logColor', 'LOGCOLOR'],
] as const satisfies ReadonlyArray<readonly [keyof Config, string]>;

function shown(value: unknown): string {
  if (value === undefined) return '(unset)';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return String(value);
}

const SCOPE_NAMES: Record<number, string> = { 0: 'global', 200: 'site', 253: 'link', 254: 'host', 255: 'nowhere' };
const INTERFACE_NAME = /^[^\s/:]{1,15}$/;

export class Daemon extends EventEmitter implements DaemonControl {
  private config: Config;
  private state: DaemonState = 'starting';
  private readonly added = new Map<string, number>();
  private readonly removed = new Set<string>();
  private readonly reconciler: Reconciler;
  private readonly reclaimer?: Reclaimer;
  private connections?: DynamicNetworks;
  private statusSignature = '';
  private readonly onKernelChanged = (): void => this.reconciler.markDirty();
  private readonly onConnectionsChanged = (): void => this.reconciler.markDirty();

  constructor(private readonly options: DaemonOptions) {
    super();
    this.config = options.config;
    if (options.collectGarbage !== undefined) this.reclaimer = new Reclaimer(options.collectGarbage, options.clock ?? systemClock);
    this.reconciler = new Reconciler({
      kernel: options.kernel,
      log: options.log,
      clock: options.clock,
      networks: () => this.networks(),
      heldTables: () => this.connections?.heldTables(),
      onPass: (result) => this.afterPass(result),
    });
  }

  async start(): Promise<void> {
    const { kernel, log } = this.options;
    await kernel.start();
    if (this.config.source !== 'static' && this.options.connections !== undefined) {
      this.connections = this.options.connections(this.config, (table) => this.tableInUse(table));
      await this.connections.start();
      this.connections.on('changed', this.onConnectionsChanged);
    }
    // No pass before the connection source has reported what is up: one with no networks
    // yet would remove everything a killed predecessor left, only to add it back moments
    // later. Kernel changes meanwhile are in the cache; the pass below sees them.
    kernel.on('changed', this.onKernelChanged);
    for (const network of this.networks()) {
      const exists = [...kernel.observed().links.values()].some((l) => l.name === network.interfaceName);
      if (!exists) log.info(`Interface ${network.interfaceName} does not exist yet; table ${network.table} and its rules follow when it appears`);
    }
    this.reconciler.markDirty();
    await this.reconciler.idle();
    await this.options.endpoints?.idle();
    this.setState('running');
  }

  /** Removes every route and rule dynmhs created, then stops. */
  async stop(): Promise<void> {
    const { kernel, log } = this.options;
    await this.detachSources();
    await this.reconciler.stop();
    this.reclaimer?.stop();
    await this.options.endpoints?.stop();
    const { rules, routes, left } = await removeEverythingOurs(kernel, log);
    log.info(`Removed ${rules} rule${rules === 1 ? '' : 's'} and ${routes} route${routes === 1 ? '' : 's'}`
      + (left > 0 ? `; ${left} could not be removed` : ''));
    await kernel.stop();
  }

  /**
   * Stops and leaves every route and rule in the kernel, for a successor that adopts them
   * (protocol 249 marks them as ours): systemd restarts the unit. Returns what was left.
   * MPTCP endpoints stay too; the successor knows them from the state directory's record.
   */
  async handOver(): Promise<{ rules: number; routes: number }> {
    const { kernel } = this.options;
    await this.detachSources();
    await this.reconciler.stop();
    await this.options.endpoints?.release();
    const observed = kernel.observed();
    const left = {
      rules: observed.rules.filter((r) => r.protocol === DYNMHS_PROTOCOL).length,
      routes: observed.routes.filter((r) => r.protocol === DYNMHS_PROTOCOL).length,
    };
    await kernel.stop();
    return left;
  }

  /** Stopping: no more events from the kernel, and the connection source stopped (its tables saved). */
  private async detachSources(): Promise<void> {
    const { kernel, log } = this.options;
    this.setState('stopping');
    kernel.off('changed', this.onKernelChanged);
    if (this.connections !== undefined) {
      this.connections.off('changed', this.onConnectionsChanged);
      await this.connections.stop().catch((e: Error) => log.warning(`Stopping the connection source: ${e.message}`));
    }
  }

  /** Resolves once the loop has nothing left to do (tests, benchmarks). */
  async settled(): Promise<void> {
    await this.reconciler.idle();
    await this.options.endpoints?.idle();
  }

  networks(): ManagedNetwork[] {
    const byInterface = new Map<string, ManagedNetwork>();
    const staticNetwork = (interfaceName: string, table: number): ManagedNetwork =>
      ({ interfaceName, table, priority: table, origin: 'static' });
    for (const spec of this.config.networks) {
      if (spec.match === 'interface' && !this.removed.has(spec.value)) byInterface.set(spec.value, staticNetwork(spec.value, spec.table));
    }
    for (const [name, table] of this.added) byInterface.set(name, staticNetwork(name, table));
    const staticTables = new Set([...byInterface.values()].map((n) => n.table));
    for (const network of this.connections?.networks() ?? []) {
      // Static mappings win for their interface, and their tables are theirs alone.
      if (byInterface.has(network.interfaceName) || staticTables.has(network.table)) continue;
      byInterface.set(network.interfaceName, network);
    }
    return [...byInterface.values()];
  }

  status(): DaemonStatus {
    const observed = this.options.kernel.observed();
    const last = this.reconciler.lastPass();
    const plans = new Map((last?.plans ?? []).map((p) => [p.network.interfaceName, p]));
    return {
      version: this.options.version,
      source: this.connections?.activeSource() ?? 'static',
      state: this.state,
      networks: this.networks().map((network) => this.networkStatus(network, plans.get(network.interfaceName), observed, last)),
    };
  }

  async reload(): Promise<void> {
    let next: Config;
    try {
      next = this.options.loadConfig();
    } catch (error) {
      this.options.log.error(`Reload: ${(error as Error).message}; keeping the previous configuration`);
      throw new ControlError('InvalidArgument', (error as Error).message);
    }
    this.setState('reloading');
    next = this.keepRestartOnly(next);
    if (next.logLevel !== this.config.logLevel) this.options.log.setLevel(next.logLevel);
    this.config = next;
    this.connections?.reconfigure(next);
    this.removed.clear();
    this.options.log.info(`Reloaded configuration: ${this.networks().map((n) => `${n.interfaceName}:${n.table}`).join(' ') || 'no static networks'}`);
    this.reconciler.markDirty();
    await this.reconciler.idle();
    this.setState('running');
  }

  /** `next` with the restart-only keys of the running configuration, and a warning for each that changed. */
  private keepRestartOnly(next: Config): Config {
    const current = this.config;
    for (const [field, key] of RESTART_ONLY) {
      if (next[field] === current[field]) continue;
      this.options.log.warning(`Reload: ${key} changed from ${shown(current[field])} to ${shown(next[field])}; `
        + 'that takes effect at the next restart (systemctl restart dynmhs)');
    }
    const { logFile: _ignored, ...rest } = next;
    return {
      ...rest,
      source: current.source,
      stateDirectory: current.stateDirectory,
      dbus: current.dbus,
      logColor: current.logColor,
      ...(current.logFile !== undefined ? { logFile: current.logFile } : {}),
    };
  }

  async addNetwork(interfaceName: string, table: number, persist = false): Promise<void> {
    if (!INTERFACE_NAME.test(interfaceName) || interfaceName === '.' || interfaceName === '..') {
      throw new ControlError('InvalidArgument', `"${interfaceName}" is not a valid interface name (1-15 characters, no '/', ':' or white space)`);
    }
    if (!Number.isInteger(table) || table < TABLE_MIN || table > TABLE_MAX) {
      throw new ControlError('InvalidArgument', `table ${table} is out of range: use ${TABLE_MIN}-${TABLE_MAX}`);
    }
    const current = this.networks();
    const same = current.find((n) => n.interfaceName === interfaceName);
    if (same !== undefined && same.origin === 'static') throw new ControlError('Exists', `${interfaceName} is already mapped to table ${same.table}`);
    const clash = current.find((n) => n.table === table && n.interfaceName !== interfaceName);
    if (clash !== undefined) throw new ControlError('Exists', `table ${table} already belongs to ${clash.interfaceName}`);
    if (persist) {
      if (this.config.configFile === undefined) throw new ControlError('InvalidArgument', 'cannot persist: the daemon runs without --config FILE');
      try {
        appendFileSync(this.config.configFile, `NETWORK="${interfaceName}:${table}"\n`);
      } catch (error) {
        throw new ControlError('Failed', `cannot write ${this.config.configFile}: ${(error as Error).message}`);
      }
    }
    this.removed.delete(interfaceName);
    this.added.set(interfaceName, table);
    this.options.log.info(`Added network ${interfaceName}:${table}${persist ? ` (saved in ${this.config.configFile})` : ''}`);
    this.reconciler.markDirty();
    await this.reconciler.idle();
  }

  async removeNetwork(interfaceName: string): Promise<void> {
    const network = this.networks().find((n) => n.interfaceName === interfaceName);
    if (network === undefined) throw new ControlError('NotFound', `no network on interface ${interfaceName}`);
    if (network.origin !== 'static') {
      throw new ControlError('InvalidArgument', `${interfaceName} comes from ${network.origin}; exclude it in the configuration instead`);
    }
    this.added.delete(interfaceName);
    this.removed.add(interfaceName);
    this.options.log.info(`Removed network ${interfaceName}:${network.table} (until the next reload)`);
    this.reconciler.markDirty();
    await this.reconciler.idle();
  }

  setLogLevel(level: LogLevel): void {
    if (!Number.isInteger(level) || level < 0 || level > 5) throw new ControlError('InvalidArgument', `log level ${String(level)} is not 0..5`);
    this.options.log.setLevel(level);
    this.options.log.info(`Log level set to ${level}`);
  }

  /** True when someone else's routes or rules use the table: never hand it out. */
  tableInUse(table: number): boolean {
    const observed = this.options.kernel.observed();
    return observed.routes.some((r) => r.table === table && r.protocol !== DYNMHS_PROTOCOL)
      || observed.rules.some((r) => r.table === table && r.protocol !== DYNMHS_PROTOCOL);
  }

  private setState(state: DaemonState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('changed');
  }

  private afterPass(result: PassResult): void {
    this.reclaimer?.afterPass(result.added + result.removed);
    this.options.endpoints?.update(result.plans, (network) => mptcpFlagsFor(network, this.config.networks, this.config.mptcp));
    if (result.added + result.removed + result.failed > 0) {
      this.emit('applied', { added: result.added, removed: result.removed, failed: result.failed });
    }
    // Cheap fingerprint of what status() shows, so 'changed' fires only on real changes.
    const signature = result.plans.map((p) => [
      p.network.interfaceName, p.network.table, p.network.origin, p.link?.index ?? 0, p.link?.up ?? false,
      p.addresses.map((a) => `${a.local}/${a.prefixLength}`).join(','), p.rules.length,
      result.failedNetworks.has(p.network.interfaceName),
    ].join('|')).join(';') + `;${result.desiredRoutes}`;
    if (signature !== this.statusSignature || result.added + result.removed > 0) {
      this.statusSignature = signature;
      this.emit('changed');
    }
  }

  private networkStatus(network: ManagedNetwork, plan: NetworkPlan | undefined, observed: Observed, last: PassResult | undefined): NetworkStatus {
    const device = (index: number): string => observed.links.get(index)?.name ?? `#${index}`;
    const link = plan?.link;
    let state: NetworkState;
    if (link === undefined) state = 'waiting';
    else if (!link.up || (plan?.addresses.length ?? 0) === 0) state = 'down';
    else if (last?.failedNetworks.has(network.interfaceName)) state = 'degraded';
    else state = 'active';
    const routes: RouteView[] = observed.routes.filter((r) => r.table === network.table).map((r) => ({
      family: r.family,
      destination: prefixText(r.family, r.dst, r.dstLength),
      gateway: r.gateway ?? r.nexthops?.map((h) => h.gateway ?? '').join(',') ?? '',
      device: r.oif !== undefined ? device(r.oif) : r.nexthops?.map((h) => device(h.oif)).join(',') ?? '',
      metric: r.metric,
      prefsrc: r.prefsrc ?? '',
      scope: SCOPE_NAMES[r.scope] ?? String(r.scope),
      type: r.type,
    }));
    return {
      interfaceName: network.interfaceName,
      interfaceIndex: link?.index ?? 0,
      table: network.table,
      priority: network.priority,
      origin: network.origin as Origin,
      connectionId: network.connectionId ?? '',
      connectionUuid: network.connectionUuid ?? '',
      deviceType: network.deviceType ?? '',
      addresses: (plan?.addresses ?? []).map((a) => ({ family: a.family, address: a.local, prefixLength: a.prefixLength })),
      rules: observed.rules.filter((r) => r.table === network.table).map((r) => ({
        family: r.family, priority: r.priority, from: r.src === undefined ? 'all' : r.src, table: r.table,
      })),
      routes,
      state,
      mptcpFlags: mptcpFlagsFor(network, this.config.networks, this.config.mptcp).join(',') || 'off',
      endpoints: this.options.endpoints?.endpointsOf(network.interfaceName) ?? [],
    };
  }
}
