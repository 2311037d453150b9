// Parsers for single option values. Each returns the typed value or throws a
// ValueError whose message says what is accepted; the caller adds where the value
// came from ("--network \"x\": ..." or "FILE:LINE: NETWORK=\"x\": ...").
import { printable, quoted, ValueError } from './errors';
import type { LogLevel, MatchKind, MptcpFlag, MptcpFlags, Selector, SourceMode, TableRange } from './types';
import { TABLE_MAX, TABLE_MIN } from './types';

export const MATCH_KINDS: readonly MatchKind[] = ['interface', 'uuid', 'id', 'type'];
export const SOURCE_MODES: readonly SourceMode[] = ['static', 'networkmanager', 'networkd', 'auto'];

const MAPPING_SYNTAX = `expected IF:TABLE (e.g. eth0:2000) or KIND:VALUE:TABLE with KIND ${MATCH_KINDS.join('|')} (e.g. id:Home WiFi:2000)`;
const SELECTOR_SYNTAX = `expected KIND:VALUE with KIND ${MATCH_KINDS.join('|')} (e.g. type:wireguard, interface:eth0)`;
const LEVELS_TEXT = '0..5 (0 trace, 1 debug, 2 info, 3 warning, 4 error, 5 fatal)';

/** Linux IFNAMSIZ is 16 including the terminating NUL. */
const IFNAME_MAX = 15;

export interface Mapping extends Selector {
  readonly table: number;
  readonly mptcp?: MptcpFlags;
}

/** A table id: plain decimal digits only (no sign, exponent, spaces or suffix), 1000-29999. */
export function parseTable(text: string): number {
  if (!/^[0-9]+$/.test(text)) {
    throw new ValueError(`table ${quoted(text)} is not a plain decimal number; expected ${TABLE_MIN}-${TABLE_MAX}`);
  }
  const table = Number(text);
  if (table < TABLE_MIN || table > TABLE_MAX) {
    throw new ValueError(`table ${printable(text)} is out of range; expected ${TABLE_MIN}-${TABLE_MAX}`);
  }
  return table;
}

/** The kernel's dev_valid_name(): 1-15 bytes, not "." or "..", no '/', ':', NUL or whitespace. */
export function checkInterfaceName(name: string): string {
  if (name === '') throw new ValueError('empty interface name; expected a Linux interface name such as eth0');
  if (Buffer.byteLength(name) > IFNAME_MAX) {
    throw new ValueError(`interface name ${quoted(name)} is longer than ${IFNAME_MAX} bytes; Linux interface names are 1-${IFNAME_MAX} bytes`);
  }
  if (name === '.' || name === '..') {
    throw new ValueError(`${quoted(name)} is not a valid interface name; expected a Linux interface name such as eth0`);
  }
  if (/[/:\s\0]/.test(name)) {
    throw new ValueError(`interface name ${quoted(name)} contains '/', ':', a NUL or whitespace, which Linux does not allow`);
  }
  return name;
}

function checkSelectorValue(kind: MatchKind, value: string): string {
  switch (kind) {
    case 'interface':
      return checkInterfaceName(value);
    case 'uuid':
      // NetworkManager also accepts legacy, non-RFC-4122 uuids: accept any hex-and-dash
      // string rather than reject a uuid nmcli shows. NetworkManager prints them in
      // lower case; compare that way.
      if (!/^[0-9a-fA-F][0-9a-fA-F-]*$/.test(value)) {
        throw new ValueError(`uuid ${quoted(value)} is not a connection uuid; expected hex digits and dashes as shown by "nmcli -f NAME,UUID connection"`);
      }
      return value.toLowerCase();
    case 'id':
      // A connection id is free text (spaces and colons included); only empty is wrong.
      if (value === '') throw new ValueError('empty connection id; expected a connection name as shown by "nmcli connection"');
      return value;
    case 'type':
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value)) {
        throw new ValueError(`device type ${quoted(value)} is not a type name; expected e.g. ethernet, wifi, gsm, wireguard, tun`);
      }
      return value.toLowerCase();
  }
}

function matchKind(text: string, syntax: string): MatchKind {
  const kind = MATCH_KINDS.find((k) => k === text);
  if (kind === undefined) throw new ValueError(`unknown kind ${quoted(text)}; ${syntax}`);
  return kind;
}

/**
 * `IF:TABLE` (exactly one colon) matches an interface, as in DynMHS.
 * `KIND:VALUE:TABLE`: the first segment is the kind, the last the table, and
 * everything between (colons included) the value, so `id:Home:Office:2000` has the
 * id "Home:Office".
 */
export function parseMapping(text: string): Mapping {
  // A trailing ":mptcp=FLAGS" never ended a valid mapping before (the last segment was the
  // table), so stripping it keeps every existing DynMHS mapping meaning what it meant.
  const option = /:mptcp=([^:]*)$/.exec(text);
  if (option !== null) {
    const mptcp = checkMptcpOverride(option[1]!);
    return { ...parseMapping(text.slice(0, option.index)), mptcp };
  }
  const parts = text.split(':');
  if (parts.length < 2) throw new ValueError(MAPPING_SYNTAX);
  const tableText = parts[parts.length - 1]!;
  if (tableText === '') throw new ValueError(`no table after the last ':'; ${MAPPING_SYNTAX}`);
  if (parts.length === 2) {
    const value = checkInterfaceName(parts[0]!);
    return { match: 'interface', value, table: parseTable(tableText) };
  }
  const match = matchKind(parts[0]!, MAPPING_SYNTAX);
  const value = checkSelectorValue(match, parts.slice(1, -1).join(':'));
  return { match, value, table: parseTable(tableText) };
}

/** `KIND:VALUE` for --include/--exclude; the value may contain colons. */
export function parseSelector(text: string): Selector {
  const colon = text.indexOf(':');
  if (colon < 0) throw new ValueError(SELECTOR_SYNTAX);
  const match = matchKind(text.slice(0, colon), SELECTOR_SYNTAX);
  return { match, value: checkSelectorValue(match, text.slice(colon + 1)) };
}

export function parseLogLevel(text: string): LogLevel {
  if (!/^[0-5]$/.test(text)) throw new ValueError(`expected ${LEVELS_TEXT}`);
  return Number(text) as LogLevel;
}

const TRUE_WORDS = ['on', 'true', '1', 'yes'];
const FALSE_WORDS = ['off', 'false', '0', 'no'];

/** on|off, true|false, 1|0, yes|no, case-insensitive. */
export function parseBoolean(text: string): boolean {
  const word = text.toLowerCase();
  if (TRUE_WORDS.includes(word)) return true;
  if (FALSE_WORDS.includes(word)) return false;
  throw new ValueError('expected on|off, true|false, 1|0 or yes|no');
}

export function parseSource(text: string): SourceMode {
  const mode = SOURCE_MODES.find((m) => m === text.toLowerCase());
  if (mode === undefined) throw new ValueError(`unknown source; expected ${SOURCE_MODES.join('|')}`);
  return mode;
}

/** FIRST-LAST, both within 1000-29999, FIRST <= LAST. */
export function parseTableRange(text: string): TableRange {
  const m = /^([0-9]+)-([0-9]+)$/.exec(text);
  if (m === null) throw new ValueError(`expected FIRST-LAST within ${TABLE_MIN}-${TABLE_MAX}, e.g. 10000-19999`);
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first < TABLE_MIN || last > TABLE_MAX || last < TABLE_MIN || first > TABLE_MAX) {
    throw new ValueError(`range is outside ${TABLE_MIN}-${TABLE_MAX}; expected FIRST-LAST within it, e.g. 10000-19999`);
  }
  if (first > last) throw new ValueError('range is empty (FIRST > LAST); expected FIRST-LAST with FIRST <= LAST, e.g. 10000-19999');
  return { first, last };
}

/** A whole number of seconds, plain decimal digits. */
export function parseSeconds(text: string): number {
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new ValueError('expected a whole number of seconds, e.g. 86400');
  }
  return Number(text);
}

export function parseStateDirectory(text: string): string {
  if (!text.startsWith('/')) throw new ValueError('expected an absolute directory path, e.g. /var/lib/dynmhs');
  return text;
}

export function parseFileName(text: string): string {
  if (text === '') throw new ValueError('expected a file name');
  return text;
}

export const MPTCP_FLAGS: readonly MptcpFlag[] = ['subflow', 'signal', 'backup', 'fullmesh'];
const MPTCP_SYNTAX = `expected off or a comma list of ${MPTCP_FLAGS.join(', ')} (e.g. subflow or subflow,backup)`;

/**
 * `off` or a comma list of endpoint flags, in the kernel's terms. Refused here as the kernel
 * refuses them: signal with fullmesh. Also refused: flags without subflow or signal, which
 * the kernel would accept but its path manager never uses (backup and fullmesh only modify
 * how subflow/signal endpoints are used).
 */
export function parseMptcpFlags(text: string): MptcpFlags {
  const words = text.toLowerCase().split(',').map((w) => w.trim());
  if (words.length === 1 && words[0] === 'off') return [];
  const flags: MptcpFlag[] = [];
  for (const word of words) {
    if (word === 'off') throw new ValueError(`"off" cannot be combined with flags; ${MPTCP_SYNTAX}`);
    const flag = MPTCP_FLAGS.find((f) => f === word);
    if (flag === undefined) throw new ValueError(`unknown MPTCP flag ${quoted(word)}; ${MPTCP_SYNTAX}`);
    if (flags.includes(flag)) throw new ValueError(`MPTCP flag "${flag}" given twice; ${MPTCP_SYNTAX}`);
    flags.push(flag);
  }
  if (flags.includes('signal') && flags.includes('fullmesh')) {
    throw new ValueError('MPTCP flags signal and fullmesh cannot be combined (the kernel refuses such an endpoint); use subflow,fullmesh or signal');
  }
  if (!flags.includes('subflow') && !flags.includes('signal')) {
    throw new ValueError(`MPTCP flags ${flags.join(',')} need subflow or signal as well; alone the kernel never uses the endpoint (e.g. subflow,${flags[0]})`);
  }
  return MPTCP_FLAGS.filter((f) => flags.includes(f));
}

function checkMptcpOverride(text: string): MptcpFlags {
  try {
    return parseMptcpFlags(text);
  } catch (error) {
    if (error instanceof ValueError) throw new ValueError(`in ${quoted(`:mptcp=${text}`)}: ${error.message}`);
    throw error;
  }
}
