// Logging for every module, on winston.
//
// Console line shapes:
//   on a terminal or a plain pipe:  "2025-02-28 13:59:50.422 [info] message"
//                                   (coloured by level only when colour is on AND the stream is a TTY)
//   under systemd's journal:        "<6>message"  (syslog priority prefix, which journald turns into
//                                   the entry's priority; no timestamp, journald adds one; no colour)
// The optional log file gets the plain timestamped shape, appended.
import * as fs from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type * as Winston from 'winston';
import type { LogLevel } from './config/types';
import { LOG_LEVEL_NAMES } from './config/types';
import { PATH_SHOWN_MAX, quoted } from './config/errors';

export interface Logger {
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warning(message: string): void;
  error(message: string): void;
  fatal(message: string): void;
  setLevel(level: LogLevel): void;
  level(): LogLevel;
  /** Flush and close the outputs (log file). */
  close(): Promise<void>;
}

/** The console output: a writable stream, possibly a TTY, possibly with a file descriptor. */
export type LogStream = Writable & { readonly isTTY?: boolean; readonly fd?: number };

export interface LoggerOptions {
  readonly level: LogLevel;
  readonly color: boolean;
  readonly file?: string;
  /** Console output; default process.stdout. */
  readonly stream?: LogStream;
  /** Environment to look for JOURNAL_STREAM in; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Clock for timestamps; default the system clock. */
  readonly now?: () => Date;
  /**
   * Messages below warning wait in a queue, with their time, until this settles; then
   * winston is loaded and writes them. A warning or worse, close() and process exit end
   * the wait early. Loading winston takes tens of milliseconds, which the daemon's start-up
   * (the first pass over what may be 10,000s of routes) should not wait for. Default: no wait.
   */
  readonly queueUntil?: Promise<unknown>;
}

/** The log file cannot be opened for appending. Exit code 73 (EX_CANTCREAT). */
export class LogFileError extends Error {
  readonly exitCode = 73;
  constructor(readonly file: string, readonly code: string | undefined, message: string) {
    super(message);
    this.name = 'LogFileError';
  }
}

type LevelName = (typeof LOG_LEVEL_NAMES)[number];

/** winston counts severity the other way round: 0 is the most severe. */
const WINSTON_LEVELS: Record<LevelName, number> = { fatal: 0, error: 1, warning: 2, info: 3, debug: 4, trace: 5 };

/** syslog priorities for the journal: debug 7, info 6, warning 4, err 3, crit 2. */
const PRIORITY: Record<LevelName, number> = { trace: 7, debug: 7, info: 6, warning: 4, error: 3, fatal: 2 };

const COLOR: Record<LevelName, string> = {
  trace: '\x1b[90m', debug: '\x1b[36m', info: '\x1b[32m', warning: '\x1b[33m', error: '\x1b[31m', fatal: '\x1b[1;31m',
};
const RESET = '\x1b[0m';

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** Local time as YYYY-MM-DD HH:MM:SS.mmm. */
export function formatTimestamp(date: Date): string {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} `
    + `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/**
 * systemd sets JOURNAL_STREAM=DEV:INODE for a service whose stdout/stderr is the journal.
 * A child whose output was redirected elsewhere inherits the variable, so when the
 * stream has a file descriptor, check that it really is that journal socket.
 */
export function writesToJournal(stream: LogStream, env: Readonly<Record<string, string | undefined>>): boolean {
  if (stream.isTTY === true) return false;
  const journal = env['JOURNAL_STREAM'];
  if (journal === undefined || journal === '') return false;
  if (typeof stream.fd !== 'number') return true;
  try {
    const stat = fs.fstatSync(stream.fd, { bigint: true });
    return journal === `${stat.dev}:${stat.ino}`;
  } catch {
    return false;
  }
}

function describeOpenError(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT': return 'its directory does not exist (ENOENT)';
    case 'EACCES': return 'permission denied (EACCES)';
    case 'EPERM': return 'operation not permitted (EPERM)';
    case 'EISDIR': return 'it is a directory (EISDIR)';
    case 'EROFS': return 'read-only file system (EROFS)';
    case 'ENOTDIR': return 'a component of its path is not a directory (ENOTDIR)';
    case 'ENAMETOOLONG': return 'the path is too long (ENAMETOOLONG)';
    default: return error.message;
  }
}

function openForAppend(file: string): number {
  try {
    return fs.openSync(file, 'a');
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new LogFileError(file, e.code,
      `cannot open log file ${quoted(file, PATH_SHOWN_MAX)} for appending: ${describeOpenError(e)}; create its directory, fix its permissions or choose another --logfile/LOGFILE`);
  }
}

const ignoreError = (): void => undefined;

/**
 * winston, with its own debugging aid (@dabh/diagnostics, DEBUG=winston:*) in its
 * production build: the other one loads colour names and converters for its namespaces,
 * which a daemon that never turns it on would keep in memory. The build is chosen by
 * NODE_ENV as the module loads, so the variable is production for that moment only.
 */
function loadWinston(): typeof Winston {
  const env = process.env;
  const before = env['NODE_ENV'];
  env['NODE_ENV'] = 'production';
  try {
    return require('winston') as typeof Winston;
  } finally {
    if (before === undefined) delete env['NODE_ENV'];
    else env['NODE_ENV'] = before;
  }
}

interface Entry { level: string; message: unknown; timestamp?: string }
interface QueuedEntry extends Entry { message: string; timestamp: string }

function plainLine(info: Entry, color: boolean): string {
  const name = info.level as LevelName;
  const text = `[${name}] ${String(info.message)}`;
  return `${info.timestamp ?? ''} ${color ? `${COLOR[name]}${text}${RESET}` : text}`;
}

function journalLine(info: Entry): string {
  const prefix = `<${PRIORITY[info.level as LevelName]}>`;
  // journald reads one entry per line: every line needs its own priority.
  return String(info.message).split('\n').map((line) => prefix + line).join('\n');
}

/**
 * Creates the logger. Opens the log file first, synchronously: if it cannot be
 * appended to, throws LogFileError before anything is written anywhere.
 */
export function createLogger(options: LoggerOptions): Logger {
  const fd = options.file !== undefined ? openForAppend(options.file) : undefined;
  const stream: LogStream = options.stream ?? process.stdout;
  const env = options.env ?? process.env;
  const now = options.now ?? ((): Date => new Date());
  const journal = writesToJournal(stream, env);
  const color = options.color && stream.isTTY === true && !journal;

  // A closed stdout (EPIPE) or a failing disk must not kill a daemon that is
  // holding routes: swallow the console's errors, report the file's once.
  if (!stream.listeners('error').includes(ignoreError)) stream.on('error', ignoreError);
  let fileStream: fs.WriteStream | undefined;
  if (fd !== undefined && options.file !== undefined) {
    const file = options.file;
    fileStream = fs.createWriteStream(file, { fd, flags: 'a' });
    let reported = false;
    fileStream.on('error', (error) => {
      if (reported) return;
      reported = true;
      stream.write(journal ? `<3>log file ${file}: ${error.message}\n` : `${formatTimestamp(now())} [error] log file ${file}: ${error.message}\n`);
    });
  }

  let current: LogLevel = options.level;
  let logger: Winston.Logger | undefined;
  let transports: Winston.transport[] = [];
  let queue: QueuedEntry[] | undefined = options.queueUntil !== undefined ? [] : undefined;

  const load = (): Winston.Logger => {
    if (logger !== undefined) return logger;
    const winston = loadWinston();
    transports = [new winston.transports.Stream({
      stream,
      eol: '\n',
      format: winston.format.printf((info) => (journal ? journalLine(info) : plainLine(info, color))),
    })];
    if (fileStream !== undefined) {
      transports.push(new winston.transports.Stream({
        stream: fileStream,
        eol: '\n',
        format: winston.format.printf((info) => plainLine(info, false)),
      }));
    }
    logger = winston.createLogger({
      levels: WINSTON_LEVELS,
      level: LOG_LEVEL_NAMES[current],
      exitOnError: false,
      format: winston.format((info) => {
        // A queued message keeps the time it was logged at.
        info['timestamp'] ??= formatTimestamp(now());
        return info;
      })(),
      transports,
    });
    logger.on('error', () => undefined);
    const queued = queue ?? [];
    queue = undefined;
    for (const entry of queued) logger.log(entry);
    process.off('exit', writeQueueNow);
    return logger;
  };
  // Exiting before winston was loaded (an uncaught error, process.exit): write the queue
  // synchronously, in the same line shapes, so nothing logged is lost.
  function writeQueueNow(): void {
    if (queue === undefined) return;
    const lines = queue;
    queue = undefined;
    const write = (target: number | undefined, text: string): void => {
      if (target === undefined || text === '') return;
      try { fs.writeSync(target, text); } catch { /* nowhere left to report it */ }
    };
    write(stream.fd, lines.map((e) => (journal ? journalLine(e) : plainLine(e, color)) + '\n').join(''));
    write(fd, lines.map((e) => plainLine(e, false) + '\n').join(''));
  }
  if (queue !== undefined) {
    process.on('exit', writeQueueNow);
    options.queueUntil!.then(load, load);
  }

  let closing: Promise<void> | undefined;
  const write = (level: LogLevel) => (message: string): void => {
    if (closing !== undefined || level < current) return;
    if (queue !== undefined && level < 3) {
      queue.push({ level: LOG_LEVEL_NAMES[level], message, timestamp: formatTimestamp(now()) });
      return;
    }
    load().log(LOG_LEVEL_NAMES[level], message);
  };

  return {
    trace: write(0),
    debug: write(1),
    info: write(2),
    warning: write(3),
    error: write(4),
    fatal: write(5),
    setLevel: (level: LogLevel): void => {
      current = level;
      if (logger !== undefined) logger.level = LOG_LEVEL_NAMES[level];
    },
    level: () => current,
    close: (): Promise<void> => {
      closing ??= (async (): Promise<void> => {
        const winstonLogger = load();
        const finished = transports.map((t) => once(t, 'finish'));
        winstonLogger.end();
        await Promise.all(finished);
        if (fileStream !== undefined && !fileStream.closed) {
          const closed = once(fileStream, 'close');
          fileStream.end();
          await closed;
        }
      })();
      return closing;
    },
  };
}
