// The no.nntb.DynMHS system-bus service: validate → polkit → DaemonControl.
//
// dbus-next supplies the connection and message (un)marshalling; the dispatch of
// calls to our objects is our own (a method handler that runs before dbus-next's),
// because dbus-next does not tell a method who called it (polkit needs the sender),
// answers a wrong signature with UnknownMethod, and puts stack traces into the
// error replies it makes for exceptions. Here every call gets exactly one reply and
// every failure a named error.
import { EventEmitter } from 'node:events';
import { Message, Variant, sessionBus } from 'dbus-next';
import type { MessageBus } from 'dbus-next';
import type { AppliedCounts, DaemonControl, DaemonStatus } from '../control';
import { ControlError } from '../control';
import type { Logger } from '../log';
import {
  BUS_NAME, DbusErrorName, INTROSPECTABLE_INTERFACE, MANAGER_INTERFACE, MANAGER_PATH, NETWORK_INTERFACE,
  NETWORK_PATH_PREFIX, OBJECT_MANAGER_INTERFACE, PEER_INTERFACE, PROPERTIES_INTERFACE, PolkitAction,
} from './names';
import { PolkitAuthorizer, errorName, errorText, withTimeout } from './polkit';
import type { AuthorizerOptions } from './polkit';
import {
  MANAGER_SPEC, NETWORK_SPEC, OBJECT_MANAGER_SPEC, STANDARD_SPECS, inSignature, introspectionXml, outSignature,
} from './spec';
import type { InterfaceSpec, MethodSpec } from './spec';
import { changeSignals, describe, snapshotOf, u32, variants } from './snapshot';
import type { PropertyValues, Snapshot } from './snapshot';
import { interfaceNameProblem, isLogLevel, logLevelProblem, printable, tableProblem } from './validate';

export const DEFAULT_SYSTEM_BUS_ADDRESS = 'unix:path=/run/dbus/system_bus_socket';

/** Why the service could not start; `code` tells the daemon what to report. */
export class DbusServiceError extends Error {
  constructor(readonly code: 'BusUnavailable' | 'NameTaken' | 'NameNotPermitted', message: string) {
    super(message);
    this.name = 'DbusServiceError';
  }
}

export interface DbusServiceOptions {
  /** Overrides DBUS_SYSTEM_BUS_ADDRESS (default unix:path=/run/dbus/system_bus_socket). */
  readonly busAddress?: string;
  /** Called once if the bus connection is lost after start (the service is dead then). */
  readonly onDisconnected?: (error: Error) => void;
  /** For tests: polkit timeouts. */
  readonly polkit?: AuthorizerOptions;
  /** Give up connecting after this long (default 10 s). */
  readonly connectTimeoutMs?: number;
}

export interface DbusService {
  stop(): Promise<void>;
}

/** D-Bus message flags (header field "flags"). */
const NO_REPLY_EXPECTED = 0x1;
const ALLOW_INTERACTIVE_AUTHORIZATION = 0x4;
const METHOD_CALL = 1;

const StdError = {
  InvalidArgs: 'org.freedesktop.DBus.Error.InvalidArgs',
  UnknownMethod: 'org.freedesktop.DBus.Error.UnknownMethod',
  UnknownInterface: 'org.freedesktop.DBus.Error.UnknownInterface',
  UnknownProperty: 'org.freedesktop.DBus.Error.UnknownProperty',
  PropertyReadOnly: 'org.freedesktop.DBus.Error.PropertyReadOnly',
} as const;

/** A reply error: thrown inside a handler, sent as-is. */
class ReplyError extends Error {
  constructor(readonly errorName: string, message: string) {
    super(message);
  }
}

/**
 * Connect to the system bus, take no.nntb.DynMHS (never queued, never replacing an
 * owner) and export the API over `control`. Rejects with DbusServiceError when the
 * bus is not reachable or the name is taken or not permitted by the bus policy.
 */
export async function startDbusService(control: DaemonControl, log: Logger, options: DbusServiceOptions = {}): Promise<DbusService> {
  const address = options.busAddress ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? DEFAULT_SYSTEM_BUS_ADDRESS;
  const bus = await connect(address, options.connectTimeoutMs ?? 10_000);
  const service = new ServiceImpl(bus, control, log, new PolkitAuthorizer(bus, log, options.polkit), options.onDisconnected);
  try {
    await service.start();
  } catch (error) {
    bus.disconnect();
    throw error;
  }
  log.info(`D-Bus service ${BUS_NAME} ready on ${address} (${(bus as unknown as { name: string }).name})`);
  return service;
}

async function connect(address: string, timeoutMs: number): Promise<MessageBus> {
  let bus: MessageBus;
  try {
    bus = sessionBus({ busAddress: address });
  } catch (error) {
    throw new DbusServiceError('BusUnavailable', `cannot connect to the system bus at ${address}: ${errorText(error)}`);
  }
  const connected = new Promise<void>((resolve, reject) => {
    bus.once('connect', () => resolve());
    bus.once('error', (error: unknown) => reject(error));
  });
  try {
    await withTimeout(connected, timeoutMs, 'the system bus');
  } catch (error) {
    // keep an 'error' listener: a late socket error must not become an uncaught exception
    bus.on('error', () => undefined);
    try { bus.disconnect(); } catch { /* the stream may not exist */ }
    throw new DbusServiceError('BusUnavailable', `cannot connect to the system bus at ${address}: ${errorText(error)}`);
  }
  return bus;
}

class ServiceImpl implements DbusService {
  private snapshot: Snapshot | undefined;
  private dirty = true;
  private flushScheduled = false;
  private stopped = false;
  private readonly handler = (msg: Message): boolean => this.onMethodCall(msg);
  private readonly onChanged = (): void => this.markDirty();
  private readonly onApplied = (counts: AppliedCounts): void => this.emitPolicyApplied(counts);

  constructor(
    private readonly bus: MessageBus,
    private readonly control: DaemonControl,
    private readonly log: Logger,
    private readonly authorizer: PolkitAuthorizer,
    private readonly onDisconnected: ((error: Error) => void) | undefined,
  ) {}

  async start(): Promise<void> {
    (this.bus as EventEmitter).on('error', (error: unknown) => this.onBusError(error));
    // dbus-next does not forward the end of the stream (the bus went away) as an event of its own.
    const connection = (this.bus as unknown as { _connection?: EventEmitter })._connection;
    connection?.on('end', () => this.onBusError(new Error('the system bus closed the connection')));
    // Exported before the name is taken: a call that arrives right after RequestName
    // already finds the objects.
    this.refresh(false);
    this.bus.addMethodHandler(this.handler);
    let reply: number;
    try {
      reply = await this.bus.requestName(BUS_NAME, 0x4 /* DO_NOT_QUEUE, and no ALLOW_REPLACEMENT */);
    } catch (error) {
      this.bus.removeMethodHandler(this.handler);
      if (errorName(error) === 'org.freedesktop.DBus.Error.AccessDenied') {
        throw new DbusServiceError('NameNotPermitted',
          `the bus policy does not let this user own ${BUS_NAME} (${errorText(error)}); run dynmhs as root and install dbus/${BUS_NAME}.conf`);
      }
      throw new DbusServiceError('BusUnavailable', `could not request ${BUS_NAME}: ${errorText(error)}`);
    }
    if (reply !== 1 /* PRIMARY_OWNER */ && reply !== 4 /* ALREADY_OWNER */) {
      this.bus.removeMethodHandler(this.handler);
      throw new DbusServiceError('NameTaken', `${BUS_NAME} is already owned on the system bus: is another dynmhs running?`);
    }
    this.control.on('changed', this.onChanged);
    this.control.on('applied', this.onApplied);
    // Something may have changed while we waited for the name.
    this.markDirty();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.control.off('changed', this.onChanged);
    this.control.off('applied', this.onApplied);
    this.bus.removeMethodHandler(this.handler);
    try {
      await withTimeout(this.bus.releaseName(BUS_NAME), 2000, 'the bus');
    } catch (error) {
      this.log.debug(`Releasing ${BUS_NAME}: ${errorText(error)}`);
    }
    try {
      this.bus.disconnect();
    } catch (error) {
      this.log.debug(`Disconnecting from the system bus: ${errorText(error)}`);
    }
  }

  private onBusError(error: unknown): void {
    if (this.stopped) return;
    this.stopped = true;
    this.control.off('changed', this.onChanged);
    this.control.off('applied', this.onApplied);
    const err = error instanceof Error ? error : new Error(errorText(error));
    this.log.error(`Lost the system bus connection; ${BUS_NAME} is gone: ${err.message}`);
    this.onDisconnected?.(err);
  }

  // ---------------------------------------------------------------- state → objects

  private markDirty(): void {
    this.dirty = true;
    if (this.flushScheduled || this.stopped) return;
    this.flushScheduled = true;
    // Coalesce a burst of 'changed' events into one update on the next tick.
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.dirty && !this.stopped) this.refresh(true);
    });
  }

  /** The published snapshot, brought up to date first (signals go out before the reply). */
  private current(): Snapshot {
    if (this.dirty || this.snapshot === undefined) this.refresh(!this.stopped && this.snapshot !== undefined);
    if (this.snapshot === undefined) throw new ReplyError(DbusErrorName.Failed, 'the daemon state is not available yet');
    return this.snapshot;
  }

  private refresh(emit: boolean): void {
    let status: DaemonStatus;
    try {
      status = this.control.status();
    } catch (error) {
      this.log.error(`Reading the daemon status for D-Bus failed: ${errorText(error)}`);
      return;
    }
    this.dirty = false;
    const next = snapshotOf(status);
    const previous = this.snapshot;
    this.snapshot = next;
    if (emit && previous !== undefined) this.emitDifferences(previous, next);
  }

  private emitDifferences(previous: Snapshot, next: Snapshot): void {
    for (const change of changeSignals(previous, next)) {
      this.signal(change.path, change.iface, change.member, change.signature, change.body, change.from);
    }
  }

  private emitPolicyApplied(counts: AppliedCounts): void {
    if (this.stopped) return;
    // Bring the objects up to date first, so a client that reacts to the signal reads the new state.
    if (this.dirty) this.refresh(true);
    this.signal(MANAGER_PATH, MANAGER_INTERFACE, 'PolicyApplied', 'uuu', [u32(counts.added), u32(counts.removed), u32(counts.failed)]);
  }

  /** `path` is the object the signal is about; `from` the object that emits it (ObjectManager signals). */
  private signal(path: string, iface: string, member: string, signature: string, body: unknown[], from?: string): void {
    if (this.stopped) return;
    try {
      this.bus.send(Message.newSignal(from ?? path, iface, member, signature, body));
    } catch (error) {
      this.log.error(`Sending the D-Bus signal ${iface}.${member} failed: ${errorText(error)}`);
    }
  }

  // ---------------------------------------------------------------- dispatch

  private onMethodCall(msg: Message): boolean {
    if ((msg.type as unknown as number) !== METHOD_CALL || this.stopped) return false;
    try {
      return this.route(msg);
    } catch (error) {
      this.replyFailure(msg, error);
      return true;
    }
  }

  private route(msg: Message): boolean {
    const path = msg.path;
    const iface = msg.interface || undefined;
    let objectInterfaces: readonly InterfaceSpec[];
    if (path === MANAGER_PATH) {
      objectInterfaces = [MANAGER_SPEC, OBJECT_MANAGER_SPEC];
    } else if (path.startsWith(`${NETWORK_PATH_PREFIX}/`)) {
      if (!this.current().networks.has(path)) {
        if (iface === INTROSPECTABLE_INTERFACE || iface === PEER_INTERFACE || iface === undefined) return false;
        this.replyError(msg, 'org.freedesktop.DBus.Error.UnknownObject', `No network object at ${path}`);
        return true;
      }
      objectInterfaces = [NETWORK_SPEC];
    } else if (`${NETWORK_PATH_PREFIX}/`.startsWith(path === '/' ? '/' : `${path}/`)) {
      // An ancestor of our objects (/, /no, /no/nntb, .../Network): introspection only.
      if (iface === INTROSPECTABLE_INTERFACE && msg.member === 'Introspect') {
        this.reply(msg, 's', [introspectionXml([], this.childrenOf(path))]);
        return true;
      }
      return false;
    } else {
      return false;
    }
    if (iface === PEER_INTERFACE) return false;
    this.dispatch(msg, path, iface, objectInterfaces).catch((error: unknown) => this.replyFailure(msg, error));
    return true;
  }

  private async dispatch(msg: Message, path: string, iface: string | undefined, objectInterfaces: readonly InterfaceSpec[]): Promise<void> {
    const member = msg.member;
    const signature = msg.signature || '';
    const body: unknown[] = Array.isArray(msg.body) ? msg.body : [];
    if (iface === INTROSPECTABLE_INTERFACE || (iface === undefined && member === 'Introspect')) {
      if (member !== 'Introspect') throw new ReplyError(StdError.UnknownMethod, `Unknown method ${member} of ${INTROSPECTABLE_INTERFACE}`);
      if (signature !== '') throw new ReplyError(StdError.InvalidArgs, 'Introspect takes no arguments');
      this.reply(msg, 's', [introspectionXml([...objectInterfaces, ...STANDARD_SPECS], this.childrenOf(path))]);
      return;
    }
    if (iface === PROPERTIES_INTERFACE) {
      this.properties(msg, path, member, signature, body);
      return;
    }
    if (iface === OBJECT_MANAGER_INTERFACE && objectInterfaces.includes(OBJECT_MANAGER_SPEC)) {
      if (member !== 'GetManagedObjects') throw new ReplyError(StdError.UnknownMethod, `Unknown method ${member} of ${OBJECT_MANAGER_INTERFACE}`);
      if (signature !== '') throw new ReplyError(StdError.InvalidArgs, 'GetManagedObjects takes no arguments');
      const objects: Record<string, Record<string, Record<string, Variant>>> = {};
      for (const [networkPath_, network] of this.current().networks) {
        objects[networkPath_] = { [NETWORK_INTERFACE]: variants(NETWORK_SPEC, network.values) };
      }
      this.reply(msg, 'a{oa{sa{sv}}}', [objects]);
      return;
    }
    const own = objectInterfaces.filter((spec) => spec !== OBJECT_MANAGER_SPEC);
    const spec = iface === undefined
      ? own.find((s) => s.methods.some((m) => m.name === member))
      : own.find((s) => s.name === iface);
    if (spec === undefined) {
      if (iface === undefined) throw new ReplyError(StdError.UnknownMethod, `Unknown method ${member} at ${path}`);
      throw new ReplyError(StdError.UnknownInterface, `Object ${path} has no interface ${iface}`);
    }
    const method = spec.methods.find((m) => m.name === member);
    if (method === undefined) throw new ReplyError(StdError.UnknownMethod, `Unknown method ${member} of ${spec.name}`);
    const expected = inSignature(method);
    if (signature !== expected) {
      throw new ReplyError(DbusErrorName.InvalidArgument,
        `${member} takes (${expected}) ${describeArgs(method)}, not (${signature})`);
    }
    const result = await this.invoke(msg, method.name, body);
    this.reply(msg, outSignature(method), result);
  }

  private properties(msg: Message, path: string, member: string, signature: string, body: unknown[]): void {
    const specs = path === MANAGER_PATH ? [MANAGER_SPEC] : [NETWORK_SPEC];
    const valuesOf = (spec: InterfaceSpec): PropertyValues => {
      const snapshot = this.current();
      if (spec === MANAGER_SPEC) return snapshot.managerValues;
      const network = snapshot.networks.get(path);
      if (network === undefined) throw new ReplyError('org.freedesktop.DBus.Error.UnknownObject', `No network object at ${path}`);
      return network.values;
    };
    const findSpec = (name: string): InterfaceSpec | undefined => specs.find((s) => s.name === name);
    switch (member) {
      case 'Get': {
        if (signature !== 'ss') throw new ReplyError(StdError.InvalidArgs, 'Get takes (ss) interface, property');
        const [ifaceName, propertyName] = body as [string, string];
        const spec = ifaceName === '' ? specs.find((s) => s.properties.some((p) => p.name === propertyName)) : findSpec(ifaceName);
        if (spec === undefined) throw new ReplyError(StdError.UnknownInterface, `Object ${path} has no interface ${printable(ifaceName)}`);
        const property = spec.properties.find((p) => p.name === propertyName);
        if (property === undefined) throw new ReplyError(StdError.UnknownProperty, `${spec.name} has no property ${printable(propertyName)}`);
        this.reply(msg, 'v', [new Variant(property.type, valuesOf(spec).get(property.name))]);
        return;
      }
      case 'GetAll': {
        if (signature !== 's') throw new ReplyError(StdError.InvalidArgs, 'GetAll takes (s) interface');
        const ifaceName = body[0] as string;
        const spec = findSpec(ifaceName);
        // As sd-bus and GDBus: an interface without properties (or unknown) has none to list.
        if (spec === undefined) {
          if ([INTROSPECTABLE_INTERFACE, PEER_INTERFACE, PROPERTIES_INTERFACE, OBJECT_MANAGER_INTERFACE].includes(ifaceName)) {
            this.reply(msg, 'a{sv}', [{}]);
            return;
          }
          throw new ReplyError(StdError.UnknownInterface, `Object ${path} has no interface ${printable(ifaceName)}`);
        }
        this.reply(msg, 'a{sv}', [variants(spec, valuesOf(spec))]);
        return;
      }
      case 'Set': {
        if (signature !== 'ssv') throw new ReplyError(StdError.InvalidArgs, 'Set takes (ssv) interface, property, value');
        const [ifaceName, propertyName] = body as [string, string];
        const spec = findSpec(ifaceName);
        if (spec?.properties.some((p) => p.name === propertyName)) {
          throw new ReplyError(StdError.PropertyReadOnly, `${spec.name}.${propertyName} is read-only`);
        }
        throw new ReplyError(StdError.UnknownProperty, `No property ${printable(propertyName)} in ${printable(ifaceName)}`);
      }
      default:
        throw new ReplyError(StdError.UnknownMethod, `Unknown method ${member} of ${PROPERTIES_INTERFACE}`);
    }
  }

  private async invoke(msg: Message, method: string, body: unknown[]): Promise<unknown[]> {
    switch (method) {
      case 'GetNetworks':
        return [[...this.current().networks].map(([path, n]) => [n.interfaceName, n.values.get('Table'), path])];
      case 'Describe':
        return [describe(this.current())];
      case 'Reload':
        await this.authorize(msg, PolkitAction.reload, 'Reload');
        await this.control.reload();
        return [];
      case 'AddNetwork': {
        const [name, table] = body as [string, number];
        rejectIf(interfaceNameProblem(name));
        rejectIf(tableProblem(table));
        await this.authorize(msg, PolkitAction.manageNetworks, `AddNetwork(${name}, ${table})`);
        await this.control.addNetwork(name, table, false);
        return [];
      }
      case 'RemoveNetwork': {
        const name = body[0] as string;
        rejectIf(interfaceNameProblem(name));
        await this.authorize(msg, PolkitAction.manageNetworks, `RemoveNetwork(${name})`);
        await this.control.removeNetwork(name);
        return [];
      }
      case 'SetLogLevel': {
        const level = body[0] as number;
        rejectIf(logLevelProblem(level));
        if (!isLogLevel(level)) throw new ReplyError(DbusErrorName.InvalidArgument, 'bad log level');
        await this.authorize(msg, PolkitAction.setLogLevel, `SetLogLevel(${level})`);
        this.control.setLogLevel(level);
        return [];
      }
      default:
        throw new ReplyError(StdError.UnknownMethod, `Unknown method ${method}`);
    }
  }

  private async authorize(msg: Message, action: string, what: string): Promise<void> {
    const sender = msg.sender;
    const interactive = ((msg.flags as unknown as number) & ALLOW_INTERACTIVE_AUTHORIZATION) !== 0;
    const result = await this.authorizer.check(sender, action, interactive);
    if (result.allowed) {
      this.log.info(`${what} requested over D-Bus by ${sender}${result.how === 'polkit' ? '' : ' (root, polkit not available)'}`);
      return;
    }
    const uid = await this.authorizer.callerUid(sender);
    this.log.warning(`Refused ${what} over D-Bus for ${sender} (uid ${uid ?? 'unknown'}): ${result.reason}`);
    throw new ReplyError(DbusErrorName.NotAuthorized, `${what}: ${result.reason}`);
  }

  private childrenOf(path: string): string[] {
    const prefix = path === '/' ? '/' : `${path}/`;
    const paths = [MANAGER_PATH, ...this.current().networks.keys()];
    const children = new Set<string>();
    for (const p of paths) {
      if (p.startsWith(prefix)) children.add(p.slice(prefix.length).split('/')[0]);
    }
    return [...children];
  }

  // ---------------------------------------------------------------- replies

  private reply(msg: Message, signature: string, body: unknown[]): void {
    if (((msg.flags as unknown as number) & NO_REPLY_EXPECTED) !== 0 || this.stopped) return;
    this.bus.send(Message.newMethodReturn(msg, signature, body));
  }

  private replyError(msg: Message, name: string, text: string): void {
    if (((msg.flags as unknown as number) & NO_REPLY_EXPECTED) !== 0 || this.stopped) return;
    this.bus.send((Message.newError as unknown as (m: Message, n: string, t: string) => Message)(msg, name, text));
  }

  private replyFailure(msg: Message, error: unknown): void {
    try {
      if (error instanceof ReplyError) {
        this.replyError(msg, error.errorName, error.message);
      } else if (error instanceof ControlError) {
        this.replyError(msg, DbusErrorName[error.code], error.message);
      } else {
        // A bug or an unexpected failure: the caller gets a named error, the log the details.
        const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
        this.log.error(`D-Bus call ${msg.interface}.${msg.member} from ${msg.sender} failed: ${detail}`);
        this.replyError(msg, DbusErrorName.Failed, `${msg.member} failed: ${errorText(error)}`);
      }
    } catch (sendError) {
      this.log.error(`Could not send the error reply to ${msg.sender}: ${errorText(sendError)}`);
    }
  }
}

function rejectIf(problem: string | undefined): void {
  if (problem !== undefined) throw new ReplyError(DbusErrorName.InvalidArgument, problem);
}

function describeArgs(method: MethodSpec): string {
  return method.in.length === 0 ? '(no arguments)' : method.in.map((arg) => arg.name).join(', ');
}
