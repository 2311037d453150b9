// One client connection to the D-Bus system bus, shared by the network sources.
// It reconnects on its own with capped exponential backoff, re-adds its match rules on
// every connect and reports 'connected' / 'disconnected', so a source only has to
// resynchronise on 'connected'. It never throws for an unreachable bus: that is an
// expected state (dbus restarting, early boot), logged once as an error and then
// retried quietly; the daemon keeps running its static networks meanwhile.
import { EventEmitter } from 'node:events';
import { Message, MessageType, Variant, sessionBus, type MessageBus } from 'dbus-next';
import type { Logger } from '../log';

export const DEFAULT_SYSTEM_BUS_ADDRESS = 'unix:path=/var/run/dbus/system_bus_socket';

/** The address to use: an injected one, else $DBUS_SYSTEM_BUS_ADDRESS, else the standard socket. */
export function systemBusAddress(injected?: string): string {
  return injected || process.env.DBUS_SYSTEM_BUS_ADDRESS || DEFAULT_SYSTEM_BUS_ADDRESS;
}

/** A method call that failed: the bus is gone, the peer answered with an error, or it timed out. */
export class BusCallError extends Error {
  constructor(readonly code: 'NotConnected' | 'Timeout' | 'Remote', readonly dbusName: string | undefined, message: string) {
    super(message);
    this.name = 'BusCallError';
  }
}

export interface SignalMessage {
  readonly sender: string;
  readonly path: string;
  readonly interface: string;
  readonly member: string;
  /** Body with every variant unwrapped into plain values (see plain()). */
  readonly body: readonly unknown[];
  /** Arrival order of every message on this connection (replies included): see callOrdered(). */
  readonly seq: number;
}

export interface OrderedReply {
  readonly body: unknown[];
  /** Arrival position of the reply; signals with a higher seq happened after the call was answered. */
  readonly seq: number;
}

/**
 * Turn dbus-next values into plain data: variants unwrapped, dicts as objects, 64-bit
 * integers as numbers, byte arrays as number arrays. Sources then work on values that
 * can be recorded as JSON and replayed in unit tests.
 */
export function plain(value: unknown): unknown {
  if (value instanceof Variant) return plain(value.value);
  if (typeof value === 'bigint') return Number(value);
  if (Buffer.isBuffer(value)) return [...value];
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}

export interface SystemBusClientOptions {
  readonly address?: string;
  readonly log: Logger;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly callTimeoutMs?: number;
}

type Pending = { reject(error: Error): void };

/**
 * Events: 'connected' (), 'disconnected' (), 'signal' (SignalMessage).
 * 'connected' comes after the match rules are in place, so a listener may dump state.
 */
export class SystemBusClient extends EventEmitter {
  readonly address: string;
  private readonly log: Logger;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly callTimeoutMs: number;
  private bus?: MessageBus;
  private isConnected = false;
  private running = false;
  private backoffMs: number;
  private retryTimer?: NodeJS.Timeout;
  private failures = 0;
  private readonly matches = new Set<string>();
  private readonly pending = new Set<Pending>();
  /** Arrival counter of incoming messages, and the positions of awaited replies by serial. */
  private seq = 0;
  private readonly replySeq = new Map<number, number>();

  constructor(options: SystemBusClientOptions) {
    super();
    this.address = systemBusAddress(options.address);
    this.log = options.log;
    this.minBackoffMs = options.minBackoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
    this.backoffMs = this.minBackoffMs;
  }

  connected(): boolean { return this.isConnected; }

  /** Start connecting (and keep reconnecting). Resolves after the first attempt, whatever its outcome. */
  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.running = true;
    return this.connect();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.drop();
  }

  /** A match rule kept for the life of the client and re-added after every reconnect. */
  async addMatch(rule: string): Promise<void> {
    if (this.matches.has(rule)) return;
    this.matches.add(rule);
    if (this.isConnected) await this.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'AddMatch', 's', [rule]);
  }

  async removeMatch(rule: string): Promise<void> {
    if (!this.matches.delete(rule)) return;
    if (this.isConnected) await this.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RemoveMatch', 's', [rule]).catch(() => undefined);
  }

  /** The unique name owning `name`, or undefined when nobody does. */
  async nameOwner(name: string): Promise<string | undefined> {
    try {
      const [owner] = await this.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetNameOwner', 's', [name]);
      return typeof owner === 'string' ? owner : undefined;
    } catch (error) {
      if (error instanceof BusCallError && error.dbusName === 'org.freedesktop.DBus.Error.NameHasNoOwner') return undefined;
      throw error;
    }
  }

  /** A method call; the reply body comes back as plain values. */
  async call(destination: string, path: string, iface: string, member: string, signature = '', body: unknown[] = []): Promise<unknown[]> {
    return (await this.callOrdered(destination, path, iface, member, signature, body)).body;
  }

  /**
   * A method call that also says where its reply arrived among the signals. Signals that
   * arrive in the same socket read as the reply are dispatched before an awaiting caller
   * resumes; a caller that dumps state compares their seq with the reply's to know which
   * of them are newer than the dump.
   */
  callOrdered(destination: string, path: string, iface: string, member: string, signature = '', body: unknown[] = []): Promise<OrderedReply> {
    const bus = this.bus;
    if (!bus || !this.isConnected) return Promise.reject(new BusCallError('NotConnected', undefined, `not connected to the system bus (${this.address})`));
    return new Promise((resolve, reject) => {
      const entry: Pending = { reject };
      this.pending.add(entry);
      const timer = setTimeout(() => {
        this.pending.delete(entry);
        reject(new BusCallError('Timeout', undefined, `${destination} ${path} ${iface}.${member}: no reply within ${this.callTimeoutMs} ms`));
      }, this.callTimeoutMs);
      const message = new Message({ destination, path, interface: iface, member, signature: signature || undefined, body });
      const serial = bus.newSerial();
      message.serial = serial;
      this.replySeq.set(serial, -1);
      bus.call(message).then((reply) => {
        resolve({ body: reply ? (reply.body ?? []).map(plain) : [], seq: this.replySeq.get(serial) ?? this.seq });
      }, (error: unknown) => {
        const e = error as { type?: string; text?: string; message?: string };
        reject(new BusCallError('Remote', e.type, `${destination} ${path} ${iface}.${member}: ${e.text ?? e.message ?? String(error)}`));
      }).finally(() => {
        clearTimeout(timer);
        this.pending.delete(entry);
        this.replySeq.delete(serial);
      });
    });
  }

  private connect(): Promise<void> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (): void => { if (!settled) { settled = true; resolve(); } };
      let bus: MessageBus;
      try {
        bus = sessionBus({ busAddress: this.address });
      } catch (error) {
        this.failed(error);
        finish();
        return;
      }
      this.bus = bus;
      const connection = (bus as unknown as { _connection?: EventEmitter & { stream?: EventEmitter } })._connection;
      const lost = (error?: unknown): void => {
        if (this.bus !== bus) return;
        if (this.isConnected) {
          this.log.warning(`Lost the system bus connection (${this.address})${error ? `: ${describe(error)}` : ''}; reconnecting`);
          this.drop();
          this.scheduleRetry();
        } else {
          this.drop();
          this.failed(error);
        }
        finish();
      };
      bus.on('error', lost);
      connection?.on('end', () => lost());
      connection?.stream?.on('close', () => lost());
      bus.on('message', (msg) => {
        if (this.bus !== bus) return;
        const seq = ++this.seq;
        if (msg.type === MessageType.METHOD_RETURN || msg.type === MessageType.ERROR) {
          const serial = Number(msg.replySerial);
          if (this.replySeq.get(serial) === -1) this.replySeq.set(serial, seq);
          return;
        }
        if (msg.type !== MessageType.SIGNAL) return;
        this.emit('signal', { sender: msg.sender, path: msg.path, interface: msg.interface, member: msg.member, body: (msg.body ?? []).map(plain), seq } satisfies SignalMessage);
      });
      bus.on('connect', () => {
        if (this.bus !== bus) return;
        this.isConnected = true;
        void (async () => {
          try {
            for (const rule of this.matches) await this.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'AddMatch', 's', [rule]);
          } catch (error) {
            lost(error);
            return;
          }
          if (this.failures > 0) this.log.info(`Connected to the system bus (${this.address}) after ${this.failures} failed attempt(s)`);
          else this.log.debug(`Connected to the system bus (${this.address})`);
          this.failures = 0;
          this.backoffMs = this.minBackoffMs;
          finish();
          this.emit('connected');
        })();
      });
    });
  }

  private failed(error: unknown): void {
    this.failures++;
    const next = this.backoffMs;
    const text = `Cannot connect to the system bus at ${this.address}: ${describe(error)}`;
    if (this.failures === 1) {
      this.log.error(`${text}. Is dbus running (systemctl status dbus)? Retrying in ${seconds(next)}, then with backoff up to every ${seconds(this.maxBackoffMs)}; static networks keep working meanwhile.`);
    } else {
      this.log.debug(`${text} (attempt ${this.failures}); next try in ${seconds(next)}`);
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (!this.running || this.retryTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.running) void this.connect();
    }, delay);
    this.retryTimer.unref?.();
  }

  private drop(): void {
    const bus = this.bus;
    const was = this.isConnected;
    this.bus = undefined;
    this.isConnected = false;
    for (const p of this.pending) p.reject(new BusCallError('NotConnected', undefined, `system bus connection lost (${this.address})`));
    this.pending.clear();
    if (bus) {
      bus.removeAllListeners('message');
      bus.on('error', () => undefined);
      try { bus.disconnect(); } catch { /* already closed */ }
    }
    if (was) this.emit('disconnected');
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ? `${(error as NodeJS.ErrnoException).code} (${error.message})` : error.message;
  return error === undefined ? 'connection closed' : String(error);
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}
