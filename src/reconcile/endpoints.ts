// MPTCP endpoints follow the managed addresses: after every pass of the rule loop, and on
// a poll (the kernel announces no endpoint changes), one sync at a time dumps the path
// manager's endpoints, plans against what dynmhs wants and owns, and applies the change.
import type { MptcpFlags } from '../config/types';
import type { EndpointView } from '../control';
import type { Logger } from '../log';
import type { Endpoint, ManagedNetwork, MptcpLimits, OperationResult } from '../model';
import type { NetworkPlan } from '../policy/derive';
import { flagNames, MAX_ENDPOINTS, planEndpoints, raisedLimits, wantedEndpoints, type WantedEndpoint } from '../policy/endpoints';
import { Backoff, systemClock, type Clock } from './limiter';

/** What the sync needs of the path manager (kernel/mptcp.ts; a fake in unit tests). */
export interface PathManager {
  endpoints(): Promise<Endpoint[]>;
  add(endpoint: Omit<Endpoint, 'port'>): Promise<OperationResult>;
  remove(endpoint: Pick<Endpoint, 'id' | 'family' | 'address'>): Promise<OperationResult>;
  limits(): Promise<MptcpLimits>;
  setLimits(limits: MptcpLimits): Promise<OperationResult>;
  close(): void;
  /** Settings under which endpoints do nothing, one sentence each. */
  problems?(): string[];
}

export interface OwnedRecord {
  load(): Map<number, string>;
  save(owned: ReadonlyMap<number, string>): void;
}

export interface EndpointSyncOptions {
  readonly open: () => Promise<PathManager>;
  readonly store: OwnedRecord;
  readonly log: Logger;
  readonly clock?: Clock;
  /** How often to look for endpoints deleted by others (default 2000 ms). */
  readonly pollMs?: number;
  /** Called after a sync that changed what status shows. */
  readonly onChange?: () => void;
}

const DEFAULT_POLL_MS = 2_000;
/** DEL_ADDR of an id the kernel no longer has answers EINVAL ("address not found"). */
const GONE = new Set(['EINVAL', 'ENOENT', 'ESRCH']);

export class EndpointSync {
  private readonly clock: Clock;
  private pm?: PathManager;
  private unavailable?: string;
  private owned?: Map<number, string>;
  private plans: readonly NetworkPlan[] = [];
  private flagsOf: (network: ManagedNetwork) => MptcpFlags = () => [];
  private dirty = false;
  private running?: Promise<void>;
  private pollTimer?: unknown;
  private stopped = false;
  /** Addresses whose own endpoint was in place after the last sync: gone now means deleted by another. */
  private installed = new Set<string>();
  private readonly restores = new Backoff();
  private reported = new Set<string>();
  private views = new Map<string, EndpointView[]>();
  private signature = '';
  /** How many endpoints were wanted when the limits were last checked. */
  private limitsCheckedFor = -1;
  private problemsReported = new Set<string>();

  constructor(private readonly options: EndpointSyncOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** The rule loop's latest plans: what the endpoints follow. */
  update(plans: readonly NetworkPlan[], flagsOf: (network: ManagedNetwork) => MptcpFlags): void {
    this.plans = plans;
    this.flagsOf = flagsOf;
    this.markDirty();
  }

  /** Endpoints for the managed addresses of one interface, as of the last sync. */
  endpointsOf(interfaceName: string): readonly EndpointView[] {
    return this.views.get(interfaceName) ?? [];
  }

  markDirty(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (this.running !== undefined) return;
    this.running = this.loop().finally(() => { this.running = undefined; });
  }

  /** Resolves when no sync runs. */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  /** Stops syncing and deletes every own endpoint (SIGTERM), and only those. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer !== undefined) this.clock.clearTimeout(this.pollTimer);
    await this.idle();
    const pm = this.pm;
    if (pm === undefined || this.owned === undefined) return;
    try {
      const present = await pm.endpoints();
      let removed = 0;
      for (const endpoint of present) {
        if (this.owned.get(endpoint.id) !== endpoint.address) continue;
        const result = await pm.remove(endpoint);
        if (result.ok || GONE.has(result.code ?? '')) { this.owned.delete(endpoint.id); removed++; } else {
          this.options.log.error(`Deleting MPTCP endpoint id ${endpoint.id} ${endpoint.address} failed: ${result.code}`);
        }
      }
      const before = this.owned.size + removed;
      for (const [id, address] of [...this.owned]) if (!present.some((e) => e.id === id && e.address === address)) this.owned.delete(id);
      if (this.owned.size !== before) this.save();
      this.options.log.info(`Removed ${removed} MPTCP endpoint${removed === 1 ? '' : 's'}`);
    } catch (error) {
      this.options.log.error(`Removing MPTCP endpoints: ${(error as Error).message}`);
    } finally {
      pm.close();
      this.pm = undefined;
    }
  }

  /**
   * Stops syncing and leaves every endpoint and the record as they are: a successor
   * (a restart) adopts them, so open connections keep their subflows.
   */
  async release(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer !== undefined) this.clock.clearTimeout(this.pollTimer);
    await this.idle();
    this.pm?.close();
    this.pm = undefined;
  }

  private async loop(): Promise<void> {
    while (this.dirty && !this.stopped) {
      this.dirty = false;
      try {
        await this.sync();
      } catch (error) {
        this.options.log.error(`MPTCP endpoint sync failed: ${(error as Error).message}; retrying`);
      }
    }
    this.schedulePoll();
  }

  private schedulePoll(): void {
    // Nothing of ours to keep in place: no need to look.
    if (this.stopped || this.pm === undefined || (this.installed.size === 0 && wantedEndpoints(this.plans, this.flagsOf).length === 0)) return;
    if (this.pollTimer !== undefined) this.clock.clearTimeout(this.pollTimer);
    this.pollTimer = this.clock.setTimeout(() => { this.pollTimer = undefined; this.markDirty(); }, this.options.pollMs ?? DEFAULT_POLL_MS);
  }

  private async sync(): Promise<void> {
    const { log } = this.options;
    const wanted = wantedEndpoints(this.plans, this.flagsOf);
    const owned = this.owned ??= this.options.store.load();
    // MPTCP off and nothing of ours left from an earlier run: no socket, no dump per pass.
    if (wanted.length === 0 && owned.size === 0 && this.installed.size === 0) {
      this.updateViews(wanted, []);
      return;
    }
    const pm = await this.open(wanted);
    if (pm === undefined) return;
    if (wanted.length > 0) this.reportProblems(pm);
    const present = await pm.endpoints();
    const plan = planEndpoints(wanted, present, owned);
    this.reportForeign(plan.foreign, plan.noRoom);

    const inPlace = new Map<number, string>(plan.kept.map((e) => [e.id, e.address]));
    for (const endpoint of plan.remove) {
      const result = await pm.remove(endpoint);
      if (result.ok || GONE.has(result.code ?? '')) {
        log.info(`Deleting MPTCP endpoint id ${endpoint.id} ${endpoint.address} ${flagNames(endpoint.flags)}`);
        this.installed.delete(endpoint.address);
      } else {
        inPlace.set(endpoint.id, endpoint.address);
        log.error(`Deleting MPTCP endpoint id ${endpoint.id} ${endpoint.address} failed: ${result.code}; retrying`);
      }
    }
    let retryIn = 0;
    /** Restores that must wait: they stay restores (counted, warned) when their turn comes. */
    const heldBack: string[] = [];
    const now = this.clock.now();
    for (const endpoint of plan.add) {
      if (this.installed.has(endpoint.address)) {
        // Ours was in place and is gone without us: another program deleted it.
        const wait = this.restores.take(endpoint.address, now);
        if (wait > 0) { retryIn = retryIn === 0 ? wait : Math.min(retryIn, wait); heldBack.push(endpoint.address); continue; }
        log.warning(`MPTCP endpoint ${endpoint.address} (${endpoint.interfaceName}) was deleted by another program; restoring it`
          + ` (${this.restores.count(endpoint.address)} time${this.restores.count(endpoint.address) === 1 ? '' : 's'} within a minute, further restores back off)`);
      }
      // Recorded before it exists: a crash in between leaves a record, never an unrecorded endpoint.
      owned.set(endpoint.id, endpoint.address);
      try {
        this.save();
      } catch (error) {
        owned.delete(endpoint.id);
        log.error(`Cannot record MPTCP endpoint ownership in the state directory (${(error as Error).message}); not adding endpoint ${endpoint.address}`);
        continue;
      }
      const result = await pm.add(endpoint);
      const description = `id ${endpoint.id} ${endpoint.address} dev ${endpoint.interfaceName} ${flagNames(endpoint.flags)}`;
      if (result.ok) {
        log.info(`Adding MPTCP endpoint ${description}`);
        inPlace.set(endpoint.id, endpoint.address);
      } else {
        log.error(`Adding MPTCP endpoint ${description} failed: ${result.code}; retrying`);
      }
    }
    // The record holds exactly the own endpoints now in the kernel.
    const changed = inPlace.size !== owned.size || [...owned].some(([id, address]) => inPlace.get(id) !== address);
    this.owned = inPlace;
    if (changed) this.save();
    this.installed = new Set([...inPlace.values(), ...heldBack]);
    this.restores.prune(now);
    // A poll that found everything in place costs one dump: nothing else can have changed.
    const touched = plan.remove.length > 0 || plan.add.length > 0;
    const wantedCount = wanted.length;
    if (touched || wantedCount !== this.limitsCheckedFor) {
      await this.raiseLimits(pm, wanted);
      this.limitsCheckedFor = wantedCount;
    }
    this.updateViews(wanted, touched ? await pm.endpoints() : present);
    if (retryIn > 0) this.clock.setTimeout(() => this.markDirty(), retryIn);
  }

  private async open(wanted: readonly WantedEndpoint[]): Promise<PathManager | undefined> {
    if (this.pm !== undefined) return this.pm;
    try {
      this.pm = await this.options.open();
      this.unavailable = undefined;
      return this.pm;
    } catch (error) {
      const message = (error as Error).message;
      if (wanted.length > 0 && this.unavailable !== message) this.options.log.error(`No MPTCP endpoints: ${message}`);
      this.unavailable = message;
      return undefined;
    }
  }

  /** Each setting that makes the endpoints useless, once while it lasts. */
  private reportProblems(pm: PathManager): void {
    const problems = new Set(pm.problems?.() ?? []);
    for (const problem of problems) if (!this.problemsReported.has(problem)) this.options.log.warning(`MPTCP endpoints are in place, but ${problem}`);
    this.problemsReported = problems;
  }

  private async raiseLimits(pm: PathManager, wanted: readonly WantedEndpoint[]): Promise<void> {
    if (wanted.length === 0) return;
    const current = await pm.limits();
    const raised = raisedLimits(current, wanted.length);
    if (raised === undefined) return;
    const result = await pm.setLimits(raised);
    if (result.ok) {
      this.options.log.info(`Raising MPTCP limits: subflows ${current.subflows} -> ${raised.subflows}, add_addr_accepted ${current.addAddrAccepted} -> ${raised.addAddrAccepted}`);
    } else {
      this.options.log.error(`Raising MPTCP limits to subflows ${raised.subflows}, add_addr_accepted ${raised.addAddrAccepted} failed: ${result.code}`);
    }
  }

  /** Each foreign endpoint and each address without room, once while it lasts. */
  private reportForeign(foreign: readonly { wanted: WantedEndpoint; present: Endpoint }[], noRoom: readonly WantedEndpoint[]): void {
    const seen = new Set<string>();
    for (const wanted of noRoom) {
      const key = `no room ${wanted.address}`;
      seen.add(key);
      if (!this.reported.has(key)) {
        this.options.log.warning(`No MPTCP endpoint for ${wanted.address} (${wanted.interfaceName}): the kernel holds at most ${MAX_ENDPOINTS} endpoints, and that many are in place`);
      }
    }
    for (const { wanted, present } of foreign) {
      const key = `${present.id} ${present.address} ${present.flags}`;
      seen.add(key);
      if (!this.reported.has(key)) {
        this.options.log.warning(`Leaving foreign MPTCP endpoint alone: id ${present.id} ${present.address} ${flagNames(present.flags)}`
          + ` on ${wanted.interfaceName} (not made by dynmhs; wanted ${flagNames(wanted.flags)})`);
      }
    }
    this.reported = seen;
  }

  private updateViews(wanted: readonly WantedEndpoint[], present: readonly Endpoint[]): void {
    const views = new Map<string, EndpointView[]>();
    for (const want of wanted) {
      const there = present.find((e) => e.address === want.address && e.port === 0);
      if (there === undefined) continue;
      const list = views.get(want.interfaceName) ?? [];
      list.push({ id: there.id, address: there.address, flags: flagNames(there.flags), own: this.owned?.get(there.id) === there.address });
      views.set(want.interfaceName, list);
    }
    const signature = JSON.stringify([...views]);
    this.views = views;
    if (signature !== this.signature) {
      this.signature = signature;
      this.options.onChange?.();
    }
  }

  private save(): void {
    this.options.store.save(this.owned ?? new Map());
  }
}
