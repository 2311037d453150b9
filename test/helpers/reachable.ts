// The built project as another uid can reach it (tests that run code as nobody).
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';

const REPO = join(__dirname, '..', '..', '..');

let reachableByOthers: boolean | undefined;
let readableCopy: string | undefined;

/**
 * Where uid `uid` finds the built project (dist/, node_modules/, package.json): the
 * checkout itself when that uid can read it, else a copy in a 0755 directory, made once
 * per test process and removed at exit. A clone inside a 0700 directory (`mktemp -d`,
 * /root) is out of reach for nobody.
 */
export function projectFor(uid: number | undefined): string {
  if (uid === undefined || uid === userInfo().uid) return REPO;
  reachableByOthers ??= spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'test', '-r', join(REPO, 'package.json')]).status === 0;
  if (reachableByOthers) return REPO;
  if (readableCopy === undefined) {
    const dir = mkdtempSync('/tmp/dynmhs-readable-');
    chmodSync(dir, 0o755);
    for (const part of ['dist', 'node_modules', 'package.json']) cpSync(join(REPO, part), join(dir, part), { recursive: true });
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    readableCopy = dir;
  }
  return readableCopy;
}

