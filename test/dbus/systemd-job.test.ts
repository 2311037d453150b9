// stopIntent() against a fake org.freedesktop.systemd1 on a private system bus: a restart
// job means "leave the policy for the successor"; everything else, including no answer,
// means "clean up".
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stopIntent, unitNameOfPath } from '../../src/systemd-job';
import { isRoot, startSystemBus, type PrivateBus } from '../helpers/dbus-harness';
import { FAKE_UNIT_PATH, FakeSystemd } from '../helpers/fake-systemd';

const skip = isRoot() ? false : 'needs root: only root may own org.freedesktop.systemd1 on the (distribution-configured) private bus';

test('unit names are decoded from systemd object paths', () => {
  assert.equal(unitNameOfPath('/org/freedesktop/systemd1/unit/dynmhs_2eservice'), 'dynmhs.service');
  assert.equal(unitNameOfPath('/org/freedesktop/systemd1/unit/dynmhs_40wan_2dx_2eservice'), 'dynmhs@wan-x.service');
});

describe('stopIntent asks systemd about its job', { skip }, () => {
  let dir = '';
  let bus: PrivateBus | undefined;
  let fake: FakeSystemd | undefined;

  before(async () => {
    dir = mkdtempSync('/tmp/dynmhs-systemd-job-test-');
    bus = await startSystemBus(join(dir, 'bus'), ['/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf']);
    fake = await FakeSystemd.start(bus.address);
    fake.unitPids.add(process.pid);
  });
  after(async () => {
    fake?.stop();
    await bus?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a restart job: restart, with the unit', async () => {
    fake!.job = 'restart';
    const intent = await stopIntent({ busAddress: bus!.address });
    assert.deepEqual(intent.kind === 'restart' ? [intent.kind, intent.unit] : intent, ['restart', FAKE_UNIT_PATH]);
    assert.deepEqual(fake!.calls.slice(-3), ['GetUnitByPID', 'Get org.freedesktop.systemd1.Unit.Job', 'Get org.freedesktop.systemd1.Job.JobType']);
  });

  test('a stop job, a start job, no job: stop, saying why', async () => {
    for (const [job, reason] of [['stop', /job for the unit is "stop"/], ['start', /"start"/], ['none', /no job for the unit/]] as const) {
      fake!.job = job;
      const intent = await stopIntent({ busAddress: bus!.address });
      assert.equal(intent.kind, 'stop', job);
      assert.match(intent.kind === 'stop' ? intent.reason : '', reason);
    }
  });

  test('a process in no unit: stop (the error named)', async () => {
    fake!.job = 'restart';
    const intent = await stopIntent({ busAddress: bus!.address, pid: 1 });
    assert.equal(intent.kind, 'stop');
    assert.match(intent.kind === 'stop' ? intent.reason : '', /NoUnitForPID/);
  });

  test('systemd silent: stop once the timeout is over, not later', async () => {
    fake!.job = 'silent';
    const started = Date.now();
    const intent = await stopIntent({ busAddress: bus!.address, timeoutMs: 300 });
    const elapsed = Date.now() - started;
    assert.equal(intent.kind, 'stop');
    assert.match(intent.kind === 'stop' ? intent.reason : '', /did not answer within 300 ms/);
    assert.ok(elapsed >= 290 && elapsed < 2000, `took ${elapsed} ms`);
  });

  test('no systemd on the bus, no bus at all: stop', async () => {
    fake!.stop();
    let intent = await stopIntent({ busAddress: bus!.address });
    assert.equal(intent.kind, 'stop');
    assert.match(intent.kind === 'stop' ? intent.reason : '', /ServiceUnknown|NameHasNoOwner/);
    intent = await stopIntent({ busAddress: `unix:path=${join(dir, 'no-such-socket')}` });
    assert.equal(intent.kind, 'stop');
    assert.match(intent.kind === 'stop' ? intent.reason : '', /cannot ask systemd/);
  });
});
