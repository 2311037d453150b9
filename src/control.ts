// The daemon's control surface: what the D-Bus service (and through it dynmhsctl)
// may read and ask for. The D-Bus layer depends on this interface only.
import type { EventEmitter } from 'node:events';
import type { Family, Origin } from './model';
import type { LogLevel, SourceMode } from './config/types';

export type DaemonState = 'starting' | 'running' | 'reloading' | 'stopping';

/**
 * waiting: the interface does not exist (yet); down: it exists but is down or has no
 * usable address; active: rules and routes are in place; degraded: the last pass
 * failed for some of its objects (they are retried).
 */
export type NetworkState = 'waiting' | 'down' | 'active' | 'degraded';

export interface AddressView {
  readonly family: Family;
  readonly address: string;
  readonly prefixLength: number;
}

export interface RuleView {
  readonly family: Family;
  readonly priority: number;
  readonly from: string;
  readonly table: number;
}

export interface RouteView {
  readonly family: Family;
  /** "default" or "prefix/len". */
  readonly destination: string;
  readonly gateway: string;
  readonly device: string;
  readonly metric: number;
  readonly prefsrc: string;
  readonly scope: string;
  readonly type: string;
}

/** An MPTCP endpoint for one of the network's addresses. */
export interface EndpointView {
  readonly id: number;
  readonly address: string;
  /** As `ip mptcp endpoint` names them: "subflow,backup". */
  readonly flags: string;
  /** False: another program's endpoint, which dynmhs leaves alone. */
  readonly own: boolean;
}

export interface NetworkStatus {
  /** Stable key of the network for its lifetime in the daemon (the interface name). */
  readonly interfaceName: string;
  /** 0 while the interface does not exist. */
  readonly interfaceIndex: number;
  readonly table: number;
  readonly priority: number;
  readonly origin: Origin;
  readonly connectionId: string;
  readonly connectionUuid: string;
  readonly deviceType: string;
  readonly addresses: readonly AddressView[];
  readonly rules: readonly RuleView[];
  readonly routes: readonly RouteView[];
  readonly state: NetworkState;
  /** The network's MPTCP endpoint flags, "off" or e.g. "subflow,backup"; absent: off. */
  readonly mptcpFlags?: string;
  /** The endpoints for its addresses; absent: none. */
  readonly endpoints?: readonly EndpointView[];
}

export interface DaemonStatus {
  readonly version: string;
  readonly source: Exclude<SourceMode, 'auto'>;
  readonly state: DaemonState;
  readonly networks: readonly NetworkStatus[];
}

export interface AppliedCounts {
  readonly added: number;
  readonly removed: number;
  readonly failed: number;
}

/** Typed errors the control methods throw; the D-Bus layer maps `code` to a D-Bus error name. */
export class ControlError extends Error {
  constructor(readonly code: 'InvalidArgument' | 'NotFound' | 'Exists' | 'Failed', message: string) {
    super(message);
    this.name = 'ControlError';
  }
}

/**
 * Events: 'changed' () after any change of the status (networks, addresses, rules,
 * routes, state); 'applied' (AppliedCounts) after each reconcile pass that changed
 * something in the kernel.
 */
export interface DaemonControl extends EventEmitter {
  status(): DaemonStatus;
  /** Re-read the config file, as SIGHUP does. Rejects with ControlError on a bad file (nothing changes then). */
  reload(): Promise<void>;
  /** A runtime static mapping; persisted to the config file only when `persist` is true. */
  addNetwork(interfaceName: string, table: number, persist?: boolean): Promise<void>;
  removeNetwork(interfaceName: string): Promise<void>;
  setLogLevel(level: LogLevel): void;
}
