#!/usr/bin/env -S node --min-semi-space-size=32 --max-semi-space-size=32 --max-inlined-bytecode-size-cumulative=200 --interrupt-budget=8192 --expose-gc
// Composition root: parse, build the real adapters, wire them, run until a signal.
//
// The Node options above are the daemon's own, and every launcher takes them from this
// line (the installed wrapper, the tests, the benchmarks). Start-up keeps every route of
// the kernel's dump, and every copy of it, alive: in V8's default young generation, which
// starts at 1 MB, each of these objects is copied by a scavenge and again on promotion.
// A fixed 32 MB young generation holds the start-up pass of 10,000 routes, and costs a
// higher start-up peak. Once settled it costs no resident memory, provided something was
// collected: --expose-gc lets the daemon collect what a start-up or a burst over a full
// table leaves behind once it is over (src/reclaim.ts), which V8 alone would keep.
// The daemon's hot code runs cold at its first burst or start-up, and V8 compiles it on
// the other core meanwhile: on a two-core host that competes with the writer of the
// burst. Inlining less (200 bytes of bytecode per function, V8's default is 920) makes
// those compilations smaller. A lone change runs the same code only a few times a
// minute, and at V8's default it stays in the interpreter for hundreds of changes: an
// interrupt budget of 8 KB of bytecode (V8's default is 66 KB) has it compiled sooner.
// The figures: docs/performance.md.
import { EXIT, exitCodeOf, parseCommandLine } from './config/parse';
import type { Config } from './config/types';
import { Daemon } from './daemon';
import { RtnetlinkKernel } from './kernel/netlink';
import { MptcpPathManager } from './kernel/mptcp';
import { OwnedEndpointStore } from './kernel/owned-endpoints';
import { EndpointSync } from './reconcile/endpoints';
import { createLogger, type Logger } from './log';
import type { DbusService } from './dbus/service';
import { BUS_NAME } from './dbus/names';
import { collectStartUpGarbage, exposedGarbageCollection, START_UP_SETTLED_MS } from './reclaim';

// dbus-next, the manager sources and the D-Bus service take tens of milliseconds to load,
// which a static run without D-Bus (and every start-up before the kernel) can do without.
type ConnectionsModule = typeof import('./sources/connections');

function fail(message: string, code: number): never {
  process.stderr.write(`dynmhs: ${message}\n`);
  process.exit(code);
}

async function main(argv: readonly string[]): Promise<void> {
  let config: Config;
  try {
    const parsed = parseCommandLine(argv);
    if (parsed.kind !== 'run') {
      process.stdout.write(parsed.text);
      return;
    }
    config = parsed.config;
  } catch (error) {
    fail((error as Error).message, exitCodeOf(error));
  }
  // Under the unit (Type=dbus) systemd waits for the bus name: without it, every start would
  // time out after 90 s and be restarted, with the whole policy removed and added each time.
  if (config.service && !config.dbus) {
    fail('--service (dynmhs.service) needs the D-Bus service, since systemd waits for no.nntb.DynMHS: remove DBUS=no from the configuration (or --no-dbus)', EXIT.CONFIG);
  }

  // Until the first pass is done, info and debug lines wait (with their time) for the
  // logging library, which loads after it: see LoggerOptions.queueUntil.
  let started = (): void => undefined;
  const queueUntil = new Promise<void>((resolve) => { started = resolve; });
  let log: Logger;
  try {
    log = createLogger({ level: config.logLevel, color: config.logColor, file: config.logFile, queueUntil });
  } catch (error) {
    fail((error as Error).message, exitCodeOf(error));
  }

  const version = parseCommandLine(['--version']);
  // Always built, also with MPTCP off: it deletes endpoints a previous run left (its record says which).
  const endpoints = new EndpointSync({
    open: () => MptcpPathManager.open(),
    store: new OwnedEndpointStore(config.stateDirectory, log),
    log,
    onChange: () => daemon.emit('changed'),
  });
  const gc = exposedGarbageCollection();
  const daemon: Daemon = new Daemon({
    endpoints,
    collectGarbage: gc !== undefined ? () => gc() : undefined,
    kernel: new RtnetlinkKernel(log),
    log,
    config,
    version: version.kind === 'version' ? version.text.split(' ')[1] : 'unknown',
    // NetworkManager / systemd-networkd over the system bus ($DBUS_SYSTEM_BUS_ADDRESS), for --source != static
    connections: (current, tableInUse) =>
      (require('./sources/connections') as ConnectionsModule).createConnectionNetworks(current, log, { tableInUse }),
    loadConfig: () => {
      const again = parseCommandLine(argv);
      if (again.kind !== 'run') throw new Error('the command line no longer describes a daemon run');
      return again.config;
    },
  });

  // The bus name first: a second instance must fail before it touches the kernel, since
  // two daemons with one protocol tag would each remove what the other added.
  let service: DbusService | undefined;
  if (config.dbus) {
    const { DbusServiceError, startDbusService } = await import('./dbus/service');
    try {
      service = await startDbusService(daemon, log, {
        onDisconnected: (error) => log.warning(`Lost the system bus (${error.message}); dynmhs keeps working without its D-Bus service`),
      });
    } catch (error) {
      const code = error instanceof DbusServiceError ? error.code : undefined;
      if (code === 'NameTaken') {
        log.fatal(`${(error as Error).message}: another dynmhs is running; stop it first`);
        await log.close();
        process.exit(EXIT.UNAVAILABLE);
      }
      if (config.service) {
        // Before the kernel is touched: nothing to undo, and systemd shows this line.
        if (code === 'NameNotPermitted') {
          log.fatal(`The system bus does not let dynmhs own ${BUS_NAME} (AccessDenied): its policy file ${BUS_NAME}.conf `
            + '(in /usr/share/dbus-1/system.d/ or /etc/dbus-1/system.d/) is missing, or dbus-daemon has not loaded it yet. '
            + 'Run `systemctl reload dbus`, then `systemctl start dynmhs`');
          await log.close();
          process.exit(EXIT.NOPERM);
        }
        log.fatal(`No system bus: ${(error as Error).message}. dynmhs.service needs it (systemd waits for ${BUS_NAME}); check \`systemctl status dbus\``);
        await log.close();
        process.exit(EXIT.UNAVAILABLE);
      }
      log.warning(`No D-Bus service: ${(error as Error).message}. dynmhs works without it; dynmhsctl will not reach it (use --no-dbus to silence this)`);
    }
  }

  // Loaded now, not at SIGTERM: a package upgrade replaces the files on disk before
  // systemd restarts the unit, and the old process must not load the new version's code.
  const systemd = config.service ? await import('./systemd-job') : undefined;

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) {
      log.warning(`${signal} again while cleaning up: exiting now`);
      process.exit(EXIT.SOFTWARE);
    }
    stopping = true;
    const finish = async (): Promise<void> => {
      // Only systemd knows whether this SIGTERM stops the unit or restarts it (docs/restart.md).
      const intent = signal === 'SIGTERM' ? await systemd?.stopIntent() : undefined;
      if (intent?.kind === 'restart') {
        const left = await daemon.handOver();
        log.info(`systemd restarts ${systemd!.unitNameOfPath(intent.unit)}: leaving ${left.rules} rule${left.rules === 1 ? '' : 's'} and ${left.routes} route${left.routes === 1 ? '' : 's'} for the successor`);
      } else {
        log.info(`${signal}${intent !== undefined ? ` (${intent.reason})` : ''}: removing the rules and routes dynmhs created`);
        await daemon.stop();
      }
      await service?.stop();
      await log.close();
    };
    finish()
      .then(() => process.exit(EXIT.OK))
      .catch((error: Error) => {
        log.error(`Clean-up failed: ${error.message}`);
        process.exit(EXIT.SOFTWARE);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    log.info('SIGHUP: re-reading the configuration');
    daemon.reload().catch(() => undefined);
  });

  try {
    await daemon.start();
    started();
  } catch (error) {
    log.fatal(`Cannot start: ${(error as Error).message}`);
    await log.close();
    process.exit(EXIT.UNAVAILABLE);
  }
  const networks = daemon.networks().map((n) => `${n.interfaceName}:${n.table}`).join(' ');
  log.info(`dynmhs running: ${networks || 'no networks yet'} (source ${config.source})`);
  // Once start-up's own flurry (the first changes, a manager bringing connections up) is
  // usually over, as V8's memory reducer waits seconds after activity.
  if (gc !== undefined) setTimeout(() => collectStartUpGarbage(gc, process.memoryUsage().heapUsed), START_UP_SETTLED_MS).unref();
}

void main(process.argv.slice(2));
