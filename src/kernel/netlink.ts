// The real kernel over rtnetlink (the `netlink` package). Two sockets: a monitor
// socket that joins the multicast groups and runs the dumps (events and dump replies
// share one ordered stream), and a command socket for changes (commands.ts), so that
// the replies to thousands of requests never crowd out events.
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
import type { Kernel } from './types';

const NLM_F_REPLACE = 0x100;
const RECEIVE_BUFFER = 4 * 1024 * 1024;
const GROUPS = ['LINK', 'IPV4_IFADDR', 'IPV6_IFADDR', 'IPV4_ROUTE', 'IPV6_ROUTE', 'IPV4_RULE', 'IPV6_RULE'] as const;
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
  private command?: CommandSocket;
  private readonly cache = new ObservedCache();
  /** Kinds being dumped right now: their events wait, then replay on top of the dump. */
  private readonly held = new Map<CacheKind, CacheEvent[]>();
  private dumpChain: Promise<void> = Promise.resolve();
  private changeScheduled = false;
  private routeRedumpScheduled = false;
  private stopped = false;

  constructor(private readonly log: Logger) {
    super();
  }

  async start(): Promise<void> {
    const monitor = createNetlink(Protocol.ROUTE, { recvBufferSize: RECEIVE_BUFFER, sendBufferSize: RECEIVE_BUFFER, ref: true });
    this.monitor = monitor;
    this.command = new CommandSocket(RECEIVE_BUFFER, (error) => this.log.warning(`Netlink command socket: ${error.message}`));
    for (const group of GROUPS) monitor.socket.addMembership(rt.MulticastGroups[group]);
    monitor.on('message', (messages) => this.onEvents(messages));
    monitor.on('error', (error) => this.onMonitorError(error));
    await this.resync(DUMP_ORDER);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.dumpChain.catch(() => undefined);
    this.monitor?.close();
    this.command?.close();
  }

  observed(): Observed {
    return this.cache.snapshot();
  }

  async apply(operations: readonly Operation[]): Promise<OperationResult[]> {
    if (operations.length === 0) return [];
    const outcomes = await this.command!.run(operations.map(toRequest));
    return operations.map((op, i) => {
      const code = outcomes[i];
      const adding = op.kind === 'add-route' || op.kind === 'add-rule' || op.kind === 'replace-route';
      const ok = code === undefined || (adding ? code === 'EEXIST' : code === 'ENOENT' || code === 'ESRCH');
      if (ok) this.cache.applyOperation(op);
      else this.log.debug(`Kernel refused: ${describeOperation(op)}: ${code}`);
      return ok ? { ok } : { ok, code };
    });
  }

  /** Dumps the given kinds again, one dump at a time (overlapping dumps fail with EBUSY). */
  resync(kinds: readonly CacheKind[]): Promise<void> {
    const run = async (): Promise<void> => {
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
      this.scheduleChanged();
    };
    this.dumpChain = this.dumpChain.catch(() => undefined).then(run);
    return this.dumpChain;
  }

  private async dump(kind: CacheKind): Promise<CacheEvent[]> {
    const monitor = this.monitor!;
    const stream = new AttrStream();
    let type: number;
    switch (kind) {
      case 'links': rt.formatLinkMessage({ kind: 'link', data: {}, attrs: {} }, stream); type = T.GETLINK; break;
      case 'addresses': rt.formatAddressMessage({ kind: 'address', data: {}, attrs: {} }, stream); type = T.GETADDR; break;
      case 'routes': rt.formatRouteMessage({ kind: 'route', data: {}, attrs: {} }, stream); type = T.GETROUTE; break;
      case 'rules': rt.formatRuleMessage({ kind: 'rule', data: {}, attrs: {} }, stream); type = T.GETRULE; break;
    }
    const [messages] = await monitor.request(type, stream.bufs, { flags: FlagsGet.DUMP });
    const events: CacheEvent[] = [];
    for (const message of messages) {
      const event = toCacheEvent(message);
      if (event !== undefined) events.push(event);
    }
    return events;
  }

  private onEvents(messages: NetlinkMessage[]): void {
    for (const message of messages) {
      let event: CacheEvent | undefined;
      try {
        event = toCacheEvent(message);
      } catch (error) {
        this.log.debug(`Ignoring an rtnetlink message of type ${message.type} that does not parse: ${(error as Error).message}`);
        continue;
      }
      if (event === undefined) continue;
      const held = this.held.get(kindOf(event));
      if (held !== undefined) { held.push(event); continue; }
      if (this.cache.apply(event)) this.scheduleChanged();
      if (this.flushesRoutesSilently(event)) this.scheduleRouteRedump();
    }
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
      void this.resync(['routes']).catch((error: Error) => this.log.warning(`Re-reading routes failed: ${error.message}`));
    });
  }

  private onMonitorError(error: Error & { code?: string }): void {
    if (this.stopped) return;
    if (error.code === 'ENOBUFS') {
      // Events were lost: the cache may be wrong now. Read everything again.
      this.log.warning('Netlink receive buffer overflowed (ENOBUFS): events were lost, re-reading links, addresses, routes and rules');
      void this.resync(DUMP_ORDER).catch((e: Error) => this.log.error(`Re-reading kernel state failed: ${e.message}`));
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
