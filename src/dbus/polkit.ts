// Asks polkit whether the sender of a D-Bus call may perform an action.
//
// Policy (documented in dynmhs(8)):
// - The subject is the caller's system-bus-name (the message sender). polkitd resolves
//   it to a uid/pid itself, so a caller cannot claim someone else's identity.
// - polkit decides for everyone, root included (polkitd always authorizes a root
//   subject, so root needs no special case while polkit runs).
// - If polkitd is not reachable (not installed, not running, not answering in time),
//   only uid 0 is allowed (asked from the bus: GetConnectionUnixUser); everyone else
//   is refused with NotAuthorized. Any other polkit error refuses the call.
import { Message, Variant } from 'dbus-next';
import type { MessageBus } from 'dbus-next';
import type { Logger } from '../log';

export type AuthorizationResult =
  | { readonly allowed: true; readonly how: 'polkit' | 'root-without-polkit' }
  | { readonly allowed: false; readonly challenge: boolean; readonly reason: string };

const POLKIT_NAME = 'org.freedesktop.PolicyKit1';
const POLKIT_PATH = '/org/freedesktop/PolicyKit1/Authority';
const POLKIT_INTERFACE = 'org.freedesktop.PolicyKit1.Authority';
/** CheckAuthorization flag: an authentication agent may ask the user. */
const ALLOW_USER_INTERACTION = 1;

/** Error names meaning "polkit is not there", as opposed to "polkit said no". */
const UNAVAILABLE = new Set([
  'org.freedesktop.DBus.Error.ServiceUnknown',
  'org.freedesktop.DBus.Error.NameHasNoOwner',
  'org.freedesktop.DBus.Error.NoReply',
  'org.freedesktop.DBus.Error.TimedOut',
  'org.freedesktop.DBus.Error.Timeout',
  'org.freedesktop.DBus.Error.Disconnected',
  'org.freedesktop.DBus.Error.NoServer',
  'org.freedesktop.systemd1.NoSuchUnit',
  'org.freedesktop.systemd1.UnitMasked',
]);

class CallTimeout extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not answer within ${ms} ms`);
    this.name = 'CallTimeout';
  }
}

export interface AuthorizerOptions {
  /** Wait this long for a non-interactive answer (default 10 s). */
  readonly timeoutMs?: number;
  /** Wait this long when the caller allowed interactive authorization (default 120 s). */
  readonly interactiveTimeoutMs?: number;
}

export class PolkitAuthorizer {
  private readonly timeoutMs: number;
  private readonly interactiveTimeoutMs: number;

  constructor(private readonly bus: MessageBus, private readonly log: Logger, options: AuthorizerOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.interactiveTimeoutMs = options.interactiveTimeoutMs ?? 120_000;
  }

  async check(sender: string, actionId: string, interactive: boolean): Promise<AuthorizationResult> {
    const request = new Message({
      destination: POLKIT_NAME,
      path: POLKIT_PATH,
      interface: POLKIT_INTERFACE,
      member: 'CheckAuthorization',
      signature: '(sa{sv})sa{ss}us',
      body: [
        ['system-bus-name', { name: new Variant('s', sender) }],
        actionId,
        {},
        interactive ? ALLOW_USER_INTERACTION : 0,
        '',
      ],
    });
    let reply: Message | null;
    try {
      reply = await withTimeout(this.bus.call(request), interactive ? this.interactiveTimeoutMs : this.timeoutMs, 'polkit');
    } catch (error) {
      const name = errorName(error);
      if (error instanceof CallTimeout || (name !== undefined && (UNAVAILABLE.has(name) || name.startsWith('org.freedesktop.DBus.Error.Spawn.')))) {
        return this.rootWithoutPolkit(sender, `${name ?? 'timeout'}: ${errorText(error)}`);
      }
      this.log.warning(`polkit refused to check ${actionId} for ${sender}: ${name ?? 'error'}: ${errorText(error)}`);
      return { allowed: false, challenge: false, reason: `polkit could not check ${actionId}: ${errorText(error)}` };
    }
    const result = reply?.body?.[0] as unknown;
    if (!Array.isArray(result) || typeof result[0] !== 'boolean') {
      return { allowed: false, challenge: false, reason: 'polkit gave an answer that could not be read' };
    }
    if (result[0]) return { allowed: true, how: 'polkit' };
    const challenge = result[1] === true;
    return {
      allowed: false,
      challenge,
      reason: challenge
        ? `not authorized for ${actionId}: authentication is required (run as root, or through an authentication agent)`
        : `not authorized for ${actionId}`,
    };
  }

  /** The bus's view of the caller's uid; undefined when the bus cannot tell (the caller left). */
  async callerUid(sender: string): Promise<number | undefined> {
    try {
      const reply = await withTimeout(this.bus.call(new Message({
        destination: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'GetConnectionUnixUser',
        signature: 's',
        body: [sender],
      })), this.timeoutMs, 'the bus');
      const uid = reply?.body?.[0] as unknown;
      return typeof uid === 'number' ? uid : undefined;
    } catch {
      return undefined;
    }
  }

  private async rootWithoutPolkit(sender: string, why: string): Promise<AuthorizationResult> {
    const uid = await this.callerUid(sender);
    if (uid === 0) {
      this.log.warning(`polkit is not available (${why}); allowing the call of ${sender} because it runs as root`);
      return { allowed: true, how: 'root-without-polkit' };
    }
    this.log.warning(`polkit is not available (${why}); refusing the call of ${sender} (uid ${uid ?? 'unknown'}): only root may change dynmhs without polkit`);
    return { allowed: false, challenge: false, reason: 'polkit is not available; without it only root may do this' };
  }
}

export function errorName(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'type' in error && typeof (error as { type: unknown }).type === 'string') {
    return (error as { type: string }).type;
  }
  return undefined;
}

export function errorText(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    if ('text' in error && typeof (error as { text: unknown }).text === 'string') return (error as { text: string }).text;
    if (error instanceof Error) return error.message;
  }
  return String(error);
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new CallTimeout(what, ms)), ms);
    promise.then(
      (value) => { clearTimeout(timer); resolve(value); },
      (error: unknown) => { clearTimeout(timer); reject(error); },
    );
  });
}
