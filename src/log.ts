// Logging interface used by every module. (Winston-backed implementation: see createLogger.)
import type { LogLevel } from './config/types';
import { LOG_LEVEL_NAMES } from './config/types';

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

export interface LoggerOptions {
  readonly level: LogLevel;
  readonly color: boolean;
  readonly file?: string;
}

/** Placeholder console logger until the winston implementation lands. */
export function createLogger(options: LoggerOptions): Logger {
  let current: LogLevel = options.level;
  const write = (level: LogLevel) => (message: string): void => {
    if (level >= current) process.stdout.write(`${LOG_LEVEL_NAMES[level]}: ${message}\n`);
  };
  return {
    trace: write(0), debug: write(1), info: write(2), warning: write(3), error: write(4), fatal: write(5),
    setLevel: (level) => { current = level; },
    level: () => current,
    close: async () => undefined,
  };
}
