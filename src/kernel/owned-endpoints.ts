// Which MPTCP endpoints are dynmhs's own: `<stateDirectory>/mptcp-endpoints.json`, the id
// and address of each endpoint dynmhs added and has not deleted. Endpoints carry no
// protocol tag, so this record is what survives a crash or restart (docs/mptcp.md).
// Written atomically (temporary file, fsync, rename) before the endpoint is added, so a
// crash never leaves an endpoint of ours the file does not name.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log';
import { writeFileAtomically } from '../state-file';

export const OWNED_ENDPOINTS_FILE = 'mptcp-endpoints.json';

interface FileFormat {
  version: 1;
  endpoints: { id: number; address: string }[];
}

export class OwnedEndpointStore {
  readonly file: string;

  constructor(readonly directory: string, private readonly log: Logger) {
    this.file = join(directory, OWNED_ENDPOINTS_FILE);
  }

  /** id -> address; an absent file is none, an unreadable one is reported and taken as none. */
  load(): Map<number, string> {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warning(`Cannot read ${this.file} (${(error as Error).message}); treating every MPTCP endpoint as foreign`);
      return new Map();
    }
    try {
      const data = JSON.parse(text) as FileFormat;
      if (data.version !== 1 || !Array.isArray(data.endpoints)) throw new Error('unknown format');
      const owned = new Map<number, string>();
      for (const e of data.endpoints) {
        if (Number.isInteger(e.id) && e.id >= 1 && e.id <= 255 && typeof e.address === 'string') owned.set(e.id, e.address);
      }
      return owned;
    } catch (error) {
      this.log.warning(`${this.file} is corrupt (${(error as Error).message}); treating every MPTCP endpoint as foreign`);
      return new Map();
    }
  }

  /** Throws when the file cannot be written: the caller then adds no endpoint. */
  save(owned: ReadonlyMap<number, string>): void {
    const data: FileFormat = { version: 1, endpoints: [...owned].sort((a, b) => a[0] - b[0]).map(([id, address]) => ({ id, address })) };
    mkdirSync(this.directory, { recursive: true, mode: 0o755 });
    writeFileAtomically(this.directory, this.file, `${JSON.stringify(data, null, 2)}\n`);
  }
}
