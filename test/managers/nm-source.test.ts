// NetworkManagerSource against a real NetworkManager 1.42 in a network namespace on a
// private system bus (see harness.ts). Needs root: it creates namespaces and runs NM.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Testbed, skipReason, waitFor, sleep } from './harness';
import { NetworkManagerSource } from '../../src/sources/networkmanager';
import type { ConnectionFact } from '../../src/sources/types';
import { percentile, recordingLog, SignalRecorder, summary } from './util';

const skip = skipReason();

describe('NetworkManagerSource on real NetworkManager', { skip, timeout: 150_000 }, () => {
  let tb: Testbed;
  let source: NetworkManagerSource;
  const log = recordingLog();
  /** Every snapshot the source published, with its time. */
  const history: Array<{ at: number; names: string[] }> = [];
  const names = (): string[] => source.connections().map((f) => f.interfaceName);
  const has = (name: string): ConnectionFact | undefined => source.connections().find((f) => f.interfaceName === name);

  before(async () => {
    tb = await Testbed.create({ nm: true });
    await tb.startNetworkManager();
    await tb.addNmProfiles();
    source = new NetworkManagerSource({ log, busAddress: tb.nmBus, graceMs: 20_000 });
    source.on('changed', () => history.push({ at: performance.now(), names: names() }));
    await source.start();
  });

  after(async () => {
    await source?.stop();
    await tb?.destroy();
  });

  test('nothing active at first; NM is present', () => {
    assert.deepEqual(source.connections(), []);
    assert.ok(source.present());
  });

  test('nmcli con up wan1: reported with its id, uuid, interface and device type', async () => {
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    const fact = await waitFor('wan1 in the source', () => has('wan1'), 5_000);
    assert.deepEqual(fact, {
      interfaceName: 'wan1', origin: 'networkmanager', connectionId: 'wan1', connectionUuid: await tb.nmConnectionUuid('wan1'), deviceType: 'veth',
    });
  });

  test('nmcli con up wan2: both reported', async () => {
    await tb.nmcli('-w', '60', 'con', 'up', 'wan2');
    await waitFor('wan1 and wan2', () => names().join() === 'wan1,wan2', 5_000);
  });

  test('nmcli con down wan1: gone (before NM finishes), wan2 stays', async () => {
    const t0 = performance.now();
    const down = tb.nmcli('con', 'down', 'wan1');
    await waitFor('wan1 gone', () => names().join() === 'wan2', 5_000);
    const gone = performance.now();
    await down;
    const finished = performance.now();
    assert.ok(gone <= finished, 'the source drops the connection before nmcli returns');
    assert.ok(history.every((h) => h.at < t0 || h.names.includes('wan2')), 'wan2 never dropped');
  });

  test('NetworkManager restarted while the source runs: facts held through the restart, re-read after', async () => {
    const mark = history.length;
    await tb.stopNetworkManager();
    await sleep(100);
    assert.deepEqual(names(), ['wan2'], 'held during the grace period');
    assert.ok(source.present());
    await tb.startNetworkManager(); // waits for NM's startup to complete (nm-online -s)
    // NM re-adopts wan2's configuration (a new active-connection object, same uuid)
    await waitFor('wan2 reported by the new NM', async () => names().join() === 'wan2' && log.lines.some((l) => /grace period over/.test(l.message)), 15_000);
    assert.ok(history.slice(mark).every((h) => h.names.includes('wan2')), `wan2 was never dropped: ${JSON.stringify(history.slice(mark))}`);
    assert.equal(has('wan2')?.connectionUuid, await tb.nmConnectionUuid('wan2'));
    // and the source follows the new NM
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    await waitFor('wan1 after the restart', () => names().join() === 'wan1,wan2', 10_000);
  });

  test('the bus name vanishing for longer than the grace period empties the list; its return restores it', async () => {
    const short = new NetworkManagerSource({ log: recordingLog(false), busAddress: tb.nmBus, graceMs: 300 });
    await short.start();
    try {
      assert.equal(short.connections().length, 2);
      await tb.stopNetworkManager();
      assert.equal(short.connections().length, 2, 'held right after');
      await waitFor('empty after the grace period', () => short.connections().length === 0 && !short.present(), 3_000);
      await tb.startNetworkManager();
      await waitFor('back', () => short.connections().map((f) => f.interfaceName).join() === 'wan1,wan2', 15_000);
      assert.ok(short.present());
    } finally {
      await short.stop();
    }
    await waitFor('the long-grace source agrees', () => names().join() === 'wan1,wan2', 5_000);
  });

  test('latency: NM ACTIVATED / DEACTIVATING signal -> source changed (IPv4-only profile, 20 cycles)', async (t) => {
    await tb.nmcli('con', 'down', 'wan1');
    await waitFor('wan1 down', () => !has('wan1'), 5_000);
    await tb.nmcli('con', 'add', 'type', 'ethernet', 'ifname', 'wan1', 'con-name', 'lat1', 'autoconnect', 'no', 'ipv4.method', 'auto', 'ipv6.method', 'disabled');
    const uuid = await tb.nmConnectionUuid('lat1');
    const rec = await SignalRecorder.open(tb.nmBus, ["type='signal',sender='org.freedesktop.NetworkManager',interface='org.freedesktop.NetworkManager.Connection.Active',member='StateChanged'"]);
    const up: number[] = [];
    const down: number[] = [];
    let present = false;
    let changedAt = 0;
    const onChanged = (): void => {
      const now = source.connections().some((f) => f.connectionUuid === uuid);
      if (now !== present) changedAt = performance.now();
      present = now;
    };
    source.on('changed', onChanged);
    // The signal recorder has its own bus connection: wait until it has this cycle's signal too.
    const stateSignal = (state: number, mark: number): Promise<{ at: number }> =>
      waitFor(`NM StateChanged ${state}`, () => rec.signals.slice(mark).find((s) => s.body[0] === state), 5_000);
    try {
      for (let i = 0; i < 20; i++) {
        let mark = rec.signals.length;
        await tb.nmcli('-w', '30', 'con', 'up', 'lat1');
        await waitFor('lat1 reported', () => present, 5_000);
        up.push(changedAt - (await stateSignal(2, mark)).at);
        mark = rec.signals.length;
        await tb.nmcli('con', 'down', 'lat1');
        await waitFor('lat1 gone', () => !present, 5_000);
        down.push(changedAt - (await stateSignal(3, mark)).at);
      }
    } finally {
      source.off('changed', onChanged);
      await rec.close();
    }
    // Negative: the source reports the connection in IP_CONFIG/IP_CHECK once NM has put the
    // DHCP address on it, a few ms before NM signals ACTIVATED.
    const lines = [summary('NM ACTIVATED signal -> source changed', up), summary('NM DEACTIVATING signal -> source changed', down)];
    for (const l of lines) t.diagnostic(l);
    process.stdout.write(`# ${lines.join('\n# ')}\n`);
    assert.ok(percentile(up, 50) < 20 && percentile(down, 50) < 20, lines.join('; '));
  });
});
