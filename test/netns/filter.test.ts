// The patched netlink binding and the socket filters on the real kernel: the monitor
// socket of the daemon does not see its own requests' notifications but sees everyone
// else's, a wake-up's datagrams arrive in one callback with every message intact, and
// the probe's filter lets only routes of our protocol and rules through.
// Needs root: it creates network namespaces (skipped otherwise).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { netnsSkipReason, Topology } from '../helpers/netns';

const skip = netnsSkipReason();
const SRC = resolve(__dirname, '..', '..', 'src');
const RAW = require.resolve('netlink/dist/raw');

/** Runs `body`, the body of an async function with the helpers below in scope, in namespace `ns`; returns its JSON result. */
function inNamespace<T>(ns: string, body: string): T {
  const script = `
    const { RawNetlinkSocket } = require(${JSON.stringify(RAW)});
    const { forEachMessage, decodeEvent, GROUPS, RTM } = require(${JSON.stringify(`${SRC}/kernel/codec`)});
    const { CommandSocket } = require(${JSON.stringify(`${SRC}/kernel/commands`)});
    const { attachFilter, dropMessagesFrom, onlyRoutesOfProtocol } = require(${JSON.stringify(`${SRC}/kernel/filter`)});
    const { execFileSync } = require('node:child_process');
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const WAN1 = Number(require('node:fs').readFileSync('/sys/class/net/wan1/ifindex', 'utf8'));
    const route = (dst, oif, protocol) => ({ kind: 'add-route', route: { family: 4, table: 2000, dst, dstLength: 32, tos: 0,
      metric: 0, protocol, scope: 253, type: 'unicast', oif, srcLength: 0 } });
    (async () => { ${body} })().then((r) => { process.stdout.write(JSON.stringify(r)); process.exit(0); },
      (e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });`;
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

describe('netlink binding and socket filters on the real kernel', { skip }, () => {
  let topo: Topology;

  before(() => {
    topo = Topology.create({ tag: 'f' });
  });
  after(() => topo?.destroy());

  it('dropMessagesFrom(port): our own requests are not echoed, everyone else\'s are', () => {
    const seen = inNamespace<string[]>(topo.host, `
      const ours = new CommandSocket(1 << 20, () => undefined);
      const theirs = new CommandSocket(1 << 20, () => undefined);
      const monitor = new RawNetlinkSocket(0, { recvBufferSize: 1 << 20 });
      attachFilter(monitor, dropMessagesFrom(ours.port));
      monitor.addMembership(GROUPS.IPV4_ROUTE);
      const seen = [];
      monitor.on('message', (data) => forEachMessage(data, (type, flags, seq, start, end) => {
        const e = decodeEvent(type, flags, data, start, end);
        if (e && e.kind === 'route' && e.route.table === 2000) seen.push((e.removed ? 'del ' : 'add ') + e.route.dst);
      }));
      const results = [...await ours.run([route('10.250.0.1', WAN1, 249)]), ...await theirs.run([route('10.250.0.2', WAN1, 249)])];
      if (results.some((r) => r !== undefined)) throw new Error('adds failed: ' + results);
      execFileSync('ip', ['route', 'add', '10.250.0.3/32', 'dev', 'wan1', 'table', '2000']);
      await ours.run([{ kind: 'delete-route', route: route('10.250.0.1', WAN1, 249).route }]);
      execFileSync('ip', ['route', 'del', '10.250.0.2/32', 'table', '2000']);
      await sleep(200);
      return seen;`);
    assert.deepEqual(seen, ['add 10.250.0.2', 'add 10.250.0.3', 'del 10.250.0.2']);
  });

  it('the datagrams of one wake-up come in one callback, every message in them intact', () => {
    const got = inNamespace<{ callbacks: number; routes: number; bad: number }>(topo.host, `
      const monitor = new RawNetlinkSocket(0, { recvBufferSize: 4 << 20 });
      monitor.addMembership(GROUPS.IPV4_ROUTE);
      let callbacks = 0, routes = 0, bad = 0;
      monitor.on('message', (data) => {
        callbacks++;
        forEachMessage(data, (type, flags, seq, start, end) => {
          const e = decodeEvent(type, flags, data, start, end);
          if (e && e.kind === 'route' && e.route.table === 3000) routes++; else if (!e) bad++;
        });
      });
      // The event loop is blocked while ip adds them: all 300 wait in the socket.
      const lines = Array.from({ length: 300 }, (_, i) => 'route add 10.251.' + (i >> 8) + '.' + (i & 255) + '/32 dev wan1 table 3000').join('\\n');
      execFileSync('ip', ['-batch', '-'], { input: lines });
      await sleep(200);
      return { callbacks, routes, bad };`);
    assert.equal(got.routes, 300);
    assert.equal(got.bad, 0);
    // Up to 32 datagrams per read: 300 events in about 10 callbacks, not 300.
    assert.ok(got.callbacks <= 20, `${got.callbacks} callbacks`);
  });

  it('onlyRoutesOfProtocol: the probe sees routes of that protocol and rules, nothing else', () => {
    const seen = inNamespace<string[]>(topo.host, `
      const monitor = new RawNetlinkSocket(0, { recvBufferSize: 1 << 20 });
      attachFilter(monitor, onlyRoutesOfProtocol(249, [RTM.NEWROUTE, RTM.DELROUTE], [RTM.NEWRULE, RTM.DELRULE]));
      for (const g of [GROUPS.IPV4_ROUTE, GROUPS.IPV4_RULE, GROUPS.IPV4_IFADDR]) monitor.addMembership(g);
      const seen = [];
      monitor.on('message', (data) => forEachMessage(data, (type, flags, seq, start, end) => {
        const e = decodeEvent(type, flags, data, start, end);
        if (e && e.kind === 'route') seen.push('route ' + e.route.dst + ' proto ' + e.route.protocol);
        else if (e) seen.push(e.kind);
      }));
      const ip = (...args) => execFileSync('ip', args);
      ip('route', 'add', '10.252.0.1/32', 'dev', 'wan1', 'table', '2000', 'proto', '249');
      ip('route', 'add', '10.252.0.2/32', 'dev', 'wan1', 'table', '2000');
      ip('addr', 'add', '10.252.1.1/32', 'dev', 'wan1');
      ip('rule', 'add', 'from', '10.252.1.1', 'lookup', '2000', 'priority', '2000');
      await sleep(200);
      return seen;`);
    assert.deepEqual(seen, ['route 10.252.0.1 proto 249', 'rule']);
  });
});
