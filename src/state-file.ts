// Files in the state directory are replaced whole: written under a temporary name, synced,
// renamed over the old one, and the directory synced, so a crash leaves either the old
// content or the new, never a part.
import { closeSync, fsyncSync, openSync, renameSync, writeSync, constants } from 'node:fs';

/** Replaces `file` (in `directory`) with `text` atomically. Throws on I/O errors. */
export function writeFileAtomically(directory: string, file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  try {
    const dir = openSync(directory, constants.O_RDONLY | constants.O_DIRECTORY);
    try { fsyncSync(dir); } finally { closeSync(dir); }
  } catch { /* some file systems refuse fsync on directories; the rename is done */ }
}
