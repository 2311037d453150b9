// What a user sees in the log when things go wrong that are not dynmhs's fault: a link
// flapping under a thousand routes, an IPv6 gateway that is no longer on the link. The
// kernel refuses copies while the link is down; that is expected, not an alarm.
// Needs root (skipped otherwise).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, leftovers, networkArgs, startConverged, waitConverged } from '../helpers/daemon';
import { netnsSkipReason, README_NETS, Topology } from '../helpers/netns';
import { eventually, sleep } from '../helpers/wait';

const skip = netnsSkipReason();
const ROUTES = 1000;
const FLAPS = 10;

/** Lines per level in the daemon's output ("… [error] …"), and a few of each. */
function levels(output: string): { counts: Record<string, number>; samples: Record<string, string[]> } {
  const counts: Record<string, number> = {};
  const samples: Record<string, string[]> = {};
  for (const line of output.split('\n')) {
    const level = /\[(trace|debug|info|warning|error|fatal)\]/.exec(line)?.[1];
    if (level === undefined) continue;
    counts[level] = (counts[level] ?? 0) + 1;
    const list = (samples[level] ??= []);
    if (list.length < 4) list.push(line.slice(0, 240));
  }
  return { counts, samples };
}

/** Routes a network manager puts back after the link is up again: half IPv4, half IPv6. */
function managerRoutes(): string[] {
  const lines: string[] = [];
  for (let i = 0; i < ROUTES / 2; i++) {
    lines.push(`route replace 172.${16 + (i >> 8)}.${i & 255}.0/24 via 10.101.0.1 dev wan1 proto static`);
    lines.push(`route replace fd00:aa:${i.toString(16)}::/48 via fe80::1 dev wan1 proto static`);
  }
  return lines;
}

describe('a link flap under a thousand routes', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  before(() => {
    topo = Topology.create();
    topo.batch(topo.host, managerRoutes());
  });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it('logs no error line, and converges after each flap', async () => {
    d = await startConverged(topo, README_NETS, ['--loglevel', '1']);
    const mark = d.output().length;
    for (let flap = 0; flap < FLAPS; flap++) {
      // Down while the daemon is still copying what came with the last up.
      topo.batch(topo.host, ['link set wan1 down']);
      // A manager re-adding its routes while the link is still down (the kernel refuses
      // most of them), then once it is up.
      spawnSync('ip', ['-n', topo.host, '-force', '-batch', '-'], { input: managerRoutes().join('\n') + '\n', stdio: ['pipe', 'ignore', 'ignore'] });
      await sleep(20);
      topo.batch(topo.host, ['link set wan1 up', 'route replace default via 10.101.0.1 dev wan1 metric 200', ...managerRoutes()]);
      await sleep(flap * 7 % 30);
    }
    await waitConverged(topo, d, README_NETS, 15000);
    const output = d.outputSince(mark);
    const { counts, samples } = levels(output);
    const refusals = output.split('\n').filter((l) => l.includes('The kernel refused'));
    console.log(`log lines during ${FLAPS} flaps with ${ROUTES} routes: ${JSON.stringify(counts)}; ${refusals.length} of them about refusals`);
    for (const [level, lines] of Object.entries(samples)) console.log(`${level}:\n  ${lines.join('\n  ')}`);
    for (const line of refusals.slice(0, 3)) console.log(`refusal: ${line.slice(0, 400)}`);
    assert.equal(counts.error ?? 0, 0, JSON.stringify(samples.error));
    assert.equal(counts.warning ?? 0, 0, JSON.stringify(samples.warning));
    assert.equal(await d.stop('SIGTERM', 10000), 0);
    assert.deepEqual(leftovers(topo), []);
  });
});

describe('an IPv6 copy whose gateway is no longer on the link', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  const ROUTE = 'fd00:bb::/48';
  before(() => {
    topo = Topology.create();
    // The gateway is on the link through fd00:101::/64; when that address goes, main keeps
    // the route, but the kernel will not take a copy of it any more.
    topo.ip(['-6', 'route', 'add', ROUTE, 'via', 'fd00:101::1', 'dev', 'wan1']);
    topo.ip(['addr', 'del', 'fd00:101::2/64', 'dev', 'wan1']);
    assert.ok(topo.routes(6, 'main').some((r) => r.dst === ROUTE), 'main keeps the route');
  });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it('is reported once as a warning, not retried on a timer, and arrives once the gateway is reachable again', async () => {
    const nets = README_NETS;
    d = DaemonProcess.start(topo.host, [...networkArgs(nets), '--loglevel', '1']);
    await d.waitForOutput(/dynmhs running/, 20000);
    const attempts = (): number => d!.output().split('\n').filter((l) => l.includes(`[debug] Adding route: ${ROUTE}`)).length;
    await eventually(() => assert.equal(levels(d!.output()).counts.warning ?? 0, 1), 5000);
    const before = attempts();
    await sleep(3000);
    const { counts, samples } = levels(d.output());
    console.log(`after 3 s: ${JSON.stringify(counts)}, ${attempts()} attempts at the copy; warning: ${samples.warning?.join(' | ')}`);
    assert.equal(counts.error ?? 0, 0, JSON.stringify(samples.error));
    assert.equal(counts.warning, 1, JSON.stringify(samples.warning));
    assert.match(samples.warning![0], new RegExp(`${ROUTE.replace(/[/.]/g, '\\$&')} via fd00:101::1 dev wan1 .*table 2000.*refused by the kernel \\((EHOSTUNREACH|EINVAL|ENETUNREACH): `));
    assert.ok(before <= 2, `${before} attempts before the warning`);
    assert.equal(attempts(), before, 'no retries on a timer');

    topo.batch(topo.host, ['addr add fd00:101::2/64 dev wan1']);
    await eventually(() => assert.ok(topo.ourRoutes(6, 2000).some((r) => r.dst === ROUTE), 'copy arrived'), 5000);
    await waitConverged(topo, d, nets, 5000);
    assert.equal(levels(d.output()).counts.error ?? 0, 0);
    assert.equal(await d.stop('SIGTERM', 10000), 0);
    assert.deepEqual(leftovers(topo), []);
  });
});
