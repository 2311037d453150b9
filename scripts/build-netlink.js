#!/usr/bin/env node
// Patches and rebuilds the native part of the `netlink` package (0.3.0, pinned).
//
// Why: when events arrive faster than they are read, the kernel marks a netlink socket
// with ENOBUFS, which poll() reports as POLLERR. libuv turns that into UV_EBADF and
// stops polling, and the binding then builds an error with a NULL `syscall` string,
// which throws a C++ exception inside a libuv callback: the process aborts (SIGABRT).
// The patch fetches the real error with SO_ERROR (which also clears it), reports it
// to JavaScript as an ordinary 'error' event (code ENOBUFS) and keeps polling, so the
// daemon can re-read the kernel state as designed. Other poll errors are reported
// with a proper syscall name instead of aborting.
//
// node-gyp-build loads build/Release before the shipped prebuilds, so the rebuilt
// binding wins. Needs g++, make, python3 and Node's headers (Debian: build-essential,
// nodejs headers), which `npm install` finds where npm is set up to build addons.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.join(__dirname, '..', 'node_modules', 'netlink');
const source = path.join(root, 'src', 'binding.cc');
const MARK = '// dynmhs: POLLERR carries ENOBUFS';

const ORIGINAL = `        if (status != 0) {
            auto error = ErrnoException(obj->Env(), -status, NULL, "error when polling socket");`;
const PATCHED = `        if (status != 0) {
            ${MARK}; read it (SO_ERROR also clears it) and keep polling.
            int pending = 0;
            socklen_t pending_len = sizeof(pending);
            if (obj->fd != -1 && getsockopt(obj->fd, SOL_SOCKET, SO_ERROR, &pending, &pending_len) == 0 && pending != 0) {
                auto error = ErrnoException(obj->Env(), pending, "recvmsg", "Error when receiving Netlink message");
                obj->error_callback.MakeCallback(obj->Value(), { error.Value() }, *obj->async_res);
                if (obj->fd != -1)
                    obj->watcher->start(obj->Env(), obj->write_queue.empty() ? UV_READABLE : (UV_READABLE | UV_WRITABLE), PollHandler);
                return;
            }
            auto error = ErrnoException(obj->Env(), -status, "poll", "error when polling socket");`;

function main() {
  if (!fs.existsSync(source)) {
    console.error('build-netlink: node_modules/netlink is missing; run npm install first');
    process.exit(1);
  }
  const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version;
  if (version !== '0.3.0') {
    console.error(`build-netlink: netlink ${version} found, the patch is for 0.3.0; check it still applies`);
    process.exit(1);
  }
  let text = fs.readFileSync(source, 'utf8');
  if (!text.includes(MARK)) {
    if (!text.includes(ORIGINAL)) {
      console.error('build-netlink: binding.cc does not look like netlink 0.3.0; patch not applied');
      process.exit(1);
    }
    text = text.replace(ORIGINAL, PATCHED);
    fs.writeFileSync(source, text);
  }
  const built = path.join(root, 'build', 'Release', 'netlink_binding.node');
  if (fs.existsSync(built) && fs.statSync(built).mtimeMs >= fs.statSync(source).mtimeMs) return;
  const gyp = findNodeGyp();
  console.log('build-netlink: building the patched netlink binding (once)');
  // Build against the installed Node's headers: there is no network to download them.
  const nodedir = process.env.npm_config_nodedir
    || [path.join(path.dirname(process.execPath), '..'), '/usr', '/usr/local'].find((d) => fs.existsSync(path.join(d, 'include', 'node', 'node_api.h')));
  const args = [gyp, 'rebuild', '--loglevel=warn'];
  if (nodedir !== undefined) args.push(`--nodedir=${nodedir}`);
  execFileSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
}

/** npm's own node-gyp: npm passes its path when it runs scripts; else next to npm on PATH. */
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  for (const dir of (process.env.PATH || '').split(':')) {
    const npm = path.join(dir, 'npm');
    if (fs.existsSync(npm)) candidates.push(path.join(path.dirname(fs.realpathSync(npm)), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  const found = candidates.find((c) => c !== undefined && c !== '' && fs.existsSync(c));
  if (found === undefined) {
    console.error('build-netlink: node-gyp not found (it comes with npm)');
    process.exit(1);
  }
  return found;
}

main();
