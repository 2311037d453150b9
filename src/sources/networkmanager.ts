// ConnectionSource for NetworkManager (org.freedesktop.NetworkManager on the system bus).
//
// One GetManagedObjects call on NM's ObjectManager (/org/freedesktop) reads every device,
// active connection and IP config with all their properties; after that a local mirror
// is kept current from InterfacesAdded / InterfacesRemoved and the standard
// PropertiesChanged signals (match rules filtered by interface, so access-point signal
// strength updates never wake us). Device.StateChanged and Connection.Active.StateChanged
// carry nothing PropertiesChanged does not, and NM emits the PropertiesChanged first or
// right after. Facts are re-derived after every signal (a handful of objects) and
// 'changed' is emitted only when they differ.
import type { SignalMessage } from './bus';
import type { ConnectionFact } from './types';
import { ManagerSourceBase, type ManagerSourceOptions } from './manager-source';
import { NM_BUS_NAME, NM_IFACE, NM_MIRRORED, NM_ROOT, deriveNmFacts, nmStartingUp, type NmObjects } from './nm-facts';

type Props = Record<string, unknown>;

export class NetworkManagerSource extends ManagerSourceBase {
  readonly origin = 'networkmanager' as const;
  protected readonly busName = NM_BUS_NAME;
  protected readonly label = 'NetworkManager';
  private objects = new Map<string, Record<string, Props>>();

  constructor(options: ManagerSourceOptions) {
    super(options);
  }

  /** The mirrored objects (for tests and diagnostics). */
  mirror(): NmObjects {
    return this.objects;
  }

  protected signalMatches(): readonly string[] {
    const base = `type='signal',sender='${NM_BUS_NAME}'`;
    return [
      `${base},interface='org.freedesktop.DBus.ObjectManager',path='${NM_ROOT}'`,
      ...NM_MIRRORED.map((iface) => `${base},interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',arg0='${iface}'`),
    ];
  }

  protected async dump(owner: string, stale: () => boolean): Promise<number> {
    const { body: [reply], seq } = await this.bus.callOrdered(owner, NM_ROOT, 'org.freedesktop.DBus.ObjectManager', 'GetManagedObjects');
    if (stale()) return seq;
    const objects = new Map<string, Record<string, Props>>();
    for (const [path, ifaces] of Object.entries((reply ?? {}) as Record<string, Record<string, Props>>)) {
      const kept = pick(ifaces);
      if (kept) objects.set(path, kept);
    }
    this.objects = objects;
    return seq;
  }

  protected clear(): void {
    this.objects = new Map();
  }

  protected derive(): readonly ConnectionFact[] {
    return deriveNmFacts(this.objects);
  }

  protected settled(): boolean {
    return !nmStartingUp(this.objects);
  }

  protected handle(msg: SignalMessage): void {
    switch (msg.member) {
      case 'PropertiesChanged': {
        const [iface, changed, invalidated] = msg.body as [string, Props, string[]];
        if (!NM_MIRRORED.includes(iface)) return;
        const obj = this.objects.get(msg.path);
        if (!obj) return; // InterfacesAdded brings the full set; a change before it is in there
        const props = { ...(obj[iface] ?? {}), ...changed };
        for (const name of invalidated ?? []) delete props[name];
        this.objects.set(msg.path, { ...obj, [iface]: props });
        break;
      }
      case 'InterfacesAdded': {
        const [path, ifaces] = msg.body as [string, Record<string, Props>];
        const kept = pick(ifaces);
        if (!kept) return;
        this.objects.set(path, { ...(this.objects.get(path) ?? {}), ...kept });
        break;
      }
      case 'InterfacesRemoved': {
        const [path, names] = msg.body as [string, string[]];
        const obj = this.objects.get(path);
        if (!obj) return;
        const before = this.currentFacts();
        const rest = { ...obj };
        for (const name of names) delete rest[name];
        if (Object.keys(rest).length === 0) this.objects.delete(path);
        else this.objects.set(path, rest);
        // A device or active connection unexported while still up is NM shutting down
        // (it leaves the configuration in place and re-adopts it on start), not a
        // deactivation, which always passes through DEACTIVATING first.
        const after = new Set(deriveNmFacts(this.objects).map((f) => f.connectionUuid));
        this.hold(before.filter((f) => !after.has(f.connectionUuid)), `NetworkManager unexported ${path} while it was active`);
        break;
      }
      default:
        return;
    }
    this.update();
  }
}

function pick(ifaces: Record<string, Props> | undefined): Record<string, Props> | undefined {
  if (!ifaces) return undefined;
  let kept: Record<string, Props> | undefined;
  for (const iface of NM_MIRRORED) {
    if (ifaces[iface]) (kept ??= {})[iface] = ifaces[iface]!;
  }
  return kept;
}

export { NM_IFACE };
