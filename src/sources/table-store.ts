// Persistence of automatically allocated tables: `<stateDirectory>/tables.json`, written
// atomically (temporary file, fsync, rename, fsync of the directory), so a crash leaves
// either the old or the new file, never a torn one. A file that cannot be parsed is moved
// aside as `tables.json.corrupt-<timestamp>` and the allocation starts afresh.
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log';
import { writeFileAtomically } from '../state-file';
import { TABLE_MAX, TABLE_MIN } from '../config/types';

export const TABLES_FILE = 'tables.json';

export interface TableEntry {
  readonly table: number;
  /** Connection id when last seen (for humans reading the file and the log). */
  readonly connectionId: string;
  /** When the connection was last seen, ms since the epoch. */
  readonly lastSeen: number;
}

/** The state directory cannot be created or written: a start-up error the daemon reports and exits on. */
export class StateDirectoryError extends Error {
  readonly code = 'StateDirectoryUnwritable';
  constructor(readonly directory: string, readonly reason: unknown) {
    super(`State directory ${directory} is not writable (${describe(reason)}): create it writable for the daemon (StateDirectory=dynmhs in the unit) or set STATE_DIRECTORY= / --state-directory to another path`);
    this.name = 'StateDirectoryError';
  }
}

class CorruptStateError extends Error {}

interface FileFormat {
  version: 1;
  connections: Record<string, { table: number; id: string; lastSeen: string }>;
}

export class TableStore {
  readonly file: string;

  constructor(readonly directory: string, private readonly log: Logger, private readonly now: () => number = Date.now) {
    this.file = join(directory, TABLES_FILE);
  }

  /** Create the directory if needed and prove it writable; throws StateDirectoryError. */
  checkWritable(): void {
    try {
      mkdirSync(this.directory, { recursive: true, mode: 0o755 });
      const probe = join(this.directory, `.probe-${process.pid}`);
      const fd = openSync(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o644);
      closeSync(fd);
      unlinkSync(probe);
    } catch (error) {
      throw new StateDirectoryError(this.directory, error);
    }
  }

  /** The stored allocations; an absent file is empty, a corrupt one is moved aside (and empty). */
  load(): Map<string, TableEntry> {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw new StateDirectoryError(this.directory, error);
    }
    try {
      return parse(text);
    } catch (error) {
      const backup = `${this.file}.corrupt-${new Date(this.now()).toISOString().replace(/[:.]/g, '-')}`;
      try {
        renameSync(this.file, backup);
        this.log.warning(`Table allocation file ${this.file} is corrupt (${(error as Error).message}); moved it to ${backup} and starting with no allocations (connections may get other tables than before)`);
      } catch (renameError) {
        this.log.warning(`Table allocation file ${this.file} is corrupt (${(error as Error).message}) and could not be moved aside (${describe(renameError)}); it will be overwritten`);
      }
      return new Map();
    }
  }

  /** Write atomically. Throws on I/O errors (the caller logs and retries on the next change). */
  save(entries: ReadonlyMap<string, TableEntry>): void {
    const data: FileFormat = { version: 1, connections: {} };
    for (const [uuid, e] of [...entries].sort((a, b) => a[1].table - b[1].table)) {
      data.connections[uuid] = { table: e.table, id: e.connectionId, lastSeen: new Date(e.lastSeen).toISOString() };
    }
    writeFileAtomically(this.directory, this.file, `${JSON.stringify(data, null, 2)}\n`);
  }
}

function parse(text: string): Map<string, TableEntry> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new CorruptStateError(`not JSON: ${(error as Error).message}`);
  }
  const d = data as Partial<FileFormat> | null;
  if (!d || typeof d !== 'object' || d.version !== 1 || !d.connections || typeof d.connections !== 'object' || Array.isArray(d.connections)) {
    throw new CorruptStateError('expected {"version": 1, "connections": {...}}');
  }
  const entries = new Map<string, TableEntry>();
  const tables = new Set<number>();
  for (const [uuid, e] of Object.entries(d.connections)) {
    const table = e?.table;
    if (!uuid || typeof table !== 'number' || !Number.isInteger(table) || table < TABLE_MIN || table > TABLE_MAX) {
      throw new CorruptStateError(`connection ${JSON.stringify(uuid)}: table must be an integer ${TABLE_MIN}-${TABLE_MAX}`);
    }
    if (tables.has(table)) throw new CorruptStateError(`table ${table} is allocated twice`);
    tables.add(table);
    const lastSeen = typeof e.lastSeen === 'string' ? Date.parse(e.lastSeen) : NaN;
    if (!Number.isFinite(lastSeen)) throw new CorruptStateError(`connection ${JSON.stringify(uuid)}: lastSeen is not a date`);
    entries.set(uuid, { table, connectionId: typeof e.id === 'string' ? e.id : '', lastSeen });
  }
  return entries;
}

function describe(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  return e?.code ? `${e.code}: ${e.message}` : String(error);
}
