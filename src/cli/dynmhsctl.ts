#!/usr/bin/env node
// dynmhsctl: asks the running dynmhs over its D-Bus API (no.nntb.DynMHS on the system
// bus, or DBUS_SYSTEM_BUS_ADDRESS) and never touches the kernel itself.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonStatus, NetworkStatus } from '../control';
import { CtlError, DaemonClient, ExitCode } from './client';
import { formatTable } from './table';

const USAGE = `Usage: dynmhsctl [--json] COMMAND [ARGS]

Query and control the dynmhs daemon over D-Bus (no.nntb.DynMHS).

Reading (open to every user):
  status              one line per network: interface, table, addresses, rules, routes, origin, state
  networks            the managed networks
  rules               the source rules dynmhs keeps ("from ADDR lookup TABLE")
  routes [NETWORK]    the routes in each network's table (NETWORK: interface, connection id or table)
  describe            the whole state as JSON

Changing (polkit decides; root is always allowed):
  reload              re-read the configuration file (as SIGHUP does)
  add IF:TABLE        manage interface IF with table TABLE (1000-29999) until the daemon stops
  remove IF           stop managing interface IF (runtime mappings and configured ones alike)
  log-level LEVEL     0 trace, 1 debug, 2 info, 3 warning, 4 error, 5 fatal (number or name)

Options:
  --json              machine-readable output for the reading commands
  -h, --help          this text
  -v, --version       the version of dynmhsctl

Exit codes: 0 ok, 1 failed, 2 usage or invalid argument, 3 dynmhs not running,
4 access denied, 5 no such network, 6 already exists.
The system bus is DBUS_SYSTEM_BUS_ADDRESS if set, else unix:path=/run/dbus/system_bus_socket.
`;

const LEVEL_NAMES = ['trace', 'debug', 'info', 'warning', 'error', 'fatal'];

interface DescribedNetwork extends NetworkStatus { readonly path: string }
interface Described extends Omit<DaemonStatus, 'networks'> { readonly networks: readonly DescribedNetwork[] }

interface Parsed { readonly json: boolean; readonly command: string; readonly args: readonly string[] }

function usageError(message: string): CtlError {
  return new CtlError(ExitCode.usage, `${message}\nTry 'dynmhsctl --help'.`);
}

export function parseArgs(argv: readonly string[]): Parsed | 'help' | 'version' {
  let json = false;
  const rest: string[] = [];
  let options = true;
  for (const arg of argv) {
    if (options && arg === '--') { options = false; continue; }
    if (options && (arg === '-h' || arg === '--help')) return 'help';
    if (options && (arg === '-v' || arg === '--version')) return 'version';
    if (options && arg === '--json') { json = true; continue; }
    if (options && arg.startsWith('-') && arg !== '-' && !/^-\d/.test(arg)) throw usageError(`unknown option: ${arg}`);
    rest.push(arg);
  }
  if (rest.length === 0) return { json, command: 'status', args: [] };
  const [command, ...args] = rest;
  const arity: Record<string, [number, number]> = {
    status: [0, 0], networks: [0, 0], rules: [0, 0], routes: [0, 1], describe: [0, 0],
    reload: [0, 0], add: [1, 1], remove: [1, 1], 'log-level': [1, 1],
  };
  const range = arity[command];
  if (range === undefined) throw usageError(`unknown command: ${command}`);
  if (args.length < range[0] || args.length > range[1]) {
    throw usageError(range[0] === range[1]
      ? `${command} takes ${range[0] === 0 ? 'no arguments' : `${range[0]} argument`}`
      : `${command} takes at most ${range[1]} argument`);
  }
  if (json && ['reload', 'add', 'remove', 'log-level'].includes(command)) throw usageError(`--json is for the reading commands, not ${command}`);
  return { json, command, args };
}

/** "IF:TABLE" → [IF, TABLE]; the daemon checks the values again. */
export function parseMapping(text: string): [string, number] {
  const colon = text.lastIndexOf(':');
  if (colon <= 0 || colon === text.length - 1) throw usageError(`expected IF:TABLE, e.g. wan1:2000, not "${text}"`);
  const name = text.slice(0, colon);
  const tableText = text.slice(colon + 1);
  if (!/^\d{1,10}$/.test(tableText)) throw usageError(`table "${tableText}" is not a number (use 1000-29999)`);
  const table = Number(tableText);
  if (table > 0xffffffff) throw usageError(`table ${tableText} is out of range (use 1000-29999)`);
  return [name, table];
}

export function parseLevel(text: string): number {
  const byName = LEVEL_NAMES.indexOf(text.toLowerCase());
  if (byName >= 0) return byName;
  if (/^[0-5]$/.test(text)) return Number(text);
  throw usageError(`log level "${text}" is not 0-5 or one of ${LEVEL_NAMES.join(', ')}`);
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const dash = (s: string | undefined): string => (s === undefined || s === '' ? '-' : s);
const networkName = (n: NetworkStatus): string => (n.connectionId !== '' ? n.connectionId : n.interfaceName);

function matches(n: NetworkStatus, selector: string): boolean {
  return n.interfaceName === selector || n.connectionId === selector || n.connectionUuid === selector || String(n.table) === selector;
}

/** "-" when off, else the flags and the endpoint ids, a foreign one marked: "subflow 1,2,77(foreign)". */
function mptcpText(n: NetworkStatus): string {
  if (n.mptcpFlags === undefined || n.mptcpFlags === 'off') return '-';
  const ids = (n.endpoints ?? []).map((e) => `${e.id}${e.own ? '' : '(foreign)'}`);
  return ids.length > 0 ? `${n.mptcpFlags} ${ids.join(',')}` : n.mptcpFlags;
}

export function render(command: string, args: readonly string[], json: boolean, d: Described): string {
  switch (command) {
    case 'describe':
      return JSON.stringify(d, null, 2);
    case 'status': {
      const withMptcp = d.networks.some((n) => n.mptcpFlags !== undefined && n.mptcpFlags !== 'off');
      const rows = d.networks.map((n) => ({
        network: networkName(n), interface: n.interfaceName, table: n.table,
        addresses: n.addresses.map((a) => `${a.address}/${a.prefixLength}`),
        rules: n.rules.length, routes: n.routes.length, origin: n.origin, state: n.state,
        // Only where MPTCP is on somewhere: without it, the table reads as it always did.
        ...(withMptcp ? { mptcp: mptcpText(n) } : {}),
      }));
      if (json) return JSON.stringify({ version: d.version, source: d.source, state: d.state, networks: rows }, null, 2);
      const head = `dynmhs ${d.version}: ${d.state}, source ${d.source}, ${d.networks.length} network${d.networks.length === 1 ? '' : 's'}`;
      if (rows.length === 0) return `${head}\n(no networks)`;
      const mptcpColumn = (cells: string[], mptcp: string | undefined): string[] => (withMptcp ? [...cells.slice(0, 6), mptcp ?? '-', ...cells.slice(6)] : cells);
      return `${head}\n\n${formatTable(mptcpColumn(['NETWORK', 'INTERFACE', 'TABLE', 'ADDRESSES', 'RULES', 'ROUTES', 'ORIGIN', 'STATE'], 'MPTCP'),
        rows.map((r) => mptcpColumn([r.network, r.interface, String(r.table), r.addresses.length ? r.addresses.join(', ') : '-',
          String(r.rules), String(r.routes), r.origin, r.state], r.mptcp)))}`;
    }
    case 'networks': {
      const rows = d.networks.map((n) => ({
        interface: n.interfaceName, interfaceIndex: n.interfaceIndex, table: n.table, priority: n.priority, origin: n.origin,
        state: n.state, connectionId: n.connectionId, connectionUuid: n.connectionUuid, deviceType: n.deviceType, path: n.path,
      }));
      if (json) return JSON.stringify(rows, null, 2);
      return formatTable(['INTERFACE', 'INDEX', 'TABLE', 'PRIORITY', 'ORIGIN', 'STATE', 'CONNECTION', 'TYPE'],
        rows.map((r) => [r.interface, r.interfaceIndex === 0 ? '-' : String(r.interfaceIndex), String(r.table), String(r.priority),
          r.origin, r.state, dash(r.connectionId), dash(r.deviceType)]));
    }
    case 'rules': {
      const rows = d.networks.flatMap((n) => n.rules.map((r) => ({ interface: n.interfaceName, ...r })))
        .sort((x, y) => x.priority - y.priority || x.family - y.family);
      if (json) return JSON.stringify(rows, null, 2);
      return formatTable(['PRIORITY', 'FAMILY', 'RULE', 'INTERFACE'],
        rows.map((r) => [String(r.priority), `ipv${r.family}`, `from ${r.from} lookup ${r.table}`, r.interface]));
    }
    case 'routes': {
      const selected = args.length === 0 ? d.networks : d.networks.filter((n) => matches(n, args[0]));
      if (args.length > 0 && selected.length === 0) {
        throw new CtlError(ExitCode.notFound, `no network "${args[0]}" (see: dynmhsctl networks)`);
      }
      const rows = selected.flatMap((n) => n.routes.map((r) => ({ interface: n.interfaceName, table: n.table, ...r })));
      if (json) return JSON.stringify(rows, null, 2);
      return formatTable(['TABLE', 'FAMILY', 'DESTINATION', 'GATEWAY', 'DEVICE', 'METRIC', 'SRC', 'SCOPE', 'TYPE'],
        rows.map((r) => [String(r.table), `ipv${r.family}`, r.destination, dash(r.gateway), dash(r.device), String(r.metric),
          dash(r.prefsrc), r.scope, r.type]));
    }
    default:
      throw new CtlError(ExitCode.failed, `cannot render ${command}`);
  }
}

export async function main(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  let client: DaemonClient | undefined;
  try {
    const parsed = parseArgs(argv);
    if (parsed === 'help') { out(USAGE); return ExitCode.ok; }
    if (parsed === 'version') { out(`dynmhsctl ${version()}\n`); return ExitCode.ok; }
    const { command, args, json } = parsed;
    // check the arguments before connecting: a typo is a usage error even without a daemon
    const mapping = command === 'add' ? parseMapping(args[0]) : undefined;
    const level = command === 'log-level' ? parseLevel(args[0]) : undefined;
    client = await DaemonClient.connect();
    const interactive = process.stdin.isTTY === true;
    switch (command) {
      case 'reload':
        await client.call('Reload', '', [], interactive);
        out('dynmhs reloaded its configuration\n');
        return ExitCode.ok;
      case 'add':
        await client.call('AddNetwork', 'su', mapping as [string, number], interactive);
        out(`dynmhs now manages ${(mapping as [string, number])[0]} with table ${(mapping as [string, number])[1]} (until it stops; add NETWORK= to the config file to keep it)\n`);
        return ExitCode.ok;
      case 'remove':
        await client.call('RemoveNetwork', 's', [args[0]], interactive);
        out(`dynmhs no longer manages ${args[0]}\n`);
        return ExitCode.ok;
      case 'log-level':
        await client.call('SetLogLevel', 'u', [level], interactive);
        out(`dynmhs log level is now ${level} (${LEVEL_NAMES[level as number]})\n`);
        return ExitCode.ok;
      default: {
        const [text] = await client.call('Describe');
        let described: Described;
        try {
          described = JSON.parse(String(text)) as Described;
        } catch {
          throw new CtlError(ExitCode.failed, 'dynmhs answered Describe with something that is not JSON');
        }
        const shown = render(command, args, json, described);
        out(shown.endsWith('\n') ? shown : `${shown}\n`);
        return ExitCode.ok;
      }
    }
  } catch (error) {
    if (error instanceof CtlError) {
      err(`dynmhsctl: ${error.message}\n`);
      return error.exitCode;
    }
    err(`dynmhsctl: ${error instanceof Error ? error.message : String(error)}\n`);
    return ExitCode.failed;
  } finally {
    client?.close();
  }
}

if (require.main === module) {
  void main(process.argv.slice(2), (s) => process.stdout.write(s), (s) => process.stderr.write(s)).then((code) => {
    process.exitCode = code;
  });
}
