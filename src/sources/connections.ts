// The glue the daemon uses: the configured source (or, in `auto`, whichever manager is
// on the bus), turned into ManagedNetworks with their tables. The daemon merges these
// with its static mappings (static wins for its interface) and does all kernel work;
// nothing here touches routes or rules.
import { EventEmitter } from 'node:events';
import type { Config } from '../config/types';
import type { Logger } from '../log';
import type { ManagedNetwork } from '../model';
import { SystemBusClient } from './bus';
import type { ManagerSource } from './manager-source';
import { NetworkManagerSource } from './networkmanager';
import { NetworkdSource } from './networkd';
import { TableAllocator } from './tables';
import type { ConnectionFact } from './types';

export type ActiveSource = 'static' | 'networkmanager' | 'networkd';

/** Emits 'changed' () whenever networks() or activeSource() changed. */
export interface ConnectionNetworks extends EventEmitter {
  /** Throws StateDirectoryError when the state directory is unusable; never for an unreachable bus. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** priority = table, origin = 'networkmanager' | 'networkd'; sorted by table. */
  networks(): readonly ManagedNetwork[];
  activeSource(): ActiveSource;
  /**
   * Tables whose entries of ours must stay although no network wants them now: after a
   * restart, the stored tables until the manager has been heard (graceMs at most), so a
   * daemon that starts before the bus or the manager never tears down a working policy.
   */
  heldTables(): ReadonlySet<number>;
  /**
   * A reloaded configuration: INCLUDE/EXCLUDE, connection mappings, TABLE_RANGE and
   * TABLE_IDLE apply at once ('changed' follows if the networks change). SOURCE and
   * STATE_DIRECTORY are restart-only: the ones given at start stay.
   */
  reconfigure(config: Config): void;
}

export interface ConnectionNetworksDeps {
  /** System bus address; default $DBUS_SYSTEM_BUS_ADDRESS or the standard socket. */
  readonly busAddress?: string;
  /** True when the table holds routes or rules that are not the daemon's. */
  tableInUse(table: number): boolean;
  /** ms since the epoch (tests inject a clock). */
  now?(): number;
  /** How long a vanished manager's connections are kept (default 30 s; see manager-source.ts). */
  readonly graceMs?: number;
  /** A bus client to use instead of one of our own (tests pass a fake). */
  readonly bus?: SystemBusClient;
}

/** How long stored tables are kept, unheard, after start (the manager's restart grace). */
const DEFAULT_HOLD_MS = 30_000;
const NO_TABLES: ReadonlySet<number> = new Set();

export function createConnectionNetworks(config: Config, log: Logger, deps: ConnectionNetworksDeps): ConnectionNetworks {
  return new Connections(config, log, deps);
}

class Connections extends EventEmitter implements ConnectionNetworks {
  private bus?: SystemBusClient;
  private nm?: NetworkManagerSource;
  private networkd?: NetworkdSource;
  private allocator?: TableAllocator;
  private current: readonly ManagedNetwork[] = [];
  private source: ActiveSource;
  private started = false;
  private holdUntil = 0;
  private holdTimer?: NodeJS.Timeout;
  private readonly onChanged = (): void => this.refresh();

  constructor(private config: Config, private readonly log: Logger, private readonly deps: ConnectionNetworksDeps) {
    super();
    this.source = config.source === 'auto' ? 'static' : config.source;
  }

  async start(): Promise<void> {
    if (this.started || this.config.source === 'static') return;
    this.allocator = new TableAllocator({
      config: this.config, log: this.log, tableInUse: (t) => this.deps.tableInUse(t),
      now: this.deps.now ? () => this.deps.now!() : undefined,
    });
    this.started = true;
    this.holdUntil = this.now() + (this.deps.graceMs ?? DEFAULT_HOLD_MS);
    // When the hold ends unheard, a pass must run to remove what is stale by then.
    this.holdTimer = setTimeout(() => { this.holdTimer = undefined; if (this.started) this.emit('changed'); }, this.holdUntil - this.now());
    this.bus = this.deps.bus ?? new SystemBusClient({ address: this.deps.busAddress, log: this.log });
    const options = { bus: this.bus, log: this.log, graceMs: this.deps.graceMs };
    if (this.config.source === 'networkmanager' || this.config.source === 'auto') this.nm = new NetworkManagerSource(options);
    if (this.config.source === 'networkd' || this.config.source === 'auto') this.networkd = new NetworkdSource(options);
    const sources = [this.nm, this.networkd].filter((s): s is NonNullable<typeof s> => s !== undefined);
    for (const s of sources) s.on('changed', this.onChanged);
    // Sources first (their match rules are added on connect), then the bus.
    await Promise.all(sources.map((s) => s.start()));
    await this.bus.start();
    // A first connect triggers each source's resync through 'connected'; wait for it briefly
    // so the daemon's first pass already sees the connections that are up.
    if (this.bus.connected()) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(sources.map((s) => s.synced())),
        new Promise<void>((resolve) => { timer = setTimeout(resolve, 5000); }),
      ]);
      clearTimeout(timer);
    }
    this.log.info(`Connection source: ${this.config.source}${this.config.source === 'auto' ? ` (now ${this.activeSource()})` : ''}, bus ${this.bus.address}`);
    this.refresh();
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    clearTimeout(this.holdTimer);
    for (const s of [this.nm, this.networkd]) {
      if (!s) continue;
      s.off('changed', this.onChanged);
      await s.stop();
    }
    await this.bus?.stop();
    this.allocator?.flush();
  }

  networks(): readonly ManagedNetwork[] {
    return this.current;
  }

  activeSource(): ActiveSource {
    return this.source;
  }

  heldTables(): ReadonlySet<number> {
    const sources = [this.nm, this.networkd].filter((s): s is NonNullable<typeof s> => s !== undefined);
    if (!this.started || !this.allocator || this.now() >= this.holdUntil || sources.every((s) => s.heard())) return NO_TABLES;
    const tables = new Set([...this.allocator.allocations().values()].map((entry) => entry.table));
    // Connections mapped to a table by uuid, id or type were there last run just the same.
    for (const spec of this.config.networks) if (spec.match !== 'interface') tables.add(spec.table);
    return tables;
  }

  reconfigure(config: Config): void {
    this.config = { ...config, source: this.config.source, stateDirectory: this.config.stateDirectory };
    this.allocator?.reconfigure(this.config);
    this.refresh();
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  private pick(): { source: ActiveSource; facts: readonly ConnectionFact[] } {
    if (this.config.source === 'networkmanager') return { source: 'networkmanager', facts: this.nm?.connections() ?? [] };
    if (this.config.source === 'networkd') return { source: 'networkd', facts: this.networkd?.connections() ?? [] };
    const chosen: ManagerSource | undefined = this.nm?.present() ? this.nm : this.networkd?.present() ? this.networkd : undefined;
    return { source: chosen?.origin ?? 'static', facts: chosen?.connections() ?? [] };
  }

  private refresh(): void {
    if (!this.started || !this.allocator) return;
    const { source, facts } = this.pick();
    const next = this.allocator.assign(facts);
    const sourceChanged = source !== this.source;
    if (sourceChanged) this.log.info(`Connection source is now ${source}`);
    this.source = source;
    if (!sourceChanged && sameNetworks(next, this.current)) return;
    logDiff(this.log, this.current, next);
    this.current = next;
    this.emit('changed');
  }
}

const key = (n: ManagedNetwork): string => `${n.interfaceName}\0${n.table}\0${n.priority}\0${n.origin}\0${n.connectionId ?? ''}\0${n.connectionUuid ?? ''}\0${n.deviceType ?? ''}`;

function sameNetworks(a: readonly ManagedNetwork[], b: readonly ManagedNetwork[]): boolean {
  return a.length === b.length && a.every((n, i) => key(n) === key(b[i]!));
}

function logDiff(log: Logger, before: readonly ManagedNetwork[], after: readonly ManagedNetwork[]): void {
  const was = new Map(before.map((n) => [key(n), n]));
  const now = new Map(after.map((n) => [key(n), n]));
  for (const [k, n] of was) if (!now.has(k)) log.info(`Connection gone: "${n.connectionId}" (${n.connectionUuid}) on ${n.interfaceName}, table ${n.table}`);
  for (const [k, n] of now) if (!was.has(k)) log.info(`Connection managed: "${n.connectionId}" (${n.connectionUuid}, ${n.deviceType}) on ${n.interfaceName} -> table ${n.table}, priority ${n.priority} (${n.origin})`);
}
