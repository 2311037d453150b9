// dynmhsctl's connection to no.nntb.DynMHS: method calls with clear errors and exit codes.
import { Message, sessionBus } from 'dbus-next';
import type { MessageBus } from 'dbus-next';
import { BUS_NAME, DbusErrorName, MANAGER_INTERFACE, MANAGER_PATH } from '../dbus/names';

/** dynmhsctl's exit codes (documented in dynmhsctl(1)). */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  notRunning: 3,
  accessDenied: 4,
  notFound: 5,
  exists: 6,
} as const;

export class CtlError extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message);
    this.name = 'CtlError';
  }
}

const NO_AUTO_START = 0x2;
const ALLOW_INTERACTIVE_AUTHORIZATION = 0x4;
const DEFAULT_ADDRESS = 'unix:path=/run/dbus/system_bus_socket';

export function systemBusAddress(): string {
  return process.env.DBUS_SYSTEM_BUS_ADDRESS || DEFAULT_ADDRESS;
}

export class DaemonClient {
  private constructor(private readonly bus: MessageBus, private readonly address: string) {}

  static async connect(address = systemBusAddress(), timeoutMs = 10_000): Promise<DaemonClient> {
    let bus: MessageBus;
    try {
      bus = sessionBus({ busAddress: address });
    } catch (error) {
      throw new CtlError(ExitCode.notRunning, `cannot reach the system bus at ${address}: ${text(error)}`);
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new CtlError(ExitCode.notRunning, `the system bus at ${address} did not answer`)), timeoutMs);
      bus.once('connect', () => { clearTimeout(timer); resolve(); });
      bus.once('error', (error: unknown) => {
        clearTimeout(timer);
        reject(new CtlError(ExitCode.notRunning, `cannot reach the system bus at ${address}: ${text(error)} (is D-Bus running?)`));
      });
    }).catch((error: unknown) => {
      bus.on('error', () => undefined);
      try { bus.disconnect(); } catch { /* no stream */ }
      throw error;
    });
    bus.on('error', () => undefined);
    return new DaemonClient(bus, address);
  }

  close(): void {
    try { this.bus.disconnect(); } catch { /* already closed */ }
  }

  /**
   * Call a method of no.nntb.DynMHS1. Never starts the daemon by bus activation
   * (NO_AUTO_START): "not running" is reported as such. `interactive` lets polkit ask
   * for a password through an authentication agent.
   */
  async call(member: string, signature = '', body: unknown[] = [], interactive = false, timeoutMs = 30_000): Promise<unknown[]> {
    const msg = new Message({
      destination: BUS_NAME,
      path: MANAGER_PATH,
      interface: MANAGER_INTERFACE,
      member,
      signature,
      body,
      flags: (NO_AUTO_START | (interactive ? ALLOW_INTERACTIVE_AUTHORIZATION : 0)) as never,
    });
    const limit = interactive ? Math.max(timeoutMs, 120_000) : timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      const reply = await Promise.race([
        this.bus.call(msg),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new CtlError(ExitCode.failed, `dynmhs did not answer ${member} within ${limit / 1000} s`)), limit);
        }),
      ]);
      return reply?.body ?? [];
    } catch (error) {
      throw toCtlError(error, member, this.address);
    } finally {
      clearTimeout(timer);
    }
  }
}

function text(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'text' in error && typeof (error as { text: unknown }).text === 'string') {
    return (error as { text: string }).text;
  }
  return error instanceof Error ? error.message : String(error);
}

export function toCtlError(error: unknown, member: string, address: string): CtlError {
  if (error instanceof CtlError) return error;
  const name = typeof error === 'object' && error !== null && 'type' in error ? String((error as { type: unknown }).type) : '';
  const message = text(error);
  switch (name) {
    case 'org.freedesktop.DBus.Error.ServiceUnknown':
    case 'org.freedesktop.DBus.Error.NameHasNoOwner':
      return new CtlError(ExitCode.notRunning,
        `dynmhs is not running (${BUS_NAME} is not on the system bus ${address}); start it with: systemctl start dynmhs`);
    case DbusErrorName.NotAuthorized:
    case 'org.freedesktop.DBus.Error.AccessDenied':
    case 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired':
      return new CtlError(ExitCode.accessDenied,
        `access denied: ${message}\n(run it as root, e.g. with sudo, or have an administrator grant the polkit action)`);
    case DbusErrorName.InvalidArgument:
      return new CtlError(ExitCode.usage, `invalid argument: ${message}`);
    case DbusErrorName.NotFound:
      return new CtlError(ExitCode.notFound, message);
    case DbusErrorName.Exists:
      return new CtlError(ExitCode.exists, message);
    case 'org.freedesktop.DBus.Error.UnknownMethod':
      return new CtlError(ExitCode.failed, `the running dynmhs does not know ${member} (an older version?): ${message}`);
    default:
      return new CtlError(ExitCode.failed, `${member} failed: ${message}${name ? ` (${name})` : ''}`);
  }
}
