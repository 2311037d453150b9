// What NetworkManager and systemd-networkd sources have in common: following the
// manager's bus name (NameOwnerChanged), resynchronising after every (re)appearance
// or bus reconnect, ignoring signals from a previous owner, and the grace period.
//
// Grace period: when the manager leaves the bus (restart, crash, upgrade) or the bus
// connection drops, the connections it last reported stay in connections() for up to
// `graceMs` (default 30 s) or until the manager is back and settled (NetworkManager:
// its `Startup` property is false; networkd: no link is still pending). Both managers
// leave addresses and routes in place when they stop, and re-adopt them when they
// start, so flushing our rules for a restart would cut traffic for nothing and re-add
// it a second later. While the grace period lasts, facts the manager reports again
// replace the held ones (same uuid or same interface). A connection that really went
// away during the restart is removed when the grace period ends; the kernel meanwhile
// removes its addresses, and the daemon derives rules from the kernel's addresses.
import { EventEmitter } from 'node:events';
import type { Logger } from '../log';
import type { ConnectionFact, ConnectionSource } from './types';
import { mergeHeld, sameFacts } from './facts';
import { SystemBusClient, BusCallError, type SignalMessage } from './bus';

export const DEFAULT_GRACE_MS = 30_000;

export interface ManagerSourceOptions {
  readonly log: Logger;
  /** A shared bus client (started by its owner). Without it the source opens its own. */
  readonly bus?: SystemBusClient;
  /** Address for an own bus client; default $DBUS_SYSTEM_BUS_ADDRESS or the standard socket. */
  readonly busAddress?: string;
  readonly graceMs?: number;
}

/**
 * A ConnectionSource that also says whether its manager is on the bus (or in its grace
 * period); 'changed' is emitted when either connections() or present() changes.
 */
export interface ManagerSource extends ConnectionSource {
  /** The manager's bus name is owned, or its last facts are held in the grace period. */
  present(): boolean;
  /** Resolves when the latest read of the manager's state has finished. */
  synced(): Promise<void>;
  /** The manager's state (or its absence from the bus) has been read at least once. */
  heard(): boolean;
}

export abstract class ManagerSourceBase extends EventEmitter implements ManagerSource {
  abstract readonly origin: ConnectionSource['origin'];
  /** Well-known bus name of the manager. */
  protected abstract readonly busName: string;
  /** Human name for log lines. */
  protected abstract readonly label: string;

  protected readonly log: Logger;
  protected readonly bus: SystemBusClient;
  private readonly ownsBus: boolean;
  private readonly graceMs: number;
  /** Unique name of the current owner; signals from anyone else are ignored. */
  protected owner?: string;
  private generation = 0;
  private running = false;
  private current: readonly ConnectionFact[] = [];
  private held: readonly ConnectionFact[] = [];
  private graceTimer?: NodeJS.Timeout;
  /** Held because the manager left: the grace ends early once it is back and settled. */
  private awaitingReturn = false;
  private snapshot: readonly ConnectionFact[] = [];
  private wasPresent = false;
  /** Signals from the owner that arrived while a dump was in flight. */
  private buffered?: SignalMessage[];
  private readonly onSignal = (msg: SignalMessage): void => this.signal(msg);
  private syncing: Promise<void> = Promise.resolve();
  private everHeard = false;
  private readonly onConnected = (): void => { this.syncing = this.resync(); };
  private readonly onDisconnected = (): void => { this.lost('the system bus connection dropped'); };

  constructor(options: ManagerSourceOptions) {
    super();
    this.log = options.log;
    this.ownsBus = options.bus === undefined;
    this.bus = options.bus ?? new SystemBusClient({ address: options.busAddress, log: options.log });
    this.graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  }

  /** Match rules for the manager's signals (NameOwnerChanged is added by the base). */
  protected abstract signalMatches(): readonly string[];
  /**
   * Read the manager's whole state from `owner` (unless `stale()` turns true meanwhile)
   * and return the seq of the reply it is based on (SystemBusClient.callOrdered).
   */
  protected abstract dump(owner: string, stale: () => boolean): Promise<number>;
  /** Forget everything dumped. */
  protected abstract clear(): void;
  /** A signal from the current owner. */
  protected abstract handle(msg: SignalMessage): void;
  /** Facts derived from the dumped state. */
  protected abstract derive(): readonly ConnectionFact[];
  /** The manager has finished its own start-up (ends a grace period early). */
  protected abstract settled(): boolean;

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.bus.on('signal', this.onSignal);
    this.bus.on('connected', this.onConnected);
    this.bus.on('disconnected', this.onDisconnected);
    const rules = [
      `type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='${this.busName}'`,
      ...this.signalMatches(),
    ];
    if (this.ownsBus) {
      for (const rule of rules) void this.bus.addMatch(rule);
      await this.bus.start();
      // the bus client adds the rules on connect and then emits 'connected' -> resync
      if (this.bus.connected()) await (this.syncing = this.resync());
    } else {
      try {
        for (const rule of rules) await this.bus.addMatch(rule);
      } catch (error) {
        this.log.debug(`${this.label}: adding match rules failed (${String(error)}); they are re-added on reconnect`);
      }
      if (this.bus.connected()) await (this.syncing = this.resync());
    }
  }

  /** Resolves when the latest resynchronisation (name owner + dump) has finished. */
  synced(): Promise<void> {
    return this.syncing;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.generation++;
    this.bus.off('signal', this.onSignal);
    this.bus.off('connected', this.onConnected);
    this.bus.off('disconnected', this.onDisconnected);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    if (this.ownsBus) await this.bus.stop();
  }

  connections(): readonly ConnectionFact[] {
    return this.snapshot;
  }

  present(): boolean {
    return this.owner !== undefined || this.held.length > 0;
  }

  /** Recompute the facts from the dumped state; emits 'changed' if they differ. */
  protected update(): boolean {
    this.current = this.owner ? this.derive() : [];
    if (this.held.length > 0 && this.awaitingReturn && this.owner && this.settled()) this.endGrace(`${this.label} is back and settled`);
    return this.publish();
  }

  /** Emits 'changed' if the facts or presence differ from what was last published; says whether it did. */
  private publish(): boolean {
    const next = this.held.length === 0 ? this.current : mergeHeld(this.held, this.current);
    const present = this.present();
    if (sameFacts(next, this.snapshot) && present === this.wasPresent) return false;
    this.snapshot = next;
    this.wasPresent = present;
    this.emit('changed');
    return true;
  }

  /** Find out who owns the name now and read everything from it. */
  protected async resync(): Promise<void> {
    if (!this.running) return;
    const generation = ++this.generation;
    const stale = (): boolean => generation !== this.generation || !this.running;
    let owner: string | undefined;
    try {
      owner = await this.bus.nameOwner(this.busName);
    } catch (error) {
      if (!stale()) this.log.debug(`${this.label}: GetNameOwner failed: ${String(error)}`);
      return;
    }
    if (stale()) return;
    if (!owner) {
      this.log.debug(`${this.label} (${this.busName}) is not on the bus`);
      const first = !this.everHeard;
      this.everHeard = true;
      if (!this.lost(undefined) && first) this.emit('changed');
      return;
    }
    this.owner = owner;
    let replySeq: number;
    this.buffered = [];
    try {
      replySeq = await this.dump(owner, stale);
    } catch (error) {
      this.buffered = undefined;
      if (stale()) return;
      // The owner vanished mid-dump (NameOwnerChanged follows) or answered garbage: retry once shortly.
      this.log.warning(`${this.label}: reading its state failed: ${error instanceof BusCallError ? error.message : String(error)}; retrying`);
      setTimeout(() => { if (!stale()) void this.resync(); }, 500).unref?.();
      return;
    }
    const buffered = this.buffered;
    this.buffered = undefined;
    if (stale()) return;
    this.log.debug(`${this.label}: state read from ${owner}`);
    // signals newer than the dump's reply (dispatched before we resumed) still apply
    for (const msg of buffered ?? []) if (msg.seq > replySeq && msg.sender === this.owner) this.handle(msg);
    const first = !this.everHeard;
    this.everHeard = true;
    // The first word from the manager matters even when it brings no connections: the
    // daemon keeps the last run's entries until then.
    if (!this.update() && first) this.emit('changed');
  }

  heard(): boolean {
    return this.everHeard;
  }

  /**
   * Run a re-read while buffering the owner's signals, then replay those newer than its
   * reply (for subclasses that re-read part of the state outside resync()).
   */
  protected async reread(read: () => Promise<number | undefined>): Promise<void> {
    const outer = this.buffered;
    const own: SignalMessage[] = [];
    if (!outer) this.buffered = own;
    let replySeq: number | undefined;
    try {
      replySeq = await read();
    } finally {
      if (!outer && this.buffered === own) this.buffered = undefined;
    }
    if (replySeq === undefined || outer) return;
    for (const msg of own) if (msg.seq > replySeq && msg.sender === this.owner) this.handle(msg);
  }

  private signal(msg: SignalMessage): void {
    if (!this.running) return;
    if (msg.sender === 'org.freedesktop.DBus' && msg.member === 'NameOwnerChanged') {
      const [name, , newOwner] = msg.body as [string, string, string];
      if (name !== this.busName) return;
      if (newOwner) {
        this.log.info(`${this.label} appeared on the bus (${newOwner}); reading its state`);
        this.owner = undefined;
        this.clear();
        this.syncing = this.resync();
      } else {
        this.generation++;
        this.lost(`${this.label} left the bus`);
      }
      return;
    }
    if (!this.owner || msg.sender !== this.owner) return;
    if (this.buffered) {
      this.buffered.push(msg);
      return;
    }
    this.handle(msg);
  }

  /** The facts derived before the latest update (for subclasses that hold vanished objects). */
  protected currentFacts(): readonly ConnectionFact[] {
    return this.current;
  }

  /**
   * Keep facts whose objects the manager unexported without deactivating them first (what
   * NetworkManager does while shutting down): they stay for the grace period, or until
   * the manager reports them again.
   */
  protected hold(facts: readonly ConnectionFact[], reason: string): void {
    if (facts.length === 0 || !this.running || this.graceMs <= 0) return;
    this.held = mergeHeld(this.held, facts);
    this.log.debug(`${reason}; holding ${facts.map((f) => f.interfaceName).join(', ')} for up to ${Math.round(this.graceMs / 1000)} s`);
    this.startGraceTimer();
  }

  private startGraceTimer(): void {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = setTimeout(() => this.endGrace(`${this.label} did not report them again within ${Math.round(this.graceMs / 1000)} s`), this.graceMs);
    this.graceTimer.unref?.();
  }

  /** The manager is gone (or unreachable): keep the last facts for the grace period. */
  /** Returns whether 'changed' was emitted. */
  private lost(reason: string | undefined): boolean {
    const had = this.current.length > 0 ? this.current : this.snapshot;
    this.owner = undefined;
    this.clear();
    this.current = [];
    if (had.length > 0 && this.running && this.graceMs > 0) {
      this.held = mergeHeld(this.held, had);
      this.awaitingReturn = true;
      this.log.info(`${reason ?? `${this.label} is gone`}; keeping its ${this.held.length} connection(s) for up to ${Math.round(this.graceMs / 1000)} s in case it comes back`);
      this.startGraceTimer();
    } else if (reason) {
      this.log.info(reason);
    }
    return this.publish();
  }

  private endGrace(reason: string): void {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.awaitingReturn = false;
    if (this.held.length === 0) return;
    this.log.info(`${reason}; grace period over`);
    this.held = [];
    this.publish();
  }
}

