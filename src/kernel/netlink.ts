// The real kernel over rtnetlink (raw sockets of the `netlink` package, messages in
// codec.ts, requests.ts). Three sockets: a monitor socket that only joins the multicast groups, a
// dump socket (dump.ts: a multipart reply must not interleave with events), and a
// command socket for changes (commands.ts), so that the replies to thousands of
// requests never crowd out events. Events of a kind being dumped are held and replayed
// on top of the dump, so the result is never older than what was seen. The monitor
// socket does not receive what the kernel multicasts about our own requests (filter.ts):
// their acknowledgements say what they did, and the cache records it then.
import { EventEmitter } from 'node:events';
import { RawNetlinkSocket } from 'netlink/dist/raw';
import type { Logger } from '../log';
import type { Observed, Operation, OperationResult, Route, Rule } from '../model';
import { operationKey } from '../keys';
import { ObservedCache, type CacheEvent, type CacheKind } from './cache';
import { CommandSocket } from './commands';
import { DumpSocket } from './dump';
import { attachFilter, dropMessagesFrom } from './filter';
import { patchedNative } from './native';
import { ReadPacer } from './pacer';
import { decodeEvent, forEachMessage, GROUPS, RTM } from './codec';
import { routeKey, ruleKey } from '../keys';
import type { Kernel, KernelChanges } from './types';

const NETLINK_ROUTE = 0;
const RECEIVE_BUFFER = 4 * 1024 * 1024;
/**
 * The kernel charges a queued event ~830 bytes, and grants twice the size asked for, so
 * 4 MiB held ~10,000 events of a burst: beside a million routes a burst overflowed it, and
 * each overflow costs a full re-read of them (docs/performance.md). The memory is the
 * kernel's, taken only while events wait.
 */
const MONITOR_RECEIVE_BUFFER = 64 * 1024 * 1024;
const DUMP_TIMEOUT_MS = 30_000;
const RESYNC_RETRY_MS = 1_000;
const QUIET_AFTER_OVERFLOW_MS = 250;
const DUMP_ORDER: readonly CacheKind[] = ['links', 'addresses', 'routes', 'rules'];

function kindOf(event: CacheEvent): CacheKind {
  return event.kind === 'address' ? 'addresses' : `${event.kind}s`;
}

export class RtnetlinkKernel extends EventEmitter implements Kernel {
  private monitor?: RawNetlinkSocket;
  private dumper?: DumpSocket;
  private command?: CommandSocket;
  private readonly cache = new ObservedCache();
  /** Kinds being dumped right now: their events wait, then replay on top of the dump. */
  private readonly held = new Map<CacheKind, CacheEvent[]>();
  private dumpChain: Promise<void> = Promise.resolve();
  private changeScheduled = false;
  private routeRedumpScheduled = false;
  private stopped = false;
  private resyncsRunning = 0;
  private fullResyncQueued = false;
  private overflowed = false;
  private quietTimer?: NodeJS.Timeout;
  /** Reads of the monitor socket so far: whether one happened in a turn of the loop. */
  private reads = 0;
  private foreignDeletions = new Set<string>();
  private pacer?: ReadPacer;

  constructor(private readonly log: Logger) {
    super();
  }

  async start(): Promise<void> {
    const monitor = new RawNetlinkSocket(NETLINK_ROUTE, { recvBufferSize: MONITOR_RECEIVE_BUFFER, sendBufferSize: RECEIVE_BUFFER });
    this.monitor = monitor;
    this.dumper = new DumpSocket(RECEIVE_BUFFER);
    this.command = new CommandSocket(RECEIVE_BUFFER, (error) => this.log.warning(`Netlink command socket: ${error.message}`));
    attachFilter(monitor, dropMessagesFrom(this.command.port));
    this.pacer = new ReadPacer(patchedNative(monitor));
    for (const group of Object.values(GROUPS)) monitor.addMembership(group);
    monitor.on('message', (data) => this.onEvents(data));
    monitor.on('error', (error) => this.onMonitorError(error));
    // An event larger than the receive buffer is lost (the binding grows the buffer for the next).
    monitor.on('truncatedMessage', (_data, info) => {
      if (this.stopped) return;
      this.log.warning(`A ${info.truncated ?? '?'}-byte netlink event did not fit the receive buffer and was lost: re-reading links, addresses, routes and rules`);
      this.resyncAfterLoss();
    });
    await this.resync(DUMP_ORDER);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.pacer?.stop();
    if (this.quietTimer !== undefined) clearTimeout(this.quietTimer);
    await this.dumpChain.catch(() => undefined);
    this.monitor?.close();
    this.dumper?.close();
    this.command?.close();
  }

  takeChanges(): KernelChanges {
    return this.cache.takeChanges();
  }

  observed(): Observed {
    return this.cache.snapshot();
  }

  /** One set per apply() under way: the keys someone else deleted meanwhile. */
  private readonly deletionsDuringApply = new Set<Set<string>>();

  takeForeignDeletions(): ReadonlySet<string> {
    const taken = this.foreignDeletions;
    this.foreignDeletions = new Set();
    return taken;
  }

  isResyncing(): boolean {
    // A re-read of routes about to start counts: a pass would act on what it replaces.
    return this.resyncsRunning > 0 || this.routeRedumpScheduled;
  }

  async apply(operations: readonly Operation[]): Promise<OperationResult[]> {
    if (operations.length === 0) return [];
    // Someone else's deletion can be read before the acknowledgement of the addition it
    // undid: the cache must not take the addition as the last word then.
    const deletedMeanwhile = new Set<string>();
    this.deletionsDuringApply.add(deletedMeanwhile);
    let outcomes: readonly (string | undefined)[];
    try {
      outcomes = await this.command!.run(operations);
    } finally {
      this.deletionsDuringApply.delete(deletedMeanwhile);
    }
    let undone = false;
    const results = operations.map((op, i): OperationResult => {
      const code = outcomes[i];
      const adding = !isDelete(op);
      const ok = code === undefined || (adding ? code === 'EEXIST' : code === 'ENOENT' || code === 'ESRCH');
      if (ok && adding && deletedMeanwhile.size > 0 && deletedMeanwhile.has(operationKey(op))) undone = true;
      else if (ok) this.cache.applyOperation(op);
      return ok ? { ok } : { ok, code };
    });
    // Still in foreignDeletions: the next pass sees a deletion of something it had put in place.
    if (undone) this.scheduleChanged();
    return results;
  }

  async dumpRoutesAndRules(routeProtocol?: number): Promise<{ readonly routes: readonly Route[]; readonly rules: readonly Rule[] }> {
    const routes: Route[] = [];
    const rules: Rule[] = [];
    // On the dump chain: a second dump at once on the same socket would fail with EBUSY.
    const run = async (): Promise<void> => {
      for (const event of await this.dump('routes', routeProtocol)) if (event.kind === 'route') routes.push(event.route);
      for (const event of await this.dump('rules')) if (event.kind === 'rule') rules.push(event.rule);
    };
    const done = this.dumpChain.catch(() => undefined).then(run);
    this.dumpChain = done;
    await done;
    return { routes, rules };
  }

  /** Dumps the given kinds again, one dump at a time (overlapping dumps fail with EBUSY). */
  resync(kinds: readonly CacheKind[]): Promise<void> {
    // Stale from the moment we know events were lost, not only once the dump starts.
    this.resyncsRunning++;
    const run = async (): Promise<void> => {
      try {
        // After an overflow the kernel drops further events silently until the queue
        // is read empty: dump only once the monitor socket has been drained (its read
        // loop runs in the next poll phase), or the dump would predate those losses.
        await new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
        await this.dumpKinds(kinds);
      } finally {
        this.resyncsRunning--;
        this.emit('resynced');
        this.scheduleChanged();
      }
    };
    this.dumpChain = this.dumpChain.catch(() => undefined).then(run);
    return this.dumpChain;
  }

  private async dumpKinds(kinds: readonly CacheKind[]): Promise<void> {
    if (kinds === DUMP_ORDER) this.fullResyncQueued = false;
    for (const kind of kinds) {
      if (this.stopped) return;
      this.held.set(kind, []);
      try {
        const events = await this.dump(kind);
        this.cache.replaceAll(kind, events);
      } finally {
        const waiting = this.held.get(kind) ?? [];
        this.held.delete(kind);
        for (const event of waiting) this.cache.apply(event);
        // A replayed event the cache could not follow exactly asks for routes again now, not at some later event.
        if (this.cache.takeRedumpRequest()) this.scheduleRouteRedump();
      }
    }
  }

  /** Re-reads, and if that fails, tries again a second later until it works. */
  private resyncUntilDone(kinds: readonly CacheKind[]): void {
    this.resync(kinds).catch((error: Error) => {
      if (this.stopped) return;
      this.log.error(`Re-reading ${kinds.join(', ')} from the kernel failed: ${error.message}; trying again in ${RESYNC_RETRY_MS / 1000} s`);
      setTimeout(() => this.resyncUntilDone(kinds), RESYNC_RETRY_MS);
    });
  }

  private dump(kind: CacheKind, routeProtocol?: number): Promise<CacheEvent[]> {
    return this.dumper!.dump(kind, DUMP_TIMEOUT_MS, routeProtocol);
  }

  private armQuietTimer(): void {
    if (this.quietTimer !== undefined) this.quietTimer.refresh();
    else this.quietTimer = setTimeout(() => {
      this.quietTimer = undefined;
      if (!this.overflowed || this.stopped) return;
      // A pass that keeps the loop busy for longer than the quiet time lets this fire with
      // the backlog still queued, and a dump then would be followed by events older than it,
      // which nothing would correct. Quiet is a turn of the loop that could read and did not.
      const readsBefore = this.reads;
      setImmediate(() => {
        if (!this.overflowed || this.stopped) return;
        if (this.reads !== readsBefore || this.pacer?.paused === true) { this.armQuietTimer(); return; }
        this.overflowed = false;
        this.log.info('Events are quiet again after the overflow: re-reading the kernel state once more');
        this.resyncUntilDone(DUMP_ORDER);
      });
    }, QUIET_AFTER_OVERFLOW_MS);
  }

  /**
   * One read's datagrams, all of them, then 'changed' at once: a lone change goes to the
   * loop without waiting for another turn of the event loop, and the events of one read
   * (an address and its local routes; a paced stream's backlog) make one pass.
   */
  private onEvents(data: Buffer): void {
    this.reads++;
    if (this.overflowed) this.armQuietTimer();
    let messages = 0;
    let changed = false;
    forEachMessage(data, (type, flags, _seq, start, end) => {
      messages++;
      // Deleting a nexthop object deletes the routes that use it, without RTM_DELROUTE.
      if (type === RTM.DELNEXTHOP) { this.scheduleRouteRedump(); return; }
      let event: CacheEvent | undefined;
      try {
        event = decodeEvent(type, flags, data, start, end);
      } catch (error) {
        this.log.debug(`Ignoring an rtnetlink message of type ${type} that does not parse: ${(error as Error).message}`);
        return;
      }
      if (event === undefined) return;
      // Our own deletions never arrive here (see start): every one that does is someone
      // else's, but for the kernel's flush of the routes via a link that went down (its
      // notice comes first).
      if ((event.kind === 'route' || event.kind === 'rule') && event.removed && !(event.kind === 'route' && this.viaDownLink(event.route))) {
        const key = event.kind === 'route' ? routeKey(event.route) : ruleKey(event.rule);
        this.foreignDeletions.add(key);
        for (const deleted of this.deletionsDuringApply) deleted.add(key);
      }
      const held = this.held.get(kindOf(event));
      if (held !== undefined) { held.push(event); return; }
      if (this.cache.apply(event)) changed = true;
      if (this.flushesRoutesSilently(event) || this.cache.takeRedumpRequest()) this.scheduleRouteRedump();
    });
    this.pacer?.afterRead(messages);
    if (changed) this.emit('changed');
  }

  private viaDownLink(route: Route): boolean {
    const oifs = route.nexthops?.map((hop) => hop.oif) ?? (route.oif !== undefined ? [route.oif] : []);
    return oifs.length > 0 && oifs.every((oif) => !this.cache.linkUp(oif));
  }

  /**
   * The kernel drops routes without telling when a link goes down. The cache mimics
   * that, and a re-read of the routes makes sure; a pass waits for it. (The flushes that
   * follow an IPv4 address are the cache's to see: takeRedumpRequest.)
   */
  private flushesRoutesSilently(event: CacheEvent): boolean {
    return event.kind === 'link' && (event.removed || !event.link.up);
  }

  private scheduleRouteRedump(): void {
    if (this.routeRedumpScheduled) return;
    this.routeRedumpScheduled = true;
    setImmediate(() => {
      this.routeRedumpScheduled = false;
      this.resyncUntilDone(['routes']);
    });
  }

  private onMonitorError(error: Error & { code?: string }): void {
    if (this.stopped) return;
    if (error.code === 'ENOBUFS') {
      // Events were lost: the cache may be wrong now. Read everything again.
      this.log.warning('Netlink receive buffer overflowed (ENOBUFS): events were lost, re-reading links, addresses, routes and rules');
      // While the queue stays congested the kernel drops further events without saying
      // so again. Re-read now for a quick approximation, and once more when the events
      // have gone quiet: that dump is the authoritative one.
      this.overflowed = true;
      this.armQuietTimer();
      this.resyncAfterLoss();
      return;
    }
    this.log.error(`Netlink monitor socket: ${error.message}`);
  }

  private resyncAfterLoss(): void {
    if (this.fullResyncQueued) return;
    this.fullResyncQueued = true;
    this.resyncUntilDone(DUMP_ORDER);
  }

  private scheduleChanged(): void {
    if (this.changeScheduled) return;
    this.changeScheduled = true;
    setImmediate(() => {
      this.changeScheduled = false;
      this.emit('changed');
    });
  }
}

function isDelete(op: Operation): boolean {
  return op.kind === 'delete-route' || op.kind === 'delete-rule';
}
