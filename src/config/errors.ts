// Typed errors of command-line and config-file parsing, and the exit codes the
// daemon uses for them (sysexits.h values, so scripts and systemd can tell them apart).

export const EXIT = {
  OK: 0,
  /** EX_USAGE: bad command line. */
  USAGE: 64,
  /** EX_UNAVAILABLE: a required service (e.g. the system bus) is not there. */
  UNAVAILABLE: 69,
  /** EX_SOFTWARE: internal error. */
  SOFTWARE: 70,
  /** EX_NOPERM: the system bus refuses dynmhs its name (its bus policy is missing or not loaded). */
  NOPERM: 77,
  /** EX_CANTCREAT: the log file (or state) cannot be created. */
  CANTCREAT: 73,
  /** EX_CONFIG: bad, missing or unreadable config file. */
  CONFIG: 78,
} as const;

/** A bad command line. The message is one line and names the offending argument. */
export class UsageError extends Error {
  readonly exitCode = EXIT.USAGE;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * A bad, missing or unreadable config file. The message is one line and starts with
 * "FILE:LINE: " where a line is known, else "FILE: ".
 */
export class ConfigFileError extends Error {
  readonly exitCode = EXIT.CONFIG;
  constructor(message: string) {
    super(message);
    this.name = 'ConfigFileError';
  }
}

/**
 * A value that is wrong whatever its origin. Value parsers throw it; the caller knows
 * where the value came from and turns it into a UsageError or ConfigFileError.
 */
export class ValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ValueError';
  }
}

/** The most of a user's value a message shows: a 1 MiB line must not come back whole. */
export const SHOWN_MAX = 64;

/** A file name is shown in full up to this length: Linux paths are at most 4,096 bytes, but the usual ones far shorter. */
export const PATH_SHOWN_MAX = 256;

/** For messages: control characters shown as \xNN, cut to `max` characters. */
export function printable(value: string, max = SHOWN_MAX): string {
  // eslint-disable-next-line no-control-regex
  const shown = value.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return shown.length > max ? `${shown.slice(0, max)}…` : shown;
}

/** A user's value in a message: printable() in double quotes. */
export function quoted(value: string, max = SHOWN_MAX): string {
  return `"${printable(value, max)}"`;
}
