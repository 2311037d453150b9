// The level-triggered loop: events only mark the state dirty; one pass at a time
// derives the desired state from a snapshot, diffs it against the kernel and applies
// the difference. Changes coalesce into one pass that starts once the code that made
// them is done (a microtask), not a turn of the event loop later.
import { describeOperation } from '../describe';
import { operationKey, routeKey, ruleKey } from '../keys';
import type { Logger } from '../log';
import type { Desired, ManagedNetwork, Observed, Operation, OperationResult, Route, Rule } from '../model';
import type { Kernel } from '../kernel/types';
import { derive, type NetworkPlan } from '../policy/derive';
import { diff } from './diff';
import { rulesAfterAddressChanges } from './address-pass';
import { BurstHold } from './burst-hold';
import { IncrementalRoutes } from './incremental';
import { Backoff, systemClock, type Clock } from './limiter';
import { ForeignReports, warnRestore } from './foreign';
import { Refusals } from './refusals';

export { NETWORKD_DROP_IN } from './foreign';
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 30_000;

export interface PassResult {
  readonly plans: readonly NetworkPlan[];
  readonly added: number;
  readonly removed: number;
  readonly failed: number;
  /** Interfaces with an operation the kernel refused in this pass. */
  readonly failedNetworks: ReadonlySet<string>;
  /** How many routes the pass wanted in the tables. */
  readonly desiredRoutes: number;
  /** Only route changes were looked at (see IncrementalRoutes), not everything. */
  readonly routesOnly: boolean;
  /** Only address changes (and route changes with them) were looked at (see address-pass.ts), not everything. */
  readonly addressesOnly: boolean;
}

/** What a pass looked at: everything, or only the changes since a complete pass (see PassResult). */
type PassKind = 'full' | 'routes' | 'addresses';

export interface ReconcilerOptions {
  readonly kernel: Kernel;
  readonly networks: () => readonly ManagedNetwork[];
  readonly log: Logger;
  readonly clock?: Clock;
  /** Called after every pass, with what it did. */
  readonly onPass?: (result: PassResult) => void;
  /** Tables our entries must stay in for now, though no network wants them (a source not heard yet). */
  readonly heldTables?: () => ReadonlySet<number> | undefined;
  /** Passes that computed at least this long wait for a burst of changes to end (default 0.5 ms). */
  readonly holdThresholdMs?: number;
}

interface Installed {
  readonly routes: ReadonlyMap<string, unknown>;
  readonly rules: ReadonlySet<string>;
  readonly missing: ReadonlySet<string>;
}

function nothingInstalled(): Installed {
  return { routes: new Map(), rules: new Set(), missing: new Set() };
}

function wasInstalled(installed: Installed, key: string): boolean {
  return (installed.routes.has(key) || installed.rules.has(key)) && !installed.missing.has(key);
}

function networksSignature(networks: readonly ManagedNetwork[]): string {
  return networks.map((n) => `${n.interfaceName}:${n.table}:${n.priority}`).join(' ');
}

/** The last full pass's plans, their route lists read from the routes wanted now (for status reports). */
function withCurrentRoutes(plans: readonly NetworkPlan[], routes: ReadonlyMap<string, Route>): NetworkPlan[] {
  return plans.map((plan) => ({
    network: plan.network, link: plan.link, addresses: plan.addresses, rules: plan.rules,
    get routes(): readonly Route[] {
      return [...routes.values()].filter((route) => route.table === plan.network.table);
    },
  }));
}

export class Reconciler {
  private readonly clock: Clock;
  private dirty = false;
  private running?: Promise<void>;
  private scheduled = false;
  private retryTimer?: unknown;
  private retryDelay = 0;
  private stopped = false;
  /**
   * What was in place at the end of the last pass: everything it wanted (its desired
   * routes, taken over as they are, and rules) but what it could not put there.
   */
  private installed = nothingInstalled();
  private readonly restores = new Backoff();
  /**
   * Restores the backoff holds back. The retry timer's pass no longer sees the deletion
   * (the kernel reported it to an earlier pass): without this it would re-add them as if
   * new, uncounted, and a fighter would get twice the restores the limit allows.
   */
  private heldRestores: ReadonlySet<string> = new Set();
  private readonly refusals = new Refusals();
  private readonly foreign: ForeignReports;
  private idleWaiters: Array<() => void> = [];
  private readonly burst: BurstHold;
  private readonly kickNow = (): void => this.kick();
  private keptBackReported = false;
  private last?: PassResult;
  /**
   * The last full pass, when it left the kernel exactly as wanted: what route-only and
   * address passes build on. Address passes keep its rules and plans up to date; its routes
   * are those wanted now while `incremental` is undefined, else `incremental` has them.
   */
  private lastComplete?: { readonly desired: Desired; readonly plans: readonly NetworkPlan[] };
  private incremental?: IncrementalRoutes;
  private networksSignature = '';
  private tableNames = new Map<number, string>();
  /** One function for every pass: compiled code that calls it stays valid from pass to pass. */
  private readonly networkOf = (table: number): string | undefined => this.tableNames.get(table);

  constructor(private readonly options: ReconcilerOptions) {
    this.clock = options.clock ?? systemClock;
    this.burst = new BurstHold(this.clock, options.holdThresholdMs);
    this.foreign = new ForeignReports(options.log);
    // After a re-dump (events were lost), what is missing was not necessarily deleted by
    // anyone: start the restore accounting afresh rather than throttle honest re-adds.
    options.kernel.on('resynced', () => {
      this.installed = nothingInstalled();
      this.heldRestores = new Set();
      this.refusals.clear();
    });
  }

  /**
   * Something changed: run a pass soon, in a microtask, coalesced. While changes keep
   * coming (a burst: thousands of routes) and passes are expensive, wait for the burst to
   * end: one pass over the result beats a full pass per handful of changes.
   */
  markDirty(): void {
    if (this.stopped) return;
    const now = this.clock.now();
    const hold = this.burst.noteChange(now);
    this.dirty = true;
    // A pass that is running or about to run picks this change up.
    if (this.running !== undefined || this.scheduled) return;
    if (hold) { this.burst.hold(now, this.kickNow); return; }
    if (this.burst.holding) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.kick();
    });
  }

  lastPass(): PassResult | undefined {
    return this.last;
  }

  /** Resolves when no pass runs and none is pending (tests, shutdown). */
  idle(): Promise<void> {
    if (this.running === undefined && !this.dirty && !this.scheduled) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops scheduling passes and waits for the one running, if any. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer);
    this.burst.cancel();
    await this.running;
    this.dirty = false;
    this.notifyIdle();
  }

  private kick(): void {
    if (this.running !== undefined || !this.dirty || this.stopped) {
      if (this.running === undefined && !this.dirty) this.notifyIdle();
      return;
    }
    this.dirty = false;
    this.running = this.pass()
      .catch((error: Error) => {
        this.options.log.error(`Reconcile pass failed: ${error.stack ?? error.message}`);
        this.scheduleRetry();
      })
      .finally(() => {
        this.running = undefined;
        if (this.dirty) this.afterBusyPass(); else this.notifyIdle();
      });
  }

  /** Changes came in during the pass: the next one now, or when their burst is over. */
  private afterBusyPass(): void {
    const now = this.clock.now();
    if (this.burst.shouldHold(now)) this.burst.hold(now, this.kickNow); else this.kick();
  }

  private notifyIdle(): void {
    if (this.running !== undefined || this.dirty || this.scheduled || this.burst.holding) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private scheduleRetry(delayMs?: number): void {
    if (this.stopped) return;
    if (delayMs === undefined) {
      this.retryDelay = this.retryDelay === 0 ? RETRY_FIRST_MS : Math.min(this.retryDelay * 2, RETRY_MAX_MS);
      delayMs = this.retryDelay;
    }
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.markDirty();
    }, delayMs);
  }

  private async pass(): Promise<void> {
    const { kernel, log } = this.options;
    const computeStart = this.clock.now();
    // A re-dump is under way: the cache may be stale. It says 'changed' when done.
    if (kernel.isResyncing()) return;
    const observed = kernel.observed();
    const networks = this.options.networks();
    const changes = kernel.takeChanges();
    const addressesChanged = changes.addressLinks.size > 0;
    // Refusals wait for routes via their network's link to change, or any link, address or rule.
    const routeChanges = addressesChanged ? undefined : changes.routes;
    const deletedByOthers = kernel.takeForeignDeletions();
    this.refusals.noteChanges(routeChanges, observed.routesByKey, (index) => observed.links.get(index)?.name);
    const held = this.options.heldTables?.();
    this.tableNames = new Map(networks.map((n) => [n.table, n.interfaceName]));
    const networkOf = this.networkOf;
    const signature = networksSignature(networks);

    // Someone else deleting one of ours is for the full pass (restores, their backoff);
    // deletions of anything else need nothing from it.
    const oursDeleted = [...deletedByOthers].some((key) => this.installed.routes.has(key) || this.installed.rules.has(key));
    if (changes.routes !== undefined && !oursDeleted && (held === undefined || held.size === 0)
      && signature === this.networksSignature && this.lastComplete !== undefined) {
      if (addressesChanged) {
        if (await this.addressPass(changes.routes, changes.addressLinks, observed, computeStart, this.lastComplete)) return;
      } else {
        const incremental = this.incrementalOn(this.lastComplete);
        const operations = incremental.apply(changes.routes, observed.routesByKey, networkOf);
        if (operations !== undefined) {
          const outcome = await this.applyPass(operations, observed, computeStart, incremental.routes, withCurrentRoutes(this.lastComplete.plans, incremental.routes), 'routes');
          // A copy the kernel refused is not in place: the next pass must look at everything.
          if (outcome !== 'complete') { this.lastComplete = undefined; this.incremental = undefined; }
          return;
        }
      }
    }
    this.incremental = undefined;
    this.networksSignature = signature;

    const { desired, plans } = derive(observed, networks);
    const plan = diff(desired, observed, networkOf);
    this.foreign.report(plan, observed);
    let keptBack = 0;
    const now = this.clock.now();
    const operations: Operation[] = [];
    // Wanted but not in place after this pass: held back, refused, or another's route in the way.
    const missing = new Set<string>(plan.conflicts.map((c) => routeKey(c.wanted)));
    let heldBackMs = 0;
    const heldRestores = new Set<string>();
    const wanted = new Set<string>();
    for (const op of plan.operations) {
      if (held !== undefined && held.size > 0 && (op.kind === 'delete-route' || op.kind === 'delete-rule')
        && held.has(op.kind === 'delete-route' ? op.route.table : op.rule.table)) { keptBack++; continue; }
      const key = operationKey(op);
      wanted.add(key);
      if (op.kind !== 'delete-route' && op.kind !== 'delete-rule' && this.refusals.waiting(key, op.network)) { missing.add(key); continue; }
      // A restore: ours, in place after an earlier pass, and the kernel reported someone
      // else deleting it (not a flush, not a lost event, not our own delete's echo).
      if ((op.kind === 'add-route' || op.kind === 'add-rule')
        && ((deletedByOthers.has(key) && wasInstalled(this.installed, key)) || this.heldRestores.has(key))) {
        const wait = this.restores.take(key, now);
        if (wait > 0) {
          heldBackMs = heldBackMs === 0 ? wait : Math.min(heldBackMs, wait);
          missing.add(key);
          heldRestores.add(key);
          continue;
        }
        warnRestore(log, op, this.restores.count(key));
      }
      operations.push(op);
    }
    this.restores.prune(now);
    // What no longer needs adding (wanted no more, or put back by someone else) is no longer held.
    this.heldRestores = heldRestores;
    this.refusals.keepOnly(wanted);
    if (keptBack > 0 && !this.keptBackReported) {
      log.info(`Keeping ${keptBack} of the last run's rules and routes in table${held!.size === 1 ? '' : 's'} ${[...held!].sort((a, b) => a - b).join(', ')} until the network manager has been heard from`);
    }
    this.keptBackReported = keptBack > 0;

    const outcome = await this.applyPass(operations, observed, computeStart, desired.routes, plans, 'full', missing, desired.rules);
    this.lastComplete = outcome === 'complete' && keptBack === 0 ? { desired, plans } : undefined;
    if (outcome !== 'failed' && heldBackMs > 0) this.scheduleRetry(heldBackMs);
  }

  /**
   * The route-only bookkeeping over the last complete pass's own map, not a copy of it (a
   * million entries at a full table): nothing reads that map as it was afterwards, since
   * whenever this gives up a full pass replaces lastComplete.
   */
  private incrementalOn(last: { readonly desired: Desired; readonly plans: readonly NetworkPlan[] }): IncrementalRoutes {
    this.incremental ??= new IncrementalRoutes(last.desired.routes as Map<string, Route>, last.plans);
    return this.incremental;
  }

  /**
   * Addresses changed, maybe routes too, nothing else since a complete pass: the rules of
   * the networks on those links, and the route changes' copies (IncrementalRoutes), are the
   * whole difference. False, having changed nothing, when the full pass must decide.
   */
  private async addressPass(routeChanges: ReadonlyMap<string, Route | undefined>, links: ReadonlySet<number>,
    observed: Observed, computeStart: number, last: { readonly desired: Desired; readonly plans: readonly NetworkPlan[] }): Promise<boolean> {
    // A refusal waiting for a change is the full pass's to retry and account for.
    if (this.refusals.size > 0) return false;
    const rules = rulesAfterAddressChanges({ plans: last.plans, rules: last.desired.rules }, links, observed, this.networkOf);
    if (rules === undefined) return false;
    const routeAdds: Operation[] = [];
    const routeDeletes: Operation[] = [];
    if (routeChanges.size > 0) {
      // The routes an IPv4 address took with it (the cache's silent flush).
      const operations = this.incrementalOn(last).apply(routeChanges, observed.routesByKey, this.networkOf);
      if (operations === undefined) return false;
      for (const op of operations) (op.kind === 'delete-route' ? routeDeletes : routeAdds).push(op);
    }
    const routes = this.incremental?.routes ?? last.desired.routes;
    const plans = this.incremental !== undefined ? withCurrentRoutes(rules.plans, this.incremental.routes) : rules.plans;
    // In diff()'s order: routes before the rules that lead to them, rules removed before their routes.
    const operations = [...routeAdds, ...rules.adds, ...rules.deletes, ...routeDeletes];
    const outcome = await this.applyPass(operations, observed, computeStart, routes, plans, 'addresses', new Set(), rules.rules);
    if (outcome === 'complete') {
      this.lastComplete = { desired: { routes: last.desired.routes, rules: rules.rules }, plans: rules.plans };
    } else {
      this.lastComplete = undefined;
      this.incremental = undefined;
    }
    return true;
  }

  /**
   * Logs, applies and accounts for a pass's operations. 'complete': every one succeeded
   * and nothing wanted is missing, so the kernel holds exactly what was wanted, which the
   * next pass may build on (see IncrementalRoutes); 'failed' schedules a retry.
   */
  private async applyPass(operations: readonly Operation[], observed: Observed, computeStart: number,
    desiredRoutes: ReadonlyMap<string, unknown>, plans: readonly NetworkPlan[], kind: PassKind,
    missing = new Set<string>(), rules?: readonly Rule[]): Promise<'complete' | 'incomplete' | 'failed'> {
    const { kernel, log } = this.options;
    const device = (index: number): string => observed.links.get(index)?.name ?? `#${index}`;
    // A route-only or address pass costs in proportion to the changes it looks at: waiting
    // for more of them would save nothing, only delay them.
    this.burst.computeMs = kind === 'full' ? this.clock.now() - computeStart : 0;
    const results: OperationResult[] = operations.length > 0 ? await kernel.apply(operations) : [];
    // Written once the kernel has them, so that a lone change does not wait for its line.
    // Rules are what users look for; route copies can be thousands, so they go to debug
    // (and are not even described when nobody reads debug).
    const logStart = this.clock.now();
    const debugging = log.level() <= 1;
    for (const op of operations) {
      if (op.kind === 'add-rule' || op.kind === 'delete-rule') log.info(describeOperation(op, device));
      else if (debugging) log.debug(describeOperation(op, device));
    }
    if (kind === 'full') this.burst.computeMs += this.clock.now() - logStart;

    let added = 0;
    let removed = 0;
    let failed = 0;
    /** Failures worth a retry on a timer: transient ones, and refusals while things change. */
    let retry = false;
    const failedNetworks = new Set<string>();
    // Link state as the events read during the apply left it: a flap's down often arrives then.
    let linksNow: Observed['links'] | undefined;
    const linkDown = (op: Operation): boolean => {
      if (!('route' in op)) return false;
      linksNow ??= kernel.observed().links;
      const links = linksNow;
      const oifs = op.route.nexthops?.map((hop) => hop.oif) ?? (op.route.oif !== undefined ? [op.route.oif] : []);
      return oifs.length > 0 && oifs.every((oif) => links.get(oif)?.up !== true);
    };
    results.forEach((result, i) => {
      const op = operations[i];
      if (result.ok) {
        if (this.refusals.size > 0) this.refusals.succeeded(operationKey(op));
        if (op.kind.startsWith('delete')) removed++; else added++;
        return;
      }
      const key = operationKey(op);
      failed++;
      missing.add(key);
      if (op.network !== undefined) failedNetworks.add(op.network);
      if (this.refusals.failed(op, key, result.code ?? 'unknown error', () => describeOperation(op, device), log, linkDown(op))) retry = true;
    });
    this.refusals.reportExpected(log);
    if (this.refusals.size > 0) for (const network of this.refusals.networksWaiting()) failedNetworks.add(network);

    this.installed = { routes: desiredRoutes, rules: rules !== undefined ? new Set(rules.map(ruleKey)) : this.installed.rules, missing };

    if (operations.length > 0) {
      log.debug(`${kind === 'routes' ? 'Route-only pass' : kind === 'addresses' ? 'Address pass' : 'Pass'} applied ${added} addition${added === 1 ? '' : 's'}, ${removed} removal${removed === 1 ? '' : 's'}, ${failed} failure${failed === 1 ? '' : 's'}`);
    }
    this.last = { plans, added, removed, failed, failedNetworks, desiredRoutes: desiredRoutes.size, routesOnly: kind === 'routes', addressesOnly: kind === 'addresses' };
    this.options.onPass?.(this.last);
    if (retry) {
      this.lastComplete = undefined;
      this.incremental = undefined;
      this.scheduleRetry();
      return 'failed';
    }
    this.retryDelay = 0;
    return missing.size === 0 ? 'complete' : 'incomplete';
  }
}
