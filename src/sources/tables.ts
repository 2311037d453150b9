// Which connections are managed, and in which table.
//
// - Selection: loopback never; EXCLUDE selectors win; when INCLUDE selectors exist, only
//   connections matching one of them (or an explicit mapping) are managed.
// - Explicit mappings (Config.networks) win, most specific first: uuid, id, interface,
//   type; in config order within a kind. A mapping's table serves one connection at a
//   time: a second connection matching `type:gsm:4000` while the first is up gets an
//   automatic table (and a warning).
// - Otherwise the table is allocated from Config.tableRange, keyed by connection uuid,
//   so it is stable across reconnects, interface renames (a USB modem replugged as
//   wwan1) and daemon restarts (TableStore). A new allocation takes the lowest table in
//   the range that no stored allocation holds, no explicit mapping names, and that holds
//   no foreign routes or rules (tableInUse, answered by the daemon from its kernel cache).
// - An allocation is freed once its connection has not been seen for tableIdleSeconds.
//   The clock starts at the later of the stored last-seen time and this daemon's start:
//   at boot the managers bring connections up after us, and a table must not be given
//   away before they had their chance. Freeing is lazy (on the next assign), so no timer
//   ever wakes the daemon.
import type { Config, NetworkSpec, Selector } from '../config/types';
import type { Logger } from '../log';
import type { ManagedNetwork } from '../model';
import type { ConnectionFact } from './types';
import { TableStore, type TableEntry } from './table-store';

export { StateDirectoryError, TableStore, type TableEntry } from './table-store';

export type TableConfig = Pick<Config, 'networks' | 'include' | 'exclude' | 'tableRange' | 'stateDirectory' | 'tableIdleSeconds'>;

export interface TableAllocatorOptions {
  readonly config: TableConfig;
  readonly log: Logger;
  /** True when the table holds routes or rules that are not ours (never allocate it). */
  readonly tableInUse: (table: number) => boolean;
  /** ms since the epoch; injectable for tests. */
  readonly now?: () => number;
  /** Injectable store (default: TableStore in config.stateDirectory). */
  readonly store?: TableStore;
}

const KIND_ORDER: readonly Selector['match'][] = ['uuid', 'id', 'interface', 'type'];

/** Does the selector match the connection? Types compare case-insensitively; `modem` matches gsm and cdma. */
export function selectorMatches(selector: Selector, fact: ConnectionFact): boolean {
  switch (selector.match) {
    case 'uuid': return selector.value.toLowerCase() === fact.connectionUuid.toLowerCase();
    case 'id': return selector.value === fact.connectionId;
    case 'interface': return selector.value === fact.interfaceName;
    case 'type': {
      const want = selector.value.toLowerCase();
      const have = fact.deviceType.toLowerCase();
      return want === have || (want === 'modem' && (have === 'gsm' || have === 'cdma'))
        || (want === 'gsm' && have === 'wwan') || (want === 'wireless' && have === 'wifi');
    }
  }
}

/** Loopback never; exclude wins; include (if any) or an explicit mapping admits. */
export function isSelected(fact: ConnectionFact, config: Pick<Config, 'include' | 'exclude' | 'networks'>): boolean {
  if (fact.deviceType === 'loopback' || fact.interfaceName === 'lo') return false;
  if (config.exclude.some((s) => selectorMatches(s, fact))) return false;
  if (config.include.length === 0) return true;
  return config.include.some((s) => selectorMatches(s, fact)) || config.networks.some((s) => selectorMatches(s, fact));
}

/** The explicit mapping for a connection: most specific kind first, then config order. */
export function explicitMapping(fact: ConnectionFact, networks: readonly NetworkSpec[]): NetworkSpec | undefined {
  for (const kind of KIND_ORDER) {
    const spec = networks.find((s) => s.match === kind && selectorMatches(s, fact));
    if (spec) return spec;
  }
  return undefined;
}

export class TableAllocator {
  private config: TableConfig;
  private readonly log: Logger;
  private readonly tableInUse: (table: number) => boolean;
  private readonly now: () => number;
  private readonly store: TableStore;
  private readonly startedAt: number;
  private readonly entries: Map<string, TableEntry>;
  /** Keys (uuids) of the allocations seen in the last assign(). */
  private active = new Set<string>();
  private dirty = false;

  /** Checks the state directory (throws StateDirectoryError) and loads the stored allocations. */
  constructor(options: TableAllocatorOptions) {
    this.config = options.config;
    this.log = options.log;
    this.tableInUse = options.tableInUse;
    this.now = options.now ?? Date.now;
    this.store = options.store ?? new TableStore(options.config.stateDirectory, options.log, this.now);
    this.store.checkWritable();
    this.startedAt = this.now();
    this.entries = this.store.load();
    this.dropOutsideRange();
    this.persist();
  }

  /**
   * A reloaded configuration: selection, mappings, range and idle time apply from the next
   * assign(); allocations outside a new range are dropped (their connections get a table
   * in it). The state directory is the store's and stays.
   */
  reconfigure(config: TableConfig): void {
    this.config = config;
    this.dropOutsideRange();
    this.persist();
  }

  private dropOutsideRange(): void {
    const { first, last } = this.config.tableRange;
    for (const [uuid, e] of this.entries) {
      if (e.table < first || e.table > last) {
        this.log.info(`Dropping stored table ${e.table} of connection ${e.connectionId || uuid}: outside the table range ${first}-${last}`);
        this.entries.delete(uuid);
        this.dirty = true;
      }
    }
  }

  /** The stored allocations (uuid -> entry). */
  allocations(): ReadonlyMap<string, TableEntry> {
    return this.entries;
  }

  /**
   * The managed networks for these facts (sorted by table). Updates last-seen times,
   * frees idle allocations and persists changes.
   */
  assign(facts: readonly ConnectionFact[]): ManagedNetwork[] {
    const now = this.now();
    const selected: ConnectionFact[] = [];
    const names = new Set<string>();
    for (const fact of facts) {
      if (!isSelected(fact, this.config) || names.has(fact.interfaceName)) continue;
      names.add(fact.interfaceName);
      selected.push(fact);
    }
    const taken = new Map<number, ConnectionFact>();
    const result: ManagedNetwork[] = [];
    const pending: Array<{ fact: ConnectionFact; key: string }> = [];
    const keys = new Set<string>();
    const activeNow = new Set<string>();

    // 1. explicit mappings
    for (const fact of selected) {
      const spec = explicitMapping(fact, this.config.networks);
      if (spec && !taken.has(spec.table)) {
        taken.set(spec.table, fact);
        result.push(network(fact, spec.table));
        continue;
      }
      if (spec) {
        this.log.warning(`Connection ${label(fact)} matches ${spec.match}:${spec.value} (${spec.definedAt}) but table ${spec.table} already serves ${label(taken.get(spec.table)!)}; allocating another table`);
      }
      // the same profile active on two devices (NM multi-connect) gets one table per device
      const key = keys.has(fact.connectionUuid) ? `${fact.connectionUuid}@${fact.interfaceName}` : fact.connectionUuid;
      keys.add(key);
      pending.push({ fact, key });
    }
    const explicitTables = new Set(this.config.networks.map((s) => s.table));
    // 2. stored allocations (stable), 3. new ones
    const fresh: Array<{ fact: ConnectionFact; key: string }> = [];
    for (const p of pending) {
      const e = this.entries.get(p.key);
      if (e && !explicitTables.has(e.table) && !taken.has(e.table)) {
        taken.set(e.table, p.fact);
        activeNow.add(p.key);
        if (e.connectionId !== p.fact.connectionId) { this.entries.set(p.key, { ...e, connectionId: p.fact.connectionId, lastSeen: now }); this.dirty = true; }
        result.push(network(p.fact, e.table));
      } else {
        if (e) { this.entries.delete(p.key); this.dirty = true; }
        fresh.push(p);
      }
    }
    for (const p of fresh) {
      const table = this.allocate(p.key, taken, explicitTables, now);
      if (table === undefined) continue;
      taken.set(table, p.fact);
      activeNow.add(p.key);
      this.entries.set(p.key, { table, connectionId: p.fact.connectionId, lastSeen: now });
      this.dirty = true;
      this.log.info(`Allocated table ${table} to connection ${label(p.fact)} (kept for it across reconnects and restarts)`);
      result.push(network(p.fact, table));
    }
    // connections that went away: remember when they were last seen
    for (const key of this.active) {
      if (activeNow.has(key)) continue;
      const e = this.entries.get(key);
      if (e) { this.entries.set(key, { ...e, lastSeen: now }); this.dirty = true; }
    }
    this.active = activeNow;
    this.sweep(now);
    this.persist();
    return result.sort((a, b) => a.table - b.table);
  }

  /** Record the active connections as seen now and write the file (call on stop). */
  flush(): void {
    const now = this.now();
    for (const key of this.active) {
      const e = this.entries.get(key);
      if (e) { this.entries.set(key, { ...e, lastSeen: now }); this.dirty = true; }
    }
    this.persist();
  }

  private allocate(key: string, taken: ReadonlyMap<number, ConnectionFact>, explicitTables: ReadonlySet<number>, now: number): number | undefined {
    for (let attempt = 0; attempt < 2; attempt++) {
      const held = new Set([...this.entries.values()].map((e) => e.table));
      for (let t = this.config.tableRange.first; t <= this.config.tableRange.last; t++) {
        if (held.has(t) || taken.has(t) || explicitTables.has(t)) continue;
        if (this.tableInUse(t)) {
          this.log.debug(`Table ${t} holds foreign routes or rules; not allocating it`);
          continue;
        }
        return t;
      }
      // full: free idle allocations early is not allowed (stability); sweep only what is due
      if (!this.sweep(now)) break;
    }
    const { first, last } = this.config.tableRange;
    this.log.error(`No free table in ${first}-${last} for connection ${key}: every table is allocated or holds foreign routes/rules; widen TABLE_RANGE, lower TABLE_IDLE, or map it explicitly with NETWORK=uuid:${key}:TABLE`);
    return undefined;
  }

  /** Free allocations unseen for tableIdleSeconds. Returns true if any was freed. */
  private sweep(now: number): boolean {
    const idleMs = this.config.tableIdleSeconds * 1000;
    let freed = false;
    for (const [key, e] of this.entries) {
      if (this.active.has(key)) continue;
      const since = Math.max(e.lastSeen, this.startedAt);
      if (now - since < idleMs) continue;
      this.entries.delete(key);
      this.dirty = true;
      freed = true;
      this.log.info(`Freed table ${e.table} of connection ${e.connectionId || key} (${key}): not seen for ${Math.round((now - since) / 1000)} s`);
    }
    return freed;
  }

  private persist(): void {
    if (!this.dirty) return;
    try {
      this.store.save(this.entries);
      this.dirty = false;
    } catch (error) {
      this.log.error(`Cannot write ${this.store.file}: ${(error as Error).message}; allocations are kept in memory and written on the next change`);
    }
  }
}

function network(fact: ConnectionFact, table: number): ManagedNetwork {
  return {
    interfaceName: fact.interfaceName,
    table,
    priority: table,
    origin: fact.origin,
    connectionId: fact.connectionId,
    connectionUuid: fact.connectionUuid,
    deviceType: fact.deviceType,
  };
}

function label(fact: ConnectionFact): string {
  return `"${fact.connectionId}" (${fact.connectionUuid}, ${fact.deviceType}, ${fact.interfaceName})`;
}
