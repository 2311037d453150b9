#!/usr/bin/env node
// Applies patches/netlink-0.3.0.patch to node_modules/netlink (the pinned `netlink` 0.3.0;
// what each change is for is written at the top of the patch) and rebuilds its native
// binding with node-gyp. Runs as the package's postinstall; running it again is a no-op.
//
// The patch is applied with GNU patch, or with `git apply` where patch is not installed
// (it comes with build-essential; git is what cloned this tree).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');

const REPO = path.join(__dirname, '..');
const root = path.join(REPO, 'node_modules', 'netlink');
const source = path.join(root, 'src', 'binding.cc');
const PATCH = path.join(REPO, 'patches', 'netlink-0.3.0.patch');

function fail(message) {
  console.error(`build-netlink: ${message}`);
  process.exit(1);
}

function onPath(command) {
  return (process.env.PATH || '').split(':').some((dir) => dir !== '' && fs.existsSync(path.join(dir, command)));
}

/** Runs the patch tool in `root`; `reverse` and `check` map to its options. True when it succeeds. */
function runPatch({ reverse = false, check = false }) {
  let command;
  let args;
  let env = process.env;
  if (onPath('patch')) {
    command = 'patch';
    args = ['-p1', '--force', '--fuzz=0', '--silent', '--no-backup-if-mismatch', '--reject-file=-', '--input', PATCH];
    if (reverse) args.push('--reverse');
    else args.push('--forward');
    if (check) args.push('--dry-run');
  } else if (onPath('git')) {
    command = 'git';
    args = ['apply', '-p1'];
    if (reverse) args.push('--reverse');
    if (check) args.push('--check');
    args.push(PATCH);
    // Outside any repository, `git apply` patches files relative to the current directory;
    // without the ceiling it would find this project's repository above node_modules.
    env = { ...process.env, GIT_CEILING_DIRECTORIES: path.dirname(root) };
  } else {
    fail('neither patch nor git is installed; install one (apt-get install patch) and run npm install again');
  }
  const r = spawnSync(command, args, { cwd: root, env, encoding: 'utf8' });
  if (r.error) fail(`${command}: ${r.error.message}`);
  return r.status === 0;
}

function applyPatch() {
  if (runPatch({ reverse: true, check: true })) return false;      // already applied
  if (!runPatch({ check: true })) {
    fail('node_modules/netlink/src/binding.cc is neither netlink 0.3.0 nor patched by '
      + 'patches/netlink-0.3.0.patch; reinstall it: rm -rf node_modules/netlink && npm install');
  }
  if (!runPatch({})) fail('applying patches/netlink-0.3.0.patch failed');
  return true;
}

/** npm's own node-gyp: npm passes its path when it runs scripts; else next to npm on PATH. */
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  for (const dir of (process.env.PATH || '').split(':')) {
    const npm = path.join(dir, 'npm');
    if (fs.existsSync(npm)) candidates.push(path.join(path.dirname(fs.realpathSync(npm)), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  const found = candidates.find((c) => c !== undefined && c !== '' && fs.existsSync(c));
  if (found === undefined) fail('node-gyp not found (it comes with npm)');
  return found;
}

function main() {
  if (!fs.existsSync(source)) fail('node_modules/netlink is missing; run npm install first');
  const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version;
  if (version !== '0.3.0') fail(`netlink ${version} found, the patch is for 0.3.0; check it still applies`);
  if (applyPatch()) console.log('build-netlink: applied patches/netlink-0.3.0.patch');
  const built = path.join(root, 'build', 'Release', 'netlink_binding.node');
  if (fs.existsSync(built) && fs.statSync(built).mtimeMs >= fs.statSync(source).mtimeMs) return;
  console.log('build-netlink: building the patched netlink binding (once)');
  // Build against the installed Node's headers: there is no network to download them.
  const nodedir = process.env.npm_config_nodedir
    || [path.join(path.dirname(process.execPath), '..'), '/usr', '/usr/local'].find((d) => fs.existsSync(path.join(d, 'include', 'node', 'node_api.h')));
  const args = [findNodeGyp(), 'rebuild', '--loglevel=warn'];
  if (nodedir !== undefined) args.push(`--nodedir=${nodedir}`);
  // Bind every symbol at load time, read-only relocations after (Debian's hardening flags).
  const env = { ...process.env, LDFLAGS: `${process.env.LDFLAGS ?? ''} -Wl,-z,relro -Wl,-z,now`.trim() };
  execFileSync(process.execPath, args, { cwd: root, stdio: 'inherit', env });
}

main();
