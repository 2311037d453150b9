// Argument checks for the D-Bus methods. Each returns an error text (what is wrong
// and what is accepted) or undefined when the value is fine.
import { TABLE_MAX, TABLE_MIN } from '../config/types';
import type { LogLevel } from '../config/types';
import { printable } from '../config/errors';

export { printable };

/** As the kernel's dev_valid_name(): 1–15 bytes, not "." or "..", no "/", ":" or whitespace. */
export function interfaceNameProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'the interface name must be a string';
  if (value === '') return 'the interface name is empty';
  if (Buffer.byteLength(value, 'utf8') > 15) return `interface name "${printable(value)}" is longer than 15 bytes`;
  if (value === '.' || value === '..') return `"${value}" is not a valid interface name`;
  // eslint-disable-next-line no-control-regex
  if (/[/:\s\x00-\x1f\x7f]/.test(value)) {
    return `interface name "${printable(value)}" contains "/", ":", whitespace or a control character`;
  }
  return undefined;
}

export function tableProblem(value: unknown): string | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value)) return 'the table must be an integer';
  if (value < TABLE_MIN || value > TABLE_MAX) return `table ${value} is out of range: use ${TABLE_MIN}–${TABLE_MAX}`;
  return undefined;
}

export function logLevelProblem(value: unknown): string | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 5) {
    return `log level ${String(value)} is out of range: use 0 (trace) to 5 (fatal)`;
  }
  return undefined;
}

export function isLogLevel(value: number): value is LogLevel {
  return logLevelProblem(value) === undefined;
}
