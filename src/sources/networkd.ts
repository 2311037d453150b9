// ConnectionSource for systemd-networkd (org.freedesktop.network1 on the system bus).
//
// networkd has no ObjectManager and no LinkAdded signal: its only signals are
// PropertiesChanged on the link objects. So: Manager.Describe() (one call, JSON with every
// link's name, type, .network file and states) at start, after every (re)appearance of
// the bus name, and whenever a PropertiesChanged arrives for a link path we do not know
// yet (a new link). A PropertiesChanged for a known link is applied directly (no round
// trip); when its AdministrativeState changes, Link.Describe() refreshes its .network
// file and name in the background. networkd < 248 without Describe: ListLinks + GetAll.
import type { SignalMessage } from './bus';
import { BusCallError } from './bus';
import type { ConnectionFact } from './types';
import { ManagerSourceBase, type ManagerSourceOptions } from './manager-source';
import {
  NETWORKD_BUS_NAME, NETWORKD_LINK_IFACE, NETWORKD_LINK_PREFIX, NETWORKD_MANAGER_IFACE, NETWORKD_PATH,
  deriveNetworkdFacts, linkFromDescribe, linkIndexOfPath, linkPath, networkdSettled, withLinkProperties, type NetworkdLink,
} from './networkd-facts';

export class NetworkdSource extends ManagerSourceBase {
  readonly origin = 'networkd' as const;
  protected readonly busName = NETWORKD_BUS_NAME;
  protected readonly label = 'systemd-networkd';
  private links = new Map<number, NetworkdLink>();
  private relisting = false;
  private relistAgain = false;

  constructor(options: ManagerSourceOptions) {
    super(options);
  }

  /** The links as last read (for tests and diagnostics). */
  knownLinks(): readonly NetworkdLink[] {
    return [...this.links.values()];
  }

  protected signalMatches(): readonly string[] {
    return [`type='signal',sender='${NETWORKD_BUS_NAME}',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',arg0='${NETWORKD_LINK_IFACE}'`];
  }

  protected async dump(owner: string, stale: () => boolean): Promise<number> {
    const { links, seq } = await this.readLinks(owner);
    if (!stale()) this.links = links;
    return seq;
  }

  protected clear(): void {
    this.links = new Map();
  }

  protected derive(): readonly ConnectionFact[] {
    return deriveNetworkdFacts(this.links.values());
  }

  protected settled(): boolean {
    return networkdSettled(this.links.values());
  }

  protected handle(msg: SignalMessage): void {
    if (msg.member !== 'PropertiesChanged' || !msg.path.startsWith(NETWORKD_LINK_PREFIX)) return;
    const [iface, changed] = msg.body as [string, Record<string, unknown>];
    if (iface !== NETWORKD_LINK_IFACE) return;
    const index = linkIndexOfPath(msg.path);
    const link = index === undefined ? undefined : this.links.get(index);
    if (!link) {
      void this.relist();
      return;
    }
    const next = withLinkProperties(link, changed ?? {});
    this.links.set(link.index, next);
    if (next.administrativeState !== link.administrativeState) void this.refreshLink(link.index);
    this.update();
  }

  private async readLinks(owner: string): Promise<{ links: Map<number, NetworkdLink>; seq: number }> {
    const links = new Map<number, NetworkdLink>();
    try {
      const { body: [text], seq } = await this.bus.callOrdered(owner, NETWORKD_PATH, NETWORKD_MANAGER_IFACE, 'Describe');
      const parsed = JSON.parse(String(text)) as { Interfaces?: Array<Record<string, unknown>> };
      for (const entry of parsed.Interfaces ?? []) {
        const link = linkFromDescribe(entry);
        if (link) links.set(link.index, link);
      }
      return { links, seq };
    } catch (error) {
      if (!(error instanceof BusCallError && error.dbusName === 'org.freedesktop.DBus.Error.UnknownMethod')) throw error;
    }
    // networkd before Manager.Describe: ListLinks + the Link properties (no .network file name)
    const { body: [list], seq } = await this.bus.callOrdered(owner, NETWORKD_PATH, NETWORKD_MANAGER_IFACE, 'ListLinks');
    for (const [index, name, path] of (list ?? []) as Array<[number, string, string]>) {
      const [props] = await this.bus.call(owner, path, 'org.freedesktop.DBus.Properties', 'GetAll', 's', [NETWORKD_LINK_IFACE]);
      links.set(index, withLinkProperties({ index, name, type: name === 'lo' ? 'loopback' : undefined }, (props ?? {}) as Record<string, unknown>));
    }
    return { links, seq };
  }

  /** Re-read all links (a new link appeared); single flight, re-run once if asked again meanwhile. */
  private async relist(): Promise<void> {
    if (this.relisting) { this.relistAgain = true; return; }
    this.relisting = true;
    try {
      do {
        this.relistAgain = false;
        const owner = this.owner;
        if (!owner) return;
        await this.reread(async () => {
          const { links, seq } = await this.readLinks(owner);
          if (owner !== this.owner) return undefined;
          this.links = links;
          return seq;
        });
        if (owner !== this.owner) return;
        this.update();
      } while (this.relistAgain);
    } catch (error) {
      this.log.debug(`systemd-networkd: re-listing links failed: ${String(error)}`);
    } finally {
      this.relisting = false;
    }
  }

  /** Link.Describe for one link: its .network file and name may change on reconfigure/reload. */
  private async refreshLink(index: number): Promise<void> {
    const owner = this.owner;
    if (!owner) return;
    try {
      const [text] = await this.bus.call(owner, linkPath(index), NETWORKD_LINK_IFACE, 'Describe');
      const fresh = linkFromDescribe(JSON.parse(String(text)) as Record<string, unknown>);
      const known = this.links.get(index);
      if (!fresh || !known || owner !== this.owner) return;
      if (fresh.networkFile === known.networkFile && fresh.name === known.name && fresh.kind === known.kind && fresh.type === known.type) return;
      // keep the states from signals (newer than this reply may be); take identity from Describe
      this.links.set(index, { ...known, name: fresh.name, networkFile: fresh.networkFile, kind: fresh.kind, type: fresh.type });
      this.update();
    } catch (error) {
      if (error instanceof BusCallError && error.dbusName === 'org.freedesktop.DBus.Error.UnknownMethod') return;
      this.log.debug(`systemd-networkd: Describe of link ${index} failed: ${String(error)}`);
      if (error instanceof BusCallError && error.code === 'Remote') void this.relist();
    }
  }
}
