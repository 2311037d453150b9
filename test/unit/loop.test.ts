import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKernel } from '../../src/kernel/fake';
import { Reconciler, type PassResult } from '../../src/reconcile/loop';
import type { ManagedNetwork } from '../../src/model';
import { FakeClock, NET1, WAN1, WAN2, addr, ours, recordingLogger, route, rule } from './fixtures';

const mainDefault = route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.1.0.1', oif: 3, metric: 200 });

function setup(networks: ManagedNetwork[] = [NET1]) {
  const kernel = new FakeKernel();
  const clock = new FakeClock();
  const log = recordingLogger();
  const passes: PassResult[] = [];
  const loop = new Reconciler({ kernel, clock, log, networks: () => networks, onPass: (p) => passes.push(p) });
  kernel.on('changed', () => loop.markDirty());
  kernel.addLink(WAN1);
  kernel.addAddress(addr(3, '10.1.0.2'));
  kernel.addRoute(mainDefault);
  return { kernel, clock, log, passes, loop };
}

test('events coalesce into one pass that converges; a second pass finds nothing to do', async () => {
  const { kernel, loop, passes } = setup();
  await loop.idle();
  assert.equal(passes.length, 1, 'three events, one pass');
  assert.ok(kernel.hasRule(rule('10.1.0.2', 2000)));
  assert.ok(kernel.hasRoute(ours(mainDefault, 2000)));
  loop.markDirty();
  await loop.idle();
  assert.equal(passes.at(-1)!.added + passes.at(-1)!.removed, 0);
});

test('address changes are followed: the old rule goes, the new one comes', async () => {
  const { kernel, loop } = setup();
  await loop.idle();
  kernel.removeAddress(addr(3, '10.1.0.2'));
  kernel.addAddress(addr(3, '10.1.0.77'));
  kernel.addRoute(mainDefault);
  await loop.idle();
  assert.ok(!kernel.hasRule(rule('10.1.0.2', 2000)));
  assert.ok(kernel.hasRule(rule('10.1.0.77', 2000)));
});

test('a rule someone deletes is restored with a warning that names the networkd setting, then backs off', async () => {
  const { kernel, loop, log, clock } = setup();
  await loop.idle();
  const ourRule = rule('10.1.0.2', 2000);
  for (let i = 0; i < 3; i++) {
    kernel.deleteRule(ourRule);
    await loop.idle();
    assert.ok(kernel.hasRule(ourRule), `restored #${i + 1}`);
  }
  assert.ok(log.lines.some((l) => l.startsWith('warning:') && l.includes('ManageForeignRoutingPolicyRules=no')));
  // As the README says: three within a minute at once, then the 4th waits 1 s.
  kernel.deleteRule(ourRule);
  await loop.idle();
  assert.ok(!kernel.hasRule(ourRule), 'held back');
  assert.deepEqual(clock.pending(), [1000]);
  clock.advance(1000);
  await loop.idle();
  assert.ok(kernel.hasRule(ourRule), 'restored after the backoff');
});

/**
 * A fighter that deletes the rule as soon as it is back, for `untilMs` of fake time: when
 * each restore happened, and the warnings logged.
 */
async function fight(untilMs: number) {
  const { kernel, loop, log, clock } = setup();
  await loop.idle();
  const ourRule = rule('10.1.0.2', 2000);
  const restoredAt: number[] = [];
  while (clock.now() <= untilMs) {
    kernel.deleteRule(ourRule);
    await loop.idle();
    while (!kernel.hasRule(ourRule)) {
      const next = Math.min(...clock.pending());
      assert.ok(Number.isFinite(next), 'a held-back restore has a timer');
      clock.advance(next);
      await loop.idle();
    }
    restoredAt.push(clock.now());
  }
  const warnings = log.lines.filter((l) => l.startsWith('warning:') && l.includes('was deleted by another program'));
  return { restoredAt, warnings, applied: kernel.applied.filter((op) => op.kind === 'add-rule').length };
}

test('a fighter gets exactly the documented restores: three at once, then 1, 2, 4 … s apart, each counted and warned', async () => {
  const { restoredAt, warnings, applied } = await fight(10_000);
  assert.deepEqual(restoredAt, [0, 0, 0, 1000, 3000, 7000, 15000]);
  assert.equal(warnings.length, restoredAt.length, warnings.join('\n'));
  assert.equal(applied, restoredAt.length + 1, 'one add at start, then one per restore');
  assert.match(warnings[3], /\(4 times within a minute/);
});

test('under a long fight the wait doubles up to 32 s; once a minute holds fewer than three restores, three go through at once again', async () => {
  const { restoredAt, warnings } = await fight(130_000);
  assert.deepEqual(restoredAt, [0, 0, 0, 1000, 3000, 7000, 15000, 31000, 63000, 123000, 123000, 123000, 124000, 126000, 130000, 138000]);
  assert.equal(warnings.length, restoredAt.length);
});

test('a fighter that deletes less than three times a minute is restored at once every time', async () => {
  const { kernel, loop, clock } = setup();
  await loop.idle();
  const ourRule = rule('10.1.0.2', 2000);
  for (let i = 0; i < 10; i++) {
    kernel.deleteRule(ourRule);
    await loop.idle();
    assert.ok(kernel.hasRule(ourRule), `restored #${i + 1} at once`);
    clock.advance(25_000);
  }
});

test('a rule\'s line is written once the kernel has it, and before what a failure of the same pass says', async () => {
  const { kernel, loop, log } = setup();
  const linesAtApply: number[] = [];
  const apply = kernel.apply.bind(kernel);
  kernel.apply = async (operations) => {
    linesAtApply.push(log.lines.length);
    return apply(operations);
  };
  kernel.failWith((op) => op.kind === 'add-route', 'ETIMEDOUT');
  await loop.idle();
  assert.deepEqual(linesAtApply, [0], 'nothing written while the operations go to the kernel');
  assert.ok(kernel.hasRule(rule('10.1.0.2', 2000)));
  const added = log.lines.findIndex((l) => l.startsWith('info:') && l.includes('Adding rule') && l.includes('10.1.0.2'));
  const failure = log.lines.findIndex((l) => l.startsWith('error:') && l.includes('ETIMEDOUT'));
  assert.ok(added >= 0, `the rule's line: ${JSON.stringify(log.lines)}`);
  assert.ok(failure > added, `the failure after the pass's lines: ${JSON.stringify(log.lines)}`);
  // Removal too: the line comes with the apply that removed it.
  kernel.removeAddress(addr(3, '10.1.0.2'));
  await loop.idle();
  assert.ok(!kernel.hasRule(rule('10.1.0.2', 2000)));
  assert.ok(log.lines.some((l) => l.startsWith('info:') && l.includes('Removing rule') && l.includes('10.1.0.2')));
});

test('a failed operation does not stop the others and is retried with growing delays', async () => {
  const { kernel, loop, clock, log } = setup();
  kernel.failWith((op) => op.kind === 'add-route', 'ETIMEDOUT', 2);
  await loop.idle();
  assert.ok(kernel.hasRule(rule('10.1.0.2', 2000)), 'the rule went in despite the route failing');
  assert.ok(!kernel.hasRoute(ours(mainDefault, 2000)));
  assert.ok(log.lines.some((l) => l.startsWith('error:') && l.includes('ETIMEDOUT')));
  assert.deepEqual(clock.pending(), [100]);
  clock.advance(100);
  await loop.idle();
  assert.deepEqual(clock.pending(), [200], 'second failure doubles the delay');
  clock.advance(200);
  await loop.idle();
  assert.ok(kernel.hasRoute(ours(mainDefault, 2000)));
  assert.deepEqual(clock.pending(), []);
});

test('a copy the kernel refuses while nothing changes is reported once as a warning, then waits for a change of its network', async () => {
  const { kernel, loop, clock, log, passes } = setup();
  kernel.failWith((op) => op.kind === 'add-route', 'EHOSTUNREACH', 1000);
  await loop.idle();
  assert.ok(kernel.hasRule(rule('10.1.0.2', 2000)));
  assert.deepEqual(log.lines.filter((l) => /^(warning|error):/.test(l)), [], 'the first refusal may be a change under way');
  assert.deepEqual(clock.pending(), [100], 'one more try, to see whether it was');
  clock.advance(100);
  await loop.idle();
  const warnings = log.lines.filter((l) => l.startsWith('warning:'));
  assert.equal(warnings.length, 1, log.lines.join('\n'));
  assert.match(warnings[0], /default via 10\.1\.0\.1 dev wan1 .*table 2000.*EHOSTUNREACH: its gateway is not reachable/);
  assert.deepEqual(clock.pending(), [], 'no retry on a timer');
  assert.ok(passes.at(-1)!.failedNetworks.has('wan1'), 'wan1 is not all there');
  const attempts = () => kernel.applied.filter((op) => op.kind === 'add-route').length;
  assert.equal(attempts(), 2);

  // A new link makes every refused copy worth one more try (links and addresses are not
  // told apart per network); a route via another link, or time, does not.
  kernel.addLink(WAN2);
  await loop.idle();
  const afterWan2 = attempts();
  assert.ok(passes.at(-1)!.failedNetworks.has('wan1'), 'still not all there after a pass that did not try it');
  kernel.addRoute(route({ dst: '198.51.100.0', dstLength: 24, gateway: '10.2.0.1', oif: 4 }));
  await loop.idle();
  clock.advance(60_000);
  await loop.idle();
  assert.equal(attempts(), afterWan2, 'nothing about wan1 changed');
  assert.equal(log.lines.filter((l) => /^(warning|error):/.test(l)).length, 1);

  // A route via wan1 changes: try again, and it goes in.
  kernel.clearFailures();
  kernel.addRoute(route({ dst: '10.9.0.0', dstLength: 16, oif: 3, scope: 253 }));
  await loop.idle();
  assert.ok(kernel.hasRoute(ours(mainDefault, 2000)), 'the copy arrives once its network changed');
  assert.ok(!passes.at(-1)!.failedNetworks.has('wan1'));
  assert.equal(log.lines.filter((l) => /^(warning|error):/.test(l)).length, 1);
});

test('a copy refused because its link went down meanwhile is neither reported nor retried on a timer, and goes in when the link is up', async () => {
  const { kernel, loop, clock, log } = setup();
  let downed = false;
  // The link goes down while the pass's operations are on their way (its event is read during the apply).
  kernel.failWith((op) => {
    if (op.kind !== 'add-route') return false;
    if (!downed) { downed = true; kernel.addLink({ ...WAN1, up: false }); }
    return true;
  }, 'ENETDOWN', 1000);
  await loop.idle();
  assert.ok(downed);
  assert.deepEqual(log.lines.filter((l) => /^(warning|error):/.test(l)), [], log.lines.join('\n'));
  assert.deepEqual(clock.pending(), [], 'the link coming up brings the next try, not a timer');
  clock.advance(60_000);
  await loop.idle();
  assert.deepEqual(log.lines.filter((l) => /^(warning|error):/.test(l)), []);

  kernel.clearFailures();
  kernel.addLink(WAN1);
  kernel.addRoute(mainDefault); // as a manager puts it back (the kernel flushed it with the link)
  await loop.idle();
  assert.ok(kernel.hasRoute(ours(mainDefault, 2000)), 'the copy arrives once the link is up');
  assert.deepEqual(log.lines.filter((l) => /^(warning|error):/.test(l)), []);
});

test('an interface that goes away takes its rules and routes with it', async () => {
  const { kernel, loop } = setup();
  await loop.idle();
  kernel.removeLink(WAN1);
  await loop.idle();
  assert.deepEqual(kernel.observed().rules, []);
  assert.deepEqual(kernel.observed().routes, []);
});

test('a thousand marks while a pass runs give at most one more pass', async () => {
  const { loop, passes } = setup();
  await loop.idle();
  const before = passes.length;
  for (let i = 0; i < 1000; i++) loop.markDirty();
  await loop.idle();
  assert.equal(passes.length - before, 1);
});

test('a burst of changes waits for quiet (or 250 ms at most) once passes are expensive; a lone change does not wait', async () => {
  const kernel = new FakeKernel();
  const clock = new FakeClock();
  const passes: PassResult[] = [];
  // Every pass counts as expensive here; the fake clock decides what is a burst.
  const loop = new Reconciler({ kernel, clock, log: recordingLogger(), networks: () => [NET1], onPass: (p) => passes.push(p), holdThresholdMs: 0 });
  kernel.on('changed', () => loop.markDirty());
  kernel.addLink(WAN1);
  kernel.addAddress(addr(3, '10.1.0.2'));
  await loop.idle();
  assert.equal(passes.length, 1, 'a lone change (after quiet) runs at once');

  clock.advance(100);
  const settled = (): Promise<void> => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
  for (let i = 0; i < 10; i++) {
    kernel.addRoute(route({ dst: `198.51.100.${i}`, dstLength: 32, gateway: '10.1.0.1', oif: 3 }));
    await settled();
    clock.advance(1);
  }
  assert.equal(passes.length, 2, 'the first change of the burst ran at once, the rest wait');
  clock.advance(3);
  await settled();
  assert.equal(passes.length, 2, 'not quiet for 5 ms yet');
  clock.advance(1);
  await loop.idle();
  assert.equal(passes.length, 3, 'one pass for the rest of the burst');
  assert.ok(kernel.hasRoute(ours(route({ dst: '198.51.100.9', dstLength: 32, gateway: '10.1.0.1', oif: 3 }), 2000)));

  // A storm that never goes quiet still gets a pass every 250 ms.
  clock.advance(100);
  const before = passes.length;
  for (let i = 0; i < 300; i++) {
    kernel.addRoute(route({ dst: `198.51.101.${i % 250}`, dstLength: 32, gateway: '10.1.0.1', oif: 3, metric: i }));
    await settled();
    clock.advance(1);
  }
  assert.ok(passes.length - before >= 2 && passes.length - before <= 4, `passes during a 300 ms storm: ${passes.length - before}`);
  clock.advance(10);
  await loop.idle();
});

test('route-only passes: new routes are copied, failures fall back to full passes, status lists the routes wanted now', async () => {
  const { kernel, loop, passes, clock } = setup();
  await loop.idle();
  const hosts = [1, 2, 3].map((i) => route({ dst: `10.9.0.${i}`, dstLength: 32, gateway: '10.1.0.1', oif: 3 }));
  kernel.failWith((op) => op.kind === 'add-route' && op.route.dst === '10.9.0.2', 'ENOBUFS');
  for (const host of hosts) kernel.addRoute(host);
  await loop.idle();
  assert.equal(passes.at(-1)!.routesOnly, true, 'three routes, nothing else: a route-only pass');
  assert.equal(passes.at(-1)!.failed, 1);
  assert.ok(kernel.hasRoute(ours(hosts[0], 2000)) && !kernel.hasRoute(ours(hosts[1], 2000)));
  // The retry (a full pass) completes the table.
  clock.advance(100);
  await loop.idle();
  assert.equal(passes.at(-1)!.routesOnly, false);
  assert.equal(passes.at(-1)!.routesOnly, false);
  for (const host of hosts) assert.ok(kernel.hasRoute(ours(host, 2000)), host.dst);
  // Removed and changed routes follow too.
  kernel.deleteRoute(hosts[0]);
  kernel.addRoute({ ...hosts[2], gateway: '10.1.0.9', metric: 0, onlink: true });
  await loop.idle();
  assert.ok(!kernel.hasRoute(ours(hosts[0], 2000)));
  const plan = passes.at(-1)!.plans[0];
  assert.deepEqual(plan.routes.map((r) => `${r.dst} ${r.gateway}`).sort(), ['0.0.0.0 10.1.0.1', '10.9.0.2 10.1.0.1', '10.9.0.3 10.1.0.9']);
  assert.equal(passes.at(-1)!.desiredRoutes, 3);
  assert.equal(passes.at(-1)!.routesOnly, true);
});

test('address passes: an address added or removed changes its rule alone; what they put in place is restored as ours; status shows the addresses', async () => {
  const { kernel, loop, passes, log } = setup();
  await loop.idle();
  const added = addr(3, '10.1.0.9');
  kernel.addAddress(added);
  await loop.idle();
  assert.equal(passes.at(-1)!.addressesOnly, true, 'an address, nothing else: an address pass');
  assert.equal(passes.at(-1)!.added, 1);
  assert.ok(kernel.hasRule(rule('10.1.0.9', 2000)));
  assert.deepEqual(passes.at(-1)!.plans[0].addresses.map((a) => a.local), ['10.1.0.2', '10.1.0.9']);
  assert.equal(passes.at(-1)!.plans[0].routes.length, 1, 'the routes wanted are still there');
  assert.ok(log.lines.some((l) => l.startsWith('info:') && l.includes('10.1.0.9')), 'its rule line');

  // Someone deleting the rule an address pass added: a restore, warned about, as any of ours.
  kernel.deleteRule(rule('10.1.0.9', 2000));
  await loop.idle();
  assert.equal(passes.at(-1)!.addressesOnly, false);
  assert.ok(kernel.hasRule(rule('10.1.0.9', 2000)));
  assert.ok(log.lines.some((l) => l.startsWith('warning:') && l.includes('10.1.0.9') && l.includes('deleted by another program')));

  kernel.addAddress(addr(3, 'fd00:1::9'));
  await loop.idle();
  kernel.removeAddress(added);
  await loop.idle();
  assert.equal(passes.at(-1)!.addressesOnly, true);
  assert.equal(passes.at(-1)!.removed, 1);
  assert.ok(!kernel.hasRule(rule('10.1.0.9', 2000)) && kernel.hasRule(rule('fd00:1::9', 2000)) && kernel.hasRule(rule('10.1.0.2', 2000)));

  // A refused rule: the address pass fails over to full passes until it is in.
  kernel.failWith((op) => op.kind === 'add-rule', 'ENOBUFS');
  kernel.addAddress(addr(3, '10.1.0.10'));
  await loop.idle();
  assert.equal(passes.at(-1)!.failed, 1);
  assert.ok(!kernel.hasRule(rule('10.1.0.10', 2000)));
  kernel.removeAddress(addr(3, 'fd00:1::9'));
  await loop.idle();
  assert.equal(passes.at(-1)!.addressesOnly, false, 'after a failure, the next pass looks at everything');
  assert.ok(kernel.hasRule(rule('10.1.0.10', 2000)) && !kernel.hasRule(rule('fd00:1::9', 2000)));

  // The last address of the network: its table has no rules any more, which the full pass decides.
  for (const a of ['10.1.0.2', '10.1.0.10']) kernel.removeAddress(addr(3, a));
  await loop.idle();
  assert.equal(passes.at(-1)!.addressesOnly, false);
  assert.equal(kernel.observed().rules.length, 0);
});
