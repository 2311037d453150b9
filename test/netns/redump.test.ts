// The kernel adapter re-reads the routes after an IPv4 address goes only when the kernel
// may have dropped routes without telling (the address was the link's last, or a route
// names it as its source), since a pass waits for that re-read: a lone address change
// must not cost one. Needs root: it creates network namespaces (skipped otherwise).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { netnsSkipReason, Topology } from '../helpers/netns';

const skip = netnsSkipReason();
const SRC = resolve(__dirname, '..', '..', 'src');

describe('route re-reads after an IPv4 address goes', { skip }, () => {
  let topo: Topology;

  before(() => {
    topo = Topology.create({ tag: 'r' });
  });
  after(() => topo?.destroy());

  it('none for a lone address; one when a route named it as its source, or it was the link\'s last', () => {
    const script = `
      const { RtnetlinkKernel } = require(${JSON.stringify(`${SRC}/kernel/netlink`)});
      const { execFileSync } = require('node:child_process');
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const quiet = () => undefined;
      const log = { trace: quiet, debug: quiet, info: quiet, warning: quiet, error: quiet, fatal: quiet,
        setLevel: quiet, level: () => 2, close: async () => undefined };
      (async () => {
        const kernel = new RtnetlinkKernel(log);
        await kernel.start();
        let rereads = 0;
        const resync = kernel.resync.bind(kernel);
        kernel.resync = (kinds) => { if (kinds.length === 1 && kinds[0] === 'routes') rereads++; return resync(kinds); };
        const ip = (...args) => execFileSync('ip', args);
        const has = (dst) => [...kernel.observed().routesByKey.values()].some((r) => r.dst === dst);
        ip('addr', 'add', '10.101.0.77/24', 'dev', 'wan1', 'noprefixroute');
        await sleep(100);
        ip('addr', 'del', '10.101.0.77/24', 'dev', 'wan1');
        await sleep(100);
        const lone = rereads;
        ip('addr', 'add', '10.101.0.78/24', 'dev', 'wan1', 'noprefixroute');
        ip('route', 'add', '10.246.0.0/24', 'dev', 'wan1', 'src', '10.101.0.78');
        await sleep(100);
        const namedBefore = has('10.246.0.0');
        ip('addr', 'del', '10.101.0.78/24', 'dev', 'wan1');
        await sleep(100);
        const named = rereads - lone;
        const namedAfter = has('10.246.0.0');
        const inKernel = execFileSync('ip', ['-4', 'route', 'show', '10.246.0.0/24'], { encoding: 'utf8' }).trim();
        ip('addr', 'del', '10.102.0.2/24', 'dev', 'wan2');
        await sleep(100);
        const last = rereads - lone - named;
        await kernel.stop();
        return { lone, named, namedBefore, namedAfter, inKernel, last };
      })().then((r) => { process.stdout.write(JSON.stringify(r)); process.exit(0); },
        (e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });`;
    const r = spawnSync('ip', ['netns', 'exec', topo.host, process.execPath, '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { lone: number; named: number; namedBefore: boolean; namedAfter: boolean; inKernel: string; last: number };
    assert.equal(got.lone, 0, 'a lone address: no re-read');
    assert.equal(got.namedBefore, true);
    assert.equal(got.inKernel, '', 'the kernel dropped the route that named the address');
    assert.equal(got.named, 1, 'a route named it: one re-read');
    assert.equal(got.namedAfter, false, 'and the cache lost that route');
    assert.equal(got.last, 1, 'the link\'s last IPv4 address: one re-read');
  });
});
