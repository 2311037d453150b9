import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKernel } from '../../src/kernel/fake';
import { removeEverythingOurs } from '../../src/reconcile/cleanup';
import { Reconciler } from '../../src/reconcile/loop';
import { DYNMHS_PROTOCOL, MAIN_TABLE, type Route, type Rule } from '../../src/model';
import { FakeClock, NET1, WAN1, addr, ours, recordingLogger, route, rule } from './fixtures';

const prefixRoute = route({ dst: '10.119.0.0', dstLength: 24, oif: 3, scope: 253, protocol: 2, prefsrc: '10.119.0.1' });

test('an IPv4 address going flushes the routes with its source hint from main only: the copy stays until a pass removes it', async () => {
  const kernel = new FakeKernel();
  const loop = new Reconciler({ kernel, clock: new FakeClock(), log: recordingLogger(), networks: () => [NET1] });
  kernel.on('changed', () => loop.markDirty());
  kernel.addLink(WAN1);
  kernel.addAddress(addr(3, '10.1.0.2'));
  kernel.addAddress(addr(3, '10.119.0.1'));
  kernel.addRoute(prefixRoute);
  await loop.idle();
  const copy = ours(prefixRoute, 2000);
  assert.ok(kernel.hasRoute(copy));

  // What the kernel does: main's route goes (silently), the copy in table 2000 stays.
  await loop.stop();
  kernel.removeAddress(addr(3, '10.119.0.1'));
  assert.ok(!kernel.hasRoute(prefixRoute), "main's route is flushed");
  assert.ok(kernel.hasRoute(copy), 'the copy is still in the kernel, so the cache must still show it');

  const loop2 = new Reconciler({ kernel, clock: new FakeClock(), log: recordingLogger(), networks: () => [NET1] });
  loop2.markDirty();
  await loop2.idle();
  assert.ok(!kernel.hasRoute(copy), 'the next pass removes the copy');
});

/** A kernel whose cache missed entries that the kernel itself still holds. */
class KernelWithUnseenEntries extends FakeKernel {
  unseenRoutes: Route[] = [];
  unseenRules: Rule[] = [];
  dumps = 0;

  override async dumpRoutesAndRules(): Promise<{ readonly routes: readonly Route[]; readonly rules: readonly Rule[] }> {
    this.dumps++;
    const cached = await super.dumpRoutesAndRules();
    return { routes: [...cached.routes, ...this.unseenRoutes], rules: [...cached.rules, ...this.unseenRules] };
  }

  override async apply(operations: Parameters<FakeKernel['apply']>[0]): ReturnType<FakeKernel['apply']> {
    const results = await super.apply(operations);
    this.unseenRoutes = this.unseenRoutes.filter((r) => !operations.some((op) => op.kind === 'delete-route' && op.route === r));
    this.unseenRules = this.unseenRules.filter((r) => !operations.some((op) => op.kind === 'delete-rule' && op.rule === r));
    return results;
  }
}

test('clean-up removes what a fresh dump shows, including entries the cache never saw, and only ours', async () => {
  const kernel = new KernelWithUnseenEntries();
  kernel.addLink(WAN1);
  const cachedCopy = ours(route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.1.0.1', oif: 3, metric: 200 }), 2000);
  kernel.addRoute(cachedCopy);
  kernel.addRule(rule('10.1.0.2', 2000));
  const foreignInOurTable = route({ dst: '192.0.2.0', dstLength: 24, oif: 3, table: 2000, protocol: 4 });
  const oursInMain = { ...prefixRoute, table: MAIN_TABLE, protocol: DYNMHS_PROTOCOL };
  kernel.addRoute(foreignInOurTable);
  kernel.addRoute(oursInMain);
  kernel.addRule(rule('192.0.2.1', 2000, 4));
  kernel.unseenRoutes = [ours(prefixRoute, 2000), ours(route({ dst: 'fd00:119::', dstLength: 64, oif: 3 }), 2000)];
  kernel.unseenRules = [rule('10.119.0.1', 2000)];

  const result = await removeEverythingOurs(kernel, recordingLogger());
  assert.deepEqual(result, { rules: 2, routes: 3, left: 0 });
  assert.deepEqual(kernel.unseenRoutes, []);
  assert.deepEqual(kernel.unseenRules, []);
  assert.ok(!kernel.hasRoute(cachedCopy));
  assert.ok(kernel.hasRoute(foreignInOurTable), 'a foreign route in our table stays');
  assert.ok(kernel.hasRoute(oursInMain), 'protocol 249 in main is never ours');
  assert.ok(kernel.hasRule(rule('192.0.2.1', 2000, 4)), 'a foreign rule stays');
  assert.equal(kernel.dumps, 2, 'a second dump verifies');
});

test('clean-up retries what stays, a bounded number of times, and says what is left', async () => {
  const kernel = new FakeKernel();
  kernel.addLink(WAN1);
  const stubborn = rule('10.1.0.2', 2000);
  kernel.addRule(stubborn);
  kernel.failWith((op) => op.kind === 'delete-rule', 'EPERM', 100);
  const log = recordingLogger();
  const result = await removeEverythingOurs(kernel, log);
  assert.deepEqual(result, { rules: 0, routes: 0, left: 1 });
  assert.equal(kernel.applied.length, 3, 'three attempts');
  assert.ok(log.lines.some((l) => l.startsWith('warning:') && l.includes('from 10.1.0.2 lookup 2000')), log.lines.join('\n'));
});

test('clean-up falls back to what the cache shows when the kernel will not dump', async () => {
  const kernel = new FakeKernel();
  kernel.addLink(WAN1);
  kernel.addRule(rule('10.1.0.2', 2000));
  kernel.dumpRoutesAndRules = () => Promise.reject(new Error('no end of the routes dump after 30000 ms'));
  const log = recordingLogger();
  assert.deepEqual(await removeEverythingOurs(kernel, log), { rules: 1, routes: 0, left: 0 });
  assert.ok(!kernel.hasRule(rule('10.1.0.2', 2000)));
  assert.ok(log.lines.some((l) => l.startsWith('warning:') && l.includes('no end of the routes dump')), log.lines.join('\n'));
});
