// The real kernel over rtnetlink (the `netlink` package). Three sockets: a monitor
// socket that only joins the multicast groups, a dump socket (the package cannot tell
// a multipart dump reply from events interleaved with it on one socket), and a command
// socket for changes (commands.ts), so that the replies to thousands of requests never
// crowd out events. Events of a kind being dumped are held and replayed on top of the
// dump, so the result is never older than what was seen.
import { EventEmitter } from 'node:events';
import {
  AttrStream, createNetlink, FlagsGet, FlagsNew, Protocol, rt,
  type NetlinkMessage, type NetlinkSocket,
} from 'netlink';
import type { Logger } from '../log';
import type { Observed, Operation, OperationResult } from '../model';
import { describeOperation } from '../describe';
import { ObservedCache, type CacheEvent, type CacheKind } from './cache';
import { CommandSocket, type Request } from './commands';
import { parseAddress, parseLink, parseRoute, parseRule, routeRequest, ruleRequest } from './codec';
import { operationKey, routeObjectKey, ruleObjectKey } from '../keys';
import type { Kernel } from './types';

const NLM_F_REPLACE = 0x100;
const RECEIVE_BUFFER = 4 * 1024 * 1024;
const DUMP_TIMEOUT_MS = 30_000;
const RESYNC_RETRY_MS = 1_000;
const QUIET_AFTER_OVERFLOW_MS = 250;
const GROUPS = ['LINK', 'IPV4_IFADDR', 'IPV6_IFADDR', 'IPV4_ROUTE', 'IPV6_ROUTE', 'IPV4_RULE', 'IPV6_RULE', 'NEXTHOP'] as const;
const DUMP_ORDER: readonly CacheKind[] = ['links', 'addresses', 'routes', 'rules'];

const T = rt.MessageType;

/** Decodes one rtnetlink message into a cache event; undefined for what we don't track. */
export function toCacheEvent(message: NetlinkMessage): CacheEvent | undefined {
  const parsed = rt.parseMessage(message.type, message.data);
  switch (parsed.kind) {
    case 'link': {
      const link = parseLink(parsed);
      return link && { kind: 'link', removed: message.type === T.DELLINK, link };
    }
    case 'address': {
      const address = parseAddress(parsed);
      return address && { kind: 'address', removed: message.type === T.DELADDR, address };
    }
    case 'route': {
      const route = parseRoute(parsed);
      return route && {
        kind: 'route', removed: message.type === T.DELROUTE,
        replace: (message.flags & NLM_F_REPLACE) !== 0, route,
      };
    }
    case 'rule': {
      const rule = parseRule(parsed);
      return rule && { kind: 'rule', removed: message.type === T.DELRULE, rule };
    }
    default:
      return undefined;
  }
}

function kindOf(event: CacheEvent): CacheKind {
  return event.kind === 'address' ? 'addresses' : `${event.kind}s`;
}

export class RtnetlinkKernel extends EventEmitter implements Kernel {
  private monitor?: NetlinkSocket;
  private dumper?: NetlinkSocket;
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
  private readonly ownDeletions = new Map<string, number>();
  private foreignDeletions = new Set<string>();

  constructor(private readonly log: Logger) {
    super();
  }

  async start(): Promise<void> {
    const monitor = createNetlink(Protocol.ROUTE, { recvBufferSize: RECEIVE_BUFFER, sendBufferSize: RECEIVE_BUFFER, ref: true });
    this.monitor = monitor;
    this.dumper = createNetlink(Protocol.ROUTE, { recvBufferSize: RECEIVE_BUFFER, sendBufferSize: RECEIVE_BUFFER });
    this.command = new CommandSocket(RECEIVE_BUFFER, (error) => this.log.warning(`Netlink command socket: ${error.message}`));
    for (const group of GROUPS) monitor.socket.addMembership(rt.MulticastGroups[group]);
    monitor.on('message', (messages) => this.onEvents(messages));
    monitor.on('error', (error) => this.onMonitorError(error));
    await this.resync(DUMP_ORDER);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.quietTimer !== undefined) clearTimeout(this.quietTimer);
    await this.dumpChain.catch(() => undefined);
    this.monitor?.close();
    this.dumper?.close();
    this.command?.close();
  }

  observed(): Observed {
    return this.cache.snapshot();
  }

  takeForeignDeletions(): ReadonlySet<string> {
    const taken = this.foreignDeletions;
    this.foreignDeletions = new Set();
    return taken;
  }

  isResyncing(): boolean {
    return this.resyncsRunning > 0;
  }

  async apply(operations: readonly Operation[]): Promise<OperationResult[]> {
    if (operations.length === 0) return [];
    // Our own deletions come back as events, possibly before their acknowledgements:
    // expect them before sending, so they are never mistaken for another program's.
    for (const op of operations) if (isDelete(op)) this.expectOwnDeletion(operationKey(op), 1);
    const outcomes = await this.command!.run(operations.map(toRequest));
    return operations.map((op, i) => {
      const code = outcomes[i];
      const adding = !isDelete(op);
      const ok = code === undefined || (adding ? code === 'EEXIST' : code === 'ENOENT' || code === 'ESRCH');
      if (ok) this.cache.applyOperation(op);
      else this.log.debug(`Kernel refused: ${describeOperation(op)}: ${code}`);
      // Nothing was deleted, so no event will come.
      if (isDelete(op) && code !== undefined) this.expectOwnDeletion(operationKey(op), -1);
      return ok ? { ok } : { ok, code };
    });
  }

  private expectOwnDeletion(key: string, delta: number): void {
    const count = (this.ownDeletions.get(key) ?? 0) + delta;
    if (count > 0) this.ownDeletions.set(key, count); else this.ownDeletions.delete(key);
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

  private async dump(kind: CacheKind): Promise<CacheEvent[]> {
    const stream = new AttrStream();
    let type: number;
    switch (kind) {
      case 'links': rt.formatLinkMessage({ kind: 'link', data: {}, attrs: {} }, stream); type = T.GETLINK; break;
      case 'addresses': rt.formatAddressMessage({ kind: 'address', data: {}, attrs: {} }, stream); type = T.GETADDR; break;
      case 'routes': rt.formatRouteMessage({ kind: 'route', data: {}, attrs: {} }, stream); type = T.GETROUTE; break;
      case 'rules': rt.formatRuleMessage({ kind: 'rule', data: {}, attrs: {} }, stream); type = T.GETRULE; break;
    }
    const [messages] = await this.dumper!.request(type, stream.bufs, { flags: FlagsGet.DUMP, timeout: DUMP_TIMEOUT_MS });
    const events: CacheEvent[] = [];
    for (const message of messages) {
      const event = toCacheEvent(message);
      if (event !== undefined) events.push(event);
    }
    return events;
  }

  private armQuietTimer(): void {
    if (this.quietTimer !== undefined) this.quietTimer.refresh();
    else this.quietTimer = setTimeout(() => {
      this.quietTimer = undefined;
      if (!this.overflowed || this.stopped) return;
      this.overflowed = false;
      this.log.info('Events are quiet again after the overflow: re-reading the kernel state once more');
      this.resyncUntilDone(DUMP_ORDER);
    }, QUIET_AFTER_OVERFLOW_MS);
  }

  private onEvents(messages: NetlinkMessage[]): void {
    if (this.overflowed) this.armQuietTimer();
    for (const message of messages) {
      // Deleting a nexthop object deletes the routes that use it, without RTM_DELROUTE.
      if (message.type === T.DELNEXTHOP) { this.scheduleRouteRedump(); continue; }
      if (message.type === T.NEWNEXTHOP) continue;
      let event: CacheEvent | undefined;
      try {
        event = toCacheEvent(message);
      } catch (error) {
        this.log.debug(`Ignoring an rtnetlink message of type ${message.type} that does not parse: ${(error as Error).message}`);
        continue;
      }
      if (event === undefined) continue;
      if ((event.kind === 'route' || event.kind === 'rule') && event.removed) this.noteDeletion(event);
      const held = this.held.get(kindOf(event));
      if (held !== undefined) { held.push(event); continue; }
      if (this.cache.apply(event)) this.scheduleChanged();
      if (this.flushesRoutesSilently(event)) this.scheduleRouteRedump();
    }
  }

  private noteDeletion(event: CacheEvent & { kind: 'route' | 'rule' }): void {
    const key = event.kind === 'route' ? routeObjectKey(event.route) : ruleObjectKey(event.rule);
    const own = this.ownDeletions.get(key) ?? 0;
    if (own > 0) {
      if (own === 1) this.ownDeletions.delete(key); else this.ownDeletions.set(key, own - 1);
      return;
    }
    this.foreignDeletions.add(key);
  }

  /** The kernel drops routes without telling when a link goes down or loses its last IPv4 address. */
  private flushesRoutesSilently(event: CacheEvent): boolean {
    return (event.kind === 'link' && (event.removed || !event.link.up))
      || (event.kind === 'address' && event.removed && event.address.family === 4);
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
      // Echoes of our own deletions may be among the lost events.
      this.ownDeletions.clear();
      // Events were lost: the cache may be wrong now. Read everything again.
      this.log.warning('Netlink receive buffer overflowed (ENOBUFS): events were lost, re-reading links, addresses, routes and rules');
      // While the queue stays congested the kernel drops further events without saying
      // so again. Re-read now for a quick approximation, and once more when the events
      // have gone quiet: that dump is the authoritative one.
      this.overflowed = true;
      this.armQuietTimer();
      if (this.fullResyncQueued) return;
      this.fullResyncQueued = true;
      this.resyncUntilDone(DUMP_ORDER);
      return;
    }
    this.log.error(`Netlink monitor socket: ${error.message}`);
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

function toRequest(op: Operation): Request {
  const stream = new AttrStream();
  switch (op.kind) {
    case 'add-route':
    case 'replace-route':
      rt.formatRouteMessage({ kind: 'route', ...routeRequest(op.route) }, stream);
      return {
        type: T.NEWROUTE, payload: stream.bufs,
        flags: FlagsNew.CREATE | (op.kind === 'add-route' ? FlagsNew.EXCL : FlagsNew.REPLACE),
      };
    case 'delete-route':
      rt.formatRouteMessage({ kind: 'route', ...routeRequest(op.route) }, stream);
      return { type: T.DELROUTE, payload: stream.bufs, flags: 0 };
    case 'add-rule':
      rt.formatRuleMessage({ kind: 'rule', ...ruleRequest(op.rule) }, stream);
      return { type: T.NEWRULE, payload: stream.bufs, flags: FlagsNew.CREATE | FlagsNew.EXCL };
    case 'delete-rule':
      rt.formatRuleMessage({ kind: 'rule', ...ruleRequest(op.rule) }, stream);
      return { type: T.DELRULE, payload: stream.bufs, flags: 0 };
  }
}
