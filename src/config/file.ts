// Reading the DynMHS config file into KEY=VALUE entries with line numbers.
//
// Why not the `ini` package: ini.parse() returns a plain object, so it cannot say on
// which line a bad value or an unknown key is (every message must name FILE:LINE);
// it silently drops lines it cannot parse instead of reporting them; it treats ';'
// as a comment and `[x]` as a section, neither of which DynMHS has; it turns the
// values true/false/null into non-strings; and a quoted value followed by a
// trailing comment (`NETWORK="eth0:2000"  # uplink`) keeps its quotes. The format
// is small (KEY=VALUE, #-comments, optional quotes), so it is parsed line by line
// here with exact semantics:
//
// - Blank lines and lines whose first non-blank character is '#' are ignored.
// - KEY=VALUE, blanks around KEY and '=' allowed; KEY is [A-Za-z_][A-Za-z0-9_]*.
// - VALUE is either quoted, "..." (with \" and \\ escapes) or '...' (literal),
//   optionally followed by blanks and a '# comment'; or unquoted, ending at a '#'
//   that starts the value or follows a blank (as in a shell, so `id:Room#2:2000`
//   keeps its '#'), with trailing blanks removed.
// - The file must be UTF-8 text: a NUL byte or invalid UTF-8 is reported with its line.
import * as fs from 'node:fs';
import { ConfigFileError, PATH_SHOWN_MAX, printable, quoted } from './errors';

export interface FileEntry {
  readonly key: string;
  readonly value: string;
  /** 1-based. */
  readonly line: number;
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

function describeReadError(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT': return 'no such file (ENOENT); check the --config path';
    case 'EACCES': return 'permission denied (EACCES); make it readable by the daemon';
    case 'EISDIR': return 'is a directory (EISDIR); expected a config file';
    case 'ENOTDIR': return 'a component of the path is not a directory (ENOTDIR); check the --config path';
    case 'ELOOP': return 'too many symbolic links (ELOOP)';
    case 'ENAMETOOLONG': return 'the path is too long (ENAMETOOLONG)';
    default: return `${error.message}`;
  }
}

/** Reads and tokenizes the config file. Throws ConfigFileError. */
export function readConfigFile(file: string): FileEntry[] {
  let content: Buffer;
  try {
    // A FIFO or device would block or never end; insist on a regular file.
    const stat = fs.statSync(file);
    if (stat.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    if (!stat.isFile()) throw Object.assign(new Error('not a regular file; expected a config file'), { code: 'ENOTREG' });
    content = fs.readFileSync(file);
  } catch (error) {
    throw new ConfigFileError(`${printable(file, PATH_SHOWN_MAX)}: cannot read config file: ${describeReadError(error as NodeJS.ErrnoException)}`);
  }
  return parseConfigText(file, content);
}

/** Tokenizes config file content; `file` is only used in messages. Throws ConfigFileError. */
export function parseConfigText(file: string, content: Buffer | string): FileEntry[] {
  const buffer = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  const entries: FileEntry[] = [];
  let start = 0;
  for (let line = 1; start <= buffer.length; line++) {
    let end = buffer.indexOf(0x0a, start);
    if (end < 0) end = buffer.length;
    const raw = buffer.subarray(start, end);
    start = end + 1;
    const where = `${file}:${line}`;
    if (raw.includes(0)) {
      throw new ConfigFileError(`${where}: binary data (NUL byte); expected a UTF-8 text file of KEY=VALUE lines`);
    }
    let text: string;
    try {
      // The decoder drops a leading BOM, so an editor's BOM on line 1 is harmless.
      text = decoder.decode(raw);
    } catch {
      throw new ConfigFileError(`${where}: invalid UTF-8; expected a UTF-8 text file of KEY=VALUE lines`);
    }
    const entry = parseLine(where, text.replace(/\r$/, ''));
    if (entry !== undefined) entries.push({ ...entry, line });
  }
  return entries;
}

function parseLine(where: string, text: string): { key: string; value: string } | undefined {
  const trimmed = text.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return undefined;
  const eq = text.indexOf('=');
  if (eq < 0) {
    throw new ConfigFileError(`${where}: ${quoted(trimmed)} is not a KEY=VALUE line; expected e.g. NETWORK="eth0:2000"`);
  }
  const key = text.slice(0, eq).trim();
  if (!KEY.test(key)) {
    throw new ConfigFileError(`${where}: ${quoted(key)} is not a valid key; expected KEY=VALUE with KEY such as NETWORK or LOGLEVEL`);
  }
  return { key, value: parseValue(where, key, text.slice(eq + 1).replace(/^\s+/, '')) };
}

function parseValue(where: string, key: string, text: string): string {
  const quote = text[0];
  if (quote !== '"' && quote !== "'") {
    const comment = /(^|\s)#/.exec(text);
    return (comment === null ? text : text.slice(0, comment.index)).trimEnd();
  }
  let value = '';
  let i = 1;
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (c === quote) break;
    if (quote === '"' && c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) {
      value += text[i + 1];
      i++;
      continue;
    }
    value += c;
  }
  if (i >= text.length) {
    throw new ConfigFileError(`${where}: ${key}: missing closing ${quote}; expected ${key}=${quote}VALUE${quote}`);
  }
  const rest = text.slice(i + 1).trim();
  if (rest !== '' && !rest.startsWith('#')) {
    throw new ConfigFileError(`${where}: ${key}: unexpected ${quoted(rest)} after the closing ${quote}; expected only a "# comment" there`);
  }
  return value;
}
