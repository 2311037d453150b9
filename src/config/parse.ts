// Command line + config file → Config. A pure function of argv and the file's
// content (no globals), so the daemon can call it again on SIGHUP.
//
// Precedence: command-line networks and include/exclude selectors come first and
// the file's are added after them; every scalar given on the command line
// overrides the file's; within one origin the last occurrence wins.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { helpText, tokenize, type OptionId, type Occurrence } from './cli';
import { ConfigFileError, EXIT, quoted, UsageError, ValueError } from './errors';
import { readConfigFile, type FileEntry } from './file';
import type { Config, LogLevel, MatchKind, MptcpFlags, NetworkSpec, Selector, SourceMode, TableRange } from './types';
import {
  parseBoolean, parseFileName, parseLogLevel, parseMapping, parseMptcpFlags, parseSeconds, parseSelector,
  parseSource, parseStateDirectory, parseTableRange,
} from './values';

export { ConfigFileError, EXIT, UsageError } from './errors';

export type CommandLine =
  | { kind: 'run'; config: Config }
  | { kind: 'help'; text: string }
  | { kind: 'version'; text: string };

export const DEFAULTS = {
  logLevel: 2 as LogLevel,
  logColor: true,
  source: 'static' as SourceMode,
  tableRange: { first: 10000, last: 19999 } as TableRange,
  stateDirectory: '/var/lib/dynmhs',
  tableIdleSeconds: 86400,
  dbus: true,
  mptcp: [] as MptcpFlags,
} as const;

/** Settings that both the command line and the file can give; undefined = not given. */
interface Scalars {
  logLevel?: LogLevel;
  logFile?: string;
  logColor?: boolean;
  source?: SourceMode;
  tableRange?: TableRange;
  stateDirectory?: string;
  tableIdleSeconds?: number;
  dbus?: boolean;
  mptcp?: MptcpFlags;
  service?: boolean;
}

/** A network with where it came from, for cross-checks and their messages. */
interface Located {
  readonly spec: NetworkSpec;
  /** "--network \"eth0:2000\"" or "FILE:LINE: NETWORK=\"eth0:2000\"": the message prefix. */
  readonly where: string;
  readonly inFile: boolean;
}

interface Layer {
  readonly scalars: Scalars;
  readonly networks: Located[];
  readonly include: Selector[];
  readonly exclude: Selector[];
  /** Where the table range was given, for the overlap message. */
  tableRangeAt?: string;
}

const emptyLayer = (): Layer => ({ scalars: {}, networks: [], include: [], exclude: [] });

/** The version in package.json, or "unknown" when it is not installed next to dist/. */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version?: unknown };
    if (typeof pkg.version === 'string') return pkg.version;
  } catch {
    // Installed without package.json next to dist/: still print something useful.
  }
  return 'unknown';
}

export function parseCommandLine(argv: readonly string[]): CommandLine {
  const occurrences = tokenize(argv);
  if (occurrences.some((o) => o.spec.id === 'help')) return { kind: 'help', text: helpText('dynmhs') };
  if (occurrences.some((o) => o.spec.id === 'version')) {
    return { kind: 'version', text: `dynmhs ${packageVersion()} (Dynamic Multi-Homing Setup, DynMHS-compatible)\n` };
  }

  const cli = commandLineLayer(occurrences);
  const configFile = lastValue(occurrences, 'config');
  const file = configFile === undefined ? emptyLayer() : fileLayer(configFile, readConfigFile(configFile));
  return { kind: 'run', config: merge(cli, file, configFile) };
}

function lastValue(occurrences: readonly Occurrence[], id: OptionId): string | undefined {
  let value: string | undefined;
  for (const o of occurrences) if (o.spec.id === id) value = o.value;
  return value;
}

/** Runs a value parser and turns its ValueError into the right typed error. */
function checked<T>(parse: (text: string) => T, text: string, fail: (message: string) => Error): T {
  try {
    return parse(text);
  } catch (error) {
    if (error instanceof ValueError) throw fail(error.message);
    throw error;
  }
}

function commandLineLayer(occurrences: readonly Occurrence[]): Layer {
  const layer = emptyLayer();
  const s = layer.scalars;
  for (const o of occurrences) {
    const text = o.value ?? '';
    const where = `${o.typed} ${quoted(text)}`;
    const v = <T>(parse: (text: string) => T): T => checked(parse, text, (m) => new UsageError(`${where}: ${m}`));
    switch (o.spec.id) {
      case 'network':
      case 'interface': {
        const mapping = v(parseMapping);
        layer.networks.push({ spec: { ...mapping, definedAt: `--${o.spec.id}` }, where, inFile: false });
        break;
      }
      case 'config': v(parseFileName); break;
      case 'loglevel': s.logLevel = v(parseLogLevel); break;
      case 'verbose': s.logLevel = 0; break;
      case 'quiet': s.logLevel = 3; break;
      case 'logfile': s.logFile = v(parseFileName); break;
      case 'logcolor': s.logColor = v(parseBoolean); break;
      case 'source': s.source = v(parseSource); break;
      case 'include': layer.include.push(v(parseSelector)); break;
      case 'exclude': layer.exclude.push(v(parseSelector)); break;
      case 'table-range': s.tableRange = v(parseTableRange); layer.tableRangeAt = where; break;
      case 'state-directory': s.stateDirectory = v(parseStateDirectory); break;
      case 'table-idle': s.tableIdleSeconds = v(parseSeconds); break;
      case 'no-dbus': s.dbus = false; break;
      case 'mptcp': s.mptcp = v(parseMptcpFlags); break;
      case 'service': s.service = true; break;
      case 'help':
      case 'version':
        break;
    }
  }
  return layer;
}

const NETWORK_KEYS = ['NETWORK', 'NETWORK1', 'NETWORK2', 'NETWORK3', 'NETWORK4', 'NETWORK5'];
const SCALAR_KEYS = ['LOGLEVEL', 'LOGCOLOR', 'LOGFILE', 'SOURCE', 'TABLE_RANGE', 'STATE_DIRECTORY', 'TABLE_IDLE', 'DBUS', 'MPTCP'];
const LIST_KEYS = ['INCLUDE', 'EXCLUDE'];
const KNOWN_KEYS = [...NETWORK_KEYS, ...SCALAR_KEYS, ...LIST_KEYS];

function fileLayer(file: string, entries: readonly FileEntry[]): Layer {
  const layer = emptyLayer();
  const s = layer.scalars;
  for (const { key, value, line } of entries) {
    const at = `${file}:${line}`;
    const where = `${at}: ${key}=${quoted(value)}`;
    if (!KNOWN_KEYS.includes(key)) {
      const hint = KNOWN_KEYS.includes(key.toUpperCase()) ? ` (did you mean ${key.toUpperCase()}?)` : '';
      throw new ConfigFileError(`${at}: unknown key ${quoted(key)}${hint}; expected one of ${KNOWN_KEYS.join(', ')}`);
    }
    // An empty value leaves the key unset: DynMHS's own examples carry NETWORK3="" and NETWORK="".
    if (value === '') continue;
    const v = <T>(parse: (text: string) => T): T => checked(parse, value, (m) => new ConfigFileError(`${where}: ${m}`));
    switch (key) {
      case 'LOGLEVEL': s.logLevel = v(parseLogLevel); break;
      case 'LOGCOLOR': s.logColor = v(parseBoolean); break;
      case 'LOGFILE': s.logFile = value; break;
      case 'SOURCE': s.source = v(parseSource); break;
      case 'TABLE_RANGE': s.tableRange = v(parseTableRange); layer.tableRangeAt = where; break;
      case 'STATE_DIRECTORY': s.stateDirectory = v(parseStateDirectory); break;
      case 'TABLE_IDLE': s.tableIdleSeconds = v(parseSeconds); break;
      case 'DBUS': s.dbus = v(parseBoolean); break;
      case 'MPTCP': s.mptcp = v(parseMptcpFlags); break;
      case 'INCLUDE': layer.include.push(v(parseSelector)); break;
      case 'EXCLUDE': layer.exclude.push(v(parseSelector)); break;
      default: {
        // NETWORK, NETWORK1..NETWORK5
        const mapping = v(parseMapping);
        layer.networks.push({ spec: { ...mapping, definedAt: at }, where, inFile: true });
      }
    }
  }
  return layer;
}

const KIND_NAMES: Record<MatchKind, string> = {
  interface: 'interface', uuid: 'connection uuid', id: 'connection id', type: 'device type',
};

function merge(cli: Layer, file: Layer, configFile: string | undefined): Config {
  const pick = <K extends keyof Scalars>(key: K): Scalars[K] => cli.scalars[key] ?? file.scalars[key];
  const networks = [...cli.networks, ...file.networks];
  const fail = (n: Located, message: string): Error =>
    n.inFile ? new ConfigFileError(`${n.where}: ${message}`) : new UsageError(`${n.where}: ${message}`);

  const bySelector = new Map<string, Located>();
  const byTable = new Map<number, Located>();
  for (const n of networks) {
    const { match, value, table } = n.spec;
    const key = `${match}\0${value}`;
    const first = bySelector.get(key);
    if (first !== undefined) {
      throw fail(n, `${KIND_NAMES[match]} ${quoted(value)} is already mapped to table ${first.spec.table} at ${first.spec.definedAt}; map each ${KIND_NAMES[match]} once`);
    }
    bySelector.set(key, n);
    const owner = byTable.get(table);
    if (owner !== undefined) {
      throw fail(n, `table ${table} is already used by ${KIND_NAMES[owner.spec.match]} ${quoted(owner.spec.value)} at ${owner.spec.definedAt}; give each network its own table`);
    }
    byTable.set(table, n);
  }

  const source = pick('source') ?? DEFAULTS.source;
  if (networks.length === 0 && source === 'static') {
    if (configFile === undefined) {
      throw new UsageError('no networks given; use --network IF:TABLE (e.g. --network eth0:2000), --config FILE, or --source networkmanager|networkd|auto');
    }
    throw new ConfigFileError(`${configFile}: no networks configured; add a NETWORK="IF:TABLE" line (e.g. NETWORK="eth0:2000"), use --network, or set SOURCE=networkmanager|networkd|auto`);
  }

  const rangeAt = cli.tableRangeAt ?? file.tableRangeAt;
  const rangeError = (message: string): Error => cli.tableRangeAt !== undefined
    ? new UsageError(`${cli.tableRangeAt}: ${message}`)
    : new ConfigFileError(`${file.tableRangeAt}: ${message}`);
  const tableRange = pick('tableRange') ?? DEFAULTS.tableRange;
  // The range is only used for automatic tables. With the default range and the static
  // source it is never used, so a DynMHS setup with a table such as 15000 stays valid.
  if (rangeAt !== undefined || source !== 'static') {
    for (const n of networks) {
      if (n.spec.table < tableRange.first || n.spec.table > tableRange.last) continue;
      const range = `${tableRange.first}-${tableRange.last}`;
      if (rangeAt !== undefined) {
        throw rangeError(`table range ${range} overlaps table ${n.spec.table} mapped at ${n.spec.definedAt}; choose a range without explicitly mapped tables`);
      }
      throw fail(n, `table ${n.spec.table} lies in the default automatic table range ${range}; use a table outside it or set --table-range/TABLE_RANGE`);
    }
  }

  const logFile = pick('logFile');
  const mptcp = pick('mptcp') ?? DEFAULTS.mptcp;
  return {
    networks: networks.map((n) => n.spec),
    logLevel: pick('logLevel') ?? DEFAULTS.logLevel,
    ...(logFile !== undefined ? { logFile } : {}),
    logColor: pick('logColor') ?? DEFAULTS.logColor,
    ...(configFile !== undefined ? { configFile } : {}),
    source,
    include: [...cli.include, ...file.include],
    exclude: [...cli.exclude, ...file.exclude],
    tableRange,
    stateDirectory: pick('stateDirectory') ?? DEFAULTS.stateDirectory,
    tableIdleSeconds: pick('tableIdleSeconds') ?? DEFAULTS.tableIdleSeconds,
    dbus: pick('dbus') ?? DEFAULTS.dbus,
    // Absent unless on: configs without MPTCP compare equal to what they were before it.
    ...(mptcp.length > 0 ? { mptcp } : {}),
    ...(cli.scalars.service === true ? { service: true } : {}),
  };
}

/** Exit code for an error thrown while parsing or starting up. */
export function exitCodeOf(error: unknown): number {
  if (error !== null && typeof error === 'object' && 'exitCode' in error && typeof error.exitCode === 'number') {
    return error.exitCode;
  }
  return EXIT.SOFTWARE;
}
