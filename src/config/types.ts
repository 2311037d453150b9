// The typed result of parsing the command line and the config file.

export type LogLevel = 0 | 1 | 2 | 3 | 4 | 5;

export const LOG_LEVEL_NAMES = ['trace', 'debug', 'info', 'warning', 'error', 'fatal'] as const;

export type SourceMode = 'static' | 'networkmanager' | 'networkd' | 'auto';

/**
 * What a mapping or an include/exclude selector matches:
 * `interface` (the DynMHS `IF:TABLE` form), a connection `uuid`, a connection `id`
 * (its human name), or a device `type` (ethernet, wifi, gsm, wireguard, tun, ...).
 */
export type MatchKind = 'interface' | 'uuid' | 'id' | 'type';

export interface Selector {
  readonly match: MatchKind;
  readonly value: string;
}

/** The kernel's MPTCP endpoint flags dynmhs may set (`ip mptcp endpoint add ... FLAGS`). */
export type MptcpFlag = 'subflow' | 'signal' | 'backup' | 'fullmesh';

/** Endpoint flags for a network's addresses; empty means no endpoints (`off`). */
export type MptcpFlags = readonly MptcpFlag[];

export interface NetworkSpec extends Selector {
  readonly table: number;
  /** A per-network `:mptcp=FLAGS` override of --mptcp; absent when not given. */
  readonly mptcp?: MptcpFlags;
  /** Where it was given, for messages: "--network" or "/etc/dynmhs/dynmhs.conf:12". */
  readonly definedAt: string;
}

export interface TableRange {
  readonly first: number;
  readonly last: number;
}

export interface Config {
  /** Command-line networks first, then the config file's, in order. */
  readonly networks: readonly NetworkSpec[];
  readonly logLevel: LogLevel;
  readonly logFile?: string;
  readonly logColor: boolean;
  readonly configFile?: string;
  readonly source: SourceMode;
  readonly include: readonly Selector[];
  readonly exclude: readonly Selector[];
  /** Tables for connections without an explicit mapping. */
  readonly tableRange: TableRange;
  readonly stateDirectory: string;
  /** A connection's automatically allocated table is freed after it has been gone this long. */
  readonly tableIdleSeconds: number;
  /** Export no.nntb.DynMHS on the system bus. */
  readonly dbus: boolean;
  /** MPTCP endpoint flags for every managed address (--mptcp / MPTCP=); absent or empty: none. */
  readonly mptcp?: MptcpFlags;
  /** --service: run as dynmhs.service (command line only; see src/main.ts). */
  readonly service?: boolean;
}

/** DynMHS accepts tables 1000–29999; so do we, for explicit and automatic tables alike. */
export const TABLE_MIN = 1000;
export const TABLE_MAX = 29999;
