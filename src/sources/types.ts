// Where managed networks come from. A source reports facts (which interfaces are
// up under which connection); it never decides tables, rules or routes.
import type { EventEmitter } from 'node:events';
import type { Origin } from '../model';

export interface ConnectionFact {
  readonly interfaceName: string;
  readonly origin: Exclude<Origin, 'static'>;
  /** Human name of the connection (NetworkManager connection id, networkd .network file). */
  readonly connectionId: string;
  /** Stable identity: NetworkManager connection uuid; for networkd a stable key of the link's .network file and name. */
  readonly connectionUuid: string;
  /** Device type as the manager names it: ethernet, wifi, gsm, tun, wireguard, loopback, ... */
  readonly deviceType: string;
}

/**
 * Emits 'changed' () whenever `connections()` may have changed. `connections()` is a
 * snapshot of every connection that should be managed right now.
 */
export interface ConnectionSource extends EventEmitter {
  readonly origin: Exclude<Origin, 'static'>;
  start(): Promise<void>;
  stop(): Promise<void>;
  connections(): readonly ConnectionFact[];
}
