// An in-memory DaemonControl for the D-Bus tests: the real daemon core is tested
// elsewhere; here we need a control whose state the test sets and whose calls it sees.
import { EventEmitter } from 'node:events';
import type { AppliedCounts, DaemonControl, DaemonState, DaemonStatus, NetworkStatus } from '../../src/control';
import { ControlError } from '../../src/control';
import type { LogLevel } from '../../src/config/types';

export type FakeCall =
  | { readonly method: 'reload' }
  | { readonly method: 'addNetwork'; readonly interfaceName: string; readonly table: number; readonly persist: boolean }
  | { readonly method: 'removeNetwork'; readonly interfaceName: string }
  | { readonly method: 'setLogLevel'; readonly level: LogLevel };

export function fakeNetwork(interfaceName: string, table: number, extra: Partial<NetworkStatus> = {}): NetworkStatus {
  return {
    interfaceName,
    interfaceIndex: 0,
    table,
    priority: table,
    origin: 'static',
    connectionId: '',
    connectionUuid: '',
    deviceType: '',
    addresses: [],
    rules: [],
    routes: [],
    state: 'waiting',
    ...extra,
  };
}

export class FakeControl extends EventEmitter implements DaemonControl {
  readonly calls: FakeCall[] = [];
  /** When set, reload() rejects with it (e.g. a ControlError for a bad config file). */
  reloadError: Error | undefined;
  /** When set, status() throws it (a broken core must not take the bus service down). */
  statusError: Error | undefined;
  private networks: NetworkStatus[] = [];
  private state: DaemonState = 'running';

  constructor(private readonly version = '0.1.0-test', private readonly source: DaemonStatus['source'] = 'static') {
    super();
  }

  status(): DaemonStatus {
    if (this.statusError) throw this.statusError;
    return { version: this.version, source: this.source, state: this.state, networks: [...this.networks] };
  }

  async reload(): Promise<void> {
    this.calls.push({ method: 'reload' });
    if (this.reloadError) throw this.reloadError;
  }

  async addNetwork(interfaceName: string, table: number, persist = false): Promise<void> {
    this.calls.push({ method: 'addNetwork', interfaceName, table, persist });
    if (this.networks.some((n) => n.interfaceName === interfaceName)) {
      throw new ControlError('Exists', `${interfaceName} is already managed`);
    }
    if (this.networks.some((n) => n.table === table)) {
      throw new ControlError('Exists', `table ${table} is already used`);
    }
    this.setNetworks([...this.networks, fakeNetwork(interfaceName, table)]);
  }

  async removeNetwork(interfaceName: string): Promise<void> {
    this.calls.push({ method: 'removeNetwork', interfaceName });
    if (!this.networks.some((n) => n.interfaceName === interfaceName)) {
      throw new ControlError('NotFound', `${interfaceName} is not managed`);
    }
    this.setNetworks(this.networks.filter((n) => n.interfaceName !== interfaceName));
  }

  setLogLevel(level: LogLevel): void {
    this.calls.push({ method: 'setLogLevel', level });
  }

  // ------------------------------------------------ test controls
  setNetworks(networks: NetworkStatus[]): void {
    this.networks = networks;
    this.emit('changed');
  }

  updateNetwork(interfaceName: string, change: Partial<NetworkStatus>): void {
    this.setNetworks(this.networks.map((n) => (n.interfaceName === interfaceName ? { ...n, ...change } : n)));
  }

  setState(state: DaemonState): void {
    this.state = state;
    this.emit('changed');
  }

  applied(counts: AppliedCounts): void {
    this.emit('applied', counts);
  }
}

/** A Logger that keeps its lines (for assertions and for printing when a test fails). */
export function captureLogger(): import('../../src/log').Logger & { lines: string[] } {
  const lines: string[] = [];
  let current: LogLevel = 0;
  const at = (name: string) => (message: string): void => { lines.push(`${name}: ${message}`); };
  return {
    lines,
    trace: at('trace'), debug: at('debug'), info: at('info'), warning: at('warning'), error: at('error'), fatal: at('fatal'),
    setLevel: (level: LogLevel) => { current = level; },
    level: () => current,
    close: async () => undefined,
  };
}
