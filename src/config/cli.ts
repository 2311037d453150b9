// Tokenizing the command line into option occurrences. Accepted shapes, as DynMHS
// (boost::program_options with allow_long_disguise) accepts them:
//   --network eth0:2000    --network=eth0:2000    -N eth0:2000    -Neth0:2000
//   -network eth0:2000     (a long name after a single dash)
//   --net eth0:2000        (an unambiguous prefix of a long name)
// "--" ends the options; dynmhs takes no positional arguments.
import { printable, quoted, UsageError } from './errors';

export type OptionId =
  | 'network' | 'interface' | 'config' | 'loglevel' | 'logfile' | 'logcolor'
  | 'verbose' | 'quiet' | 'version' | 'help'
  | 'source' | 'include' | 'exclude' | 'table-range' | 'state-directory' | 'table-idle' | 'no-dbus' | 'mptcp' | 'service';

export interface OptionSpec {
  readonly id: OptionId;
  readonly short?: string;
  /** Placeholder shown in help and errors; absent for flags. */
  readonly arg?: string;
  readonly help: string;
}

export const OPTIONS: readonly OptionSpec[] = [
  { id: 'network', short: 'N', arg: 'IF:TABLE', help: 'Manage interface IF with routing table TABLE (1000-29999); repeatable. Also KIND:VALUE:TABLE with KIND interface|uuid|id|type' },
  { id: 'interface', short: 'I', arg: 'IF:TABLE', help: 'Deprecated alias of --network' },
  { id: 'config', short: 'C', arg: 'FILE', help: 'Read settings from FILE (KEY=VALUE lines); re-read on SIGHUP' },
  { id: 'loglevel', short: 'L', arg: 'LEVEL', help: 'Log level 0..5: 0 trace, 1 debug, 2 info (default), 3 warning, 4 error, 5 fatal' },
  { id: 'logfile', short: 'O', arg: 'FILE', help: 'Also append log lines to FILE' },
  { id: 'logcolor', short: 'Z', arg: 'on|off', help: 'Colour log lines on a terminal (default on)' },
  { id: 'verbose', help: 'Log level 0 (trace)' },
  { id: 'quiet', short: 'q', help: 'Log level 3 (warning)' },
  { id: 'source', arg: 'SOURCE', help: 'Where networks come from: static (default; --network only), networkmanager, networkd, auto' },
  { id: 'include', arg: 'KIND:VALUE', help: 'Manage only matching connections (KIND interface|uuid|id|type); repeatable' },
  { id: 'exclude', arg: 'KIND:VALUE', help: 'Never manage matching connections, e.g. type:wireguard; repeatable' },
  { id: 'table-range', arg: 'FIRST-LAST', help: 'Tables for connections without a mapping (default 10000-19999)' },
  { id: 'state-directory', arg: 'DIR', help: 'Where table allocations are kept (default /var/lib/dynmhs)' },
  { id: 'table-idle', arg: 'SECONDS', help: 'Free an allocated table after its connection has been gone this long (default 86400)' },
  { id: 'mptcp', arg: 'FLAGS', help: 'MPTCP endpoints for managed addresses: off (default) or a comma list of subflow, signal, backup, fullmesh; per network: IF:TABLE:mptcp=FLAGS' },
  { id: 'no-dbus', help: 'Do not export no.nntb.DynMHS on the system bus' },
  { id: 'service', help: 'Run as dynmhs.service does: exit at once if no.nntb.DynMHS cannot be owned, and on SIGTERM leave the rules for the successor when systemd restarts the unit' },
  { id: 'version', short: 'v', help: 'Print the version and exit' },
  { id: 'help', short: 'h', help: 'Print this help and exit' },
];

export interface Occurrence {
  readonly spec: OptionSpec;
  /** The option as the user typed it, for messages: "-N", "--network", "-network". */
  readonly typed: string;
  /** Undefined for flags. */
  readonly value?: string;
}

function findLong(name: string, typed: string): OptionSpec | undefined {
  const exact = OPTIONS.find((o) => o.id === name);
  if (exact !== undefined) return exact;
  if (name === '') return undefined;
  const candidates = OPTIONS.filter((o) => o.id.startsWith(name));
  if (candidates.length > 1) {
    throw new UsageError(`${typed}: ambiguous option; could be ${candidates.map((o) => `--${o.id}`).join(', ')}`);
  }
  return candidates[0];
}

const unknown = (typed: string): UsageError =>
  new UsageError(`${printable(typed)}: unknown option; see --help for the accepted options`);

export function tokenize(argv: readonly string[]): Occurrence[] {
  const found: Occurrence[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      if (i + 1 < argv.length) throw new UsageError(`${quoted(argv[i + 1])}: unexpected argument; dynmhs takes options only, see --help`);
      break;
    }
    let spec: OptionSpec | undefined;
    let typed: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      typed = eq < 0 ? arg : arg.slice(0, eq);
      if (eq >= 0) inline = arg.slice(eq + 1);
      spec = findLong(typed.slice(2), typed);
      if (spec === undefined) throw unknown(typed);
    } else if (arg.startsWith('-') && arg.length >= 2) {
      // A long name after one dash (DynMHS's own man page writes "-loglevel 0"),
      // else a short option with its value possibly attached ("-L0").
      const eq = arg.indexOf('=');
      const longName = eq < 0 ? arg.slice(1) : arg.slice(1, eq);
      const disguised = arg.length > 2 ? OPTIONS.find((o) => o.id === longName) : undefined;
      if (disguised !== undefined) {
        spec = disguised;
        typed = eq < 0 ? arg : arg.slice(0, eq);
        if (eq >= 0) inline = arg.slice(eq + 1);
      } else {
        typed = arg.slice(0, 2);
        spec = OPTIONS.find((o) => o.short === arg[1]);
        if (spec === undefined) throw unknown(typed);
        if (arg.length > 2) {
          if (spec.arg === undefined) throw unknown(arg);
          inline = arg.slice(2);
        }
      }
    } else {
      throw new UsageError(`${quoted(arg)}: unexpected argument; dynmhs takes options only (did you mean --network ${printable(arg)}?)`);
    }

    if (spec.arg === undefined) {
      if (inline !== undefined) throw new UsageError(`${typed}: takes no value, but got ${quoted(inline)}`);
      found.push({ spec, typed });
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      // "--network --loglevel 2" is a forgotten value, not an interface named "--loglevel".
      if (next === undefined || next.startsWith('--')) {
        throw new UsageError(`${typed}: missing argument; expected ${typed} ${spec.arg}`);
      }
      value = next;
      i++;
    }
    found.push({ spec, typed, value });
  }
  return found;
}

export function helpText(program: string): string {
  const lines = [
    `Usage: ${program} [OPTIONS]`,
    '',
    'Dynamic Multi-Homing Setup: keeps a routing table and source rules per network.',
    '',
    'Options:',
  ];
  const heads = OPTIONS.map((o) => {
    const names = (o.short !== undefined ? `-${o.short}, ` : '    ') + `--${o.id}`;
    return o.arg !== undefined ? `${names} ${o.arg}` : names;
  });
  const width = Math.max(...heads.map((h) => h.length)) + 2;
  OPTIONS.forEach((o, i) => lines.push(`  ${heads[i]!.padEnd(width)}${o.help}`));
  lines.push(
    '',
    'Exit codes: 0 ok, 64 bad command line, 78 bad config file, 73 log file cannot be opened,',
    '            69 a required service is unavailable, 70 internal error,',
    '            77 (--service) the bus policy does not let dynmhs own no.nntb.DynMHS.',
  );
  return lines.join('\n') + '\n';
}
