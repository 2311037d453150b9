// Why did SIGTERM come? Under dynmhs.service, systemd sends it both for a stop and for
// the stop half of a restart, and only systemd knows which: its job for the unit is of
// type "restart" while the old process is being stopped, and becomes a start job once
// the process is gone (systemd's src/core/job.h: "restarts are first treated like
// JOB_STOP, but then instead of finishing are patched to become JOB_START").
// `systemctl try-restart` of a running unit is installed as a restart job as well;
// `reload-or-restart` becomes a reload (the unit can reload) and sends no SIGTERM.
// See docs/restart.md for the alternatives and why this one was chosen.
//
// Every failure (no system bus, no systemd, not a unit, a slow answer) means "stop":
// cleaning up is the safe default, since a successor that does come adopts nothing it
// needs and re-adds the rules within its first pass.
import { Message, Variant, sessionBus, type MessageBus } from 'dbus-next';

const SYSTEMD = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER_INTERFACE = 'org.freedesktop.systemd1.Manager';
const UNIT_INTERFACE = 'org.freedesktop.systemd1.Unit';
const JOB_INTERFACE = 'org.freedesktop.systemd1.Job';
const PROPERTIES_INTERFACE = 'org.freedesktop.DBus.Properties';
export const DEFAULT_SYSTEM_BUS = 'unix:path=/run/dbus/system_bus_socket';

export type StopIntent =
  /** systemd restarts the unit: a successor starts as soon as this process has exited. */
  | { readonly kind: 'restart'; readonly unit: string; readonly job: string }
  /** A stop, or no way to tell: clean up. `reason` says which, for the log. */
  | { readonly kind: 'stop'; readonly reason: string };

export interface StopIntentOptions {
  /** Default $DBUS_SYSTEM_BUS_ADDRESS or the standard socket. */
  readonly busAddress?: string;
  /** The process whose unit is asked about (default this one). */
  readonly pid?: number;
  /** The whole question, connection included, gives up after this long (default 2 s). */
  readonly timeoutMs?: number;
}

/** Asks systemd over the system bus whether the unit of `pid` is being restarted. Never throws. */
export async function stopIntent(options: StopIntentOptions = {}): Promise<StopIntent> {
  const address = options.busAddress ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? DEFAULT_SYSTEM_BUS;
  const timeoutMs = options.timeoutMs ?? 2000;
  let bus: MessageBus | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<StopIntent>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'stop', reason: `systemd did not answer within ${timeoutMs} ms` }), timeoutMs);
  });
  const ask = async (): Promise<StopIntent> => {
    bus = sessionBus({ busAddress: address });
    // A socket error after the answer (or after the timeout) must not become an uncaught exception.
    bus.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      bus!.once('connect', () => resolve());
      bus!.once('error', (error: unknown) => reject(error));
    });
    const [unit] = await call(bus, MANAGER_PATH, MANAGER_INTERFACE, 'GetUnitByPID', 'u', [options.pid ?? process.pid]) as [string];
    const [job] = await call(bus, unit, PROPERTIES_INTERFACE, 'Get', 'ss', [UNIT_INTERFACE, 'Job']) as [Variant<[number, string]>];
    const [jobId, jobPath] = job.value;
    if (jobId === 0) return { kind: 'stop', reason: 'systemd has no job for the unit (a plain SIGTERM)' };
    const [type] = await call(bus, jobPath, PROPERTIES_INTERFACE, 'Get', 'ss', [JOB_INTERFACE, 'JobType']) as [Variant<string>];
    if (type.value === 'restart') return { kind: 'restart', unit, job: jobPath };
    return { kind: 'stop', reason: `systemd's job for the unit is "${type.value}"` };
  };
  try {
    return await Promise.race([
      ask().catch((error: unknown) => ({ kind: 'stop', reason: `cannot ask systemd: ${text(error)}` }) as StopIntent),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
    try { bus?.disconnect(); } catch { /* never connected */ }
  }
}

async function call(bus: MessageBus, path: string, iface: string, member: string, signature: string, body: unknown[]): Promise<unknown[]> {
  const reply = await bus.call(new Message({ destination: SYSTEMD, path, interface: iface, member, signature, body }));
  return reply?.body ?? [];
}

function text(error: unknown): string {
  if (error instanceof Error) {
    const name = (error as Error & { type?: string }).type;
    return name ? `${name}: ${error.message}` : error.message;
  }
  return String(error);
}

/** dynmhs.service from /org/freedesktop/systemd1/unit/dynmhs_2eservice (systemd escapes each byte outside [A-Za-z0-9] as _XX). */
export function unitNameOfPath(path: string): string {
  const label = path.slice(path.lastIndexOf('/') + 1);
  return label.replace(/_([0-9a-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}
